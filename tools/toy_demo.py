#!/usr/bin/env python
"""`make demo`: open-vocabulary detection by ViLD / BARON distillation on the embedded toy world.

    python tools/toy_demo.py [--methods vild_text vild vild_ensemble baron] [--output-dir output/toy]

Builds (or reuses) the toy world and its tiny CLIP teacher, then for each method runs
``tools/train_net.py --config toy/<method>.yaml`` (text classifier, teacher region embeddings,
proposals and BARON's exported text encoder are prepared and cached by that tool), and prints the
novel / base / all AP50 table of the methods side by side. Every step is cached or resumable:
rerunning reuses finished runs (``--retrain`` forces training again) and resumes interrupted ones, as long
as the method's config is unchanged: each run directory records the hash of the config it was trained
with (``demo_config.sha256``), and a run of another config is trained again from scratch rather than
reported. The table's JSON is the last line of output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
METHODS = ("vild_text", "vild", "vild_ensemble", "baron")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=["vild_text", "vild"],
        help="toy configs to train and compare (default: ViLD-text vs ViLD)",
    )
    parser.add_argument("--output-dir", type=Path, default=REPO / "output" / "toy")
    parser.add_argument("--retrain", action="store_true", help="train again even if metrics exist")
    return parser.parse_args(argv)


def config_hash(method: str) -> str:
    """sha256 of ``toy/<method>.yaml`` as loaded (bases merged, before any path is resolved)."""
    from detectors.config import load_config

    return hashlib.sha256(load_config(f"toy/{method}.yaml").dump().encode()).hexdigest()


def run_method(method: str, output_dir: Path, *, retrain: bool) -> dict:
    """Train + evaluate one toy config (or reuse its finished run of the same config); return its
    ov_metrics.json."""
    run_dir = output_dir / method
    metrics_path = run_dir / "ov_metrics.json"
    stamp, current = run_dir / "demo_config.sha256", config_hash(method)
    same_config = stamp.is_file() and stamp.read_text().strip() == current
    if run_dir.exists() and not same_config and not retrain and any(run_dir.iterdir()):
        print(
            f"[demo] {method}: {run_dir} holds a run of another config (toy/{method}.yaml changed or no "
            f"{stamp.name}); training again from scratch",
            flush=True,
        )
        retrain = True
    if metrics_path.exists() and (run_dir / "model_final.pth").exists() and not retrain:
        print(f"[demo] {method}: reusing finished run in {run_dir}", flush=True)
        return json.loads(metrics_path.read_text())
    command = [
        sys.executable,
        str(REPO / "tools" / "train_net.py"),
        "--config",
        f"toy/{method}.yaml",
        "OUTPUT_DIR",
        str(run_dir),
    ]
    if (run_dir / "last_checkpoint").exists() and not retrain:
        command.insert(4, "--resume")  # an interrupted run continues where it stopped
    else:
        metrics_path.unlink(missing_ok=True)  # never report a previous run's metrics
    run_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(current + "\n")
    print(f"[demo] {method}: {' '.join(command)}", flush=True)
    start = time.time()
    subprocess.run(command, check=True, cwd=REPO)
    print(f"[demo] {method}: done in {time.time() - start:.0f} s", flush=True)
    return json.loads(metrics_path.read_text())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = {
        method: run_method(method, args.output_dir, retrain=args.retrain) for method in args.methods
    }
    print("\nOpen-vocabulary detection on the toy world (box AP50, %)")
    print(f"{'method':<16}{'novel':>8}{'base':>8}{'all':>8}")
    for method, metrics in results.items():
        print(
            f"{method:<16}{metrics['novel_ap50']:>8.1f}{metrics['base_ap50']:>8.1f}"
            f"{metrics['all_ap50']:>8.1f}"
        )
    table = {
        m: {k: round(r[k], 2) for k in ("novel_ap50", "base_ap50", "all_ap50")}
        for m, r in results.items()
    }
    print(json.dumps(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
