"""Zero-shot segmentation on the toy world: MaskCLIP (teacher, training-free), MaskCLIP+ and LSeg.

    python tools/seg_toy_table.py [--work-dir work_dirs/seg_toy_table] [--iters 1500] [--cfg-options k=v ...]

Builds (or reuses) the toy world and its teacher, evaluates MaskCLIP zero-shot, trains and evaluates
MaskCLIP+ and LSeg through ``tools/train_seg.py`` / ``tools/test_seg.py`` (one process each), prints the
seen / unseen / hIoU table with wall-clock times, and a JSON summary as the last line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"
CONFIGS = REPO / "configs" / "seg" / "toy"
METHODS = (
    ("MaskCLIP (teacher)", "maskclip", False),
    ("MaskCLIP+", "maskclip_plus", True),
    ("LSeg", "lseg", True),
)
KEYS = ("mIoU", "mIoU_seen", "mIoU_unseen", "hIoU")


def _run(argv: list[str], log: Path) -> str:
    """Run a tool, tee its output to ``log``; return stdout's last line (the tool's JSON) or raise."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as handle:  # streamed: follow it with tail -f
        proc = subprocess.run(
            [sys.executable, *argv],
            cwd=REPO,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
    output = log.read_text(encoding="utf-8")
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-30:])
        raise RuntimeError(f"{' '.join(argv)} failed (exit {proc.returncode}); log: {log}\n{tail}")
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_method(
    config: str, train: bool, work_dir: Path, options: Sequence[str]
) -> tuple[dict, float, float]:
    """(metrics, train seconds, test seconds) of one toy config."""
    extra = ["--cfg-options", *options] if options else []
    train_s = 0.0
    checkpoint: list[str] = []
    if train:
        start = time.perf_counter()
        _run(
            [
                str(TOOLS / "train_seg.py"),
                str(CONFIGS / f"{config}.py"),
                "--work-dir",
                str(work_dir),
                *extra,
            ],
            work_dir / "train.out",
        )
        train_s = time.perf_counter() - start
        last = work_dir / "last_checkpoint"
        if not last.is_file():
            raise FileNotFoundError(f"training left no {last}")
        checkpoint = [last.read_text(encoding="utf-8").strip()]
    start = time.perf_counter()
    line = _run(
        [
            str(TOOLS / "test_seg.py"),
            str(CONFIGS / f"{config}.py"),
            *checkpoint,
            "--work-dir",
            str(work_dir / "test"),
            *extra,
        ],
        work_dir / "test.out",
    )
    return json.loads(line), train_s, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-dir", default="work_dirs/seg_toy_table")
    parser.add_argument(
        "--iters",
        type=int,
        default=None,
        help="override the training iterations (default: the configs' 1500; MaskCLIP+ self-trains from 2/3 of them)",
    )
    parser.add_argument("--cfg-options", nargs="+", default=[], help="passed to every tool run")
    args = parser.parse_args(argv)
    options = list(args.cfg_options)
    if args.iters is not None:
        options += [
            f"train_cfg.max_iters={args.iters}",
            f"train_cfg.val_interval={args.iters}",
            f"param_scheduler.1.end={args.iters}",
        ]
    root = Path(args.work_dir).resolve()
    rows = {}
    for label, config, train in METHODS:
        print(f"== {label}: {'train + ' if train else ''}test ({config}.py)", flush=True)
        method_options = (
            options if train else [o for o in options if not o.startswith(("train_cfg", "param_"))]
        )
        if config == "maskclip_plus" and args.iters is not None:
            method_options = [*method_options, f"model.self_training_start={2 * args.iters // 3}"]
        metrics, train_s, test_s = run_method(config, train, root / config, method_options)
        rows[config] = {
            **{k: metrics.get(k) for k in KEYS},
            "train_s": round(train_s, 1),
            "test_s": round(test_s, 1),
        }
    print(
        f"\n{'method':<22}{'mIoU':>8}{'seen':>8}{'unseen':>8}{'hIoU':>8}{'train s':>10}{'test s':>9}"
    )
    for label, config, _ in METHODS:
        r = rows[config]
        print(
            f"{label:<22}{r['mIoU']:>8.1f}{r['mIoU_seen']:>8.1f}{r['mIoU_unseen']:>8.1f}{r['hIoU']:>8.1f}"
            f"{r['train_s']:>10.1f}{r['test_s']:>9.1f}"
        )
    summary = {
        "toy_segmentation": rows,
        "maskclip_plus_beats_teacher_unseen": rows["maskclip_plus"]["mIoU_unseen"]
        > rows["maskclip"]["mIoU_unseen"],
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
