#!/usr/bin/env python
"""Export a trained ViLD detector to TorchScript and ONNX, plus a model card.

    python tools/export_model.py --config toy/vild.yaml --weights output/toy/vild/model_final.pth \
        --output output/toy/vild/export [--vocabulary input|baked] [--names "circle,star"] \
        [--format torchscript onnx] [--example-size H W] [KEY VALUE ...]

``--vocabulary input`` (default): the graphs take ``(image [3, H, W], text_embeddings [K, D])``, one file
serves any vocabulary (embeddings from ``tools/demo.py`` / ``detectors.predictor.VocabularyEncoder``).
``--vocabulary baked``: ``--names`` (default: the training vocabulary) are encoded and fixed in the
graph, which takes the image only. Images of any size are accepted (after the test resize,
``detectors.export.prepare_image``); ``--example-size`` is only the size traced (default
``INPUT.MAX_SIZE_TEST`` square). Writes ``model.ts``, ``model.onnx``, ``model_card.json`` and
``MODEL_CARD.md``. See ``detectors/export/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from detectron2.modeling import build_model

from detectors.config import resolve_config_file
from detectors.export import describe_model, example_size, export_detector
from detectors.predictor import (
    VocabularyEncoder,
    load_checkpoint,
    load_inference_config,
    parse_vocabulary,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", required=True, help="detector config (names resolve relative to configs/)"
    )
    parser.add_argument("--weights", required=True, type=Path, help="trained checkpoint (.pth)")
    parser.add_argument(
        "--output", required=True, type=Path, help="directory for the exported files"
    )
    parser.add_argument("--vocabulary", choices=("input", "baked"), default="input")
    parser.add_argument(
        "--names", default=None, help="baked vocabulary: 'a,b,c' or @file.txt (default: training)"
    )
    parser.add_argument(
        "--format", nargs="+", choices=("torchscript", "onnx"), default=["torchscript", "onnx"]
    )
    parser.add_argument(
        "--example-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        default=None,
        help="size of the example image traced (graphs accept any size)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[export] %(message)s")
    args = parse_args(argv)
    if not args.weights.is_file():
        raise SystemExit(f"--weights {args.weights} does not exist")
    config_file = resolve_config_file(args.config)
    cfg = load_inference_config(config_file, weights=args.weights, opts=args.opts)
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg).eval()
    load_checkpoint(model, args.weights, text_embeddings=cfg.MODEL.VILD.TEXT_EMBEDDINGS)
    names = embeddings = None
    if args.vocabulary == "baked":
        encoder = VocabularyEncoder(cfg)
        names = (
            parse_vocabulary(args.names, field="--names")
            if args.names
            else list(encoder.table.names)
        )
        embeddings = encoder(names, field="--names")
    elif args.names:
        raise SystemExit("--names is only used with --vocabulary baked")
    size = tuple(args.example_size) if args.example_size else example_size(cfg)
    card = describe_model(cfg, args.weights, config_file=str(config_file))
    written = export_detector(
        model,
        args.output,
        example_size=size,
        vocabulary=args.vocabulary,
        names=names,
        text_embeddings=embeddings,
        formats=args.format,
        card=card,
        pixel_format=cfg.INPUT.FORMAT,
        resize=(int(cfg.INPUT.MIN_SIZE_TEST), int(cfg.INPUT.MAX_SIZE_TEST)),
    )
    print(json.dumps({k: str(v) for k, v in written.items()}))
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
