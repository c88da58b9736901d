"""Teachers on tiny random-init open_clip models (custom model configs, weights through a checkpoint file)."""

from __future__ import annotations

import ast
import copy
import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from distill.teachers import (
    PROMPT_TEMPLATES,
    TEACHERS,
    ClipTeacher,
    EnsembleTeacher,
    Teacher,
    TeacherHandle,
    TeacherSpec,
    build_teacher,
    build_teacher_from_spec,
    read_cached_text_classifier,
    register_teacher,
    text_classifier_cache_path,
    valid_box_mask,
)
from distill.teachers.loading import checkpoint_sha256
from distill.teachers.maskclip import interpolate_pos_embed, key_smoothing, prompt_denoise
from distill.teachers.templates import format_prompt, process_name, resolve_templates
from distill.teachers.text import normalize_class_names
from distill.utils import sha256_file

TEXT_CFG = {"width": 32, "heads": 2, "layers": 1, "context_length": 16, "vocab_size": 49408}
VIT_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": TEXT_CFG,
}
RN_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},
    "text_cfg": TEXT_CFG,
}
ATOL = 1e-5


def _write_model(root: Path, name: str, cfg: dict, seed: int) -> tuple[Path, Path]:
    """Config JSON + checkpoint of a random-init model (seeded)."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / f"{name}.json"
    config.write_text(json.dumps(cfg))
    torch.manual_seed(seed)
    model = ClipTeacher(name, model_config=config, allow_random_init=True).model
    with torch.no_grad():  # non-trivial BatchNorm statistics for the ResNet
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
    checkpoint = root / f"{name}.pt"
    torch.save(model.state_dict(), checkpoint)
    return config, checkpoint


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("teachers")
    with (
        pytest.MonkeyPatch.context() as mp
    ):  # model configs / fingerprints of module fixtures stay in tmp
        mp.setenv("OVDISTILL_CACHE", str(root / "cache"))
        yield {
            "vit": _write_model(root, "ovd-test-vit", VIT_CFG, 0),
            "rn": _write_model(root, "ovd-test-rn", RN_CFG, 1),
            "root": root,
        }


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OVDISTILL_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def vit(files) -> ClipTeacher:
    config, ckpt = files["vit"]
    return ClipTeacher("ovd-test-vit", pretrained=str(ckpt), model_config=config)


@pytest.fixture(scope="module")
def rn(files) -> ClipTeacher:
    config, ckpt = files["rn"]
    return ClipTeacher("ovd-test-rn", pretrained=str(ckpt), model_config=config)


def _image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)


# ---------------------------------------------------------------- templates / registry
def test_prompt_templates_published_counts_and_vild_rules():
    assert len(PROMPT_TEMPLATES["vild"]) == 63 and len(set(PROMPT_TEMPLATES["vild"])) == 63
    assert len(PROMPT_TEMPLATES["maskclip"]) == 85 and len(set(PROMPT_TEMPLATES["maskclip"])) == 85
    assert PROMPT_TEMPLATES["simple"] == ["a photo of a {}."]
    vild = PROMPT_TEMPLATES["vild"]
    assert format_prompt(vild[0], process_name("Apple")) == "There is an apple in the scene."
    assert format_prompt(vild[-1], process_name("toy_car")) == "This is a painting of a toy car."
    assert format_prompt("an embroidered {}.", "x") == "an embroidered x."
    assert "This is an embroidered {}." in vild
    assert (
        process_name("bow_(weapon)") == "bow (weapon)" and process_name("cup/mug") == "cup or mug"
    )
    with pytest.raises(ValueError, match="exactly one"):
        resolve_templates(["a photo"])
    with pytest.raises(ValueError, match="unknown prompt template set"):
        resolve_templates("nope")
    with pytest.raises(ValueError, match="class 1"):
        normalize_class_names(["cat", []])


def test_registry_builds_and_plugs_in_other_teachers(files):
    assert TEACHERS["clip"] is ClipTeacher and TEACHERS["ensemble"] is EnsembleTeacher
    config, ckpt = files["vit"]
    teacher = build_teacher(
        "clip", model_name="ovd-test-vit", pretrained=str(ckpt), model_config=config
    )
    assert isinstance(teacher, ClipTeacher) and teacher.embed_dim == 32

    @register_teacher("ovd-test-constant")
    class ConstantTeacher(Teacher):  # a non-CLIP teacher: every text maps to one of two directions
        def __init__(self, *, dim: int):
            super().__init__()
            self.embed_dim, self.fingerprint = dim, "constant"

        def encode_text(self, texts):
            return torch.stack(
                [F.one_hot(torch.tensor(len(t) % 2), self.embed_dim).float() for t in texts]
            )

    built = build_teacher("ovd-test-constant", dim=4)
    # text_classifier of the base class works for any teacher: "ab"/"abc" prompts differ in parity
    cls = built.text_classifier([["ab", "abc"]], templates=["{}"], cache=False)
    assert torch.allclose(cls, _unit(torch.tensor([[1.0, 1.0, 0.0, 0.0]])))
    with pytest.raises(ValueError, match="already registered"):
        register_teacher("clip")(ConstantTeacher)
    with pytest.raises(ValueError, match="unknown teacher 'nope'"):
        build_teacher("nope")
    del TEACHERS["ovd-test-constant"]


# ---------------------------------------------------------------- weights / fingerprints
def test_checkpoint_roundtrip_fingerprint_and_frozen(files, vit):
    config, ckpt = files["vit"]
    again = ClipTeacher("ovd-test-vit", pretrained=str(ckpt), model_config=config)
    images = torch.stack([_image(64, 64, 1), _image(64, 64, 2)])
    assert torch.equal(vit.encode_images(images), again.encode_images(images))
    assert vit.fingerprint == again.fingerprint
    assert checkpoint_sha256(ckpt) == sha256_file(ckpt)
    state = torch.load(ckpt, weights_only=True)
    state["visual.proj"] = state["visual.proj"] * 2
    other = files["root"] / "vit-modified.pt"
    torch.save(state, other)
    assert (
        ClipTeacher("ovd-test-vit", pretrained=str(other), model_config=config).fingerprint
        != vit.fingerprint
    )
    vit.train()
    assert not vit.training and not vit.model.training
    assert not any(p.requires_grad for p in vit.parameters())


def test_checkpoint_mismatch_names_keys(files):
    config, ckpt = files["vit"]
    state = torch.load(ckpt, weights_only=True)
    bad = dict(state)
    del bad["visual.ln_post.weight"]
    bad["visual.extra_head.weight"] = torch.zeros(2)
    path = files["root"] / "vit-bad-keys.pt"
    torch.save(bad, path)
    with pytest.raises(ValueError) as err:
        ClipTeacher("ovd-test-vit", pretrained=str(path), model_config=config)
    msg = str(err.value)
    assert str(path) in msg and "visual.ln_post.weight" in msg and "visual.extra_head.weight" in msg
    bad = dict(state)
    bad["visual.proj"] = torch.zeros(3, 3)
    torch.save(bad, path)
    with pytest.raises(ValueError, match=r"(?s)vit-bad-keys\.pt.*visual\.proj"):
        ClipTeacher("ovd-test-vit", pretrained=str(path), model_config=config)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        ClipTeacher(
            "ovd-test-vit", pretrained=str(files["root"] / "missing.pt"), model_config=config
        )
    with pytest.raises(ValueError, match="no weights"):
        ClipTeacher("ovd-test-vit", model_config=config)
    with pytest.raises(ValueError, match="pretrained tag"):
        ClipTeacher("ovd-test-vit", pretrained="not-a-tag", model_config=config)
    with pytest.raises(ValueError, match="different open_clip model config"):
        ClipTeacher("ovd-test-vit", pretrained=str(ckpt), model_config=RN_CFG)


# ---------------------------------------------------------------- text classifiers
class CountingTeacher(ClipTeacher):
    calls = 0

    def encode_text(self, texts, **kwargs):
        type(self).calls += 1
        return super().encode_text(texts, **kwargs)


def test_text_classifier_cache_hit_skips_encoder(files):
    config, ckpt = files["vit"]
    teacher = CountingTeacher("ovd-test-vit", pretrained=str(ckpt), model_config=config)
    names = ["cat", ["car", "automobile"], "traffic_light"]
    first = teacher.text_classifier(names, templates="vild")
    assert first.shape == (3, 32) and torch.allclose(first.norm(dim=1), torch.ones(3))
    calls = CountingTeacher.calls
    assert calls > 0
    assert text_classifier_cache_path(
        teacher.fingerprint, normalize_class_names(names), PROMPT_TEMPLATES["vild"]
    ).is_file()
    second = teacher.text_classifier(names, templates="vild")
    assert CountingTeacher.calls == calls and torch.equal(first, second)
    teacher.text_classifier(names, templates="vild", cache=False)
    assert CountingTeacher.calls > calls
    other = teacher.text_classifier(
        names, templates="maskclip"
    )  # other templates -> other cache entry
    assert not torch.allclose(first, other)


def test_cached_text_classifier_is_readable_without_a_teacher(vit):
    names = ["cat", ["car", "automobile"]]
    assert read_cached_text_classifier(vit.fingerprint, names, templates="simple") is None
    computed = vit.text_classifier(names, templates="simple")
    cached = read_cached_text_classifier(vit.fingerprint, names, templates="simple")
    assert cached is not None and cached.dtype == torch.float32
    assert torch.equal(cached, computed.cpu())
    assert read_cached_text_classifier("another teacher", names, templates="simple") is None


def test_text_classifier_averages_templates_and_synonyms(vit):
    e = vit.encode_text(
        ["a photo of a car.", "a photo of a automobile.", "itap of a car.", "itap of a automobile."]
    )
    assert torch.allclose(e.norm(dim=1), torch.ones(4))
    got = vit.text_classifier(
        [["car", "automobile"], "car"], templates=["a photo of a {}.", "itap of a {}."], cache=False
    )
    assert torch.allclose(got[0], _unit(e.sum(0)), atol=ATOL)
    assert torch.allclose(got[1], _unit(e[0] + e[2]), atol=ATOL)


def test_too_long_name_is_an_error(vit):
    long_name = "very " * 12 + "long class name"
    with pytest.raises(ValueError, match="too long.*very very"):
        vit.text_classifier(["cat", long_name], templates="simple", cache=False)
    with pytest.raises(ValueError, match="context length 16"):
        vit.encode_text([long_name])


# ---------------------------------------------------------------- region embeddings
def test_crop_mode_equals_manual_crop_and_resize(vit):
    image = _image(128, 128, 3)
    box = torch.tensor([[32.0, 32.0, 96.0, 96.0]])
    crop = image[:, 32:96, 32:96]  # exactly the model input size
    whole = (
        F.avg_pool2d(image.float()[None], 2).round().to(torch.uint8)
    )  # x2 box == the image, 128 -> 64
    e_crop = vit.encode_images(crop[None])[0]
    (one,) = vit.region_embeddings([image], [box], scales=(1.0,))
    assert torch.allclose(one[0], e_crop, atol=ATOL)
    (two,) = vit.region_embeddings([image], [box], scales=(1.0, 2.0))
    pooled = vit._encode_pixels(F.avg_pool2d(image.float()[None], 2))[0]
    assert torch.allclose(two[0], _unit(e_crop + pooled), atol=ATOL)
    assert torch.allclose(pooled, vit.encode_images(whole)[0], atol=2e-2)  # uint8 rounding only
    # enlarged boxes are clipped to the image: x2 of [64, 64, 128, 128] == [32, 32, 128, 128]
    (clipped,) = vit.region_embeddings(
        [image], [torch.tensor([[64.0, 64.0, 128.0, 128.0]])], scales=(2.0,)
    )
    (direct,) = vit.region_embeddings(
        [image], [torch.tensor([[32.0, 32.0, 128.0, 128.0]])], scales=(1.0,)
    )
    assert torch.allclose(clipped, direct, atol=ATOL)


def test_crop_mode_batching_is_exact(vit):
    images = [_image(80, 100, 4), _image(64, 48, 5), _image(90, 70, 6)]
    boxes = [
        torch.tensor([[0.0, 0.0, 50.0, 40.0], [10.5, 20.25, 99.0, 79.0], [-5.0, -5.0, 20.0, 30.0]]),
        torch.zeros(0, 4),
        torch.tensor([[5.0, 5.0, 60.0, 80.0], [30.0, 1.0, 40.0, 9.0]]),
    ]
    big = vit.region_embeddings(images, boxes, batch_size=256)
    small = vit.region_embeddings(images, boxes, batch_size=3)
    assert [b.shape for b in big] == [(3, 32), (0, 32), (2, 32)]
    for a, b in zip(big, small):
        assert torch.allclose(a, b, atol=ATOL)
        assert torch.allclose(a.norm(dim=1), torch.ones(len(a)))
    (alone,) = vit.region_embeddings(images[2:], boxes[2:])
    assert torch.allclose(alone, big[2], atol=ATOL)


def test_invalid_boxes_name_image_and_box(vit):
    image = _image(64, 64)
    cases = {
        "non-finite": [0, 0, float("nan"), 10],
        "zero or negative area": [5, 5, 5, 20],
        "fully outside": [70, 0, 90, 10],
    }
    for why, box in cases.items():
        boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 9.0, 9.0], box])
        with pytest.raises(ValueError, match=f"image 1, box 2 .*{why}"):
            vit.region_embeddings([image, image], [boxes[:1], boxes])
        assert valid_box_mask(boxes, 64, 64).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="image 0: expected a uint8"):
        vit.region_embeddings([image.float()], [torch.zeros(0, 4)])


def test_dense_mode_pools_dense_features(vit):
    pytest.importorskip("distill.ops")
    image = _image(64, 96, 7)
    boxes = torch.tensor([[8.0, 4.0, 56.0, 60.0], [40.0, 0.0, 96.0, 64.0]])
    (got,) = vit.region_embeddings([image], [boxes], mode="dense")
    feats = vit.dense_embeddings(image[None])  # [1, 32, 4, 6], stride 16
    rois = torch.cat([torch.zeros(2, 1), boxes], dim=1)
    expected = roi_align(
        feats, rois, output_size=7, spatial_scale=1 / 16, sampling_ratio=0, aligned=True
    )
    assert torch.allclose(got, _unit(expected.mean((2, 3))), atol=1e-4)


# ---------------------------------------------------------------- dense (MaskCLIP)
def test_vit_dense_features_match_manual_value_path(vit):
    image = _image(64, 64, 8)
    got = vit.dense_embeddings(image[None])
    assert got.shape == (1, 32, 4, 4)
    visual = vit.model.visual
    x = vit._normalize(image.float()[None])
    with torch.no_grad():
        tokens = visual.conv1(x).flatten(2).transpose(1, 2)
        tokens = (
            torch.cat([visual.class_embedding.view(1, 1, -1), tokens], 1)
            + visual.positional_embedding
        )
        tokens = visual.transformer.resblocks[0](visual.ln_pre(tokens))
        last = visual.transformer.resblocks[1]
        w_v, b_v = last.attn.in_proj_weight[64:], last.attn.in_proj_bias[64:]
        value = last.ln_1(tokens) @ w_v.T + b_v
        out = tokens + value @ last.attn.out_proj.weight.T + last.attn.out_proj.bias
        out = out + last.mlp(last.ln_2(out))
        manual = visual.ln_post(out) @ visual.proj  # [1, 17, 32]
    row, col = 2, 1
    assert torch.allclose(got[0, :, row, col], manual[0, 1 + row * 4 + col], atol=1e-4)
    assert torch.allclose(got[0].flatten(1).T, manual[0, 1:], atol=1e-4)
    other = vit.dense_forward(_image(96, 128)[None], return_keys=True, record_attention=2)
    assert other.features.shape == (1, 32, 6, 8) and other.keys.shape == (1, 32, 6, 8)
    assert [a.shape for a in other.attentions] == [(1, 2, 49, 49)] * 2


# ---------------------------------------------------------------- crop tokens (BARON single region)
def test_vit_crop_tokens_are_the_class_residual_value_path(vit):
    """wusize/ovdet@d74a20c ``image_encoder.py`` / ``common.py`` ``return_tokens``: each patch token
    of the last block is the CLASS token's residual + its value path, + MLP, ln_post, proj."""
    image = _image(128, 128, 11)
    box = torch.tensor([[32.0, 32.0, 96.0, 96.0]])  # exactly the 64 px input size
    (got,) = vit.crop_tokens([image], [box])
    assert got.shape == (1, 32, 4, 4)
    visual = vit.model.visual
    x = vit._normalize(image[:, 32:96, 32:96].float()[None])
    with torch.no_grad():
        tokens = visual.conv1(x).flatten(2).transpose(1, 2)
        tokens = (
            torch.cat([visual.class_embedding.view(1, 1, -1), tokens], 1)
            + visual.positional_embedding
        )
        tokens = visual.transformer.resblocks[0](visual.ln_pre(tokens))
        last = visual.transformer.resblocks[1]
        w_v, b_v = last.attn.in_proj_weight[64:], last.attn.in_proj_bias[64:]
        value = last.ln_1(tokens[0, 1:]) @ w_v.T + b_v
        out = tokens[0, 0] + value @ last.attn.out_proj.weight.T + last.attn.out_proj.bias
        out = out + last.mlp(last.ln_2(out))
        manual = visual.ln_post(out) @ visual.proj  # [16, 32]
    assert torch.allclose(got[0].flatten(1).T, manual, atol=1e-4)
    # MaskCLIP's dense path keeps each token's own residual: a different tensor
    maskclip = vit.dense_embeddings(image[None, :, 32:96, 32:96])
    assert not torch.allclose(got, maskclip, atol=1e-2)
    # boxes of any size are cropped and resized like region_embeddings' crops
    boxes = [box, torch.tensor([[0.0, 0.0, 40.0, 100.0], [10.0, 20.0, 128.0, 128.0]])]
    both = vit.crop_tokens([image, _image(100, 128, 12)], boxes)
    assert [t.shape for t in both] == [(1, 32, 4, 4), (2, 32, 4, 4)]
    assert torch.allclose(both[0], got, atol=1e-5)


def test_resnet_crop_tokens_add_the_attention_pool_positions(rn):
    """ovdet's ``AttentionPool2d(return_tokens=True)``: ``c_proj(v_proj(res5 + pos))`` per location
    (MaskCLIP's dense path drops the positional embedding)."""
    image = _image(96, 96, 13)
    box = torch.tensor([[16.0, 16.0, 80.0, 80.0]])
    (got,) = rn.crop_tokens([image], [box])
    assert got.shape == (1, 32, 2, 2)
    visual = rn.model.visual
    x = rn._normalize(image[:, 16:80, 16:80].float()[None])
    with torch.no_grad():
        res5 = visual.forward_intermediates(x, intermediates_only=True)
        res5 = res5["image_intermediates"][-1]  # [1, 512, 2, 2]
        pool = visual.attnpool
        for row in range(2):
            for col in range(2):
                feat = res5[0, :, row, col] + pool.positional_embedding[1 + row * 2 + col]
                v = feat @ pool.v_proj.weight.T + pool.v_proj.bias
                manual = v @ pool.c_proj.weight.T + pool.c_proj.bias
                assert torch.allclose(got[0, :, row, col], manual, atol=1e-4)
    maskclip = rn.dense_embeddings(image[None, :, 16:80, 16:80])
    assert not torch.allclose(got, maskclip, atol=1e-2)


def test_pos_embed_interpolation():
    pos = torch.randn(1 + 16, 8)
    assert torch.equal(interpolate_pos_embed(pos, (4, 4), (4, 4)), pos)
    const = torch.ones(1 + 16, 8) * 3
    out = interpolate_pos_embed(const, (4, 4), (6, 8))
    assert out.shape == (49, 8) and torch.allclose(out, torch.full_like(out, 3.0), atol=1e-5)


def test_resnet_dense_is_v_and_c_proj_per_location(rn):
    image = _image(64, 96, 9)
    got = rn.dense_embeddings(image[None])
    visual = rn.model.visual
    with torch.no_grad():
        res5 = visual.forward_intermediates(
            rn._normalize(image.float()[None]), intermediates_only=True
        )
        res5 = res5["image_intermediates"][-1]  # [1, 512, 2, 3]
        pool = visual.attnpool
        for row in range(2):
            for col in range(3):
                v = res5[0, :, row, col] @ pool.v_proj.weight.T + pool.v_proj.bias
                manual = v @ pool.c_proj.weight.T + pool.c_proj.bias
                assert torch.allclose(got[0, :, row, col], manual, atol=1e-4)
    assert got.shape == (1, 32, 2, 3)


@pytest.mark.parametrize("output_stride", [16, 8])
def test_resnet_dense_output_stride_is_the_strided_network_evaluated_densely(
    files, rn, output_stride
):
    """Strides turned into dilations: sampling the dense map every 32/os cells gives the plain network's map
    (exactly, away from the bottom/right border where the dilated pooling pads by replication)."""
    config, ckpt = files["rn"]
    dense = ClipTeacher(
        "ovd-test-rn", pretrained=str(ckpt), model_config=config, dense_output_stride=output_stride
    )
    assert dense.dense_stride == output_stride and rn.dense_stride == 32
    image = _image(128, 160, 4)[None]
    plain, fine = rn.dense_embeddings(image), dense.dense_embeddings(image)
    assert plain.shape == (1, 32, 4, 5) and fine.shape == (
        1,
        32,
        128 // output_stride,
        160 // output_stride,
    )
    step = 32 // output_stride
    torch.testing.assert_close(
        fine[..., ::step, ::step][..., :-1, :-1], plain[..., :-1, :-1], rtol=0, atol=1e-5
    )
    # the in-between cells are new evaluations (random init varies little over space: ~3e-3)
    assert (fine[..., 1::step, ::step][..., :-1, :-1] - plain[..., :-1, :-1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32"):
        ClipTeacher("ovd-test-rn", pretrained=str(ckpt), model_config=config, dense_output_stride=4)
    with pytest.raises(ValueError, match="applies to ResNet"):
        ClipTeacher(
            "ovd-test-vit",
            pretrained=str(files["vit"][1]),
            model_config=files["vit"][0],
            dense_output_stride=16,
        )


def test_pixel_logits_cosine_and_refinements(vit, rn):
    classifier = vit.text_classifier(["cat", "dog", "sky"], templates="simple", cache=False)
    images = _image(64, 64, 10)[None]
    for teacher in (vit, rn):
        logits = teacher.pixel_logits(images, classifier)
        feats = _unit(teacher.dense_embeddings(images).permute(0, 2, 3, 1))
        assert torch.allclose(logits, torch.einsum("bhwd,nd->bnhw", feats, classifier), atol=1e-5)
        smoothed = teacher.pixel_logits(images, classifier, key_smoothing=1.0, prompt_denoise=0.5)
        assert smoothed.shape == logits.shape and torch.isfinite(smoothed).all()


def test_prompt_denoise_and_key_smoothing_known_answers():
    # 2 classes, 1x2 pixels: class 1 never reaches prob 0.5 anywhere -> -100
    logits = torch.tensor([[[[0.30, 0.20]], [[0.29, 0.10]]]])  # [1, 2, 1, 2]
    out = prompt_denoise(logits, threshold=0.5)
    assert torch.equal(out[0, 0], logits[0, 0]) and (out[0, 1] == -100).all()
    # key smoothing: keys of pixel 0 and 1 orthogonal, pixel 2 equal to pixel 0 -> p0' = p0 + p2, p1' = p1
    keys = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]]).view(1, 2, 1, 3)
    logits = torch.tensor([[0.01, 0.05, 0.00], [0.00, 0.00, 0.02]]).view(1, 2, 1, 3)
    probs = F.softmax(logits * 100, dim=1).flatten(2)[0].T  # [3, 2]
    got = key_smoothing(logits, keys, threshold=1.0, key_norm="channel").flatten(2)[0].T
    assert torch.allclose(got[0], probs[0] + probs[2], atol=1e-6)
    assert torch.allclose(got[1], probs[1], atol=1e-6)
    assert torch.allclose(got[2], probs[0] + probs[2], atol=1e-6)
    # confident pixels (max prob >= threshold) keep their probabilities
    kept = key_smoothing(logits, keys, threshold=0.6, key_norm="channel").flatten(2)[0].T
    confident = probs.max(dim=1).values >= 0.6
    assert confident.any() and torch.allclose(kept[confident], probs[confident])


# ---------------------------------------------------------------- ensemble
def test_ensemble_averages_normalized_embeddings(files, vit):
    config, ckpt = files["vit"]
    state = torch.load(ckpt, weights_only=True)
    state = {
        k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()
    }
    path = files["root"] / "vit-other.pt"
    torch.save(state, path)
    other = ClipTeacher("ovd-test-vit", pretrained=str(path), model_config=config)
    ens = build_teacher(
        "ensemble",
        members=[
            vit,
            {
                "name": "clip",
                "model_name": "ovd-test-vit",
                "pretrained": str(path),
                "model_config": config,
            },
        ],
        weights=[3.0, 1.0],
    )
    images = torch.stack([_image(64, 64, 12), _image(64, 64, 13)])
    a, b = vit.encode_images(images), other.encode_images(images)
    assert torch.allclose(ens.encode_images(images), _unit(0.75 * a + 0.25 * b), atol=ATOL)
    names = ["cat", "dog"]
    ta = vit.text_classifier(names, templates="simple")
    tb = other.text_classifier(names, templates="simple")
    assert torch.allclose(
        ens.text_classifier(names, templates="simple"), _unit(0.75 * ta + 0.25 * tb), atol=ATOL
    )
    boxes = [torch.tensor([[0.0, 0.0, 40.0, 50.0]])]
    (ra,), (rb,) = (
        vit.region_embeddings(images[:1], boxes),
        other.region_embeddings(images[:1], boxes),
    )
    assert torch.allclose(
        ens.region_embeddings(images[:1], boxes)[0], _unit(0.75 * ra + 0.25 * rb), atol=ATOL
    )
    assert ens.fingerprint != vit.fingerprint
    cat = EnsembleTeacher([vit, other], weights=[3.0, 1.0], combine="concat")
    assert cat.embed_dim == 64
    score = cat.encode_images(images) @ cat.text_classifier(names, templates="simple").T
    assert torch.allclose(score, 0.75 * a @ ta.T + 0.25 * b @ tb.T, atol=ATOL)


def test_ensemble_rejects_mixed_dims(vit, files):
    root = files["root"]
    cfg = json.loads(json.dumps(VIT_CFG))
    cfg["embed_dim"] = 16
    config = root / "ovd-test-vit16.json"
    config.write_text(json.dumps(cfg))
    small = ClipTeacher("ovd-test-vit16", model_config=config, allow_random_init=True)
    with pytest.raises(ValueError, match="one embed_dim"):
        EnsembleTeacher([vit, small])
    assert EnsembleTeacher([vit, small], combine="concat").embed_dim == 48


# ---------------------------------------------------------------- specs and handles
def _spec(files, **overrides) -> TeacherSpec:
    config, ckpt = files["vit"]
    cfg = {
        "type": "clip",
        "model_name": "ovd-test-vit",
        "pretrained": str(ckpt),
        "model_config": str(config),
        "device": "cuda:7",
        **overrides,
    }  # the host picks it
    return TeacherSpec.from_mapping(cfg, origin="model.teacher")


def test_teacher_spec_from_a_config_dict_builds_the_teacher(files, vit):
    spec = _spec(files, precision="fp32")
    assert spec.device == "cpu" and spec.name == "clip" and spec.extra == {}
    assert spec.kwargs() == {
        "model_name": "ovd-test-vit",
        "pretrained": str(files["vit"][1]),
        "model_config": str(files["vit"][0]),
        "precision": "fp32",
    }
    teacher = build_teacher_from_spec(spec)
    assert isinstance(teacher, ClipTeacher) and teacher.fingerprint == vit.fingerprint
    with pytest.raises(ValueError, match="model.teacher: teacher config needs model_name"):
        TeacherSpec.from_mapping({"type": "clip"}, origin="model.teacher")
    with pytest.raises(ValueError, match="teacher config must be a dict"):
        TeacherSpec.from_mapping(["clip"])
    with pytest.raises(ValueError, match="MODEL.VILD.TEACHER: the clip teacher needs a model_name"):
        build_teacher_from_spec(TeacherSpec(origin="MODEL.VILD.TEACHER"))


class _Student(torch.nn.Module):
    def __init__(self, handle: TeacherHandle) -> None:
        super().__init__()
        self.head = torch.nn.Linear(2, 2)
        self.teacher = handle


def test_teacher_handle_is_lazy_per_device_and_outside_the_module_tree(files, vit):
    student = _Student(TeacherHandle(_spec(files), expected_fingerprint=vit.fingerprint))
    assert student.teacher.built_devices == []
    teacher = student.teacher.get()
    assert student.teacher.get("cpu") is teacher and student.teacher.built_devices == ["cpu"]
    assert set(student.state_dict()) == {"head.weight", "head.bias"}
    assert len(list(student.parameters())) == 2
    assert [n for n, _ in student.named_modules()] == ["", "head"]
    twin = copy.deepcopy(student)
    assert twin.teacher.built_devices == [] and twin.teacher.expected_fingerprint == vit.fingerprint
    assert twin.teacher.get() is not teacher and student.teacher.get() is teacher
    assert pickle.loads(pickle.dumps(student.teacher)).built_devices == []


def test_teacher_handle_checks_the_fingerprint_with_the_shared_check(files, vit):
    handle = TeacherHandle(
        _spec(files),
        expected_fingerprint="fp-of-text.pt",
        expected_from="text classifier out/text.pt",
    )
    with pytest.raises(
        ValueError,
        match=(
            r"teacher fingerprint mismatch: the teacher of "
            r"model.teacher \(clip ovd-test-vit .*\) has fingerprint "
            r".* text classifier out/text.pt has 'fp-of-text.pt'"
        ),
    ):
        handle.get()
    with pytest.raises(ValueError, match="the attached teacher \\(ClipTeacher\\) has fingerprint"):
        TeacherHandle.wrap(vit, expected_fingerprint="fp-of-text.pt")
    wrapped = TeacherHandle.wrap(vit, expected_fingerprint=vit.fingerprint)
    assert wrapped.get("cpu") is vit
    assert copy.deepcopy(wrapped).get() is vit  # nothing to rebuild: shared
    with pytest.raises(TypeError, match="TeacherSpec.from_mapping"):
        TeacherHandle({"type": "clip"})


def test_teacher_modules_import_without_cycles():
    """No import cycle inside distill.teachers, counting imports inside functions (not the
    TYPE_CHECKING ones)."""
    root = Path(__file__).resolve().parents[1] / "distill" / "teachers"
    graph: dict[str, set[str]] = {}
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []  # type-only imports
        graph[path.stem] = {
            node.module.rsplit(".", 1)[1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and (node.module or "").startswith("distill.teachers.")
        }

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            n == goal or (n not in seen and reaches(n, goal, seen | {n}))
            for n in graph.get(start, ())
        )

    assert not [m for m in graph if m != "__init__" and reaches(m, m, set())]
