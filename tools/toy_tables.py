#!/usr/bin/env python
"""Toy-world tables: every method over several seeds, mean and min-max, in one command.

    python tools/toy_tables.py [--seeds 0 1 2] [--methods vild_text vild ...] [--output-dir output/toy]

Methods are the toy config names: detection ``vild_text``, ``vild``, ``vild_ensemble``, ``baron``
(``configs/toy/<method>.yaml`` through ``tools/train_net.py``, box AP50 novel / base / all) and
segmentation ``maskclip``, ``maskclip_plus``, ``lseg``, ``clip_es`` (``configs/seg/toy/<method>.py``
through ``tools/train_seg.py`` / ``tools/test_seg.py``, mIoU all / seen / unseen and hIoU), plus
``clip_es_pseudo``: CLIP-ES pseudo-masks of the train split scored against its ground truth
(``tools/make_pseudo_masks.py --toy``), which the ``clip_es`` student trains on. Ablation rows run only
when named: ``vild_text_lr04`` (ViLD-text at peak LR 0.04) and ``maskclip_plus_cosine`` (MaskCLIP+
with ovdistill's cosine head instead of the official dot product).

Each (method, seed) is one run directory, ``<output-dir>/<method>/seed<k>/``, with the seed set
through the config (``SEED`` / ``randomness.seed``). Finished runs of the same config are reused,
interrupted ones resumed, runs of another config trained again from scratch (each directory records
the hash of the config it was trained with); ``--retrain`` forces training again. Training-free
methods (``maskclip``, ``clip_es_pseudo``) do not depend on the seed: they run once (``seed-free``).

Prints the table of mean (min-max) over the seeds next to the expected 3-seed range stored in
``configs/toy/expected.json`` (what a fresh machine should land in), and JSON on its last line:
``{"method": {"novel_ap50": {"mean": .., "min": .., "max": ..}, ...}, ...}``. ``make demo`` runs
``--seeds 0 --methods vild_text vild``; ``--write-expected`` stores the printed ranges there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tools"
EXPECTED = REPO / "configs" / "toy" / "expected.json"
DETECTION_KEYS = ("novel_ap50", "base_ap50", "all_ap50")
SEGMENTATION_KEYS = ("miou", "seen_miou", "unseen_miou", "hiou")
PSEUDO_MASK_KEYS = ("miou", "kept_miou", "coverage")
# test_seg.py's metric names -> the table's
SEG_METRICS = {
    "mIoU": "miou",
    "mIoU_seen": "seen_miou",
    "mIoU_unseen": "unseen_miou",
    "hIoU": "hiou",
}
# CLIP-ES pseudo-masks for the student: with DenseCRF when installed (threshold on its marginals, as
# CLIP-ES), else CAA with a threshold on the normalised [background, CAM] scores.
PSEUDO_FLAGS = {
    "crf": ["--crf", "--confidence-threshold", "0.95"],
    "plain": ["--confidence-threshold", "0.7"],
}


@dataclass(frozen=True)
class Method:
    """One toy table row: ``kind`` is detection / segmentation / pseudo_masks."""

    name: str
    kind: str
    trained: bool = True
    ablation: bool = False  # an ablation row: run only when named in --methods

    @property
    def keys(self) -> tuple[str, ...]:
        return {
            "detection": DETECTION_KEYS,
            "segmentation": SEGMENTATION_KEYS,
            "pseudo_masks": PSEUDO_MASK_KEYS,
        }[self.kind]

    @property
    def config(self) -> Path:
        if self.kind == "detection":
            return REPO / "configs" / "toy" / f"{self.name}.yaml"
        if self.kind == "segmentation":
            return REPO / "configs" / "seg" / "toy" / f"{self.name}.py"
        return REPO / "tools" / "make_pseudo_masks.py"


METHODS = {
    m.name: m
    for m in (
        Method("vild_text", "detection"),
        Method("vild", "detection"),
        Method("vild_ensemble", "detection"),
        Method("baron", "detection"),
        Method("maskclip", "segmentation", trained=False),
        Method("maskclip_plus", "segmentation"),
        Method("lseg", "segmentation"),
        Method("clip_es_pseudo", "pseudo_masks", trained=False),
        Method("clip_es", "segmentation"),
        # Ablations of the rows above (one changed setting each, stated in the config's header).
        Method("vild_text_lr04", "detection", ablation=True),
        Method("maskclip_plus_cosine", "segmentation", ablation=True),
    )
}
DEFAULT_METHODS = [name for name, method in METHODS.items() if not method.ablation]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=list(METHODS),
        default=DEFAULT_METHODS,
        help="default: every method but the ablations ("
        + ", ".join(sorted(set(METHODS) - set(DEFAULT_METHODS)))
        + "), which run only when named",
    )
    parser.add_argument("--output-dir", type=Path, default=REPO / "output" / "toy")
    parser.add_argument("--retrain", action="store_true", help="train again even if finished")
    parser.add_argument(
        "--write-expected",
        action="store_true",
        help="store this table's ranges as the expected ones (configs/toy/expected.json)",
    )
    return parser.parse_args(argv)


def _yaml_with_bases(path: Path) -> str:
    """A Detectron2 yaml file's text after the texts of its ``_BASE_`` files, recursively: what
    its author wrote, so that a new config key with a default does not invalidate finished runs."""
    text = path.read_text(encoding="utf-8")
    base = (yaml.safe_load(text) or {}).get("_BASE_")
    return (_yaml_with_bases((path.parent / base).resolve()) if base else "") + text


def config_hash(method: Method) -> str:
    """sha256 of the method's config files as written (bases included), or of the tool for
    pseudo-masks."""
    if method.kind == "detection":
        text = _yaml_with_bases(method.config)
    elif method.kind == "segmentation":
        from mmengine.config import Config

        text = Config.fromfile(str(method.config)).pretty_text
    else:
        text = method.config.read_text(encoding="utf-8") + json.dumps(PSEUDO_FLAGS)
    return hashlib.sha256(text.encode()).hexdigest()


def _write_json(path: Path, data: dict) -> None:
    """Atomic write: a crash never leaves a half-written result that looks finished."""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def _run_tool(argv: list[str], log: Path) -> str:
    """Run a tool with this interpreter, streaming its output to ``log``; return its last line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(argv)}\n")
        handle.flush()
        proc = subprocess.run(
            [sys.executable, *argv], cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, check=False
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8").splitlines()[-30:])
        raise RuntimeError(f"{' '.join(argv)} failed (exit {proc.returncode}); log: {log}\n{tail}")
    lines = [line for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _train_detection(method: Method, seed: int, run_dir: Path, *, resume: bool) -> dict:
    command = [str(TOOLS / "train_net.py"), "--config", f"toy/{method.name}.yaml"]
    command += ["--resume"] if resume else []
    command += ["SEED", str(seed), "OUTPUT_DIR", str(run_dir)]
    _run_tool(command, run_dir / "log.txt")
    metrics = json.loads((run_dir / "ov_metrics.json").read_text(encoding="utf-8"))
    return {k: float(metrics[k]) for k in DETECTION_KEYS}


def _seg_options(method: Method, seed: int, pseudo_dir: Path | None) -> list[str]:
    options = [f"randomness.seed={seed}"] if method.trained else []
    if pseudo_dir is not None:
        options.append(f"train_dataloader.dataset.pseudo_masks={pseudo_dir}")
    return ["--cfg-options", *options] if options else []


def _train_segmentation(
    method: Method, seed: int, run_dir: Path, *, resume: bool, pseudo_dir: Path | None
) -> dict:
    options = _seg_options(method, seed, pseudo_dir)
    checkpoint: list[str] = []
    if method.trained:
        command = [str(TOOLS / "train_seg.py"), str(method.config), "--work-dir", str(run_dir)]
        _run_tool([*command, *(["--resume"] if resume else []), *options], run_dir / "log.txt")
        last = run_dir / "last_checkpoint"
        if not last.is_file():
            raise FileNotFoundError(f"{method.name} seed {seed}: training left no {last}")
        checkpoint = [last.read_text(encoding="utf-8").strip()]
    line = _run_tool(
        [
            str(TOOLS / "test_seg.py"),
            str(method.config),
            *checkpoint,
            "--work-dir",
            str(run_dir / "test"),
            *options,
        ],
        run_dir / "log.txt",
    )
    metrics = json.loads(line)
    return {ours: float(metrics[theirs]) for theirs, ours in SEG_METRICS.items()}


def _pseudo_masks(run_dir: Path) -> dict:
    from distill.cam import crf_available

    flags = PSEUDO_FLAGS["crf" if crf_available() else "plain"]
    command = [str(TOOLS / "make_pseudo_masks.py"), "--toy", "--split", "train"]
    command += ["--out", str(run_dir / "masks"), "--gt", "auto", "--no-progress", *flags]
    result = json.loads(_run_tool(command, run_dir / "log.txt"))
    return {k: float(result[k]) for k in PSEUDO_MASK_KEYS}


def run_dir_of(method: Method, seed: int, output_dir: Path) -> Path:
    return output_dir / method.name / (f"seed{seed}" if method.trained else "seed-free")


def run_once(method: Method, seed: int, output_dir: Path, *, retrain: bool = False) -> dict:
    """Metrics of one (method, seed): a finished run of the current config is reused, an
    interrupted one resumed, anything else trained from scratch."""
    run_dir = run_dir_of(method, seed, output_dir)
    result_path, current = run_dir / "result.json", config_hash(method)
    identity = {"method": method.name, "seed": seed if method.trained else None, "config": current}
    stamp = run_dir / "identity.json"
    same = stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == identity
    if same and result_path.is_file() and not retrain:
        print(f"[toy] {method.name} seed {seed}: reusing {run_dir}", flush=True)
        return json.loads(result_path.read_text(encoding="utf-8"))["metrics"]
    resume = same and not retrain and (run_dir / "last_checkpoint").is_file()
    if not resume and run_dir.exists():
        if not same and any(run_dir.iterdir()):
            print(f"[toy] {method.name}: {run_dir} holds another config's run; starting over")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(stamp, identity)
    what = "resuming" if resume else "training" if method.trained else "evaluating"
    print(f"[toy] {method.name} seed {seed}: {what} in {run_dir} (log: log.txt)", flush=True)
    start = time.time()
    if method.kind == "detection":
        metrics = _train_detection(method, seed, run_dir, resume=resume)
    elif method.kind == "pseudo_masks":
        metrics = _pseudo_masks(run_dir)
    else:
        pseudo = None
        if method.name == "clip_es":
            pseudo_run = run_dir_of(METHODS["clip_es_pseudo"], seed, output_dir)
            run_once(METHODS["clip_es_pseudo"], seed, output_dir)
            pseudo = pseudo_run / "masks"
        metrics = _train_segmentation(method, seed, run_dir, resume=resume, pseudo_dir=pseudo)
    seconds = round(time.time() - start, 1)
    _write_json(result_path, {**identity, "metrics": metrics, "seconds": seconds})
    print(f"[toy] {method.name} seed {seed}: done in {seconds:.0f} s: {metrics}", flush=True)
    return metrics


def summarize(runs: list[dict], keys: tuple[str, ...]) -> dict:
    """``{key: {"mean", "min", "max"}}`` over the runs, rounded to 0.01."""
    return {
        k: {
            "mean": round(sum(r[k] for r in runs) / len(runs), 2),
            "min": round(min(r[k] for r in runs), 2),
            "max": round(max(r[k] for r in runs), 2),
        }
        for k in keys
    }


def _cell(stats: dict) -> str:
    if stats["min"] == stats["max"]:
        return f"{stats['mean']:.1f}"
    return f"{stats['mean']:.1f} ({stats['min']:.1f}-{stats['max']:.1f})"


def print_tables(table: dict, seeds: list[int], expected: dict) -> None:
    """One markdown table per kind; 'expected' is the stored 3-seed range of the same metric."""
    for kind in ("detection", "segmentation", "pseudo_masks"):
        rows = [m for m in table if METHODS[m].kind == kind]
        if not rows:
            continue
        keys = METHODS[rows[0]].keys
        print(f"\nToy world, {kind.replace('_', ' ')}: mean (min-max) over seeds {seeds}")
        print("| method | " + " | ".join(keys) + " |")
        print("| --- |" + " ---: |" * len(keys))
        for name in rows:
            cells = [_cell(table[name][k]) for k in keys]
            print(f"| {name} | " + " | ".join(cells) + " |")
            if name in expected:
                ranges = [_cell(expected[name][k]) if k in expected[name] else "" for k in keys]
                print("| (expected) | " + " | ".join(ranges) + " |")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    table = {}
    for name in args.methods:
        method = METHODS[name]
        seeds = args.seeds if method.trained else args.seeds[:1]
        runs = [run_once(method, s, args.output_dir, retrain=args.retrain) for s in seeds]
        table[name] = summarize(runs, method.keys)
    expected = json.loads(EXPECTED.read_text(encoding="utf-8")) if EXPECTED.is_file() else {}
    if args.write_expected:
        measured = {name: stats for name, stats in table.items() if not METHODS[name].ablation}
        expected = {**expected, **measured}
        _write_json(EXPECTED, expected)
    print_tables(table, args.seeds, expected)
    print(json.dumps(table))
    return table


if __name__ == "__main__":
    main()
