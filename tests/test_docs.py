"""The documentation site builds with `mkdocs build --strict`, and the README's links resolve.

Strict mode fails on a broken link between pages, a missing anchor, a stale API reference (an
object mkdocstrings cannot find) or a CLI reference that cannot be generated (mkdocs.yml).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason='the docs packages are missing (pip install -e ".[docs]")')
pytest.importorskip("mkdocstrings", reason='pip install -e ".[docs]"')

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# [text](target): the target up to ")" or whitespace; images too.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")  # Material's end-of-life banner
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    cmd += ["--config-file", str(ROOT / "mkdocs.yml")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(
            f"mkdocs build --strict failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}",
            pytrace=False,
        )
    return out


def _page(site: Path, doc: str) -> Path:
    """The built HTML of docs/<doc> (use_directory_urls: a.md -> a/index.html)."""
    rel = Path(doc).with_suffix("")
    return site / (
        "index.html" if rel.name == "index" and rel.parent == Path(".") else rel / "index.html"
    )


def test_site_builds_strict(site):
    assert (site / "index.html").is_file()
    assert (site / "api" / "lite_export" / "index.html").is_file()


def test_cli_reference_lists_every_command(site):
    import typer

    from lite_export.cli import app

    html = (site / "cli" / "index.html").read_text()
    commands = typer.main.get_command(app).commands
    assert commands
    names = list(commands)
    names += [f"{g}-{sub}" for g, cmd in commands.items() for sub in getattr(cmd, "commands", {})]
    assert "catalog-add" in names
    missing = [name for name in names if f'id="lite-{name}"' not in html]
    assert not missing, f"CLI reference lacks {missing}"


def test_readme_links_resolve(site):
    """Every relative link of README.md names an existing file; an anchor into docs/ exists."""
    text = README.read_text()
    targets = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    assert targets, "README.md has no relative links"
    broken = []
    for target in targets:
        path, _, anchor = target.partition("#")
        file = (ROOT / path) if path else README
        if not file.exists():
            broken.append(f"{target}: {path} does not exist")
            continue
        if anchor:
            rel = file.resolve().relative_to(ROOT)
            if rel.parts[0] != "docs" or file.suffix != ".md":
                broken.append(f"{target}: anchors are checked only into docs/*.md")
                continue
            html = _page(site, str(Path(*rel.parts[1:]))).read_text()
            if f'id="{anchor}"' not in html:
                broken.append(f"{target}: no #{anchor} on {rel}")
    assert not broken, "README.md links:\n" + "\n".join(broken)
