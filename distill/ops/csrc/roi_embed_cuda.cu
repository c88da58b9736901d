// Fused RoI-align embedding pooling: out[k, c] = mean over S x S RoI-align bins of F[b_k, c].
//
// Three kernels:
//   1. geometry: one block per RoI computes the separable mean bilinear weights a_y [H], a_x [W]
//      and the inclusive support box (see roi_embed_geometry.h), once per RoI.
//   2. forward: one block per (RoI, channel chunk); each warp takes a channel and reduces
//      sum_{h,w in support} a_y[h] a_x[w] F[b, c, h, w] over the RoI's support only. The
//      [K, C, S, S] RoI-align output never exists.
//   3. backward: same decomposition, atomicAdd of a_y[h] a_x[w] grad[k, c] into grad_F
//      (= grad / (S * S * count) spread with the bilinear weights of every sample).
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "roi_embed_geometry.h"

namespace ovdistill {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;
constexpr int kGeometryThreads = 128;

struct RoiOptions {
  int pooled;
  double spatial_scale;
  int sampling_ratio;
  bool aligned;
};

// weights: [K, H + W] (a_y then a_x); bounds: [K, 4] int (h_first, h_last, w_first, w_last).
template <typename acc_t>
__global__ void geometry_kernel(const acc_t* __restrict__ rois, int height, int width, RoiOptions opt,
                                acc_t* __restrict__ weights, int* __restrict__ bounds) {
  const int64_t k = blockIdx.x;
  const acc_t* r = rois + k * 5;
  const acc_t scale = static_cast<acc_t>(opt.spatial_scale);
  const AxisSampling<acc_t> ys =
      make_axis_sampling<acc_t>(r[2], r[4], scale, opt.pooled, opt.sampling_ratio, opt.aligned, height);
  const AxisSampling<acc_t> xs =
      make_axis_sampling<acc_t>(r[1], r[3], scale, opt.pooled, opt.sampling_ratio, opt.aligned, width);
  acc_t* w = weights + k * (height + width);
  for (int t = threadIdx.x; t < height + width; t += blockDim.x) {
    w[t] = t < height ? axis_weight(ys, t) : axis_weight(xs, t - height);
  }
  if (threadIdx.x == 0) axis_support(ys, bounds + k * 4 + 0, bounds + k * 4 + 1);
  if (threadIdx.x == (blockDim.x > 1 ? 1 : 0)) axis_support(xs, bounds + k * 4 + 2, bounds + k * 4 + 3);
}

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// One block per (RoI k = blockIdx.x, channel chunk blockIdx.y); warps stride over the chunk's channels.
template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(const scalar_t* __restrict__ features, const acc_t* __restrict__ rois,
                               const acc_t* __restrict__ weights, const int* __restrict__ bounds,
                               int channels, int height, int width, int channels_per_block,
                               scalar_t* __restrict__ out) {
  const int64_t k = blockIdx.x;
  const int64_t b = static_cast<int64_t>(rois[k * 5]);
  const int h0 = bounds[k * 4 + 0], h1 = bounds[k * 4 + 1];
  const int w0 = bounds[k * 4 + 2], w1 = bounds[k * 4 + 3];
  const int nx = w1 - w0 + 1;
  const int n = (h1 >= h0 && w1 >= w0) ? (h1 - h0 + 1) * nx : 0;
  const acc_t* wy = weights + k * (height + width);
  const acc_t* wx = wy + height;
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int nwarps = blockDim.x / kWarp;
  const int c_begin = blockIdx.y * channels_per_block;
  const int c_end = min(channels, c_begin + channels_per_block);
  const int64_t plane = static_cast<int64_t>(height) * width;
  for (int c = c_begin + warp; c < c_end; c += nwarps) {
    const scalar_t* f = features + (b * channels + c) * plane;
    acc_t sum = acc_t(0);
    for (int i = lane; i < n; i += kWarp) {
      const int row = i / nx;
      const int h = h0 + row;
      const int w = w0 + (i - row * nx);
      sum += wy[h] * wx[w] * static_cast<acc_t>(f[static_cast<int64_t>(h) * width + w]);
    }
    sum = warp_sum(sum);
    if (lane == 0) out[k * channels + c] = static_cast<scalar_t>(sum);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(const scalar_t* __restrict__ grad, const acc_t* __restrict__ rois,
                                const acc_t* __restrict__ weights, const int* __restrict__ bounds,
                                int channels, int height, int width, int channels_per_block,
                                acc_t* __restrict__ grad_features) {
  const int64_t k = blockIdx.x;
  const int64_t b = static_cast<int64_t>(rois[k * 5]);
  const int h0 = bounds[k * 4 + 0], h1 = bounds[k * 4 + 1];
  const int w0 = bounds[k * 4 + 2], w1 = bounds[k * 4 + 3];
  const int nx = w1 - w0 + 1;
  const int n = (h1 >= h0 && w1 >= w0) ? (h1 - h0 + 1) * nx : 0;
  const acc_t* wy = weights + k * (height + width);
  const acc_t* wx = wy + height;
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int nwarps = blockDim.x / kWarp;
  const int c_begin = blockIdx.y * channels_per_block;
  const int c_end = min(channels, c_begin + channels_per_block);
  const int64_t plane = static_cast<int64_t>(height) * width;
  for (int c = c_begin + warp; c < c_end; c += nwarps) {
    const acc_t g = static_cast<acc_t>(grad[k * channels + c]);
    acc_t* gf = grad_features + (b * channels + c) * plane;
    for (int i = lane; i < n; i += kWarp) {
      const int row = i / nx;
      const int h = h0 + row;
      const int w = w0 + (i - row * nx);
      atomicAdd(gf + static_cast<int64_t>(h) * width + w, wy[h] * wx[w] * g);
    }
  }
}

int channels_per_block_for(int64_t num_rois, int64_t channels) {
  // Enough blocks to fill the GPU several times over, at most 8 channels per warp.
  int device = 0, sms = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t target_blocks = static_cast<int64_t>(sms) * 8;
  const int64_t warp_tasks = num_rois * ((channels + kWarpsPerBlock - 1) / kWarpsPerBlock);
  int64_t per_warp = warp_tasks / std::max<int64_t>(target_blocks, 1);
  per_warp = std::min<int64_t>(std::max<int64_t>(per_warp, 1), 8);
  const int64_t cpb = per_warp * kWarpsPerBlock;
  TORCH_CHECK((channels + cpb - 1) / cpb <= 65535, "roi_embed: too many channels (", channels, ")");
  return static_cast<int>(cpb);
}

void check_inputs(const at::Tensor& rois, const at::Tensor& other, at::ScalarType acc_type) {
  TORCH_CHECK(rois.is_cuda() && rois.dim() == 2 && rois.size(1) == 5, "roi_embed: rois must be a CUDA [K, 5] tensor");
  TORCH_CHECK(rois.scalar_type() == acc_type, "roi_embed: rois must have dtype ", acc_type, ", got ",
              rois.scalar_type());
  TORCH_CHECK(rois.is_contiguous(), "roi_embed: rois must be contiguous");
  TORCH_CHECK(rois.device() == other.device(), "roi_embed: rois and features/grad must be on the same device");
}

// Returns {weights [K, H + W] acc, bounds [K, 4] int32}.
std::vector<at::Tensor> geometry(const at::Tensor& rois, int64_t height, int64_t width, const RoiOptions& opt) {
  const int64_t num_rois = rois.size(0);
  auto weights = at::empty({num_rois, height + width}, rois.options());
  auto bounds = at::empty({num_rois, 4}, rois.options().dtype(at::kInt));
  if (num_rois == 0) return {weights, bounds};
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(rois.scalar_type(), "roi_embed_geometry", [&] {
    geometry_kernel<scalar_t><<<static_cast<unsigned int>(num_rois), kGeometryThreads, 0, stream>>>(
        rois.data_ptr<scalar_t>(), static_cast<int>(height), static_cast<int>(width), opt,
        weights.data_ptr<scalar_t>(), bounds.data_ptr<int>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {weights, bounds};
}

}  // namespace

at::Tensor roi_embed_forward_cuda(const at::Tensor& features_in, const at::Tensor& rois, int64_t pooled,
                                  double spatial_scale, int64_t sampling_ratio, bool aligned) {
  TORCH_CHECK(features_in.is_cuda() && features_in.dim() == 4,
              "roi_embed: features must be a CUDA [B, C, H, W] tensor");
  const c10::cuda::CUDAGuard guard(features_in.device());
  const at::Tensor features = features_in.contiguous();
  const int64_t num_rois = rois.size(0), channels = features.size(1);
  const int64_t height = features.size(2), width = features.size(3);
  TORCH_CHECK(height < (1 << 30) && width < (1 << 30) && height * width < (int64_t(1) << 31),
              "roi_embed: feature map too large");
  const RoiOptions opt{static_cast<int>(pooled), spatial_scale, static_cast<int>(sampling_ratio), aligned};
  auto out = at::empty({num_rois, channels}, features.options());
  if (num_rois == 0 || channels == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, features.scalar_type(), "roi_embed_forward", [&] {
    using acc_t = at::acc_type<scalar_t, /*is_cuda=*/true>;
    check_inputs(rois, features, c10::CppTypeToScalarType<acc_t>::value);
    const auto geo = geometry(rois, height, width, opt);
    const int cpb = channels_per_block_for(num_rois, channels);
    const dim3 grid(static_cast<unsigned int>(num_rois), static_cast<unsigned int>((channels + cpb - 1) / cpb));
    forward_kernel<scalar_t, acc_t><<<grid, kWarp * kWarpsPerBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(
        features.data_ptr<scalar_t>(), rois.data_ptr<acc_t>(), geo[0].data_ptr<acc_t>(), geo[1].data_ptr<int>(),
        static_cast<int>(channels), static_cast<int>(height), static_cast<int>(width), cpb, out.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor roi_embed_backward_cuda(const at::Tensor& grad_in, const at::Tensor& rois, int64_t batch,
                                   int64_t channels, int64_t height, int64_t width, int64_t pooled,
                                   double spatial_scale, int64_t sampling_ratio, bool aligned) {
  TORCH_CHECK(grad_in.is_cuda() && grad_in.dim() == 2 && grad_in.size(0) == rois.size(0) && grad_in.size(1) == channels,
              "roi_embed: grad must be a CUDA [K, C] tensor");
  const c10::cuda::CUDAGuard guard(grad_in.device());
  at::globalContext().alertNotDeterministic("roi_embed_backward_cuda");
  const at::Tensor grad = grad_in.contiguous();
  const int64_t num_rois = rois.size(0);
  const RoiOptions opt{static_cast<int>(pooled), spatial_scale, static_cast<int>(sampling_ratio), aligned};
  const auto acc_type = at::toOpMathType(grad.scalar_type());
  auto grad_features = at::zeros({batch, channels, height, width}, grad.options().dtype(acc_type));
  if (num_rois == 0 || channels == 0) return grad_features.to(grad.scalar_type());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "roi_embed_backward", [&] {
    using acc_t = at::acc_type<scalar_t, /*is_cuda=*/true>;
    check_inputs(rois, grad, c10::CppTypeToScalarType<acc_t>::value);
    const auto geo = geometry(rois, height, width, opt);
    const int cpb = channels_per_block_for(num_rois, channels);
    const dim3 grid(static_cast<unsigned int>(num_rois), static_cast<unsigned int>((channels + cpb - 1) / cpb));
    backward_kernel<scalar_t, acc_t><<<grid, kWarp * kWarpsPerBlock, 0, c10::cuda::getCurrentCUDAStream()>>>(
        grad.data_ptr<scalar_t>(), rois.data_ptr<acc_t>(), geo[0].data_ptr<acc_t>(), geo[1].data_ptr<int>(),
        static_cast<int>(channels), static_cast<int>(height), static_cast<int>(width), cpb,
        grad_features.data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return grad_features.scalar_type() == grad.scalar_type() ? grad_features : grad_features.to(grad.scalar_type());
}

std::vector<at::Tensor> roi_embed_geometry_cuda(const at::Tensor& rois, int64_t height, int64_t width,
                                                int64_t pooled, double spatial_scale, int64_t sampling_ratio,
                                                bool aligned) {
  TORCH_CHECK(rois.is_cuda() && rois.dim() == 2 && rois.size(1) == 5 && rois.is_contiguous() &&
                  (rois.scalar_type() == at::kFloat || rois.scalar_type() == at::kDouble),
              "roi_embed: rois must be a contiguous float32/float64 CUDA [K, 5] tensor");
  const c10::cuda::CUDAGuard guard(rois.device());
  return geometry(rois, height, width,
                  RoiOptions{static_cast<int>(pooled), spatial_scale, static_cast<int>(sampling_ratio), aligned});
}

}  // namespace ovdistill
