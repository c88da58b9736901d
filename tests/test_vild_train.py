"""End-to-end ViLD runs through tools/train_net.py's logic on a tiny toy world (slow; CI runs them).

A few-image toy world and a one-epoch toy teacher are generated in a temporary directory; every run
does real Detectron2 training and evaluation: RPN proposals -> teacher region cache -> ViLD training
-> OV-COCO metrics. Also checks that an interrupted run resumed with --resume ends with the same
weights and metrics, and that --eval-only on the final checkpoint reproduces them.
"""

import pytest

pytest.importorskip("detectron2")

from detectors.cli import main  # noqa: E402
from detectors.evaluation import read_metrics  # noqa: E402
from detectors.testing import check_resume_and_eval_only, toy_run_args  # noqa: E402

pytestmark = pytest.mark.slow

VILD = (
    "MODEL.VILD.DISTILL.PROPOSAL_OPTS",
    "['SOLVER.MAX_ITER','2']",
    "MODEL.VILD.DISTILL.MAX_PER_IMAGE",
    "8",
    "MODEL.VILD.DISTILL.ROIS_PER_IMAGE",
    "4",
)


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("vild_train")
    patch = pytest.MonkeyPatch()
    patch.setenv("OVDISTILL_CACHE", str(root / "cache"))
    yield root
    patch.undo()


def test_vild_variants_train_and_evaluate(tiny_world):
    for config in ("toy/vild_text.yaml", "toy/vild.yaml", "toy/vild_ensemble.yaml"):
        out = tiny_world / config.replace("/", "_").replace(".yaml", "")
        results = main(toy_run_args(config, out, *VILD))
        metrics = read_metrics(out)
        assert set(results["bbox"]) == {"novel_ap50", "base_ap50", "all_ap50"}
        assert metrics["dataset"] == "toy_val"
        assert all(0.0 <= metrics[k] <= 100.0 for k in ("novel_ap50", "base_ap50", "all_ap50"))
        resolved = (out / "config.yaml").read_text()
        assert "text_embeddings" in resolved
        if config != "toy/vild_text.yaml":
            assert "regions" in resolved  # the precomputed region cache was used


def test_resume_and_eval_only_reproduce_the_run(tiny_world):
    check_resume_and_eval_only("toy/vild.yaml", tiny_world, *VILD)
