"""End-to-end ViLD runs through tools/train_net.py's logic on a tiny toy world (slow; CI runs them).

A few-image toy world and a one-epoch toy teacher are generated in a temporary directory; every run
does real Detectron2 training and evaluation: RPN proposals -> teacher region cache -> ViLD training
-> OV-COCO metrics. Also checks that an interrupted run resumed with --resume ends with the same
weights and metrics, and that --eval-only on the final checkpoint reproduces them.
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
    "MODEL.VILD.DISTILL.PROPOSAL_OPTS", "['SOLVER.MAX_ITER','2']",
    "MODEL.VILD.DISTILL.MAX_PER_IMAGE", "8", "MODEL.VILD.DISTILL.ROIS_PER_IMAGE", "4",
    "MODEL.BASIC_RESNET.DEPTH", "10", "MODEL.BASIC_RESNET.WIDTH", "8", "MODEL.FPN.OUT_CHANNELS", "16",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16", "MODEL.ROI_BOX_HEAD.FC_DIM", "32",
    "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "6", "SOLVER.STEPS", "(4,)",
    "SOLVER.WARMUP_ITERS", "2", "SOLVER.CHECKPOINT_PERIOD", "3",
]


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("vild_train")
    patch = pytest.MonkeyPatch()
    patch.setenv("OVDISTILL_CACHE", str(root / "cache"))
    yield root
    patch.undo()


def _args(config, out, *extra, flags=()):
    return argument_parser().parse_args(["--config", config, *flags, *TINY, "DATASETS.TOY.ROOT",
                                         str(out.parent / "world"), "OUTPUT_DIR", str(out), *extra])


class Interrupt:
    """A hook that stops training with an exception after iteration ``at`` (like a killed job)."""

    def __new__(cls, at):
        from detectron2.engine import HookBase

        class _Interrupt(HookBase):
            def after_step(self):
                if self.trainer.iter == at:
                    raise RuntimeError("simulated interruption")

        return _Interrupt()


def _metrics(out):
    return json.loads((out / "ov_metrics.json").read_text())


def _weights(out):
    return torch.load(out / "model_final.pth", map_location="cpu", weights_only=False)["model"]


def test_vild_variants_train_and_evaluate(tiny_world):
    for config in ("toy/vild_text.yaml", "toy/vild.yaml", "toy/vild_ensemble.yaml"):
        out = tiny_world / config.replace("/", "_").replace(".yaml", "")
        results = main(_args(config, out))
        metrics = _metrics(out)
        assert set(results["bbox"]) == {"novel_ap50", "base_ap50", "all_ap50"}
        assert metrics["dataset"] == "toy_val"
        assert all(0.0 <= metrics[k] <= 100.0 for k in ("novel_ap50", "base_ap50", "all_ap50"))
        resolved = (out / "config.yaml").read_text()
        assert "text_embeddings" in resolved
        if config != "toy/vild_text.yaml":
            assert "regions" in resolved  # the precomputed region cache was used


def test_resume_and_eval_only_reproduce_the_run(tiny_world):
    full = tiny_world / "full"
    main(_args("toy/vild.yaml", full))
    # same run, killed after iteration 3 (a checkpoint exists), then resumed
    part = tiny_world / "part"
    cfg = setup(_args("toy/vild.yaml", part))
    trainer = build_trainer(cfg)
    trainer.register_hooks([Interrupt(2)])
    trainer.resume_or_load(resume=False)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        trainer.train()
    assert (part / "model_0000002.pth").is_file() and not (part / "model_final.pth").exists()
    main(_args("toy/vild.yaml", part, flags=["--resume"]))
    a, b = _weights(full), _weights(part)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert _metrics(part) == _metrics(full)
    # --eval-only on the final checkpoint of OUTPUT_DIR
    (part / "ov_metrics.json").unlink()
    main(_args("toy/vild.yaml", part, flags=["--eval-only"]))
    assert _metrics(part) == _metrics(full)
