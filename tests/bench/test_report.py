"""BENCHMARKS.md: each bench rewrites its own dated section and nothing else."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from bench.report import OUT, problems, write_section

DAY = dt.date(2026, 12, 4)


def test_a_bench_rewrites_only_its_own_section(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nHand-written notes.\n")
    write_section("renderer", "Renderer (CPU)", "P1 400 fps", path=path, day=DAY)
    write_section("api", "API", "300 req/s", path=path, day=DAY)
    before = path.read_text()
    write_section("renderer", "Renderer (CPU)", "P1 474 fps", path=path, day=dt.date(2026, 12, 5))
    after = path.read_text()
    assert "P1 400 fps" not in after and "P1 474 fps" in after
    assert "## Renderer (CPU), 2026-12-05" in after
    # everything outside the renderer section is byte for byte what it was
    outside = before.split("<!-- bench:renderer:start -->")[0]
    assert after.startswith(outside) and "Hand-written notes." in after
    assert after.endswith(before.split("<!-- bench:renderer:end -->")[1])
    assert after.count("<!-- bench:renderer:start -->") == 1
    assert problems(after) == []


def test_stale_undated_or_unbalanced_sections_are_reported() -> None:
    stale = "# B\n\n## Renderer (CPU)\n\nP1 190 fps\n"
    assert any("outside any section" in p for p in problems(stale))
    undated = "<!-- bench:api:start -->\n## API\n\nx\n<!-- bench:api:end -->\n"
    assert any("no dated" in p for p in problems(undated))
    twice = "<!-- bench:a:start -->\n## A, 2026-12-04\n<!-- bench:a:end -->\n" * 2
    assert any("twice" in p for p in problems(twice))
    assert any("never closed" in p for p in problems("<!-- bench:a:start -->\n## A, 2026-12-04\n"))


def test_the_repositorys_benchmarks_file_follows_the_rules() -> None:
    """One section per bench, every figure under a dated heading, no stale leftovers."""
    assert problems(OUT.read_text()) == []
