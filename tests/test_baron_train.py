"""End-to-end BARON run through tools/train_net.py's logic on a tiny toy world (slow; CI runs it).

A few-image toy world and a one-epoch toy teacher are generated in a temporary directory; the run
exports the teacher's text tower, trains BARON with the teacher online and evaluates OV-COCO metrics.
An interrupted run resumed with --resume ends with the same weights (queues included) and metrics, and
--eval-only on the final checkpoint reproduces them.
"""

import pytest

pytest.importorskip("detectron2")

from detectors.evaluation import read_metrics  # noqa: E402
from detectors.testing import check_resume_and_eval_only, final_weights  # noqa: E402

pytestmark = pytest.mark.slow

BARON = ("MODEL.BARON.QUEUE_SIZE", "64", "MODEL.BARON.POS_EMBED_FEATS", "16")


def test_baron_trains_resumes_and_evaluates(tmp_path, monkeypatch):
    monkeypatch.setenv("OVDISTILL_CACHE", str(tmp_path / "cache"))
    metrics = check_resume_and_eval_only("toy/baron.yaml", tmp_path, *BARON)
    assert all(0.0 <= metrics[k] <= 100.0 for k in ("novel_ap50", "base_ap50", "all_ap50"))
    assert read_metrics(tmp_path / "full")["dataset"] == "toy_val"
    resolved = (tmp_path / "full" / "config.yaml").read_text()
    assert "text_encoders" in resolved and "text_embeddings" in resolved
    weights = final_weights(tmp_path / "full")
    assert int(weights["roi_heads.bag_loss.student_queue.count"]) > 0
    assert any(k.startswith("roi_heads.box_predictor.text_encoder.") for k in weights)
