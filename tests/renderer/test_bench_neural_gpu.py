"""The GPU sessions bench runs here too (CPU, tiny model), so it cannot go stale unnoticed.

Nothing here depends on speed: only that each N gives a row of the documented fields and that
no session thread failed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import neural_gpu


def test_the_sessions_bench_reports_each_n(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "N_LIST": "1,2",
        "BENCH_SECONDS": "1",
        "BENCH_MODEL": "contract",
        "BARE_BATCHES": "2",
        "OUT": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FACE_ASSET", raising=False)
    neural_gpu.main([])
    report = json.loads((tmp_path / "neural_gpu.json").read_text())
    rows = report["rows"]
    assert rows and rows[0]["sessions"] == 1  # N=2 is skipped when N=1 ran far below 25 fps
    for row in rows:
        assert {"fps_min", "p99_ms", "mean_batch", "holds"} <= set(row) and not row["errors"]
        assert 0 <= row["mean_batch"] <= row["sessions"] and row["fps_mean"] >= 0
    assert report["engine"] == "CPUExecutionProvider" and report["bare"][0]["batch"] == 2
    assert "Largest N holding 25 fps" in (tmp_path / "neural_gpu.md").read_text()
