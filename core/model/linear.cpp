#include "core/model/linear.h"

#include "core/model/autocast.h"

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <vector>

#include <ATen/record_function.h>
#include <fmt/format.h>
#include <torch/autograd.h>
#include <torch/torch.h>

#include "shopclip_build_config.h"
#if SHOPCLIP_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

namespace shopclip {
namespace {

constexpr int kUnset = -1;
std::atomic<int> chosen_gemm{kUnset};  // a CpuGemm other than kAuto once resolved

CpuGemm resolve(CpuGemm gemm) {
  if (gemm != CpuGemm::kAuto) return gemm;
#if SHOPCLIP_WITH_ONEDNN
  const auto isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  const auto avx512 = static_cast<unsigned>(dnnl_cpu_isa_avx512_core);
  // AVX2 only: oneDNN's forward products were faster, its weight gradients 2x slower, and all
  // of them or only the first two on oneDNN trained slower than OpenBLAS (README, issue 19).
  if ((isa & avx512) == avx512) return CpuGemm::kOneDnn;
#endif
  return CpuGemm::kOpenBlas;
}

// C [m, n] (row stride ldc) = op(A) op(B) + beta C, row-major, on oneDNN; op = transpose when
// trans is 'T' (A then stored [k, m] with row stride lda).
void onednn_sgemm(char transa, char transb, std::int64_t m, std::int64_t n, std::int64_t k,
                  const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta,
                  float* c, std::int64_t ldc) {
#if SHOPCLIP_WITH_ONEDNN
  RECORD_FUNCTION("shopclip::onednn_sgemm", std::vector<c10::IValue>());
  const dnnl_status_t status =
      dnnl_sgemm(transa, transb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
  if (status != dnnl_success) {
    throw std::runtime_error(fmt::format(
        "dnnl_sgemm({}, {}, m={}, n={}, k={}, lda={}, ldb={}, ldc={}) failed with status {}",
        transa, transb, m, n, k, lda, ldb, ldc, static_cast<int>(status)));
  }
#else
  (void)transa, (void)transb, (void)m, (void)n, (void)k, (void)a, (void)lda, (void)b, (void)ldb,
      (void)beta, (void)c, (void)ldc;
  throw std::logic_error("onednn_sgemm: this build has no oneDNN");
#endif
}

// The operands of a linear layer as row-major matrices: x [rows, in], weight [out, in].
class OneDnnLinearFunction : public torch::autograd::Function<OneDnnLinearFunction> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias) {
    const auto in = weight.size(1), out = weight.size(0);
    const auto rows_in = x.reshape({-1, in}).contiguous();
    const auto w = weight.contiguous();
    const auto rows = rows_in.size(0);
    const bool has_bias = bias.numel() > 0;
    // A fresh buffer, the bias copied into each row, then y += x W^T. (expand().contiguous()
    // would hand back the bias itself for one row, and the product would overwrite it.)
    auto y = torch::empty({rows, out}, x.options());
    if (has_bias) y.copy_(bias.reshape({1, out}).expand({rows, out}));
    onednn_sgemm('N', 'T', rows, out, in, rows_in.data_ptr<float>(), in, w.data_ptr<float>(), in,
                 has_bias ? 1.0f : 0.0f, y.data_ptr<float>(), out);
    ctx->save_for_backward({rows_in, w});
    ctx->saved_data["has_bias"] = has_bias;
    auto sizes = x.sizes().vec();
    ctx->saved_data["x_sizes"] = sizes;  // the input gradient's shape
    sizes.back() = out;
    return y.view(sizes);
  }

  // dX = dY W, dW = dY^T X, db = column sums of dY (each only when asked for).
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& rows_in = saved[0];
    const auto& w = saved[1];
    const auto in = w.size(1), out = w.size(0), rows = rows_in.size(0);
    const auto dy = grads[0].reshape({rows, out}).contiguous();
    torch::Tensor dx, dw, db;
    if (ctx->needs_input_grad(0)) {
      dx = torch::empty({rows, in}, dy.options());
      onednn_sgemm('N', 'N', rows, in, out, dy.data_ptr<float>(), out, w.data_ptr<float>(), in,
                   0.0f, dx.data_ptr<float>(), in);
      dx = dx.view(ctx->saved_data["x_sizes"].toIntVector());
    }
    if (ctx->needs_input_grad(1)) {
      dw = torch::empty({out, in}, dy.options());
      onednn_sgemm('T', 'N', out, in, rows, dy.data_ptr<float>(), out, rows_in.data_ptr<float>(),
                   in, 0.0f, dw.data_ptr<float>(), in);
    }
    if (ctx->needs_input_grad(2) && ctx->saved_data["has_bias"].toBool()) db = dy.sum(0);
    return {dx, dw, db};
  }
};

bool takes_onednn_path(const torch::Tensor& x, const torch::Tensor& weight,
                       const torch::Tensor& bias) {
  if (cpu_gemm() != CpuGemm::kOneDnn) return false;
  const auto is_cpu_float = [](const torch::Tensor& t) {
    return t.device().is_cpu() && t.scalar_type() == torch::kFloat32 && !t.is_sparse();
  };
  if (!is_cpu_float(x) || !is_cpu_float(weight) || (bias.defined() && !is_cpu_float(bias))) {
    return false;
  }
  if (cpu_autocast_enabled()) return false;  // autocast decides the product's type
  // Shapes at::linear would reject or that have nothing to compute: at::linear says so.
  if (x.dim() < 1 || weight.dim() != 2 || x.size(-1) != weight.size(1)) return false;
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != weight.size(0))) return false;
  return x.numel() > 0 && weight.numel() > 0;
}

}  // namespace

CpuGemm parse_cpu_gemm(const std::string& text, const std::string& source) {
  if (text == "auto") return CpuGemm::kAuto;
  if (text == "openblas") return CpuGemm::kOpenBlas;
  if (text == "onednn") return CpuGemm::kOneDnn;
  throw std::invalid_argument(fmt::format(
      "{}: '{}' is not a CPU matrix-product library (auto | openblas | onednn)", source, text));
}

std::string cpu_gemm_name(CpuGemm gemm) {
  switch (gemm) {
    case CpuGemm::kAuto:
      return "auto";
    case CpuGemm::kOpenBlas:
      return "openblas";
    case CpuGemm::kOneDnn:
      return "onednn";
  }
  return "?";
}

bool onednn_gemm_available() {
  return SHOPCLIP_WITH_ONEDNN != 0;
}

std::string onednn_isa() {
#if SHOPCLIP_WITH_ONEDNN
  const auto isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  // The widest named level the effective ISA contains (the values are nested bit masks).
  for (const auto& [mask, name] : std::vector<std::pair<dnnl_cpu_isa_t, const char*>>{
           {dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"},
           {dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"},
           {dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"},
           {dnnl_cpu_isa_avx512_core, "avx512_core"},
           {dnnl_cpu_isa_avx2_vnni, "avx2_vnni"},
           {dnnl_cpu_isa_avx2, "avx2"},
           {dnnl_cpu_isa_avx, "avx"},
           {dnnl_cpu_isa_sse41, "sse41"}}) {
    const auto bits = static_cast<unsigned>(mask);
    if ((isa & bits) == bits) return name;
  }
  return "baseline";
#else
  return "";
#endif
}

void set_cpu_gemm(CpuGemm gemm) {
  if (gemm == CpuGemm::kOneDnn && !onednn_gemm_available()) {
    throw std::runtime_error(
        "CPU matrix products on oneDNN asked for, but this build has no oneDNN (install "
        "libdnnl-dev and rebuild, or use openblas)");
  }
  chosen_gemm = static_cast<int>(resolve(gemm));
}

CpuGemm cpu_gemm() {
  if (chosen_gemm.load() == kUnset) {
    const char* text = std::getenv("SHOPCLIP_CPU_GEMM");
    set_cpu_gemm(text == nullptr ? CpuGemm::kAuto : parse_cpu_gemm(text, "SHOPCLIP_CPU_GEMM"));
  }
  return static_cast<CpuGemm>(chosen_gemm.load());
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight,
                     const torch::Tensor& bias) {
  if (!takes_onednn_path(x, weight, bias)) return at::linear(x, weight, bias);
  // LibTorch 1.13's custom functions reject undefined tensor inputs: no bias is an empty one.
  return OneDnnLinearFunction::apply(x, weight, bias.defined() ? bias : weight.new_empty({0}));
}

torch::Tensor cpu_matrix_product(const torch::Tensor& a, const torch::Tensor& b, CpuGemm gemm) {
  if (gemm == CpuGemm::kAuto) throw std::invalid_argument("cpu_matrix_product: name a library");
  if (gemm == CpuGemm::kOpenBlas) return torch::mm(a, b);
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0),
              "cpu_matrix_product: a [m, k] and b [k, n]");
  TORCH_CHECK(a.device().is_cpu() && b.device().is_cpu() && a.scalar_type() == torch::kFloat32 &&
                  b.scalar_type() == torch::kFloat32,
              "cpu_matrix_product: float32 CPU tensors");
  const auto left = a.contiguous(), right = b.contiguous();
  const auto m = a.size(0), k = a.size(1), n = b.size(1);
  auto c = torch::empty({m, n}, a.options());
  if (c.numel() == 0) return c;
  if (k == 0) return c.zero_();
  onednn_sgemm('N', 'N', m, n, k, left.data_ptr<float>(), k, right.data_ptr<float>(), n, 0.0f,
               c.data_ptr<float>(), n);
  return c;
}

}  // namespace shopclip
