"""Every benchmark's ``--quick`` mode runs and ends with the shared JSON summary.

The interface is documented in ``benchmarks/README.md``; ``make bench`` runs the same quick modes.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
COMMON_KEYS = {"benchmark", "quick", "threads", "baseline", "ratios"}
RATIOS = {
    "export_latency": {"torchscript_vs_eager", "onnxruntime_vs_eager"},
    "roi_align_backward": {"speedup"},
    "roi_embed": {"fwd", "fwdbwd", "intermediate"},
    "teacher_throughput": {"batched_vs_naive", "dense_vs_crop"},
    "vild_iteration": {"overhead", "overhead_wall"},
}
"""Each benchmark's headline ratios (its docstring and benchmarks/README.md)."""


def test_every_benchmark_is_covered() -> None:
    assert {path.stem for path in BENCHMARKS.glob("[!_]*.py")} == set(RATIOS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RATIOS))
def test_quick_mode_ends_with_json_summary(name: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert COMMON_KEYS <= summary.keys()
    assert (summary["benchmark"], summary["quick"]) == (name, True)
    assert set(summary["ratios"]) == RATIOS[name]
    assert all(math.isfinite(value) for value in summary["ratios"].values()), summary["ratios"]
