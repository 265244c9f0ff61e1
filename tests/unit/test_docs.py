"""The docs a newcomer reads: a README of a few screens, and no link that leads nowhere.

Every relative link and image of README.md, docs/ and examples/README.md must name a file of the repository and,
when it names a heading (`file.md#anchor`, `#anchor`), a heading of that file, as GitHub writes its anchors. No doc
may name a path outside the repository (the specs we were once given lived in `../shared/`: the docs cite the
vendors' public documentation instead).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_MAX_LINES = 300

DOCS = sorted([README, ROOT / "examples" / "README.md", *(ROOT / "docs").rglob("*.md")])

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_UP = re.compile(r"(?<![\w./-])((?:\.\./)+[\w.-][\w./-]*)")


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, each with its code spans blanked out (links there are not links)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(_CODE_SPAN.sub("", line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (code spans keep their text), spaces to `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub makes for the headings of a Markdown file (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else _HEADING.match(line)
        if match:
            base = slug(match.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[str]:
    """The targets of the relative links and images of a Markdown file (outside code)."""
    targets = []
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        for target in _LINK.findall(line):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto: ...
                targets.append(target)
    return targets


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_readme_is_a_few_screens() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines < README_MAX_LINES, f"README.md has {lines} lines: move detail into docs/"


def test_the_docs_are_there() -> None:
    names = {_name(p) for p in DOCS}
    for wanted in ("docs/operations.md", "docs/reference.md", "docs/guarantees.md", "docs/benchmarks.md"):
        assert wanted in names


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_relative_link_names_a_file_and_heading_of_the_repository(doc: Path) -> None:
    broken = []
    for target in links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {_name(dest)}")
    assert broken == [], f"{_name(doc)}: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_no_doc_names_a_path_outside_the_repository(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    outside = [p for p in _UP.findall(text) if not (doc.parent / p).resolve().is_relative_to(ROOT)]
    assert outside == [], f"{_name(doc)} names paths outside the repository: {outside}"
    assert "shared/specs" not in text and "shared/notes" not in text


def test_the_link_checks_can_fail(tmp_path: Path) -> None:
    # The helpers above find what they must: a heading's anchor, a link outside code, and not one inside it.
    doc = tmp_path / "a.md"
    doc.write_text(
        "# The archive: outcomes beyond Redis\n## `erpsync status`: one screen\n## Tables\n## Tables\n"
        "See [x](b.md#y) and ![i](img/c.png).\n`[not](a link)`\n```\n[no](link)\n# no heading\n```\n",
        encoding="utf-8",
    )
    assert anchors(doc) == {"the-archive-outcomes-beyond-redis", "erpsync-status-one-screen", "tables", "tables-1"}
    assert links(doc) == ["b.md#y", "img/c.png"]
    assert _UP.findall("see ../shared/specs/x.txt and ../bench/a.png") == ["../shared/specs/x.txt", "../bench/a.png"]
