"""distill.ops.roi_embed: torchvision roi_align + mean equivalence, gradients, validation, CUDA build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as nnf
from torchvision.ops import roi_align

from distill.ops import reference, roi_embed, roi_embed_reference
from distill.ops.roi_embed import IMPL_ENV

REPO = Path(__file__).resolve().parents[1]


def tv_embed(features, boxes, *, output_size=7, spatial_scale=1.0, sampling_ratio=0, aligned=True):
    """The definition: torchvision roi_align, then the mean over the bins."""
    return roi_align(features, boxes, output_size, spatial_scale, sampling_ratio, aligned).mean(
        (2, 3)
    )


def random_rois(k, num_images, height, width, spatial_scale, *, seed, dtype=torch.float64):
    """[K, 5] rois in image coords: many partly outside the image, tiny, degenerate and inverted boxes."""
    gen = torch.Generator().manual_seed(seed)
    size = torch.tensor([width / spatial_scale, height / spatial_scale], dtype=torch.float64)
    centre = (torch.rand(k, 2, generator=gen, dtype=torch.float64) * 1.4 - 0.2) * size
    extent = (
        torch.exp(torch.empty(k, 2, dtype=torch.float64).uniform_(-4.0, 0.3, generator=gen)) * size
    )
    boxes = torch.cat([centre - extent / 2, centre + extent / 2], dim=1)
    special = [
        [3.0, 3.0, 3.01, 3.02],  # tiny
        [5.0, 5.0, 5.0, 5.0],  # degenerate
        [9.0, 9.0, 4.0, 2.0],  # inverted
        [-50.0, -40.0, -20.0, -10.0],  # fully outside
        [-10.0, -10.0, size[0] + 10.0, size[1] + 10.0],  # covers the whole image
        [0.0, 0.0, size[0], size[1]],  # exactly the image
    ]
    n = min(len(special), k)
    if n:
        boxes[:n] = torch.tensor(special[:n], dtype=torch.float64)
    batch = torch.randint(0, num_images, (k, 1), generator=gen).to(torch.float64)
    return torch.cat([batch, boxes], dim=1).to(dtype)


SHAPES = [(1, 1, 1, 1), (2, 3, 5, 7), (3, 4, 16, 9), (1, 2, 33, 20)]


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
@pytest.mark.parametrize("spatial_scale", [1.0, 0.25, 1 / 16])
def test_matches_torchvision_float64(aligned, sampling_ratio, spatial_scale):
    for i, (b, c, h, w) in enumerate(SHAPES):
        features = torch.randn(
            b, c, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(i)
        )
        rois = random_rois(40, b, h, w, spatial_scale, seed=i)
        for output_size in (7, 2):
            opts = dict(
                output_size=output_size,
                spatial_scale=spatial_scale,
                sampling_ratio=sampling_ratio,
                aligned=aligned,
            )
            expected = tv_embed(features, rois, **opts)
            assert expected.abs().sum() > 0
            torch.testing.assert_close(
                roi_embed(features, rois, **opts), expected, rtol=0, atol=1e-12
            )
            torch.testing.assert_close(
                roi_embed_reference(features, rois, **opts), expected, rtol=0, atol=1e-12
            )


def test_matches_torchvision_float32_and_large_adaptive_grid():
    features = torch.randn(2, 8, 24, 31)
    rois = random_rois(64, 2, 24, 31, 1 / 16, seed=7, dtype=torch.float32)
    rois[-1, 1:] = torch.tensor([-300.0, -200.0, 900.0, 700.0])  # adaptive grid of 13 x 16 samples
    out = roi_embed(features, rois, spatial_scale=1 / 16)
    assert out.dtype == torch.float32 and out.shape == (64, 8)
    torch.testing.assert_close(
        out, tv_embed(features, rois, spatial_scale=1 / 16), rtol=1e-5, atol=1e-6
    )


def test_linear_ramp_known_answer():
    # F[c, h, w] = w (channel 0) and h (channel 1); bilinear sampling reproduces a ramp exactly inside
    # the map, so the mean over an aligned box [x1, x2] x [y1, y2] is its centre minus half a pixel.
    h, w = 12, 16
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    features = torch.stack([xs, ys])[None]
    boxes = torch.tensor([[0, 2.0, 3.0, 10.0, 7.0], [0, 4.5, 1.5, 6.5, 9.5]], dtype=torch.float64)
    out = roi_embed(features, boxes, output_size=3, sampling_ratio=2)
    expected = torch.tensor([[6.0 - 0.5, 5.0 - 0.5], [5.5 - 0.5, 5.5 - 0.5]], dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # Constant features: every box with all samples inside gives the constant; fully outside gives 0.
    const = torch.full((1, 3, h, w), 2.5, dtype=torch.float64)
    boxes = torch.tensor(
        [[0, 1.0, 1.0, 9.0, 5.0], [0, -90.0, -90.0, -60.0, -70.0]], dtype=torch.float64
    )
    torch.testing.assert_close(
        roi_embed(const, boxes), torch.tensor([[2.5] * 3, [0.0] * 3], dtype=torch.float64)
    )


def test_list_of_boxes_and_empty():
    features = torch.randn(3, 5, 10, 12, dtype=torch.float64)
    per_image = [random_rois(n, 1, 10, 12, 0.5, seed=n)[:, 1:] for n in (4, 0, 6)]
    out = roi_embed(features, per_image, spatial_scale=0.5)
    assert out.shape == (10, 5)
    torch.testing.assert_close(
        out, tv_embed(features, per_image, spatial_scale=0.5), rtol=0, atol=1e-12
    )
    # K = 0 in both forms returns [0, C] and still backpropagates (zero gradient).
    features.requires_grad_(True)
    for empty in (torch.zeros(0, 5, dtype=torch.float64), [torch.zeros(0, 4)] * 3):
        out = roi_embed(features, empty)
        assert out.shape == (0, 5)
        out.sum().backward()
        assert torch.equal(features.grad, torch.zeros_like(features))


def test_backward_matches_torchvision_and_gradcheck():
    features = torch.randn(2, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    rois = random_rois(25, 2, 9, 11, 0.5, seed=3)
    weights = torch.randn(25, 3, dtype=torch.float64)
    (grad_ours,) = torch.autograd.grad(
        (roi_embed(features, rois, spatial_scale=0.5) * weights).sum(), features
    )
    (grad_tv,) = torch.autograd.grad(
        (tv_embed(features, rois, spatial_scale=0.5) * weights).sum(), features
    )
    torch.testing.assert_close(grad_ours, grad_tv, rtol=0, atol=1e-12)

    small = torch.randn(2, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    small_rois = random_rois(5, 2, 4, 5, 1.0, seed=4)
    for normalize in (False, True):
        assert torch.autograd.gradcheck(
            lambda f, normalize=normalize: roi_embed(
                f, small_rois, output_size=3, sampling_ratio=2, normalize=normalize
            ),
            (small,),
        )


def test_no_gradient_to_boxes():
    features = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[0, 1.0, 1.0, 4.0, 5.0]], dtype=torch.float64, requires_grad=True)
    roi_embed(features, boxes).sum().backward()
    assert boxes.grad is None and features.grad is not None


def test_normalize():
    features = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    rois = random_rois(20, 2, 8, 8, 1.0, seed=5)
    rois[3, 1:] = torch.tensor([-90.0, -90.0, -60.0, -70.0])  # fully outside: zero embedding
    raw = roi_embed(features, rois)
    out = roi_embed(features, rois, normalize=True)
    torch.testing.assert_close(
        out, nnf.normalize(tv_embed(features, rois), dim=1), rtol=0, atol=1e-12
    )
    nonzero = raw.norm(dim=1) > 0
    assert not nonzero[3] and torch.equal(out[3], torch.zeros(6, dtype=torch.float64))
    torch.testing.assert_close(
        out[nonzero].norm(dim=1), torch.ones(int(nonzero.sum()), dtype=torch.float64)
    )


def test_chunked_paths_agree(monkeypatch):
    features = torch.randn(2, 3, 14, 10, dtype=torch.float64)
    rois = random_rois(30, 2, 14, 10, 0.5, seed=6)
    expected = tv_embed(features, rois, spatial_scale=0.5)
    monkeypatch.setattr(reference, "_SAMPLE_BUDGET", 50)  # forces per-grid-size RoI chunks
    monkeypatch.setattr(reference, "_MAP_BUDGET", 300)  # forces 2-RoI weight-map chunks
    torch.testing.assert_close(
        roi_embed_reference(features, rois, spatial_scale=0.5), expected, rtol=0, atol=1e-12
    )


def test_dtypes_and_layouts():
    features = torch.randn(2, 4, 10, 10)
    rois = random_rois(12, 2, 10, 10, 1.0, seed=8, dtype=torch.float32)
    expected = tv_embed(features, rois)
    channels_last = roi_embed(features.to(memory_format=torch.channels_last), rois)
    torch.testing.assert_close(channels_last, expected, rtol=1e-5, atol=1e-6)
    int_boxes = torch.tensor([[0, 1, 2, 6, 8], [1, 0, 0, 9, 9]])
    torch.testing.assert_close(
        roi_embed(features, int_boxes), tv_embed(features, int_boxes.float())
    )
    half = roi_embed(features.bfloat16(), rois)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), expected, rtol=0.05, atol=0.05)


def test_impl_env(monkeypatch):
    features = torch.randn(1, 2, 6, 6, dtype=torch.float64)
    boxes = torch.tensor([[0, 1.0, 1.0, 4.0, 5.0]], dtype=torch.float64)
    monkeypatch.setenv(IMPL_ENV, "reference")
    torch.testing.assert_close(
        roi_embed(features, boxes), tv_embed(features, boxes), rtol=0, atol=1e-12
    )
    monkeypatch.setenv(IMPL_ENV, "cuda")
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        roi_embed(features, boxes)
    monkeypatch.setenv(IMPL_ENV, "fast")
    with pytest.raises(ValueError, match=IMPL_ENV):
        roi_embed(features, boxes)


@pytest.mark.parametrize(
    ("features", "boxes", "kwargs", "message"),
    [
        (torch.zeros(2, 3, 4), torch.zeros(1, 5), {}, r"features: expected a \[B, C, H, W\]"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.long), torch.zeros(1, 5), {}, "floating dtype"),
        (torch.zeros(1, 3, 0, 4), torch.zeros(1, 5), {}, "empty spatial size"),
        (torch.zeros(1, 3, 4, 4), torch.zeros(2, 4), {}, r"boxes: expected a \[K, 5\]"),
        (
            torch.zeros(1, 3, 4, 4),
            torch.tensor([[0, 1.0, float("nan"), 2, 2]]),
            {},
            "non-finite values, first at row 0",
        ),
        (
            torch.zeros(1, 3, 4, 4),
            torch.tensor([[0, 1, 1, 2, 2], [0, 1.0, 1, float("inf"), 2]]),
            {},
            "row 1",
        ),
        (
            torch.zeros(2, 3, 4, 4),
            torch.tensor([[2, 1.0, 1, 2, 2]]),
            {},
            r"batch index 2.0 at row 0 .*\[0, 2\)",
        ),
        (torch.zeros(2, 3, 4, 4), torch.tensor([[0.5, 1.0, 1, 2, 2]]), {}, "not an integer"),
        (
            torch.zeros(2, 3, 4, 4),
            [torch.zeros(1, 4)],
            {},
            "list of 1 box tensors for a batch of 2",
        ),
        (torch.zeros(1, 3, 4, 4), [torch.zeros(1, 5)], {}, r"boxes\[0\]: expected a \[K_i, 4\]"),
        (torch.zeros(1, 3, 4, 4), [torch.tensor([[0.0, 0, float("nan"), 1]])], {}, "non-finite"),
        (torch.zeros(1, 3, 4, 4), torch.zeros(1, 5), {"output_size": 0}, "output_size"),
        (torch.zeros(1, 3, 4, 4), torch.zeros(1, 5), {"output_size": (7, 7)}, "output_size"),
        (torch.zeros(1, 3, 4, 4), torch.zeros(1, 5), {"spatial_scale": -1.0}, "spatial_scale"),
        (
            torch.zeros(1, 3, 4, 4),
            torch.zeros(1, 5),
            {"spatial_scale": float("inf")},
            "spatial_scale",
        ),
        (torch.zeros(1, 3, 4, 4), torch.zeros(1, 5), {"sampling_ratio": 1.5}, "sampling_ratio"),
        (
            torch.zeros(1, 3, 4, 4),
            torch.tensor([[0, 0, 0, 1e9, 2.0]]),
            {},
            "row 0 .* more than 65536 samples per bin",
        ),
    ],
)
def test_bad_inputs_raise(features, boxes, kwargs, message):
    for fn in (roi_embed, roi_embed_reference):
        with pytest.raises(ValueError, match=message):
            fn(features, boxes, **kwargs)


# ----------------------------------------------------------------------------------------- CUDA
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    ("aligned", "sampling_ratio", "spatial_scale"), [(True, 0, 1 / 16), (False, 2, 0.25)]
)
def test_cuda_matches_reference(dtype, aligned, sampling_ratio, spatial_scale):
    opts = dict(spatial_scale=spatial_scale, sampling_ratio=sampling_ratio, aligned=aligned)
    for i, (b, c, h, w) in enumerate(SHAPES + [(2, 70, 37, 45)]):
        features = torch.randn(b, c, h, w, dtype=dtype, generator=torch.Generator().manual_seed(i))
        rois = random_rois(50, b, h, w, spatial_scale, seed=i, dtype=dtype)
        grad = torch.randn(50, c, dtype=dtype)
        cpu = features.clone().requires_grad_(True)
        expected = roi_embed_reference(cpu, rois, **opts)
        (expected_grad,) = torch.autograd.grad((expected * grad).sum(), cpu)
        gpu = features.cuda().requires_grad_(True)
        out = roi_embed(gpu, rois.cuda(), **opts)
        (out_grad,) = torch.autograd.grad((out * grad.cuda()).sum(), gpu)
        tol = dict(rtol=0, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out.cpu(), expected, **tol)
        torch.testing.assert_close(out_grad.cpu(), expected_grad, **tol)


@pytest.mark.cuda
@cuda
def test_cuda_geometry_kernel_matches_host():
    from distill.ops.cuda_ext import load_extension

    ext = load_extension()
    rois = random_rois(80, 2, 13, 17, 0.25, seed=11)
    for aligned, sampling_ratio in ((True, 0), (False, 2)):
        weights, bounds = ext.geometry(rois.cuda(), 13, 17, 7, 0.25, sampling_ratio, aligned)
        host_weights, host_bounds = ext.geometry_host(
            rois, 13, 17, 7, 0.25, sampling_ratio, aligned
        )
        torch.testing.assert_close(weights.cpu(), host_weights, rtol=0, atol=1e-12)
        assert torch.equal(bounds.cpu(), host_bounds)


@pytest.mark.cuda
@cuda
def test_cuda_half_list_boxes_and_empty():
    features = torch.randn(2, 16, 20, 20, device="cuda")
    per_image = [
        random_rois(n, 1, 20, 20, 0.5, seed=n, dtype=torch.float32)[:, 1:].cuda() for n in (7, 3)
    ]
    expected = tv_embed(features, per_image, spatial_scale=0.5)
    torch.testing.assert_close(
        roi_embed(features, per_image, spatial_scale=0.5), expected, rtol=1e-4, atol=1e-5
    )
    half = roi_embed(features.half(), per_image, spatial_scale=0.5)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), expected, rtol=2e-2, atol=2e-2)
    assert roi_embed(features, torch.zeros(0, 5, device="cuda")).shape == (0, 16)


# ------------------------------------------------------------------------------- build (no GPU)
def test_find_cuda_home_and_arch_flags():
    from distill.ops.cuda_ext import _arch_flags, find_cuda_home

    assert _arch_flags("9.0") == ["-gencode=arch=compute_90,code=sm_90"]
    with pytest.raises(ValueError, match="arch"):
        _arch_flags("sm_90")
    home = find_cuda_home()
    if home is None:
        pytest.skip("no CUDA toolkit (nvcc) on this machine")
    assert (home / "bin" / "nvcc").is_file() and (home / "include" / "cuda_runtime.h").is_file()


def test_bad_cuda_home_is_a_clear_error(monkeypatch, tmp_path):
    from distill.ops.cuda_ext import load_extension

    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"CUDA_HOME/CUDA_PATH=.* has no bin/nvcc"):
        load_extension(arch="9.0", build_dir=tmp_path / "build")


_BUILD_SCRIPT = """
import json, sys, torch
from distill.ops.cuda_ext import load_extension
ext = load_extension(arch="9.0", build_dir=sys.argv[1])
rois = torch.load(sys.argv[2])
out = {}
for name, opts in json.loads(sys.argv[3]).items():
    out[name] = ext.geometry_host(rois, opts["H"], opts["W"], opts["S"], opts["scale"], opts["sr"],
                                  opts["aligned"])
torch.save(out, sys.argv[4])
"""


@pytest.mark.slow
def test_cuda_extension_compiles_and_geometry_matches(tmp_path):
    """Build the extension for sm_90 with nvcc (no GPU needed), then check its host-side geometry
    (the code the kernels run) against torchvision through the separable formula."""
    from distill.ops.cuda_ext import find_cuda_home

    if find_cuda_home() is None:
        pytest.skip("nvcc / CUDA toolkit not found (PATH, CUDA_HOME, /usr/local/cuda*)")
    if torch.version.cuda is None:
        pytest.skip("CPU-only torch build: cannot link a CUDA extension")
    h, w = 11, 13
    rois = random_rois(60, 2, h, w, 0.25, seed=9)
    cases = {
        f"{aligned}-{sr}": dict(H=h, W=w, S=7, scale=0.25, sr=sr, aligned=aligned)
        for aligned in (True, False)
        for sr in (0, 2)
    }
    torch.save(rois, tmp_path / "rois.pt")
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        MAX_JOBS=os.environ.get("MAX_JOBS", "2"),
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _BUILD_SCRIPT,
            str(tmp_path / "build"),
            str(tmp_path / "rois.pt"),
            json.dumps(cases),
            str(tmp_path / "geometry.pt"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, (
        f"CUDA extension build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    assert list((tmp_path / "build").glob("*.so"))
    results = torch.load(tmp_path / "geometry.pt")
    features = torch.randn(2, 3, h, w, dtype=torch.float64)
    batch = rois[:, 0].long()
    for name, opts in cases.items():
        weights, bounds = results[name]
        a_y, a_x = weights[:, :h], weights[:, h:]
        kw = dict(bins=7, spatial_scale=0.25, sampling_ratio=opts["sr"], aligned=opts["aligned"])
        torch.testing.assert_close(
            a_y, reference.axis_weights(rois[:, 2], rois[:, 4], length=h, **kw), rtol=0, atol=1e-12
        )
        torch.testing.assert_close(
            a_x, reference.axis_weights(rois[:, 1], rois[:, 3], length=w, **kw), rtol=0, atol=1e-12
        )
        # Support bounds hold every non-zero weight; the kernel sums over the support box only.
        rows, cols = torch.arange(h), torch.arange(w)
        in_y = (rows >= bounds[:, :1]) & (rows <= bounds[:, 1:2])
        in_x = (cols >= bounds[:, 2:3]) & (cols <= bounds[:, 3:4])
        assert not (a_y[~in_y] != 0).any() and not (a_x[~in_x] != 0).any()
        out = torch.einsum("kh,kchw,kw->kc", a_y * in_y, features[batch], a_x * in_x)
        expected = tv_embed(
            features, rois, spatial_scale=0.25, sampling_ratio=opts["sr"], aligned=opts["aligned"]
        )
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
