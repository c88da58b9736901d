"""CLIP-ES teacher side (distill.cam): Sinkhorn, CAA box masks, softmax-GradCAM vs hook-based gradients,
pseudo-labels / confidence, CRF availability, label validation, the resumable pseudo-mask writer."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from distill.cam import (
    ClipES,
    ClipESConfig,
    CrfUnavailableError,
    background_scores,
    box_mask_from_cam,
    cam_boxes,
    cam_input_size,
    class_aware_affinity,
    confidence_from_uint8,
    confidence_to_uint8,
    connected_components,
    crf_available,
    crf_image,
    dense_crf,
    evaluate_pseudo_masks,
    ignore_low_confidence,
    label_and_confidence,
    load_image_labels,
    make_pseudo_masks,
    normalize_scores,
    refine_cams,
    sinkhorn_normalize,
    softmax_gradcam,
)
from distill.teachers import ClipTeacher
from distill.teachers.maskclip import interpolate_pos_embed

TEXT_CFG = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
VIT_CFG = {
    "embed_dim": 32,
    "text_cfg": TEXT_CFG,
    "vision_cfg": {
        "image_size": 32,
        "layers": 3,
        "width": 64,
        "head_width": 32,
        "patch_size": 8,
        "pool_type": "avg",
    },
}  # open_clip's own forward then pools like CLIP-ES (test oracle)
RESNET_CFG = {
    "embed_dim": 32,
    "text_cfg": TEXT_CFG,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16, "patch_size": None},
}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OVDISTILL_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def vit() -> ClipTeacher:
    torch.manual_seed(0)
    return ClipTeacher("ovd-cam-test-vit", model_config=VIT_CFG, allow_random_init=True)


@pytest.fixture(scope="module")
def resnet() -> ClipTeacher:
    torch.manual_seed(0)
    return ClipTeacher("ovd-cam-test-rn", model_config=RESNET_CFG, allow_random_init=True)


# ----------------------------------------------------------------------------- Sinkhorn / affinity
def test_sinkhorn_one_pass_hand_computed():
    # columns -> [[1/4, 1/3], [3/4, 2/3]]; rows (sums 7/12, 17/12) -> [[3/7, 4/7], [9/17, 8/17]]
    out = sinkhorn_normalize(torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64), iters=0)
    expected = torch.tensor([[3 / 7, 4 / 7], [9 / 17, 8 / 17]], dtype=torch.float64)
    torch.testing.assert_close(out, expected)


def _fraction_sinkhorn(rows: list[list[Fraction]], passes: int) -> list[list[Fraction]]:
    m = [r[:] for r in rows]
    for _ in range(passes):
        cols = [sum(m[i][j] for i in range(len(m))) for j in range(len(m))]
        m = [[m[i][j] / cols[j] for j in range(len(m))] for i in range(len(m))]
        m = [[v / sum(r) for v in r] for r in m]
    return m


def test_sinkhorn_three_passes_and_affinity_exact():
    raw = [[1, 2, 0.5], [3, 4, 1], [2, 1, 6]]
    exact = _fraction_sinkhorn([[Fraction(v) for v in r] for r in raw], passes=3)
    out = sinkhorn_normalize(torch.tensor(raw, dtype=torch.float64), iters=2)
    torch.testing.assert_close(
        out, torch.tensor([[float(v) for v in r] for r in exact], dtype=torch.float64)
    )
    torch.testing.assert_close(out.sum(1), torch.ones(3, dtype=torch.float64))
    sym = [[(exact[i][j] + exact[j][i]) / 2 for j in range(3)] for i in range(3)]
    squared = [[sum(sym[i][k] * sym[k][j] for k in range(3)) for j in range(3)] for i in range(3)]
    affinity = class_aware_affinity(
        torch.tensor(raw, dtype=torch.float64), sinkhorn_iters=2, power=2
    )
    torch.testing.assert_close(
        affinity, torch.tensor([[float(v) for v in r] for r in squared], dtype=torch.float64)
    )


def test_sinkhorn_rejects_non_square():
    with pytest.raises(ValueError, match="n, n"):
        sinkhorn_normalize(torch.ones(2, 3))


# ----------------------------------------------------------------------------- boxes from CAM
def test_connected_components_eight_connectivity():
    mask = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 1]], dtype=torch.bool)
    labels = connected_components(mask)
    assert labels[0, 0] == labels[1, 1] != 0  # diagonal neighbours join
    assert labels[1, 3] == labels[2, 3] != labels[0, 0]
    assert int(labels.max()) == 2 and (labels[~mask] == 0).all()


def test_box_mask_from_cam_threshold_hand_computed():
    cam = torch.zeros(6, 8)
    cam[1, 1], cam[2, 2], cam[1, 3] = 1.0, 0.5, 0.3  # 0.3 < 0.4 * 1.0: not in the region
    cam[4, 5:8] = 0.45  # a second region touching the right border
    cam[5, 0] = 0.39  # below threshold
    boxes = cam_boxes(cam, threshold=0.4)
    assert sorted(boxes.tolist()) == [[1, 1, 3, 3], [5, 4, 8, 5]]
    expected = torch.zeros(6, 8, dtype=torch.bool)
    expected[1:3, 1:3] = True  # box covers (2, 1) and (1, 2) too
    expected[4, 5:8] = True  # the whole border region (no clipping)
    assert torch.equal(box_mask_from_cam(cam, threshold=0.4), expected)
    assert cam_boxes(torch.zeros(3, 3)).shape == (0, 4)


def test_refine_cams_masks_columns_and_rescales():
    cams = torch.tensor([[[1.0, 0.0], [0.0, 0.2]]])  # box mask (threshold 0.4): only cell 0
    affinity = torch.tensor(
        [[0.5, 0.1, 0.1, 0.3], [0.2, 0.6, 0.1, 0.1], [0.1, 0.1, 0.7, 0.1], [0.4, 0.1, 0.1, 0.4]]
    )
    refined = refine_cams(cams, affinity, threshold=0.4)
    raw = affinity[:, 0] * 1.0  # sum_j A[i, j] m_j cam_j with m = e_0
    expected = (raw - raw.min()) / (raw.max() - raw.min() + 1e-7)
    torch.testing.assert_close(refined[0].flatten(), expected)


# ----------------------------------------------------------------------------- positional embedding
def test_pos_embed_interpolation_is_bilinear_for_clip_es(vit):
    # linyq2117/CLIP-ES@3893f81 clip/model.py upsample_pos_emb: F.upsample(mode='bilinear'),
    # align_corners unset (False). Grid [[0, 1], [2, 3]] -> 2 x 4: source x = (x + 0.5) / 2 - 0.5
    # = -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
    pos = torch.tensor([[9.0], [0.0], [1.0], [2.0], [3.0]])  # class token first
    out = interpolate_pos_embed(pos, (2, 2), (2, 4), mode="bilinear")
    expected = [9.0, 0.0, 0.25, 0.75, 1.0, 2.0, 2.25, 2.75, 3.0]
    assert out.flatten().tolist() == pytest.approx(expected)
    bicubic = interpolate_pos_embed(pos, (2, 2), (2, 4))  # MaskCLIP's mode, the old CLIP-ES one
    assert bicubic.flatten().tolist() != pytest.approx(expected)
    assert ClipESConfig().pos_embed_mode == "bilinear"
    visual = vit.model.visual
    torch.manual_seed(4)
    pixels = torch.randn(1, 3, 32, 48)  # grid 4 x 6, the embedding's is 4 x 4
    text = F.normalize(torch.randn(3, 32), dim=1)
    runs = {
        mode: softmax_gradcam(visual, pixels, text, [0], logit_scale=20.0, pos_embed_mode=mode)
        for mode in ("bilinear", "bicubic")
    }
    default = softmax_gradcam(visual, pixels, text, [0], logit_scale=20.0)
    torch.testing.assert_close(default.probs, runs["bilinear"].probs, rtol=0, atol=0)
    assert not torch.equal(default.probs, runs["bicubic"].probs)


# ----------------------------------------------------------------------------- Grad-CAM vs manual gradients
def _manual_cam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """acts / grads: [C, h, w] -> the min-max scaled Grad-CAM, computed the textbook way."""
    weights = grads.mean(dim=(1, 2))
    cam = torch.relu((weights[:, None, None] * acts).sum(0))
    cam = cam - cam.min()
    return cam / (cam.max() + 1e-7)


def test_vit_gradcam_matches_hooked_open_clip_forward(vit):
    visual = vit.model.visual
    torch.manual_seed(1)
    pixels = torch.randn(1, 3, 32, 32)
    text = F.normalize(torch.randn(5, 32), dim=1)
    out = softmax_gradcam(visual, pixels, text, [0, 3], logit_scale=20.0, attention_layers=8)
    assert out.cams.shape == (2, 4, 4) and out.attention.shape == (16, 16)

    seen, normed = {}, []
    blocks = visual.transformer.resblocks
    hooks = [
        b.ln_1.register_forward_hook(lambda m, i, o: normed.append(o.detach())) for b in blocks
    ]
    hooks.append(blocks[-1].ln_1.register_forward_hook(lambda m, i, o: seen.update(a=o)))
    try:
        with torch.no_grad():
            visual(pixels)
        maps = []
        for block, y in zip(blocks, normed):  # textbook attention from the ln_1 outputs
            q, k, _ = F.linear(y[0], block.attn.in_proj_weight, block.attn.in_proj_bias).chunk(
                3, dim=-1
            )
            heads = block.attn.num_heads
            q, k = (t.reshape(17, heads, -1).transpose(0, 1) for t in (q, k))
            weights = (q @ k.transpose(1, 2) / q.shape[-1] ** 0.5).softmax(-1).mean(0)
            maps.append(weights[1:, 1:])
        torch.testing.assert_close(out.attention, torch.stack(maps).mean(0), atol=1e-5, rtol=1e-4)
        for row, target in enumerate([0, 3]):
            x = pixels.clone().requires_grad_(True)  # frozen weights: grads flow from the input
            feat = visual(x)  # open_clip forward, pool_type="avg"
            probs = (20.0 * F.normalize(feat, dim=-1) @ text.t()).softmax(-1)
            acts = seen["a"]
            (grad,) = torch.autograd.grad(probs[0, target], acts)
            a = acts[0, 1:].detach().t().reshape(-1, 4, 4)
            g = grad[0, 1:].t().reshape(-1, 4, 4)
            torch.testing.assert_close(out.cams[row], _manual_cam(a, g), atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(out.probs, probs[0].detach(), atol=1e-6, rtol=1e-5)
    finally:
        for hook in hooks:
            hook.remove()


def test_resnet_gradcam_matches_hooked_attnpool_input(resnet):
    visual = resnet.model.visual
    torch.manual_seed(2)
    pixels = torch.randn(1, 3, 64, 64)
    text = F.normalize(torch.randn(4, 32), dim=1)
    out = softmax_gradcam(visual, pixels, text, [1], logit_scale=50.0)
    assert out.cams.shape == (1, 2, 2) and out.attention is None
    seen = {}
    hook = visual.attnpool.register_forward_hook(lambda m, i, o: seen.update(a=i[0]))
    try:
        feat = visual(pixels.clone().requires_grad_(True))
        probs = (50.0 * F.normalize(feat, dim=-1) @ text.t()).softmax(-1)
        (grad,) = torch.autograd.grad(probs[0, 1], seen["a"])
    finally:
        hook.remove()
    torch.testing.assert_close(
        out.cams[0], _manual_cam(seen["a"][0].detach(), grad[0]), atol=1e-5, rtol=1e-4
    )


def test_resnet_refinement_is_a_clear_error(resnet):
    with pytest.raises(NotImplementedError, match="ViT"):
        ClipES(resnet, ["a", "b"], config=ClipESConfig(background=("sky",)))
    es = ClipES(resnet, ["a", "b"], config=ClipESConfig(background=("sky",), refine=False))
    out = es.pseudo_label(torch.randint(0, 256, (3, 50, 70), dtype=torch.uint8), [1])
    assert out.label.shape == (50, 70) and set(out.label.unique().tolist()) <= {0, 2}


def test_cam_input_size_rounds_up():
    assert cam_input_size(375, 500, stride=16) == (384, 512)
    assert cam_input_size(128, 128, stride=8, scale=0.5) == (64, 64)
    assert cam_input_size(3, 3, stride=16) == (16, 16)


# ----------------------------------------------------------------------------- pseudo-labels and confidence
def test_confidence_map_hand_computed():
    cams = torch.tensor([[[0.8, 0.2, 0.0]], [[0.1, 0.6, 0.0]]])  # [K=2, 1, 3]
    scores = background_scores(cams)  # bg = 1 - max = [0.2, 0.4, 1.0]
    torch.testing.assert_close(scores[0, 0], torch.tensor([0.2, 0.4, 1.0]))
    label, conf = label_and_confidence(normalize_scores(scores))
    assert label[0].tolist() == [1, 2, 0]
    torch.testing.assert_close(conf[0], torch.tensor([8 / 11, 0.5, 1.0]))  # 0.8/1.1, 0.6/1.2, 1/1
    masked = ignore_low_confidence(label, conf, threshold=0.6)
    assert masked[0].tolist() == [1, 255, 0]
    stored = confidence_to_uint8(conf)
    assert stored.dtype == np.uint8 and stored[0].tolist() == [185, 128, 255]
    assert np.abs(confidence_from_uint8(stored) - conf.numpy()).max() <= 0.5 / 255 + 1e-7


def test_background_power():
    scores = background_scores(torch.tensor([[[0.5]]]), bg_power=2.0)
    assert scores[:, 0, 0].tolist() == [0.25, 0.5]


def test_pseudo_label_maps_indices_and_names_image(vit):
    es = ClipES(
        vit,
        ["cat", "dog", "bird"],
        config=ClipESConfig(
            templates=("a photo of a {}.",), background=("sky", "grass"), confidence_threshold=0.5
        ),
    )
    image = torch.randint(0, 256, (3, 40, 56), dtype=torch.uint8)
    out = es.pseudo_label(image, [2, 0], image_id=7)
    assert out.cams.grid_cams.shape == (2, 5, 7) and out.cams.cams.shape == (2, 40, 56)
    assert set(out.label.unique().tolist()) <= {0, 1, 3}  # class index + 1
    assert torch.equal(out.mask, out.label.masked_fill(out.confidence < 0.5, 255))
    assert out.cams.probs.shape == (4,)
    with pytest.raises(ValueError, match=r"image 7: empty label list"):
        es.pseudo_label(image, [], image_id=7)
    with pytest.raises(ValueError, match=r"image '000012.png'.*\[5\]"):
        es.pseudo_label(image, [5], image_id="000012.png")


# ----------------------------------------------------------------------------- CRF
@pytest.mark.skipif(not crf_available(), reason="pydensecrf2 not installed")
def test_dense_crf_marginals():
    image = np.zeros((8, 10, 3), dtype=np.uint8)
    image[:, 5:] = 255
    probs = np.full((2, 8, 10), 0.5, dtype=np.float32)
    probs[0, :, :5], probs[1, :, :5] = 0.9, 0.1
    probs[0, :, 5:], probs[1, :, 5:] = 0.2, 0.8
    out = dense_crf(image, probs)
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-4)
    assert (out.argmax(0)[:, :5] == 0).all() and (out.argmax(0)[:, 5:] == 1).all()


def test_crf_image_is_the_official_wrapped_mean_subtracted_bgr():
    # linyq2117/CLIP-ES@3893f81 eval_cam_with_crf.py: BGR float - (104.008, 116.669, 122.675),
    # then astype(np.uint8): truncation towards zero, wrap modulo 256.
    rgb = np.array([[[100, 120, 200], [0, 255, 104]]], dtype=np.uint8)  # [1, 2, 3]
    # pixel 0, BGR (200, 120, 100) -> (95.992, 3.331, -22.675) -> (95, 3, -22) -> (95, 3, 234)
    # pixel 1, BGR (104, 255, 0) -> (-0.008, 138.331, -122.675) -> (0, 138, -122) -> (0, 138, 134)
    expected = np.array([[[95, 3, 234], [0, 138, 134]]], dtype=np.uint8)
    np.testing.assert_array_equal(crf_image(rgb), expected)
    np.testing.assert_array_equal(crf_image(rgb, mode="rgb"), rgb)  # ovdistill's option
    assert ClipESConfig().crf_input == "official_wrapped"
    with pytest.raises(ValueError, match="crf_input"):
        ClipESConfig(crf_input="bgr")
    with pytest.raises(ValueError, match="official_wrapped"):
        crf_image(rgb, mode="bgr")


@pytest.mark.skipif(not crf_available(), reason="pydensecrf2 not installed")
def test_pseudo_label_crf_sees_the_configured_image(vit):
    torch.manual_seed(3)
    image = (torch.rand(3, 32, 32) * 255).to(torch.uint8)
    rgb = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    results = {}
    for mode in ("official_wrapped", "rgb"):
        es = ClipES(vit, ["cat", "dog"], config=ClipESConfig(crf=True, crf_input=mode))
        out = es.pseudo_label(image, [0, 1])
        scores = background_scores(out.cams.cams, bg_power=1.0).numpy().astype(np.float32)
        expected = dense_crf(np.ascontiguousarray(crf_image(rgb, mode=mode)), scores)
        np.testing.assert_allclose(out.confidence.numpy(), expected.max(0), atol=1e-5)
        results[mode] = out.confidence
    assert not torch.equal(results["official_wrapped"], results["rgb"])


@pytest.mark.skipif(crf_available(), reason="pydensecrf2 installed")
def test_missing_crf_is_a_clear_error(vit):
    with pytest.raises(CrfUnavailableError, match="pydensecrf2"):
        dense_crf(np.zeros((2, 2, 3), np.uint8), np.ones((2, 2, 2), np.float32))
    with pytest.raises(CrfUnavailableError, match="pip install pydensecrf2"):
        ClipES(vit, ["a"], config=ClipESConfig(crf=True))


# ----------------------------------------------------------------------------- label files
def _labels_file(path: Path, images: list[dict]) -> Path:
    cats = [
        {"id": 1, "name": "cat"},
        {"id": 2, "name": "dog"},
        {"id": 3, "name": "bird", "prompt": "bird avian"},
    ]
    path.write_text(json.dumps({"categories": cats, "images": images}))
    return path


def test_load_image_labels_errors_name_the_image(tmp_path):
    ok = load_image_labels(
        _labels_file(tmp_path / "ok.json", [{"id": 4, "file_name": "a.png", "labels": [3, 1, 3]}])
    )
    assert ok.images[0].labels == (3, 1) and ok.prompts == ("cat", "dog", "bird avian")
    with pytest.raises(ValueError, match=r"image 5 \(b.png\): empty label list"):
        load_image_labels(
            _labels_file(tmp_path / "e.json", [{"id": 5, "file_name": "b.png", "labels": []}])
        )
    with pytest.raises(
        ValueError, match=r"image 6 \(c.png\): labels \[9\] are not in the vocabulary"
    ):
        load_image_labels(
            _labels_file(tmp_path / "v.json", [{"id": 6, "file_name": "c.png", "labels": [1, 9]}])
        )


# ----------------------------------------------------------------------------- dataset writer
def _tiny_dataset(root: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    images, gts, entries = root / "images", root / "gt", []
    images.mkdir(parents=True)
    gts.mkdir()
    for i in range(3):
        name = f"{i:06d}.png"
        Image.fromarray(rng.integers(0, 256, (24 + 8 * i, 40, 3), dtype=np.uint8)).save(
            images / name
        )
        gt = np.zeros((24 + 8 * i, 40), np.uint8)
        gt[4:12, 8:20] = 1 + i % 3
        Image.fromarray(gt).save(gts / name)
        entries.append({"id": i, "file_name": name, "labels": [1 + i % 3]})
    return images, gts, _labels_file(root / "labels.json", entries)


def test_make_pseudo_masks_resume_verify_and_refuse(vit, tmp_path):
    images, gts, labels_path = _tiny_dataset(tmp_path / "data")
    labels = load_image_labels(labels_path)
    config = ClipESConfig(
        templates=("a photo of a {}.",), background=("sky",), confidence_threshold=0.6
    )
    es = ClipES(vit, list(labels.prompts), config=config)
    out = tmp_path / "pseudo"
    first = make_pseudo_masks(es, labels, images, out, progress=False)
    assert (first["computed"], first["skipped"]) == (3, 0)
    with Image.open(out / "masks" / "000001.png") as mask:
        assert mask.mode == "P" and mask.size == (40, 32)
    labels_png = np.asarray(Image.open(out / "labels" / "000001.png"))
    assert set(np.unique(labels_png).tolist()) <= {0, 2}
    assert json.loads((out / "manifest.json").read_text())["complete"] is True
    classes = json.loads((out / "classes.json").read_text())
    assert (
        classes["classes"] == ["background", "cat", "dog", "bird"]
        and classes["ignore_index"] == 255
    )

    (out / "confidence" / "000000.png").write_bytes(b"\x89PNG truncated")  # corrupt
    (out / "masks" / "000002.png").unlink()  # missing
    second = make_pseudo_masks(es, labels, images, out, progress=False)
    assert (second["computed"], second["skipped"]) == (2, 1)

    other = ClipES(
        vit,
        list(labels.prompts),
        config=ClipESConfig(templates=("a photo of a {}.",), background=("sky",), refine=False),
    )
    with pytest.raises(ValueError, match="different"):
        make_pseudo_masks(other, labels, images, out, progress=False)

    metrics = evaluate_pseudo_masks(out, gts, num_classes=4)
    assert (
        metrics["images"] == 3 and 0 <= metrics["miou"] <= 100 and 0 <= metrics["coverage"] <= 100
    )


def test_voc_image_labels_from_xml(tmp_path):
    from distill.cam import voc_image_labels

    (tmp_path / "Annotations").mkdir()
    objects = {"2007_000032": ["aeroplane", "person", "aeroplane"], "2007_000039": ["tvmonitor"]}
    for image_id, names in objects.items():
        body = "".join(f"<object><name>{n}</name></object>" for n in names)
        (tmp_path / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation>{body}</annotation>"
        )
    split = tmp_path / "train.txt"
    split.write_text("2007_000032\n2007_000039 extra-column\n")
    labels = load_image_labels(voc_image_labels(tmp_path, split, tmp_path / "labels.json"))
    assert [(e.image_id, e.file_name, e.labels) for e in labels.images] == [
        ("2007_000032", "2007_000032.jpg", (1, 15)),
        ("2007_000039", "2007_000039.jpg", (20,)),
    ]
    assert (
        labels.prompts[14] == "person with clothes,people,human" and len(labels.category_ids) == 20
    )
    (tmp_path / "Annotations" / "2007_000039.xml").write_text(
        "<annotation><object><name>unicorn</name></object></annotation>"
    )
    with pytest.raises(ValueError, match=r"2007_000039.xml: unknown VOC classes \['unicorn'\]"):
        voc_image_labels(tmp_path, split, tmp_path / "labels.json")
