"""What ``lite env`` reports (paste it into bug reports): lite-export's version and the commit of
its source, every extra the installed distribution declares with its packages' installed
versions, Python, the platform and CUDA. Standard library only, except the CUDA line (torch).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

DIST = "lite-export"
#: the packages every install gets (Requires-Dist without an extra marker)
BASE = "base"
NOT_INSTALLED = "not installed"

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_PIN = re.compile(r"==\s*([^\s;,]+)")


def requirements(dist: str = DIST) -> dict[str, list[tuple[str, str | None]]]:
    """``{"base": [(package, pinned version or None)], extra: [...]}`` in the order the
    distribution declares them (``importlib.metadata`` Requires-Dist); every declared extra
    appears, even one without packages."""
    d = metadata.distribution(dist)
    groups: dict[str, list[tuple[str, str | None]]] = {BASE: []}
    for extra in d.metadata.get_all("Provides-Extra") or []:
        groups.setdefault(extra, [])
    for req in d.requires or []:
        spec, _, marker = req.partition(";")
        name = _NAME.match(spec)
        if not name:
            continue
        extra = _EXTRA.search(marker)
        pin = _PIN.search(spec)
        entry = (name.group(1), pin.group(1) if pin else None)
        group = groups.setdefault(extra.group(1) if extra else BASE, [])
        if entry not in group:
            group.append(entry)
    return groups


def installed_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def _git(src: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(src), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def source_commit(src: str | os.PathLike) -> str:
    """The commit of the checkout at ``src`` (its top level), ``-dirty`` when tracked files have
    changes; "unknown" when ``src`` is not the top of a git checkout (a wheel in
    site-packages)."""
    src = Path(src).resolve()
    top = _git(src, "rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != src:
        return "unknown"
    sha = _git(src, "rev-parse", "--short=12", "HEAD")
    if not sha:
        return "unknown"
    changes = _git(src, "status", "--porcelain", "--untracked-files=no")
    return f"{sha}-dirty" if changes else sha


def source_dir() -> Path:
    """Where lite_export is imported from: a checkout's top (an editable install) or
    site-packages (a wheel)."""
    import lite_export

    return Path(lite_export.__file__).resolve().parent.parent


def cuda() -> str:
    try:
        import torch
    except ImportError:
        return "unknown (torch is not installed)"
    built = f"torch {torch.__version__}, CUDA {torch.version.cuda or 'none (CPU build)'}"
    if not torch.cuda.is_available():
        return f"not available ({built})"
    n = torch.cuda.device_count()
    names = ", ".join(sorted({torch.cuda.get_device_name(i) for i in range(n)}))
    return f"{n} GPU(s): {names} ({built})"


def report() -> list[tuple[str, str]]:
    """(name, value) lines; extras as "[extra]" headers followed by "  package" lines."""
    from lite_export import __version__

    src = source_dir()
    rows = [
        ("lite-export", f"{__version__} ({src}, git {source_commit(src)})"),
        ("python", f"{sys.version.split()[0]} ({sys.executable})"),
        ("platform", platform.platform()),
        ("cuda", cuda()),
    ]
    try:
        groups = requirements()
    except metadata.PackageNotFoundError:
        return [*rows, ("extras", f"unknown: the {DIST} distribution is not installed")]
    for extra, packages in groups.items():
        title = "packages every install has" if extra == BASE else f'pip install "{DIST}[{extra}]"'
        rows.append((f"[{extra}]", title))
        for name, pin in packages:
            version = installed_version(name)
            if pin and version != NOT_INSTALLED and version.split("+")[0] != pin:
                version += f" (declared =={pin})"
            rows.append((f"  {name}", version))
    return rows


def format_report(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
