"""The exported artifact: a versioned directory with a manifest that checksums every file.

``lite_export.load(path)`` verifies the manifest (format version, sha256 of every file) before
any runtime touches a file, so a missing, truncated or altered file is named instead of
surfacing later as a cryptic runtime error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

ARTIFACT_FORMAT = "lite-export-artifact"
ARTIFACT_VERSION = 1
MANIFEST = "manifest.json"


class ArtifactError(ValueError):
    """An artifact directory is missing files, damaged, or from a newer lite-export."""


def publish_directory(tmp: Path, target: Path) -> Path:
    """Move a finished directory built beside ``target`` into place.

    Opens the tree to readers (``mkdtemp`` makes 0700 directories, and servers often run as
    another user), then swaps it in: an existing ``target`` is replaced only once the new tree
    is complete, so readers never see a half-written directory.
    """
    os.chmod(tmp, 0o755)
    for p in tmp.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
    return target


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_entries(directory: Path, names: list[str]) -> dict[str, dict]:
    """{name: {"sha256", "bytes"}} for the given files of ``directory``."""
    return {
        n: {"sha256": sha256_file(directory / n), "bytes": (directory / n).stat().st_size}
        for n in sorted(names)
    }


def read_manifest(path: str | os.PathLike) -> dict:
    """Parse and version-check ``manifest.json`` (no checksums: see :func:`verify_artifact`)."""
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(
            f"artifact directory {root} does not exist; create one with `lite export CKPT --out {root}`"
        )
    mf = root / MANIFEST
    if not mf.is_file():
        raise ArtifactError(
            f"{root} has no {MANIFEST}: it is not a lite-export artifact (or the export did not "
            "finish); re-run `lite export`"
        )
    try:
        manifest = json.loads(mf.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{mf} is not valid JSON ({exc}); re-run `lite export`") from None
    if manifest.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(f"{mf} is not a lite-export artifact manifest (format tag missing)")
    version = int(manifest.get("format_version", 0))
    if version > ARTIFACT_VERSION:
        raise ArtifactError(
            f"{root} was written by a newer lite-export (artifact format {version}, this version "
            f"reads up to {ARTIFACT_VERSION}, written by lite-export "
            f"{manifest.get('lite_export_version', '?')}); upgrade lite-export to load it"
        )
    return manifest


def verify_artifact(path: str | os.PathLike) -> dict:
    """Check every file listed in the manifest exists with the recorded size and sha256."""
    root = Path(path)
    manifest = read_manifest(root)
    for name, entry in manifest.get("files", {}).items():
        f = root / name
        if not f.is_file():
            raise ArtifactError(
                f"{f} is missing from the artifact; copy the whole directory again or re-export"
            )
        size = f.stat().st_size
        if size != entry["bytes"]:
            raise ArtifactError(
                f"{f} has {size} bytes but the manifest recorded {entry['bytes']} (truncated or "
                "altered); copy the artifact again or re-export"
            )
        if sha256_file(f) != entry["sha256"]:
            raise ArtifactError(
                f"{f} does not match its sha256 in {MANIFEST} (altered or corrupted); copy the "
                "artifact again or re-export"
            )
    return manifest
