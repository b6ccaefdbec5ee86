"""MkDocs hook for the lite-export site (see mkdocs.yml): the CLI reference.

The page marker is replaced by the Markdown that Typer's own generator
(``typer lite_export.cli utils docs``) writes for the ``lite`` app, so the page always matches
``lite --help``. A failure to generate it fails the build.
"""

from __future__ import annotations

import re
import subprocess
import sys

from mkdocs.exceptions import PluginError

CLI_MARKER = "<!-- lite-cli-reference -->"
_CLI_CMD = [sys.executable, "-m", "typer", "lite_export.cli", "utils", "docs", "--name", "lite"]


def _cli_markdown() -> str:
    try:
        proc = subprocess.run(_CLI_CMD, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PluginError(f"CLI reference: {' '.join(_CLI_CMD)} failed: {exc}") from exc
    if proc.returncode != 0 or "## `lite " not in proc.stdout:
        raise PluginError(
            f"CLI reference: {' '.join(_CLI_CMD)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        )
    # Typer writes `# lite` and `## lite COMMAND`: one level below the page's own title.
    return re.sub(r"^(#+) ", r"#\1 ", proc.stdout, flags=re.MULTILINE)


def on_page_markdown(markdown: str, **kwargs) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, _cli_markdown())
    return markdown
