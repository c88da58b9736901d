#!/usr/bin/env python
"""Train or evaluate ovdistill's Detectron2 detectors (ViLD-text, ViLD, ViLD-ensemble).

    python tools/train_net.py --config toy/vild.yaml [--eval-only] [--resume] [--num-gpus N]
        [--num-machines M --machine-rank R --dist-url URL] [KEY VALUE ...]

Detectron2's conventions (``launch``, ``default_argument_parser``); ``--config`` is an alias of
``--config-file`` and names resolve relative to ``configs/``. Before training, missing resources are
computed and cached: the toy world (datasets ``toy_*``), the text classifier
(``MODEL.VILD.TEXT_EMBEDDINGS``, from ``MODEL.VILD.TEACHER``), base-class RPN proposals
(``MODEL.VILD.DISTILL.PROPOSAL_CONFIG``) and the teacher region-embedding cache
(``MODEL.VILD.DISTILL.CACHE``). Metrics go to ``OUTPUT_DIR/ov_metrics.json``. See ``detectors/cli.py``.
"""

from detectors.cli import run

if __name__ == "__main__":
    run()
