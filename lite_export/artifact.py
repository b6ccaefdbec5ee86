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
import tempfile
from pathlib import Path

ARTIFACT_FORMAT = "lite-export-artifact"
ARTIFACT_VERSION = 1
MANIFEST = "manifest.json"
# the training checkpoint's marker: read here (no torch) so that every command can tell an
# artifact from a checkpoint before its heavy imports (see lite_export.model.lite_llm4rec)
CHECKPOINT_FORMAT = "lite-export-checkpoint"
CHECKPOINT_VERSION = 1
CHECKPOINT_META = "config.json"


class ArtifactError(ValueError):
    """An artifact directory is missing files, damaged, or from a newer lite-export."""


class CheckpointError(ValueError):
    """A checkpoint directory is missing files, damaged, or from a newer lite-export."""


def _tagged_json(path: Path, tag: str) -> dict | None:
    """The JSON object in ``path`` when it carries ``"format": tag``, else None (no errors)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == tag else None


# --------------------------------------------------------------------------- writing outputs
# Every command that writes a directory builds it beside the target and renames it into place
# (publish_directory). Before any long work it checks the target (check_output_dir): --force
# replaces only a directory of the same kind that lite-export wrote, never the command's own
# input nor a directory that contains it, never anything else. Commands that write files into
# a directory (lite tune, lite bench) check each file the same way (check_output_files).

TRITON_REPOSITORY_FORMAT = "lite-export-triton-repository"
#: a standalone Triton model repository's marker file (Triton loads only subdirectories as
#: models, so a file at the top of the repository is ignored by the server)
TRITON_REPOSITORY_MARKER = "lite-export-repository.json"
#: the directories lite-export writes: kind -> (what users call it, marker file, format tag)
OUTPUT_KINDS = {
    "artifact": ("artifact", MANIFEST, ARTIFACT_FORMAT),
    "checkpoint": ("checkpoint", CHECKPOINT_META, CHECKPOINT_FORMAT),
    "triton-repository": (
        "Triton model repository",
        TRITON_REPOSITORY_MARKER,
        TRITON_REPOSITORY_FORMAT,
    ),
}
#: JSON key (value: :func:`written_by`) that marks a file lite-export wrote
WRITTEN_BY_KEY = "_written_by"
#: first lines that mark a text file (Markdown, pbtxt) lite-export wrote
_MARKER_LINES = ("# written by lite-export ", "<!-- written by lite-export ")
#: how the outputs of earlier versions, written before the markers, begin
_LEGACY_WHAT = ("lite bench: ", "lite tune: ", "lite tune trial: ")
_LEGACY_LINES = (r"# lite bench \(.*, commit .*\)\s*$", r"# lite tune: dynamic batching for ")


class OutputDirError(ValueError):
    """An output path holds something the command must not replace; nothing was written."""


class OutputExistsError(OutputDirError, FileExistsError):
    """The output holds lite-export's own earlier result and ``force`` was not given."""


def _a(what: str) -> str:
    return f"an {what}" if what[0] in "aeiou" else f"a {what}"


def _kind_name(kind: str) -> str:
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"kind must be one of {sorted(OUTPUT_KINDS)}, got {kind!r}")
    return OUTPUT_KINDS[kind][0]


def directory_kind(path: str | os.PathLike) -> str | None:
    """Which lite-export directory ``path`` is ("artifact", "checkpoint", "triton-repository"),
    by its marker file and format tag; None for anything else (or nothing there)."""
    root = Path(path)
    if not root.is_dir():
        return None
    for kind, (_, marker, tag) in OUTPUT_KINDS.items():
        f = root / marker
        if f.is_file() and f.stat().st_size < 1 << 24 and _tagged_json(f, tag) is not None:
            return kind
    return None


def describe_directory(path: Path, limit: int = 5) -> str:
    """What a directory holds, for an error message: ``notes.txt, data/ (2 entries)``."""
    try:
        entries = sorted(path.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        return f"entries that cannot be listed ({exc.strerror})"
    shown = []
    for p in entries[:limit]:
        if p.is_dir() and not p.is_symlink():
            try:
                n = sum(1 for _ in p.iterdir())
            except OSError:
                n = "?"
            shown.append(f"{p.name}/ ({n} {'entry' if n == 1 else 'entries'})")
        else:
            shown.append(p.name)
    if len(entries) > limit:
        shown.append(f"and {len(entries) - limit} more")
    return ", ".join(shown)


def _refuse_sources(path: Path, sources, option: str) -> None:
    """A target that is, or contains, one of the command's inputs is refused, --force or not."""
    real = path.resolve()
    for src in sources:
        if src is None:
            continue
        s = Path(src).resolve()
        if s == real:
            how = "is an input of this command" + ("" if str(src) == str(path) else f" {src}")
        elif real in s.parents:
            how = f"contains {src}, an input of this command"
        else:
            continue
        named = f"{option} {path}" if option.startswith("-") else str(path)
        raise OutputDirError(
            f"{named} {how}: writing there would destroy it, so it is refused even with "
            f"--force; choose another {option}"
        )


def _refuse_file_ancestor(path: Path, option: str) -> None:
    for parent in path.resolve().parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputDirError(
                    f"{path}: {parent} is a file, not a directory; choose another {option}"
                )
            return


def check_output_dir(
    target: str | os.PathLike,
    kind: str,
    *,
    force: bool = False,
    sources=(),
    option: str = "--out",
) -> Path:
    """Check, before any long work, that a ``kind`` directory may be written at ``target``.

    Allowed: nothing there, an empty directory, or (with ``force``) a directory of the same
    ``kind`` that lite-export wrote (see :data:`OUTPUT_KINDS`). Refused, whatever ``force``
    says: ``target`` is or contains one of ``sources`` (the command's inputs; symlinks
    resolved), is a file, or holds anything else -- the message says what is there.

    Returns the path to write: ``target``, or the directory it links to when it is a symlink.

    Raises:
        OutputExistsError: a directory of the right kind is there and ``force`` is False.
        OutputDirError: any other refusal.
    """
    what = _kind_name(kind)
    path = Path(target)
    _refuse_sources(path, sources, option)
    _refuse_file_ancestor(path, option)
    real = path.resolve() if path.is_symlink() else path
    if not real.exists():
        return real
    if not real.is_dir():
        raise OutputDirError(
            f"{path} is a file, not a lite-export {what}; choose another {option}, or move it "
            "away yourself"
        )
    if not any(real.iterdir()):
        return real  # an empty directory: nothing to lose
    found = directory_kind(real)
    if found is None:
        raise OutputDirError(
            f"{path} is not a lite-export {what}: it holds {describe_directory(real)}; choose "
            f"another {option}, or move it away yourself"
        )
    if found != kind:
        raise OutputDirError(
            f"{path} is a lite-export {_kind_name(found)}, not {_a(what)}; choose another "
            f"{option}, or move it away yourself"
        )
    if not force:
        raise OutputExistsError(
            f"{path} already holds a lite-export {what}; pass --force to replace it (the old "
            f"one stays until the new one is complete)"
        )
    return real


def publish_directory(
    tmp: Path, target: Path, *, kind: str | None = None, force: bool = True, sources=()
) -> Path:
    """Move a finished directory built beside ``target`` into place.

    Opens the tree to readers (``mkdtemp`` makes 0700 directories, and servers often run as
    another user), then swaps it in: an existing ``target`` is replaced only once the new tree
    is complete, so readers never see a half-written directory.

    The last line of defence of :func:`check_output_dir`: an existing ``target`` is replaced
    only when it is empty or (with ``force``) a lite-export directory of ``kind`` (default: the
    kind of ``tmp`` itself), and never when it is or contains one of ``sources``; otherwise
    :class:`OutputDirError` is raised and the new tree is kept beside the target under a name
    the message gives, so no work is lost either way.
    """
    tmp, target = Path(tmp), Path(target)
    if target.is_symlink():
        target = target.resolve()
    kind = kind or directory_kind(tmp)
    if target.exists() or sources:
        try:
            if kind is None:
                if target.exists() and not (target.is_dir() and not any(target.iterdir())):
                    raise OutputDirError(
                        f"{target} exists and holds {describe_directory(target)}; the new "
                        "directory is not of a kind lite-export replaces"
                    )
                _refuse_sources(target, sources, "directory")
            else:
                check_output_dir(target, kind, force=force, sources=sources, option="directory")
        except OutputDirError as exc:
            kept = Path(tempfile.mkdtemp(prefix=f"{target.name}.new-", dir=tmp.parent))
            os.replace(tmp, kept)
            raise type(exc)(
                f"{exc}; {target} was left as it is, and what this command wrote is in {kept}"
            ) from None
    os.chmod(tmp, 0o755)
    for p in tmp.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    if target.is_dir() and any(target.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old)  # onto the empty directory mkdtemp made
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)  # nothing there, or an empty directory
    return target


def written_by(tool: str) -> str:
    """The marker of a file written by ``tool`` (e.g. "lite tune"): lite-export, version, tool."""
    from lite_export import __version__

    return f"lite-export {__version__} ({tool})"


def _png_software(path: Path) -> str | None:
    """The ``Software`` text of a PNG (where savefig's ``metadata`` puts it), read with Pillow
    (matplotlib's own dependency, installed wherever lite-export draws plots); None without it."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        return None
    try:
        with Image.open(path) as im:
            return getattr(im, "text", {}).get("Software")
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def _ours_json(value) -> bool:
    if not isinstance(value, dict):
        return False
    mark = value.get(WRITTEN_BY_KEY)
    if isinstance(mark, str) and mark.startswith(("lite-export ", "lite tune ")):
        return True
    what = value.get("what")
    return isinstance(what, str) and what.startswith(_LEGACY_WHAT)


def written_by_lite_export(path: str | os.PathLike) -> bool:
    """Whether lite-export wrote the file at ``path`` (by its marker; no errors).

    JSON: the ``_written_by`` key (every row of a JSON list); PNG: the ``Software`` text chunk;
    Markdown, pbtxt and other text: a first line ``# written by lite-export ...`` (or
    ``<!-- written by lite-export ... -->``). The unmarked outputs of earlier versions are
    recognised by what they begin with.
    """
    path = Path(path)
    try:
        if not path.is_file():
            return False
        if path.suffix.lower() == ".png":
            software = _png_software(path)
            return software is not None and software.startswith("lite-export")
        if path.suffix.lower() == ".json":
            if path.stat().st_size > 1 << 28:
                return False
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, list):
                return bool(data) and all(_ours_json(row) for row in data)
            return _ours_json(data)
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline(4096)
    except (OSError, ValueError):
        return False
    import re

    return first.startswith(_MARKER_LINES) or any(re.match(p, first) for p in _LEGACY_LINES)


def check_output_files(
    directory: str | os.PathLike,
    names,
    *,
    force: bool = False,
    sources=(),
    option: str = "--out",
) -> list[Path]:
    """Check, before any long work, that the files ``names`` may be written in ``directory``.

    A file there is replaced only when lite-export wrote it (:func:`written_by_lite_export`)
    and ``force`` is given; anything else of those names is refused, named in the message,
    whatever ``force`` says, and so is a name that is one of ``sources`` (the command's
    inputs). Other entries of ``directory`` are never touched. Returns the output paths.

    Raises:
        OutputExistsError: only lite-export's own earlier outputs are there, no ``force``.
        OutputDirError: anything else is there (nothing was written).
    """
    root = Path(directory)
    _refuse_file_ancestor(root / "x", option)
    if root.exists() and not root.is_dir():
        raise OutputDirError(
            f"{root} is a file, not a directory; choose another {option}, or move it away yourself"
        )
    paths = [root / n for n in names]
    inputs = {Path(s).resolve() for s in sources if s is not None}
    foreign, ours = [], []
    for p in paths:
        if not (p.exists() or p.is_symlink()):
            continue
        if p.resolve() in inputs:
            raise OutputDirError(
                f"{p} is an input of this command; writing it would destroy it, so it is "
                f"refused even with --force; choose another {option}"
            )
        if p.is_dir():
            foreign.append(f"{p.name}/ (a directory)")
        elif written_by_lite_export(p):
            ours.append(p.name)
        else:
            foreign.append(p.name)
    if foreign:
        them = "it" if len(foreign) == 1 else "them"
        raise OutputDirError(
            f"{root} holds {', '.join(foreign)}, not written by lite-export, which this command "
            f"would overwrite; choose another {option}, or move {them} away yourself"
        )
    if ours and not force:
        them = "it" if len(ours) == 1 else "them"
        raise OutputExistsError(
            f"{root} already holds {', '.join(ours)} from an earlier run; pass --force to "
            f"replace {them}, or choose another {option}"
        )
    return paths


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
        what = "is a file, not a directory" if root.exists() else "does not exist"
        raise ArtifactError(
            f"artifact directory {root} {what}; create one with `lite export CKPT --out {root}`"
        )
    mf = root / MANIFEST
    if not mf.is_file() and _tagged_json(root / CHECKPOINT_META, CHECKPOINT_FORMAT) is not None:
        raise ArtifactError(
            f"{root} is a training checkpoint (written by `lite train`), not an exported "
            f"artifact: export it first with `lite export {root} --out ART`, then pass ART here"
        )
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


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """Parse and version-check a training checkpoint's ``config.json`` (no torch needed).

    Also :func:`lite_export.model.lite_llm4rec.read_checkpoint_meta`; an exported artifact
    passed instead is named as one, with the checkpoint it was exported from.
    """
    path = Path(path)
    if not path.is_dir():
        what = "is a file, not a directory" if path.exists() else "does not exist"
        raise CheckpointError(
            f"checkpoint directory {path} {what}; train one with `lite train --out {path}`"
        )
    cfg = path / CHECKPOINT_META
    manifest = _tagged_json(path / MANIFEST, ARTIFACT_FORMAT)
    if manifest is not None and _tagged_json(cfg, CHECKPOINT_FORMAT) is None:
        source = manifest.get("source_checkpoint")
        if source:
            there = "" if Path(source).is_dir() else " (no longer there)"
            hint = f"pass the one it was exported from, {source}{there}"
        else:
            hint = "pass the directory that `lite train --out` wrote"
        raise CheckpointError(
            f"{path} is an exported artifact (written by `lite export`), not a training "
            "checkpoint; evaluating, exporting, resuming training and "
            f"LiteLLM4Rec.from_pretrained need the training checkpoint: {hint} (the artifact "
            "itself is what `lite serve`, `lite bench`, `lite tune` and lite_export.load() take)"
        )
    if not cfg.is_file():
        raise CheckpointError(
            f"checkpoint {path} is missing {CHECKPOINT_META}; a checkpoint written by "
            "`lite train` holds config.json, model.safetensors, items.jsonl (and "
            "item_vectors.safetensors)"
        )
    try:
        meta = json.loads(cfg.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a lite-export training checkpoint (config.json has no format tag)"
        )
    if int(meta.get("format_version", 0)) > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer lite-export (checkpoint format "
            f"{meta['format_version']} > {CHECKPOINT_VERSION}); upgrade lite-export to load it"
        )
    return meta


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
