"""End-to-end BARON run through tools/train_net.py's logic on a tiny toy world (slow; CI runs it).

A few-image toy world and a one-epoch toy teacher are generated in a temporary directory; the run
exports the teacher's text tower, trains BARON with the teacher online and evaluates OV-COCO metrics.
An interrupted run resumed with --resume ends with the same weights (queues included) and metrics, and
--eval-only on the final checkpoint reproduces them.
"""
import json

import pytest
import torch

pytest.importorskip("detectron2")

from detectors.cli import argument_parser, build_trainer, main, setup  # noqa: E402

pytestmark = pytest.mark.slow

TINY = [
    "DATASETS.TOY.OVERRIDES", "['n_train=8','n_val=4','n_captions=96','image_size=64']",
    "MODEL.VILD.TEACHER.TOY_OVERRIDES",
    "['epochs=1','max_captions=96','vit_width=32','vit_layers=1','text_width=32','text_layers=1','embed_dim=32',"
    "'image_size=32','batch_size=32']",
    "MODEL.BASIC_RESNET.DEPTH", "10", "MODEL.BASIC_RESNET.WIDTH", "8", "MODEL.FPN.OUT_CHANNELS", "16",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16", "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
    "MODEL.BARON.QUEUE_SIZE", "64", "MODEL.BARON.POS_EMBED_FEATS", "16",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "6", "SOLVER.STEPS", "(4,)",
    "SOLVER.WARMUP_ITERS", "2", "SOLVER.CHECKPOINT_PERIOD", "3",
]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("baron_train")
    patch = pytest.MonkeyPatch()
    patch.setenv("OVDISTILL_CACHE", str(root / "cache"))
    yield root
    patch.undo()


def _args(config, out, *extra, flags=()):
    return argument_parser().parse_args(["--config", config, *flags, *TINY, "DATASETS.TOY.ROOT",
                                         str(out.parent / "world"), "OUTPUT_DIR", str(out), *extra])


def _metrics(out):
    return json.loads((out / "ov_metrics.json").read_text())


def _weights(out):
    return torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]


def test_baron_trains_resumes_and_evaluates(tiny_world):
    from detectron2.engine import HookBase

    class Interrupt(HookBase):
        def after_step(self):
            if self.trainer.iter == 2:
                raise RuntimeError("simulated interruption")

    full = tiny_world / "full"
    results = main(_args("toy/baron.yaml", full))
    metrics = _metrics(full)
    assert set(results["bbox"]) == {"novel_ap50", "base_ap50", "all_ap50"}
    assert all(0.0 <= metrics[k] <= 100.0 for k in ("novel_ap50", "base_ap50", "all_ap50"))
    resolved = (full / "config.yaml").read_text()
    assert "text_encoders" in resolved and "text_embeddings" in resolved
    weights = _weights(full)
    assert int(weights["roi_heads.bag_loss.student_queue.count"]) > 0
    assert any(k.startswith("roi_heads.box_predictor.text_encoder.") for k in weights)

    part = tiny_world / "part"
    cfg = setup(_args("toy/baron.yaml", part))
    trainer = build_trainer(cfg)
    trainer.register_hooks([Interrupt()])
    trainer.resume_or_load(resume=False)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        trainer.train()
    assert (part / "model_0000002.pth").is_file() and not (part / "model_final.pth").exists()
    main(_args("toy/baron.yaml", part, flags=["--resume"]))
    a, b = _weights(full), _weights(part)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert _metrics(part) == metrics
    (part / "ov_metrics.json").unlink()
    main(_args("toy/baron.yaml", part, flags=["--eval-only"]))
    assert _metrics(part) == metrics
