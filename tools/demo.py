#!/usr/bin/env python
"""Detect any vocabulary with a trained ViLD detector and draw the boxes into PNGs.

    python tools/demo.py --config toy/vild.yaml --weights output/toy/vild/model_final.pth \
        --vocabulary "circle,star,red heart" --input IMG_OR_DIR --output OUT [--confidence 0.5]

``--vocabulary``: comma-separated names or ``@file.txt`` (one per line). Names of the training
vocabulary come from its classifier file; other names are encoded by the configured teacher's text
encoder once and cached (``detectors.predictor.VocabularyEncoder``). ``--weights`` may also be an
exported ``model.onnx`` / ``model.ts`` made with ``--vocabulary input``. ``--input``: an image or a
directory (its image files); ``--output``: a directory (``<stem>.png`` per input) or, for one input,
a ``.png`` path. Drawing uses Detectron2's ``Visualizer``. The JSON summary is the last line.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from detectron2.data.catalog import Metadata
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from detectors.predictor import IMAGE_SUFFIXES, OVPredictor, parse_vocabulary, read_image


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", required=True, help="detector config (names resolve relative to configs/)"
    )
    parser.add_argument(
        "--weights", required=True, type=Path, help=".pth checkpoint, or exported .onnx / .ts"
    )
    parser.add_argument("--vocabulary", required=True, help="'cat,dog,red star' or @names.txt")
    parser.add_argument(
        "--input", required=True, type=Path, help="an image file or a directory of images"
    )
    parser.add_argument(
        "--output", required=True, type=Path, help="output directory (or .png for one input)"
    )
    parser.add_argument(
        "--confidence", type=float, default=0.5, help="draw detections scoring at least this"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser.parse_args(argv)


def list_inputs(path: Path) -> list[Path]:
    """The input file, or a directory's image files (by suffix); errors name the path."""
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise SystemExit(
                f"--input {path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the directory"
            )
        return files
    if not path.is_file():
        raise SystemExit(f"--input {path} does not exist")
    return [path]


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[demo] %(message)s")
    args = parse_args(argv)
    parse_vocabulary(args.vocabulary, field="--vocabulary")  # fail fast, before any model is built
    inputs = list_inputs(args.input)
    images = {p: read_image(p, format="RGB") for p in inputs}  # every input checked before any work
    predictor = OVPredictor(
        args.config, args.weights, vocabulary=args.vocabulary, opts=args.opts, field="--vocabulary"
    )
    metadata = Metadata(name="ovdistill_demo").set(thing_classes=list(predictor.vocabulary))
    single = len(inputs) == 1 and args.output.suffix.lower() == ".png"
    summary = []
    for path, image in images.items():
        instances = predictor(image)
        keep = instances[instances.scores >= args.confidence]
        drawn = Visualizer(image, metadata).draw_instance_predictions(keep).get_image()
        target = args.output if single else args.output / f"{path.stem}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(drawn).save(target)
        summary.append(
            {
                "input": str(path),
                "output": str(target),
                "detections": len(keep),
                "classes": sorted({predictor.vocabulary[int(c)] for c in keep.pred_classes}),
            }
        )
        print(f"[demo] {path} -> {target}: {len(keep)} detections >= {args.confidence}", flush=True)
    print(json.dumps({"vocabulary": predictor.vocabulary, "images": summary}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (
        ValueError,
        FileNotFoundError,
        KeyError,
        NotImplementedError,
    ) as err:  # bad input: one clear line
        sys.exit(f"{Path(sys.argv[0]).name}: error: {err}")
