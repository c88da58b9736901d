"""CLIP-ES on the toy world, end to end: pseudo-masks from image-level labels, then a student segmenter.

    python tools/clip_es_toy_table.py [--work-dir work_dirs/clip_es_toy_table] [--iters 1500] [--limit N]
        [--confidence-threshold T] [--no-crf] [--cfg-options k=v ...]

1. Builds (or reuses) the toy world and its ViT teacher.
2. ``tools/make_pseudo_masks.py --toy`` on the train split: softmax-GradCAM without and with the class-aware
   attention refinement (CAA), and CAA + DenseCRF when ``pydensecrf2`` is installed; each scored against the
   ground truth (dense pseudo-label mIoU, mIoU on the pixels kept by the confidence threshold, coverage).
3. Trains ``configs/seg/toy/clip_es.py`` on the best pseudo-masks (CRF if available, else CAA) through
   ``tools/train_seg.py`` and evaluates it on the val split through ``tools/test_seg.py``.

Prints a table with wall-clock times and a JSON summary as the last line. Every step resumes or is reused:
pseudo-masks skip finished images; a finished student (same masks and options) is re-evaluated without
retraining, an interrupted one resumes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from distill.cam import crf_available

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"
CONFIG = REPO / "configs" / "seg" / "toy" / "clip_es.py"
# Without CRF the confidence is the normalized [background, CAM] score of the argmax class; 0.95 is CLIP-ES's
# threshold on the (much peakier) CRF marginals.
DEFAULT_THRESHOLD = {"crf": 0.95, "plain": 0.7}


def _run(argv: list[str], log: Path) -> str:
    """Run a tool with this interpreter, tee its output to ``log``; return stdout's last line or raise."""
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    log.write_text(proc.stdout, encoding="utf-8")
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-30:])
        raise RuntimeError(f"{' '.join(argv)} failed (exit {proc.returncode}); log: {log}\n{tail}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def pseudo_masks(name: str, flags: list[str], root: Path, limit: int | None) -> dict:
    """Run ``make_pseudo_masks.py --toy`` for one variant; its JSON (scores vs ground truth) + wall time."""
    out = root / f"pseudo_{name}"
    argv = [
        str(TOOLS / "make_pseudo_masks.py"),
        "--toy",
        "--split",
        "train",
        "--out",
        str(out),
        "--gt",
        "auto",
        "--no-progress",
        *flags,
    ]
    if limit is not None:
        argv += ["--limit", str(limit)]
    start = time.perf_counter()
    result = json.loads(_run(argv, root / f"pseudo_{name}.out"))
    return {**result, "wall_s": round(time.perf_counter() - start, 1)}


def student(masks: Path, root: Path, options: list[str]) -> tuple[dict, float, float]:
    """Train (unless finished) and test the student on ``masks``; ``(metrics, train s, test s)``."""
    work = root / "student"
    extra = ["--cfg-options", f"train_dataloader.dataset.pseudo_masks={masks}", *options]
    last, done = work / "last_checkpoint", work / "DONE.json"
    identity = {"masks": str(masks), "options": extra}
    start = time.perf_counter()
    finished = (
        done.is_file()
        and json.loads(done.read_text(encoding="utf-8")) == identity
        and last.is_file()
    )
    if not finished:
        resume = (
            ["--resume"] if last.is_file() and not done.is_file() else []
        )  # interrupted run: continue it
        done.unlink(missing_ok=True)
        _run(
            [str(TOOLS / "train_seg.py"), str(CONFIG), "--work-dir", str(work), *resume, *extra],
            work / "train.out",
        )
        done.write_text(json.dumps(identity), encoding="utf-8")
    train_s = time.perf_counter() - start
    if not last.is_file():
        raise FileNotFoundError(f"training left no {last}")
    start = time.perf_counter()
    line = _run(
        [
            str(TOOLS / "test_seg.py"),
            str(CONFIG),
            last.read_text(encoding="utf-8").strip(),
            "--work-dir",
            str(work / "test"),
            *extra,
        ],
        work / "test.out",
    )
    return json.loads(line), train_s, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-dir", default="work_dirs/clip_es_toy_table")
    parser.add_argument(
        "--iters", type=int, default=None, help="student iterations (default: the config's 1500)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="pseudo-masks for the first N train images only"
    )
    parser.add_argument(
        "--confidence-threshold",
        type=float,
        default=None,
        help=f"ignore threshold (default {DEFAULT_THRESHOLD['crf']} with CRF, "
        f"{DEFAULT_THRESHOLD['plain']} without)",
    )
    parser.add_argument(
        "--no-crf",
        action="store_true",
        help="skip the CRF variant even if pydensecrf2 is installed",
    )
    parser.add_argument(
        "--cfg-options", nargs="+", default=[], help="passed to the student's train/test tools"
    )
    args = parser.parse_args(argv)
    root = Path(args.work_dir).resolve()
    options = list(args.cfg_options)
    if args.iters is not None:
        options += [
            f"train_cfg.max_iters={args.iters}",
            f"train_cfg.val_interval={args.iters}",
            f"param_scheduler.0.end={args.iters}",
        ]
    use_crf = crf_available() and not args.no_crf
    plain_thr = (
        args.confidence_threshold
        if args.confidence_threshold is not None
        else DEFAULT_THRESHOLD["plain"]
    )
    crf_thr = (
        args.confidence_threshold
        if args.confidence_threshold is not None
        else DEFAULT_THRESHOLD["crf"]
    )
    variants = [
        ("gradcam", "softmax-GradCAM", ["--no-caa", "--confidence-threshold", str(plain_thr)]),
        ("caa", "GradCAM + CAA", ["--confidence-threshold", str(plain_thr)]),
    ]
    if use_crf:
        variants.append(
            ("caa_crf", "GradCAM + CAA + CRF", ["--crf", "--confidence-threshold", str(crf_thr)])
        )
    rows = {}
    for name, label, flags in variants:
        print(f"== pseudo-masks: {label}", flush=True)
        rows[name] = pseudo_masks(name, flags, root, args.limit)
    best = variants[-1][0]
    if args.limit is not None:  # partial pseudo-masks (quick runs): let the dataset accept them
        options.append("train_dataloader.dataset.require_complete=False")
    print(f"== student: train + test on pseudo_{best} ({CONFIG.name})", flush=True)
    metrics, train_s, test_s = student(root / f"pseudo_{best}", root, options)

    print(
        f"\n{'pseudo-masks (toy train)':<26}{'mIoU':>8}{'kept mIoU':>11}{'coverage':>10}{'thr':>6}{'time s':>8}"
    )
    for name, label, flags in variants:
        r = rows[name]
        thr = flags[flags.index("--confidence-threshold") + 1]
        print(
            f"{label:<26}{r['miou']:>8.1f}{r['kept_miou']:>11.1f}{r['coverage']:>9.1f}%{thr:>6}{r['wall_s']:>8.1f}"
        )
    print(
        f"\n{'student (toy val, GT)':<26}{'mIoU':>8}{'seen':>8}{'unseen':>8}{'train s':>9}{'test s':>8}"
    )
    print(
        f"{'DeepLabV2-R18 on ' + best:<26}{metrics['mIoU']:>8.1f}{metrics['mIoU_seen']:>8.1f}"
        f"{metrics['mIoU_unseen']:>8.1f}{train_s:>9.1f}{test_s:>8.1f}"
    )
    summary = {
        "clip_es_toy": {
            "pseudo_masks": {
                name: {k: rows[name][k] for k in ("miou", "kept_miou", "coverage", "wall_s")}
                for name, _, _ in variants
            },
            "student": {
                "trained_on": best,
                "val_mIoU": metrics["mIoU"],
                "val_mIoU_seen": metrics["mIoU_seen"],
                "val_mIoU_unseen": metrics["mIoU_unseen"],
                "train_s": round(train_s, 1),
                "test_s": round(test_s, 1),
            },
            "crf": "pydensecrf2" if use_crf else None,
            "caa_beats_gradcam": rows["caa"]["miou"] > rows["gradcam"]["miou"],
        }
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
