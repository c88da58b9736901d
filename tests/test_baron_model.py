"""BARON student built through Detectron2's registries on a tiny dataset (CPU, random text encoder and a
stub teacher): losses, gradients, queues, vocabulary swap, ensemble inference, clear errors."""

import copy
import inspect

import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from detectors.data import OVDatasetMapper, load_ov_json, register_ov_dataset  # noqa: E402
from detectors.engine import OVTrainer  # noqa: E402
from detectors.modeling import BaronOutputLayers, BaronROIHeads  # noqa: E402
from detectors.modeling.baron_heads import pack_sequences  # noqa: E402
from detectors.modeling.baron_sampler import Bags  # noqa: E402
from detectors.modeling.vild_predictor import cosine_logits as vild_cosine_logits  # noqa: E402
from detectors.teacher import teacher_spec_from_cfg  # noqa: E402
from detectors.testing import (  # noqa: E402
    TINY_CLASSES,
    StubTeacher,
    tiny_baron_config,
    write_random_text_embeddings,
    write_random_text_encoder,
    write_tiny_dataset,
)
from distill.teachers import TEACHERS, TeacherHandle, TeacherSpec, register_teacher  # noqa: E402
from distill.vocab import cosine_logits  # noqa: E402


@pytest.fixture()
def tiny(tmp_path):
    json_path, image_root = write_tiny_dataset(tmp_path / "data", num_images=2, base_only=True)
    name = f"baron_model_tiny_{len(DatasetCatalog.list())}"
    register_ov_dataset(name, json_path, image_root, base_only=True)
    text = write_random_text_embeddings(tmp_path / "text.pt", [c[0] for c in TINY_CLASSES])
    encoder = write_random_text_encoder(tmp_path / "encoder.pt")
    yield name, text, encoder, tmp_path
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def _batch(cfg, name):
    mapper = OVDatasetMapper(cfg, True)
    meta = MetadataCatalog.get(name)
    return [mapper(d) for d in load_ov_json(meta.json_file, meta.image_root)]


def test_pack_sequences_concatenates_region_words():
    words = torch.arange(5 * 2 * 1, dtype=torch.float32).view(5, 2, 1)  # 5 regions, 2 words each
    keep = torch.tensor([[True, False], [True, True], [True, True], [False, True], [True, True]])
    seq, valid, seq_of_region, slot = pack_sequences(words, keep, torch.tensor([2, 3]))
    assert (
        seq.shape == (2, 6, 1)
        and seq_of_region.tolist() == [0, 0, 1, 1, 1]
        and slot.tolist() == [0, 1, 0, 1, 2]
    )
    assert seq[0, :4, 0].tolist() == [0, 1, 2, 3] and seq[1, :, 0].tolist() == [4, 5, 6, 7, 8, 9]
    assert valid[0].tolist() == [True, False, True, True, False, False]


def test_baron_losses_and_gradients(tiny):
    name, text, encoder, tmp = tiny
    cfg = tiny_baron_config(
        train=name, test=name, text_embeddings=text, text_encoder=encoder, output_dir=tmp
    )
    torch.manual_seed(0)
    model = build_model(cfg).train()
    heads = model.roi_heads
    assert isinstance(heads, BaronROIHeads) and isinstance(heads.box_predictor, BaronOutputLayers)
    batch = _batch(cfg, name)
    with EventStorage(), pytest.raises(ValueError, match="set_teacher"):
        model(batch)
    teacher = StubTeacher()
    heads.set_teacher(teacher)
    with EventStorage():
        losses = model(batch)
    assert set(losses) == {
        "loss_cls",
        "loss_box_reg",
        "loss_bag",
        "loss_single",
        "loss_rpn_cls",
        "loss_rpn_loc",
    }
    assert all(torch.isfinite(v) for v in losses.values())
    assert {"crop", "crop_tokens"} <= set(teacher.calls) and "dense" not in teacher.calls
    assert int(heads.bag_loss.student_queue.count) > 0
    assert set(heads.bag_loss.student_queue.get_ids().tolist()) == {1, 2}  # the images' ids
    (losses["loss_bag"] + losses["loss_single"]).backward()
    assert heads.box_predictor.projection.weight.grad.abs().sum() > 0
    assert heads.position_embed.proj[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in heads.box_predictor.text_encoder.parameters())  # frozen
    optimizer_params = [n for n, p in model.named_parameters() if p.requires_grad]
    assert not any("text_encoder" in n for n in optimizer_params)


def _bilinear(grid: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """``grid [D, h, w]`` at the inner point ``(x, y)`` (cell centres at integers)."""
    x0, y0 = min(int(x), grid.shape[2] - 2), min(int(y), grid.shape[1] - 2)
    fx, fy = x - x0, y - y0
    top = grid[:, y0, x0] * (1 - fx) + grid[:, y0, x0 + 1] * fx
    bottom = grid[:, y0 + 1, x0] * (1 - fx) + grid[:, y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def test_single_region_targets_follow_ovdet_bag_crop_tokens(tiny):
    """``SINGLE.TOKENS "bag_crop"`` (the default): the teacher's tokens of the BAG crop, RoI-aligned
    1x1 with 2x2 samples (aligned) on the region's in-bag box scaled to the token grid
    (wusize/ovdet@d74a20c ``baron_kd.py``); ``"dense_image"`` keeps the old whole-image targets."""
    name, text, encoder, tmp = tiny
    cfg = tiny_baron_config(
        train=name, test=name, text_embeddings=text, text_encoder=encoder, output_dir=tmp
    )
    assert cfg.MODEL.BARON.SINGLE.TOKENS == "bag_crop"
    heads = build_model(cfg).roi_heads
    assert heads.single_tokens == "bag_crop"
    teacher = StubTeacher()
    heads.set_teacher(teacher)
    image = torch.randint(0, 256, (3, 48, 64), generator=torch.Generator().manual_seed(3))
    image = image.to(torch.uint8)
    bag_box = torch.tensor([[8.0, 8.0, 40.0, 32.0]])
    normed = torch.tensor([[0.0, 0.0, 0.5, 1.0], [0.25, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 1.0]])
    bags = Bags(
        boxes=torch.tensor([[8.0, 8.0, 24.0, 32.0], [16.0, 20.0, 40.0, 32.0], [8, 8, 24, 32.0]]),
        normed_boxes=normed,
        cells=torch.tensor([3, 5, 3]),
        centres=torch.zeros(3, dtype=torch.long),
        seq_lengths=torch.tensor([2, 1]),
        seq_bag=torch.tensor([0, 0]),
        bag_boxes=bag_box,
    )
    got = heads._teacher_region_tokens([image], [bags])
    grid = teacher.crop_tokens([image], [bag_box])[0][0]  # [D, 4, 4]
    expected = []
    for x1, y1, x2, y2 in (normed * 4).tolist():  # token-grid units; aligned: -0.5
        xs = [x1 - 0.5 + (i + 0.5) * (x2 - x1) / 2 for i in range(2)]
        ys = [y1 - 0.5 + (i + 0.5) * (y2 - y1) / 2 for i in range(2)]
        samples = [
            _bilinear(grid, min(max(x, 0.0), 3.0), min(max(y, 0.0), 3.0)) for x in xs for y in ys
        ]
        expected.append(torch.nn.functional.normalize(torch.stack(samples).mean(0), dim=0))
    torch.testing.assert_close(got, torch.stack(expected), atol=1e-5, rtol=1e-5)
    # the old path: the whole image's dense tokens on the region box, a different target
    cfg.defrost()
    cfg.MODEL.BARON.SINGLE.TOKENS = "dense_image"
    old = build_model(cfg).roi_heads
    old.set_teacher(teacher)
    dense = old._teacher_region_tokens([image], [bags])
    assert dense.shape == got.shape and not torch.allclose(dense, got, atol=1e-3)
    cfg.MODEL.BARON.SINGLE.TOKENS = "crop"
    with pytest.raises(ValueError, match="MODEL.BARON.SINGLE.TOKENS"):
        build_model(cfg)


def test_single_region_word_features_average_raw_tokens(tiny):
    """ovdet averages the region's unnormalized projected word tokens, then normalizes; the old
    ``"dense_image"`` path normalized each token first."""
    name, text, encoder, tmp = tiny
    cfg = tiny_baron_config(
        train=name, test=name, text_embeddings=text, text_encoder=encoder, output_dir=tmp
    )
    heads = build_model(cfg).roi_heads  # NUM_WORDS 1: a region's words = one position each
    tokens = torch.tensor([[[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])  # [S=1, T=4, 2]
    positions = torch.tensor([[1, 2]])  # two regions of one word each
    seq_of_region, slot = torch.tensor([0, 0]), torch.tensor([0, 1])
    got = heads._region_word_features(tokens, positions, seq_of_region, slot)
    torch.testing.assert_close(got, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    heads.box_predictor.num_words = 2  # one region owning both words (hand check of the mean)
    pair = heads._region_word_features(
        tokens, torch.tensor([[1, 2]]), torch.tensor([0]), torch.tensor([0])
    )
    torch.testing.assert_close(
        pair[0], torch.nn.functional.normalize(torch.tensor([3.0, 1.0]), dim=0)
    )
    heads.single_tokens = "dense_image"
    old = heads._region_word_features(
        tokens, torch.tensor([[1, 2]]), torch.tensor([0]), torch.tensor([0])
    )
    torch.testing.assert_close(old[0], torch.nn.functional.normalize(torch.ones(2), dim=0))


def test_configs_select_the_official_single_region_tokens():
    from detectors.config import load_config

    for name in (
        "baron_r50.yaml",
        "baron_ensemble_r50.yaml",
        "baron_r50_lvis.yaml",
        "toy/baron.yaml",
    ):
        assert load_config(name).MODEL.BARON.SINGLE.TOKENS == "bag_crop", name


def test_teacher_mismatch_and_bad_inputs(tiny):
    name, text, encoder, tmp = tiny
    cfg = tiny_baron_config(
        train=name, test=name, text_embeddings=text, text_encoder=encoder, output_dir=tmp
    )
    model = build_model(cfg).train()
    with pytest.raises(ValueError, match="fingerprint"):
        model.roi_heads.set_teacher(StubTeacher(fingerprint="another"))
    with pytest.raises(ValueError, match="embeds in 8 dims"):
        model.roi_heads.set_teacher(StubTeacher(dim=8))
    other = write_random_text_encoder(tmp / "other.pt", fingerprint="another")
    bad = tiny_baron_config(
        train=name, test=name, text_embeddings=text, text_encoder=other, output_dir=tmp
    )
    with pytest.raises(ValueError, match="different teacher"):
        build_model(bad)
    wide = write_random_text_encoder(tmp / "wide.pt", dim=8)
    bad = tiny_baron_config(
        train=name, test=name, text_embeddings=text, text_encoder=wide, output_dir=tmp
    )
    with pytest.raises(ValueError, match="text encoder output size 8"):
        build_model(bad)
    cfg.defrost()
    cfg.MODEL.BARON.NUM_WORDS = 20
    with pytest.raises(ValueError, match="NUM_WORDS"):
        build_model(cfg)
    model.roi_heads.set_teacher(StubTeacher())
    batch = _batch(
        tiny_baron_config(
            train=name, test=name, text_embeddings=text, text_encoder=encoder, output_dir=tmp
        ),
        name,
    )
    batch[0]["image"] = batch[0]["image"].float()
    with EventStorage(), pytest.raises(ValueError, match="uint8"):
        model(batch)


def test_vocabulary_swap_and_ensemble_inference(tiny):
    name, text, encoder, tmp = tiny
    cfg = tiny_baron_config(
        train=name,
        test=name,
        text_embeddings=text,
        text_encoder=encoder,
        output_dir=tmp,
        ensemble=True,
    )
    torch.manual_seed(0)
    model = build_model(cfg).train()
    model.roi_heads.set_teacher(StubTeacher())
    with EventStorage():
        losses = model(_batch(cfg, name))
    losses["loss_bag"].backward()
    heads = model.roi_heads
    assert heads.image_projection.weight.grad.abs().sum() > 0
    assert (
        heads.box_predictor.projection.weight.grad is None
    )  # the bag loss trains the ensemble branch only
    model.eval()
    new = torch.nn.functional.normalize(torch.randn(5, 16), dim=-1)
    heads.set_vocabulary(new, [f"thing {i}" for i in range(4)] + ["red box"])
    batch = [{"image": x["image"], "height": 64, "width": 64} for x in _batch(cfg, name)]
    with torch.no_grad():
        out = model(batch)
    instances = out[0]["instances"]
    assert len(instances) > 0 and int(instances.pred_classes.max()) <= 4
    assert (instances.scores >= 0).all() and (instances.scores <= 1).all()


class DeviceStubTeacher(StubTeacher):
    """``StubTeacher`` with the ``device`` argument every registered teacher takes."""

    def __init__(self, *, device: str = "cpu", **kwargs) -> None:
        super().__init__(**kwargs)
        self.device = device


def test_teacher_handle_is_lazy_and_outside_the_module_tree(tiny):
    name, text, encoder, tmp = tiny
    cfg = tiny_baron_config(
        train=name, test=name, text_embeddings=text, text_encoder=encoder, output_dir=tmp
    )
    torch.manual_seed(0)
    model = build_model(cfg).train()
    heads = model.roi_heads
    register_teacher("ovd-test-baron-stub")(DeviceStubTeacher)
    try:
        spec = TeacherSpec(name="ovd-test-baron-stub", origin="MODEL.VILD.TEACHER")
        with pytest.raises(ValueError, match="expected_fingerprint=roi_heads.teacher_fingerprint"):
            heads.set_teacher(TeacherHandle(spec))
        handle = TeacherHandle(spec, expected_fingerprint=heads.teacher_fingerprint)
        heads.set_teacher(handle)
        assert handle.built_devices == []  # built on first use
        with EventStorage():
            losses = model(_batch(cfg, name))
        assert handle.built_devices == ["cpu"] and torch.isfinite(losses["loss_bag"])
        teacher = heads.get_teacher()
        names = [*model.state_dict(), *(n for n, _ in model.named_modules())]
        assert not [n for n in names if "_teacher" in n or n.endswith("teacher")]
        assert not any(t is teacher.weight for t in model.state_dict().values())
        twin = copy.deepcopy(model)
        assert twin.roi_heads.get_teacher() is not teacher  # a fresh lazy handle
        bad = TeacherHandle(
            TeacherSpec(name="ovd-test-baron-stub", extra={"fingerprint": "other"}),
            expected_fingerprint=heads.teacher_fingerprint,
        )
        heads.set_teacher(bad)
        with pytest.raises(ValueError, match="fingerprint mismatch: .* has fingerprint 'other'"):
            heads.get_teacher()
    finally:
        del TEACHERS["ovd-test-baron-stub"]
    heads.set_teacher(StubTeacher())
    assert copy.deepcopy(model).roi_heads.get_teacher() is heads.get_teacher()  # shared


class ConfigStubTeacher(DeviceStubTeacher):
    """A registered stub built from ``MODEL.VILD.TEACHER`` (its ``MODEL_NAME`` is the
    fingerprint); ``built`` counts constructions."""

    built = 0

    def __init__(self, *, model_name: str, precision: str, device: str = "cpu") -> None:
        super().__init__(device=device, fingerprint=model_name)
        self.precision = precision
        ConfigStubTeacher.built += 1


def test_trainer_checks_the_configured_teacher_before_training(tiny):
    """``OVTrainer`` gives BARON's heads a lazy handle of ``MODEL.VILD.TEACHER`` and builds it at
    construction: a teacher that did not make the text classifier fails before any step."""
    name, text, encoder, tmp = tiny
    cfg = tiny_baron_config(
        train=name, test=name, text_embeddings=text, text_encoder=encoder, output_dir=tmp / "run"
    )
    cfg.merge_from_list(
        [
            "MODEL.VILD.TEACHER.NAME",
            "ovd-test-config-stub",
            "MODEL.VILD.TEACHER.MODEL_NAME",
            "another",
        ]
    )
    assert teacher_spec_from_cfg(cfg) == TeacherSpec(
        "ovd-test-config-stub", model_name="another", precision="fp32", origin="MODEL.VILD.TEACHER"
    )
    register_teacher("ovd-test-config-stub")(ConfigStubTeacher)
    try:
        ConfigStubTeacher.built = 0
        expected = (
            r"fingerprint mismatch: the teacher of MODEL.VILD.TEACHER "
            r"\(ovd-test-config-stub another\) has fingerprint 'another', "
            r"text classifier .*text\.pt has 'random-test-teacher'"
        )
        with pytest.raises(ValueError, match=expected):
            OVTrainer(cfg)
        assert ConfigStubTeacher.built == 1
        cfg.MODEL.VILD.TEACHER.MODEL_NAME = "random-test-teacher"
        trainer = OVTrainer(cfg)
        assert ConfigStubTeacher.built == 2  # built before training starts
        teacher = trainer.model.roi_heads.get_teacher()
        assert isinstance(teacher, ConfigStubTeacher) and ConfigStubTeacher.built == 2
        assert not any(t is teacher.weight for t in trainer.model.state_dict().values())
    finally:
        del TEACHERS["ovd-test-config-stub"]


def test_heads_forward_has_no_ignored_arguments_and_shares_the_cosine_classifier(tiny):
    name, text, encoder, tmp = tiny
    assert "distill" not in inspect.signature(BaronROIHeads.forward).parameters
    assert vild_cosine_logits is cosine_logits
    cfg = tiny_baron_config(
        train=name, test=name, text_embeddings=text, text_encoder=encoder, output_dir=tmp
    )
    predictor = build_model(cfg).eval().roi_heads.box_predictor
    regions = torch.nn.functional.normalize(torch.randn(3, predictor.embed_dim), dim=-1)
    background = torch.nn.functional.normalize(predictor.bg_embedding, dim=0)
    expected = cosine_logits(
        regions,
        predictor.class_embeddings,
        temperature=predictor.test_temperature,
        background=background,
    )
    assert torch.equal(predictor.class_logits(regions), expected)


def test_baron_predictor_initialises_only_the_parameters_it_keeps():
    """The pseudo-word projection is built once, at its final size: building BARON's predictor
    draws exactly the random numbers of its own parameters (projection, then background
    embedding), as ViLD's does (it used to build and discard a ViLD-sized projection first)."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform

    from distill.text_encoder import PseudoTextEncoder, TextEncoderConfig

    encoder = PseudoTextEncoder(
        TextEncoderConfig(width=16, layers=1, heads=2, context_length=12, embed_dim=8)
    )
    classes = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    torch.manual_seed(0)
    predictor = BaronOutputLayers(
        ShapeSpec(channels=32),
        box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)),
        class_embeddings=classes,
        class_names=["a", "b", "c"],
        text_encoder=encoder,
        num_words=4,
    )
    assert predictor.projection.out_features == 4 * 16
    torch.manual_seed(0)
    expected = torch.nn.Linear(32, 4 * 16)
    assert torch.equal(predictor.projection.weight, expected.weight)
    assert torch.equal(predictor.bg_embedding.data, torch.randn(8) * 0.01)


def _hand_predictor(**options) -> BaronOutputLayers:
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform

    from distill.text_encoder import PseudoTextEncoder, TextEncoderConfig

    encoder = PseudoTextEncoder(
        TextEncoderConfig(width=8, layers=1, heads=2, context_length=8, embed_dim=2)
    )
    predictor = BaronOutputLayers(
        ShapeSpec(channels=4),
        box2box_transform=Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)),
        class_embeddings=torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        class_names=["seen one", "novel one"],
        seen=[True, False],
        text_encoder=encoder,
        num_words=1,
        temperature=1.0,
        **options,
    ).eval()
    with torch.no_grad():
        predictor.bg_embedding.copy_(torch.tensor([-0.6, -0.8]))
    return predictor


def test_baron_ensemble_softmax_includes_background_and_weights_its_column():
    """ovdet's ensemble_bbox_head.py: kd softmax over classes + background; is_base has a 1 for the
    background column, so every column is p_text^w p_kd^(1-w) (base) or p_text^(1-w) p_kd^w
    (novel)."""
    import math

    from detectron2.structures import Boxes, Instances

    text = torch.tensor([[0.5, 0.2, 0.3]])  # text-branch probabilities [seen, novel, background]
    image = torch.tensor([[0.6, 0.8]])  # distillation-branch embedding: cosines 0.6, 0.8, bg -1.0
    proposals = [Instances((10, 10), proposal_boxes=Boxes(torch.zeros(1, 4)))]
    predictions = (text.log(), torch.zeros(1, 4))
    w = 2.0 / 3.0
    z = math.exp(0.6) + math.exp(0.8) + math.exp(-1.0)
    kd = [math.exp(0.6) / z, math.exp(0.8) / z, math.exp(-1.0) / z]
    expected = [
        0.5**w * kd[0] ** (1 - w),
        0.2 ** (1 - w) * kd[1] ** w,
        0.3**w * kd[2] ** (1 - w),
    ]
    (probs,) = _hand_predictor().predict_probs(predictions, proposals, image_embeddings=image)
    assert probs[0].tolist() == pytest.approx(expected, rel=1e-5)
    # ViLD's rule (the old behaviour, ENSEMBLE_BACKGROUND False): kd softmax without background,
    # background column the text branch's
    vild = _hand_predictor(ensemble_background=False)
    (old,) = vild.predict_probs(predictions, proposals, image_embeddings=image)
    z_fg = math.exp(0.6) + math.exp(0.8)
    assert old[0].tolist() == pytest.approx(
        [
            0.5**w * (math.exp(0.6) / z_fg) ** (1 - w),
            0.2 ** (1 - w) * (math.exp(0.8) / z_fg) ** w,
            0.3,
        ],
        rel=1e-5,
    )
    # a given classifier needs seen, as ViLD's
    with pytest.raises(ValueError, match="needs seen"):
        _hand_predictor().predict_probs(
            predictions, proposals, image_embeddings=image, classifier=torch.eye(2)
        )
