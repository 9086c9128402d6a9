"""The fenced code blocks of README.md and docs/*.md, as the snippet test runs them.

A fence's info string is its language and, after it, words of this project's own:

    ```python               run (python: in-process, one namespace per page, blocks in page order)
    ```bash                 run its lines that start with ``workbench`` or ``python``
    ```python no-run        never run: needs what a test machine lacks (an online model, a GPU, a
                            Ray cluster, a download, data at a path of your own)
    ```bash ci              never run: the README's two commands, which are CI itself (.ci/run)
    ```python needs-heads   run only where the third-party head files are (../shared/data/heads)
    ```yaml file=NAME       not run: written to NAME in the page's folder before the blocks after it

The mkdocs build strips these words (docs/hooks.py) so the site highlights the fences as usual.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

RUN_LANGS = {"python": "python", "py": "python", "bash": "shell", "sh": "shell", "shell": "shell", "console": "shell"}
WORDS = {"no-run", "ci", "needs-heads"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")


@dataclass
class Snippet:
    path: Path          # the markdown file
    line: int           # 1-based line of the opening fence
    lang: str           # the first word of the info string, lower-case ("" when none)
    words: set = field(default_factory=set)
    options: dict = field(default_factory=dict)   # key=value words (file=NAME)
    code: str = ""

    @property
    def kind(self) -> str | None:
        """"python", "shell" or None (a block that is never run: yaml, text, ...)."""
        return RUN_LANGS.get(self.lang)

    def where(self, root: Path) -> str:
        try:
            rel = self.path.relative_to(root)
        except ValueError:
            rel = self.path
        return f"{rel}:{self.line}"


def parse_info(info: str) -> tuple[str, set, dict]:
    parts = info.strip().split()
    lang = parts[0].lower() if parts else ""
    words, options = set(), {}
    for w in parts[1:]:
        if "=" in w:
            k, v = w.split("=", 1)
            options[k] = v.strip("\"'")
        else:
            words.add(w)
    unknown = words - WORDS
    if unknown and lang in RUN_LANGS:
        raise ValueError(f"unknown fence word(s) {sorted(unknown)} (known: {sorted(WORDS)})")
    return lang, words, options


def snippets(path: Path) -> list[Snippet]:
    """Every fenced block of a markdown file, with the line of its opening fence."""
    out: list[Snippet] = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        try:
            lang, words, options = parse_info(m["info"])
        except ValueError as exc:
            raise ValueError(f"{path}:{i + 1}: {exc}") from None
        body, j = [], i + 1
        while j < len(lines):
            close = lines[j].strip()
            if close.startswith(fence[0] * len(fence)) and set(close) == {fence[0]}:
                break
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        else:
            raise ValueError(f"{path}:{i + 1}: a fence that is never closed")
        out.append(Snippet(Path(path), i + 1, lang, words, options, "\n".join(body) + "\n"))
        i = j + 1
    return out


def shell_commands(code: str) -> list[tuple[int, str]]:
    """(line offset in the block, command) for each command of a shell block that starts with
    ``workbench`` or ``python``; ``\\`` continuations joined, ``$ `` prompts and comments dropped."""
    out, buf, start = [], "", 0
    for k, raw in enumerate(code.splitlines()):
        line = raw.rstrip()
        if not buf:
            start = k
            line = line.lstrip()
            if line.startswith("$ "):
                line = line[2:]
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        cmd, buf = buf + line, ""
        first = cmd.split(None, 1)[0] if cmd.strip() else ""
        if first in ("workbench", "python", "python3"):
            out.append((start, cmd))
    return out


def pages(root: Path) -> list[Path]:
    """README.md and every docs/*.md, in a fixed order."""
    root = Path(root)
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def collect_pages(root: Path) -> dict[str, list[Snippet]]:
    """{relative path: its snippets} for :func:`pages`."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): snippets(p) for p in pages(root) if p.is_file()}
