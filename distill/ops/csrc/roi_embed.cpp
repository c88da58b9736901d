// Python bindings of the fused RoI-align embedding op (kernels in roi_embed_cuda.cu).
//
// `geometry_host` runs the same sampling-geometry code the CUDA kernels use (roi_embed_geometry.h)
// on the CPU, so the geometry can be checked against torchvision on machines without a GPU.
#include <torch/extension.h>

#include <vector>

#include "roi_embed_geometry.h"

namespace ovdistill {

at::Tensor roi_embed_forward_cuda(const at::Tensor& features, const at::Tensor& rois, int64_t pooled,
                                  double spatial_scale, int64_t sampling_ratio, bool aligned);
at::Tensor roi_embed_backward_cuda(const at::Tensor& grad, const at::Tensor& rois, int64_t batch,
                                   int64_t channels, int64_t height, int64_t width, int64_t pooled,
                                   double spatial_scale, int64_t sampling_ratio, bool aligned);
std::vector<at::Tensor> roi_embed_geometry_cuda(const at::Tensor& rois, int64_t height, int64_t width,
                                                int64_t pooled, double spatial_scale, int64_t sampling_ratio,
                                                bool aligned);

// Host version of the geometry kernel: {weights [K, H + W] (a_y then a_x), bounds [K, 4] int32}.
std::vector<at::Tensor> roi_embed_geometry_host(const at::Tensor& rois_in, int64_t height, int64_t width,
                                                int64_t pooled, double spatial_scale, int64_t sampling_ratio,
                                                bool aligned) {
  TORCH_CHECK(rois_in.dim() == 2 && rois_in.size(1) == 5, "roi_embed: rois must be [K, 5]");
  TORCH_CHECK(pooled > 0 && height > 0 && width > 0, "roi_embed: bad sizes");
  const at::Tensor rois = rois_in.to(at::kCPU, at::kDouble).contiguous();
  const int64_t num_rois = rois.size(0);
  auto weights = at::empty({num_rois, height + width}, rois.options());
  auto bounds = at::empty({num_rois, 4}, rois.options().dtype(at::kInt));
  const double* r = rois.data_ptr<double>();
  double* w = weights.data_ptr<double>();
  int* bd = bounds.data_ptr<int>();
  const int h = static_cast<int>(height), wd = static_cast<int>(width);
  for (int64_t k = 0; k < num_rois; ++k) {
    const double* rk = r + k * 5;
    const auto ys = make_axis_sampling<double>(rk[2], rk[4], spatial_scale, static_cast<int>(pooled),
                                               static_cast<int>(sampling_ratio), aligned, h);
    const auto xs = make_axis_sampling<double>(rk[1], rk[3], spatial_scale, static_cast<int>(pooled),
                                               static_cast<int>(sampling_ratio), aligned, wd);
    double* wk = w + k * (height + width);
    for (int t = 0; t < h + wd; ++t) wk[t] = t < h ? axis_weight(ys, t) : axis_weight(xs, t - h);
    axis_support(ys, bd + k * 4 + 0, bd + k * 4 + 1);
    axis_support(xs, bd + k * 4 + 2, bd + k * 4 + 3);
  }
  return {weights, bounds};
}

}  // namespace ovdistill

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ovdistill fused RoI-align embedding pooling (CUDA)";
  m.def("forward", &ovdistill::roi_embed_forward_cuda, "roi_embed forward (CUDA): [K, C]");
  m.def("backward", &ovdistill::roi_embed_backward_cuda, "roi_embed backward (CUDA): grad of features");
  m.def("geometry", &ovdistill::roi_embed_geometry_cuda, "per-RoI axis weights and support (CUDA)");
  m.def("geometry_host", &ovdistill::roi_embed_geometry_host, "per-RoI axis weights and support (CPU)");
}
