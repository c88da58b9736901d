"""The separable CPU RoIAlign backward (``detectors.modeling.poolers``) against torchvision's own gradient."""

import pytest
import torch
from torchvision.ops import roi_align

pytest.importorskip("detectron2")

from detectron2.modeling.poolers import ROIPooler  # noqa: E402
from detectron2.structures import Boxes  # noqa: E402

from detectors.modeling.poolers import (  # noqa: E402
    SEPARABLE_MAX_AREA,
    OVROIPooler,
    SeparableGradROIAlign,
    separable_roi_align_backward,
)


def _rois(num: int, num_images: int, *, size: float, generator: torch.Generator) -> torch.Tensor:
    """Boxes of every kind: inside, partly or wholly outside the image, tiny, one image without any."""
    xy = torch.rand(num, 2, generator=generator) * size * 1.2 - size * 0.1
    wh = torch.rand(num, 2, generator=generator) * size * 0.6 + 0.1
    wh[:3] = torch.tensor([0.2, 0.3])  # sub-cell boxes
    xy[3] = torch.tensor([size + 5.0, size + 5.0])  # outside the image: zero contribution
    batch = torch.randint(
        0, num_images - 1, (num, 1), generator=generator
    ).float()  # last image: no RoI
    return torch.cat([batch, xy, xy + wh], dim=1)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_backward_matches_torchvision(aligned, sampling_ratio):
    generator = torch.Generator().manual_seed(int(aligned) * 10 + sampling_ratio)
    features = torch.randn(3, 5, 12, 17, generator=generator, requires_grad=True)
    rois = _rois(40, 3, size=64.0, generator=generator)
    scale = 0.25
    out = roi_align(features, rois, (7, 7), scale, sampling_ratio, aligned)
    grad = torch.randn(out.shape, generator=generator)
    (expected,) = torch.autograd.grad(out, features, grad)
    got = separable_roi_align_backward(
        grad,
        rois,
        tuple(features.shape),
        spatial_scale=scale,
        sampling_ratio=sampling_ratio,
        aligned=aligned,
    )
    assert (
        expected.abs().max() > 0.1 and expected[2].abs().max() == 0
    )  # the image without RoIs gets none
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_module_forward_is_torchvision_and_gradcheck_passes():
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(2, 3, 6, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    rois = _rois(6, 2, size=28.0, generator=generator).double()
    layer = SeparableGradROIAlign((3, 3), spatial_scale=0.25, sampling_ratio=0, aligned=True)
    out = layer(features, rois)
    assert type(out.grad_fn).__name__ == "_SeparableGradRoIAlignFunctionBackward"
    torch.testing.assert_close(
        out, roi_align(features, rois, (3, 3), 0.25, 0, True), atol=0, rtol=0
    )
    assert torch.autograd.gradcheck(lambda f: layer(f, rois), (features,))


def test_falls_back_to_torchvision_where_it_does_not_apply():
    layer = SeparableGradROIAlign((7, 7), spatial_scale=1.0, sampling_ratio=0, aligned=True)
    rois = torch.tensor([[0.0, 1.0, 1.0, 30.0, 30.0]])
    side = int(SEPARABLE_MAX_AREA**0.5) + 1
    large = torch.randn(1, 2, side, side, requires_grad=True)
    assert "Separable" not in type(layer(large, rois).grad_fn).__name__
    small = torch.randn(1, 2, 32, 32, requires_grad=True)
    with torch.no_grad():
        assert layer(small, rois).grad_fn is None
    with pytest.raises(ValueError, match=r"rois must be \[K, 5\]"):
        layer(small, rois[:, 1:])


def test_pooler_equals_detectron2_pooler_in_output_and_gradient():
    generator = torch.Generator().manual_seed(5)
    scales = (1 / 4, 1 / 8, 1 / 16)
    shared = [torch.randn(2, 4, int(64 * s), int(64 * s), generator=generator) for s in scales]
    boxes = [
        Boxes(_rois(30, 2, size=64.0, generator=generator)[:, 1:].clamp(0, 64)) for _ in range(2)
    ]
    results = []
    for pooler_class in (ROIPooler, OVROIPooler):
        pooler = pooler_class(
            7, scales, 0, "ROIAlignV2", canonical_box_size=12, canonical_level=3
        )  # all levels used
        features = [f.clone().requires_grad_(True) for f in shared]
        out = pooler(features, boxes)
        out.pow(2).sum().backward()
        results.append((out.detach(), [f.grad for f in features]))
    levels = OVROIPooler(7, scales, 0, "ROIAlignV2").level_poolers
    assert all(isinstance(level, SeparableGradROIAlign) for level in levels)
    (ref_out, ref_grads), (out, grads) = results
    torch.testing.assert_close(out, ref_out, atol=0, rtol=0)
    for got, expected in zip(grads, ref_grads):
        assert expected.abs().max() > 0
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
