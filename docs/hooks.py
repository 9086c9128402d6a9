"""mkdocs hook: drop the snippet runner's fence words before a page is rendered.

The words after a fence's language (``no-run``, ``ci``, ``needs-heads``, ``file=NAME``; see
contributing.md and tests/docs/docsnippets.py) tell the test suite how to run a snippet; the
Markdown highlighter would not take the fence as code with them.
"""
from __future__ import annotations

import re

_FENCE = re.compile(r"^(?P<head>[ \t]*(?:`{3,}|~{3,})[\w#.+-]+)(?P<words>(?:[ \t]+(?:no-run|ci|needs-heads|file=\S+))+)[ \t]*$",
                    re.MULTILINE)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return _FENCE.sub(lambda m: m["head"], markdown)
