"""Griffe extension for the API reference: docstrings written for Sphinx, rendered as Markdown.

* Sphinx roles: the docstrings cite objects as ``:func:`rank``` (reST); Markdown would show the
  role's name beside the code. The role is dropped, so ``:func:`rank``` renders as ``rank`` in
  code, and ``~a.b.C`` as ``C``.
* Section titles (a line underlined with ``---``) lose their backticks: inline code in a heading
  inside a docstring garbles the page's table of contents (mkdocstrings renders docstrings with
  their own Markdown instance, whose stashed code spans the page's table of contents then
  resolves against the wrong stash).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:attr|class|data|exc|func|meth|mod|obj):`(~)?([^`]+)`")
_SETEXT_TITLE = re.compile(r"^(?P<title>[^\n]*`[^\n]*)\n(?P<rule>[-=]{3,}[ \t]*)$", re.MULTILINE)


def _plain(match: re.Match) -> str:
    name = match.group(2)
    if match.group(1):
        name = name.rsplit(".", 1)[-1]
    return f"`{name}`"


def _title_without_code(match: re.Match) -> str:
    return match.group("title").replace("`", "") + "\n" + match.group("rule")


def markdown_docstring(text: str) -> str:
    text = _ROLE.sub(_plain, text)
    return _SETEXT_TITLE.sub(_title_without_code, text)


class SphinxDocstrings(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_docstring(obj.docstring.value)
