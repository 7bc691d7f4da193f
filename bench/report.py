"""BENCHMARKS.md as marked sections: each bench rewrites its own section, dated, and nothing else.

A section is `<!-- bench:KEY:start -->`, a `## Title, YYYY-MM-DD` heading (the day its figures
were measured), the body, and `<!-- bench:KEY:end -->`. Text outside the sections is kept.

    python -m bench.report KEY "Title" FILE   # a section from a file (e.g. the GPU bench's table)
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
MARKER = re.compile(r"<!-- bench:([a-z0-9-]+):(start|end) -->")
HEADING = re.compile(r"^## .+, (\d{4}-\d{2}-\d{2})$")


def section(key: str, title: str, body: str, *, day: dt.date | None = None) -> str:
    day = day or dt.date.today()
    return (
        f"<!-- bench:{key}:start -->\n## {title}, {day.isoformat()}\n\n{body.strip()}\n"
        f"<!-- bench:{key}:end -->"
    )


def replace_section(text: str, key: str, new: str) -> str:
    """`text` with section `key` replaced by `new` (appended when absent); the rest untouched."""
    start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    if start not in text:
        return text.rstrip() + "\n\n" + new + "\n"
    before, rest = text.split(start, 1)
    if end not in rest:
        raise ValueError(f"BENCHMARKS.md: section {key} has no end marker")
    return before + new + rest.split(end, 1)[1]


def read_section(key: str, *, path: Path = OUT) -> str | None:
    """The body of section `key` (below its dated heading), or None when there is none."""
    text = path.read_text() if path.exists() else ""
    start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    if start not in text or end not in text:
        return None
    inside = text.split(start, 1)[1].split(end, 1)[0]
    lines = inside.strip("\n").splitlines()
    if lines and HEADING.match(lines[0]):
        lines = lines[1:]
    return "\n".join(lines).strip()


def write_section(
    key: str, title: str, body: str, *, path: Path = OUT, day: dt.date | None = None
) -> str:
    """Rewrite one section of BENCHMARKS.md in place; returns the new section."""
    new = section(key, title, body, day=day)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(replace_section(text, key, new))
    return new


def problems(text: str) -> list[str]:
    """What breaks the file's rules: unbalanced or repeated markers, undated or orphan headings."""
    found: list[str] = []
    open_key: str | None = None
    seen: set[str] = set()
    dated = False
    for number, line in enumerate(text.splitlines(), 1):
        marker = MARKER.fullmatch(line.strip())
        if marker:
            key, edge = marker.groups()
            if edge == "start":
                if open_key is not None or key in seen:
                    found.append(f"line {number}: section {key} opened twice or inside another")
                open_key, dated = key, False
                seen.add(key)
            else:
                if key != open_key:
                    found.append(f"line {number}: end of {key} without its start")
                elif not dated:
                    found.append(f"section {key} has no dated '## Title, YYYY-MM-DD' heading")
                open_key = None
        elif line.startswith("## "):
            if open_key is None:
                found.append(f"line {number}: heading outside any section: {line}")
            elif HEADING.match(line):
                dated = True
    if open_key is not None:
        found.append(f"section {open_key} is never closed")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    key, title, source = argv
    print(write_section(key, title, Path(source).read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
