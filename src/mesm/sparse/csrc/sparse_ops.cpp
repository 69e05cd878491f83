// mesm's compiled sparse engine: each step of a cross-modal sparse CNN block as one dispatched op.
//
// Registered with torch.library under the namespace `mesm` (CPU kernels); the autograd formulas,
// the FLOP formulas and the dtype decisions (autocast's rules) live in mesm/sparse/compiled.py.
// Conventions are those of mesm.sparse.SparseMap: sites sorted by (sample, row, col); a rulebook
// entry equal to N (the number of sites) means "no active neighbour there".
//
//   rulebook3x3        coords -> padded index table (F, H+2, W+2) and 3x3 neighbours (N, 9)
//   subm_conv3x3       gather of each site's 3x3 neighbourhood, block by block, times the weight
//                      (oneDNN's GEMM), optional bias and ReLU
//   subm_conv3x3_backward   input gradient (a gather + GEMM through the reversed rulebook) and
//                      weight/bias gradients (gather + GEMM, summed in the weight's dtype)
//   pool2x2_rulebook   coords -> output coords (M, 3) and the 2x2 window of input rows (M, 4)
//   window_max         max over each window's active rows (+ the row of each maximum)
//   window_max_backward    routes each output gradient to its maximum's row
//   nucleus            per-sample softmax of scores and top-p selection (stable ties)
//   segment_softmax_backward   the softmax's backward per sample

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using at::Tensor;

// About 8 MiB of gathered rows per GEMM call (at least 256 rows): the block stays in the outer
// caches, and the deep layers' large weights are read few times.
constexpr int64_t kBlockBytes = 8 << 20;
constexpr int64_t kMinBlockRows = 256;

int64_t block_rows(int64_t width, int64_t itemsize) {
  return std::max(kMinBlockRows, kBlockBytes / std::max<int64_t>(1, width * itemsize));
}

// oneDNN's matrix product, the op PyTorch exposes as mkldnn::_linear_pointwise: on AMD CPUs it
// runs AVX-512 where aten::mm's fp32 path (MKL) runs AVX2. Called boxed, so that this file does
// not depend on the op's C++ signature; aten::linear where it is missing.
const c10::OperatorHandle* onednn_linear_op() {
  static const c10::OperatorHandle* op = []() -> const c10::OperatorHandle* {
    auto handle = c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
    if (!handle.has_value()) return nullptr;
    return new c10::OperatorHandle(*handle);
  }();
  return op;
}

// rows (M, K) @ weight (N, K)^T (+ bias) (ReLU) -> (M, N)
Tensor linear(const Tensor& rows, const Tensor& weight, const std::optional<Tensor>& bias,
              bool relu) {
  const auto dtype = rows.scalar_type();
  const auto* op = onednn_linear_op();
  if (op != nullptr && rows.size(0) > 0 && at::globalContext().userEnabledMkldnn() &&
      (dtype == at::kFloat || dtype == at::kBFloat16)) {
    std::vector<c10::IValue> stack;
    stack.emplace_back(rows);
    stack.emplace_back(weight);
    stack.emplace_back(bias);
    stack.emplace_back(std::string(relu ? "relu" : "none"));
    stack.emplace_back(c10::List<std::optional<at::Scalar>>());
    stack.emplace_back(std::optional<std::string>(std::string()));
    op->callBoxed(&stack);
    return stack[0].toTensor();
  }
  Tensor out = at::linear(rows, weight, bias);
  return relu ? out.relu_() : out;
}

// A per-thread scratch buffer for gathered blocks, reused across calls: a fresh multi-MiB block
// per GEMM comes from newly mapped memory and page-faults on every touch.
Tensor scratch(int slot, int64_t rows, int64_t cols, at::ScalarType dtype) {
  thread_local std::vector<std::vector<char>> buffers(4);
  auto& buffer = buffers[slot];
  const size_t bytes = static_cast<size_t>(rows * cols) * c10::elementSize(dtype);
  if (buffer.size() < bytes) buffer.resize(bytes);
  return at::from_blob(buffer.data(), {rows, cols}, at::TensorOptions().dtype(dtype));
}

// Rows [begin, end) of the (N, 9) rulebook: block row r, column block k holds
// src[nbr[r, reverse ? 8 - k : k]] (zeros where that entry is N).
// Copies one row of `bytes` bytes; a compile-time size for the narrow rows of small layers (a
// library memcpy call per 16-64 bytes costs more than the copy).
template <int64_t kBytes>
inline void copy_row(void* dst, const void* src, int64_t bytes) {
  if constexpr (kBytes > 0) {
    std::memcpy(dst, src, kBytes);
  } else {
    std::memcpy(dst, src, bytes);
  }
}

template <int64_t kBytes>
void gather_rows(const char* src, int64_t row_bytes, const int64_t* nbr, int64_t n,
                 int64_t begin, int64_t end, bool reverse, char* out) {
  at::parallel_for(begin, end, 64, [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      char* row = out + (r - begin) * 9 * row_bytes;
      for (int k = 0; k < 9; ++k) {
        const int64_t j = nbr[r * 9 + (reverse ? 8 - k : k)];
        char* dst = row + k * row_bytes;
        if (j >= n) {
          std::memset(dst, 0, row_bytes);
        } else {
          copy_row<kBytes>(dst, src + j * row_bytes, row_bytes);
        }
      }
    }
  });
}

// Rows [begin, end) of the (N, 9) rulebook: block row r, column block k holds
// src[nbr[r, reverse ? 8 - k : k]] (zeros where that entry is N).
void gather_block(const char* src, int64_t row_bytes, const int64_t* nbr, int64_t n,
                  int64_t begin, int64_t end, bool reverse, char* out) {
  switch (row_bytes) {
    case 16: gather_rows<16>(src, row_bytes, nbr, n, begin, end, reverse, out); break;
    case 32: gather_rows<32>(src, row_bytes, nbr, n, begin, end, reverse, out); break;
    case 64: gather_rows<64>(src, row_bytes, nbr, n, begin, end, reverse, out); break;
    case 128: gather_rows<128>(src, row_bytes, nbr, n, begin, end, reverse, out); break;
    default: gather_rows<0>(src, row_bytes, nbr, n, begin, end, reverse, out);
  }
}

Tensor gathered(const Tensor& src, const Tensor& nbr, int64_t begin, int64_t end, bool reverse,
                int slot) {
  const int64_t channels = src.size(1);
  Tensor cols = scratch(slot, end - begin, 9 * channels, src.scalar_type());
  gather_block(static_cast<const char*>(src.const_data_ptr()), channels * src.element_size(),
               nbr.const_data_ptr<int64_t>(), src.size(0), begin, end, reverse,
               static_cast<char*>(cols.mutable_data_ptr()));
  return cols;
}

// (C_out, 9*C_in) GEMM operand of a (C_out, C_in, 3, 3) weight; columns (offset, channel).
Tensor weight_matrix(const Tensor& weight) {
  const int64_t c_out = weight.size(0), c_in = weight.size(1);
  return weight.reshape({c_out, c_in, 9}).transpose(1, 2).reshape({c_out, 9 * c_in});
}

// out (N, W_out) = [src[nbr[i, k]] for k] @ matrix^T (+ bias) (ReLU), block by block.
Tensor gather_gemm(const Tensor& src, const Tensor& nbr, const Tensor& matrix,
                   const std::optional<Tensor>& bias, bool relu, bool reverse) {
  const int64_t n = nbr.size(0);
  const int64_t step = block_rows(9 * src.size(1), src.element_size());
  if (n <= step) {
    return linear(gathered(src, nbr, 0, n, reverse, 0), matrix, bias, relu);
  }
  Tensor out = at::empty({n, matrix.size(0)}, src.options());
  for (int64_t i = 0; i < n; i += step) {
    const int64_t j = std::min(n, i + step);
    out.slice(0, i, j).copy_(linear(gathered(src, nbr, i, j, reverse, 0), matrix, bias, relu));
  }
  return out;
}

// g_block^T @ cols, the transposed operand handed to aten::mm as a view (measured faster than
// oneDNN's product of contiguous transposed copies, which costs two copies of the block). In the
// weight's dtype when it is the compute dtype (summed in place), else rounded block by block.
void add_weight_grad_block(Tensor& gw, const Tensor& g_block, const Tensor& cols) {
  if (cols.scalar_type() == gw.scalar_type()) {
    gw.addmm_(g_block.t(), cols);
  } else {
    gw.add_(at::mm(g_block.t(), cols));
  }
}

void check_sites(const Tensor& features, const Tensor& nbr) {
  TORCH_CHECK(features.dim() == 2, "features must be (N, C)");
  TORCH_CHECK(nbr.dim() == 2 && nbr.size(1) == 9 && nbr.scalar_type() == at::kLong,
              "the rulebook must be int64 (N, 9)");
  TORCH_CHECK(nbr.size(0) == features.size(0), "rulebook rows ", nbr.size(0), " != sites ",
              features.size(0));
}

// ---------------------------------------------------------------------------------------------
std::tuple<Tensor, Tensor> rulebook3x3(const Tensor& coords, int64_t num_samples, int64_t height,
                                       int64_t width) {
  TORCH_CHECK(coords.dim() == 2 && coords.size(1) == 3 && coords.scalar_type() == at::kInt,
              "coords must be int32 (N, 3)");
  const int64_t n = coords.size(0);
  const int64_t hp = height + 2, wp = width + 2;
  Tensor table = at::full({num_samples, hp, wp}, n, coords.options().dtype(at::kLong));
  Tensor nbr = at::empty({n, 9}, coords.options().dtype(at::kLong));
  const int32_t* c = coords.const_data_ptr<int32_t>();
  int64_t* t = table.mutable_data_ptr<int64_t>();
  int64_t* out = nbr.mutable_data_ptr<int64_t>();
  at::parallel_for(0, n, 4096, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      t[(c[3 * i] * hp + c[3 * i + 1] + 1) * wp + c[3 * i + 2] + 1] = i;
    }
  });
  const int64_t offsets[9] = {-wp - 1, -wp, -wp + 1, -1, 0, 1, wp - 1, wp, wp + 1};
  at::parallel_for(0, n, 4096, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const int64_t base = (c[3 * i] * hp + c[3 * i + 1] + 1) * wp + c[3 * i + 2] + 1;
      for (int k = 0; k < 9; ++k) out[9 * i + k] = t[base + offsets[k]];
    }
  });
  return {table, nbr};
}

Tensor subm_conv3x3(const Tensor& features, const Tensor& nbr, const Tensor& weight,
                    const std::optional<Tensor>& bias, bool relu, at::ScalarType dtype) {
  check_sites(features, nbr);
  // A 2-D weight is the (C_out, 9 C_in) GEMM operand already (kept by callers with fixed weights).
  const bool is_matrix = weight.dim() == 2;
  TORCH_CHECK((is_matrix && weight.size(1) == 9 * features.size(1)) ||
                  (weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3 &&
                   weight.size(1) == features.size(1)),
              "weight must be (C_out, C_in, 3, 3) or (C_out, 9 C_in) with C_in = ",
              features.size(1));
  const int64_t c_in = features.size(1), c_out = weight.size(0);
  const Tensor x = features.to(dtype).contiguous();
  const bool has_bias = bias.has_value() && bias->defined();
  if (nbr.size(0) == 0) return at::empty({0, c_out}, x.options());
  const Tensor matrix =
      is_matrix ? weight.to(dtype).contiguous() : weight_matrix(weight.to(dtype)).contiguous();
  std::optional<Tensor> low_bias;
  if (has_bias) low_bias = bias->to(dtype);
  return gather_gemm(x, nbr.contiguous(), matrix, low_bias, relu, false);
}

std::tuple<Tensor, Tensor, Tensor> subm_conv3x3_backward(
    const Tensor& grad_out, const Tensor& features, const Tensor& nbr, const Tensor& weight,
    at::ScalarType dtype, std::array<bool, 3> output_mask) {
  check_sites(features, nbr);
  const int64_t n = nbr.size(0), c_out = weight.size(0), c_in = weight.size(1);
  const Tensor g = grad_out.to(dtype).contiguous();
  const Tensor rulebook = nbr.contiguous();
  Tensor grad_features = at::empty({0}, features.options());
  Tensor grad_weight = at::empty({0}, weight.options());
  Tensor grad_bias = at::empty({0}, weight.options());
  if (output_mask[0]) {
    if (n == 0) {
      grad_features = at::zeros({0, c_in}, features.options());
    } else {
      // Row i, column (k, o) holds weight[o, i, k]: the rulebook read with its offsets reversed.
      const Tensor transposed =
          weight.to(dtype).reshape({c_out, c_in * 9}).t().contiguous().view({c_in, 9 * c_out});
      grad_features =
          gather_gemm(g, rulebook, transposed, std::nullopt, false, true).to(features.scalar_type());
    }
  }
  if (output_mask[1]) {
    const Tensor x = features.to(dtype).contiguous();
    Tensor gw = at::zeros({c_out, 9 * c_in}, weight.options());
    const int64_t step = block_rows(9 * c_in, x.element_size());
    for (int64_t i = 0; i < n; i += step) {
      const int64_t j = std::min(n, i + step);
      const Tensor cols = gathered(x, rulebook, i, j, false, 1);
      // (C_out, rows) @ (rows, 9 C_in) in the compute dtype, summed in the weight's dtype.
      add_weight_grad_block(gw, g.slice(0, i, j), cols);
    }
    grad_weight = gw.view({c_out, 9, c_in}).transpose(1, 2).reshape({c_out, c_in, 3, 3});
  }
  if (output_mask[2]) grad_bias = g.sum(0, false, weight.scalar_type());
  return {grad_features, grad_weight, grad_bias};
}

// ---------------------------------------------------------------------------------------------
std::tuple<Tensor, Tensor> pool2x2_rulebook(const Tensor& coords, const Tensor& table,
                                            int64_t num_samples, int64_t height, int64_t width) {
  TORCH_CHECK(coords.dim() == 2 && coords.size(1) == 3 && coords.scalar_type() == at::kInt,
              "coords must be int32 (N, 3)");
  const int64_t n = coords.size(0);
  const int64_t ho = height / 2, wo = width / 2, wp = width + 2;
  std::vector<uint8_t> occupied(static_cast<size_t>(num_samples * ho * wo), 0);
  const int32_t* c = coords.const_data_ptr<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = c[3 * i + 1], q = c[3 * i + 2];
    if (r < 2 * ho && q < 2 * wo) occupied[(c[3 * i] * ho + r / 2) * wo + q / 2] = 1;
  }
  const int64_t m = std::accumulate(occupied.begin(), occupied.end(), int64_t{0});
  Tensor out = at::empty({m, 3}, coords.options());
  Tensor window = at::empty({m, 4}, coords.options().dtype(at::kLong));
  int32_t* o = out.mutable_data_ptr<int32_t>();
  int64_t* w = window.mutable_data_ptr<int64_t>();
  const int64_t* t = table.const_data_ptr<int64_t>();
  int64_t row = 0;
  for (int64_t key = 0; key < static_cast<int64_t>(occupied.size()); ++key) {
    if (!occupied[key]) continue;
    const int64_t s = key / (ho * wo), r = (key / wo) % ho, q = key % wo;
    o[3 * row] = static_cast<int32_t>(s);
    o[3 * row + 1] = static_cast<int32_t>(r);
    o[3 * row + 2] = static_cast<int32_t>(q);
    const int64_t top_left = (s * (height + 2) + 2 * r + 1) * wp + 2 * q + 1;
    w[4 * row] = t[top_left];
    w[4 * row + 1] = t[top_left + 1];
    w[4 * row + 2] = t[top_left + wp];
    w[4 * row + 3] = t[top_left + wp + 1];
    ++row;
  }
  return {out, window};
}

// Maxima of one window's rows (branch-free, so the channel loop vectorises). On ties the first
// row of the window in row-major order wins, as in F.max_pool2d; `src` (if any) gets its row.
template <typename T>
void window_rows(const T* in, int64_t channels, const int64_t* rows, int count, T* out,
                 int64_t* src) {
  std::memcpy(out, in + rows[0] * channels, channels * sizeof(T));
  if (src != nullptr) std::fill(src, src + channels, rows[0]);
  for (int k = 1; k < count; ++k) {
    const T* row = in + rows[k] * channels;
    if (src == nullptr) {
      for (int64_t ch = 0; ch < channels; ++ch) {
        const float a = static_cast<float>(out[ch]), b = static_cast<float>(row[ch]);
        out[ch] = b > a ? row[ch] : out[ch];
      }
    } else {
      for (int64_t ch = 0; ch < channels; ++ch) {
        const bool greater = static_cast<float>(row[ch]) > static_cast<float>(out[ch]);
        out[ch] = greater ? row[ch] : out[ch];
        src[ch] = greater ? rows[k] : src[ch];
      }
    }
  }
}

// bfloat16 as its raw bits: the float of bits b is b << 16, so the comparison vectorises (the
// c10::BFloat16 operators go through a scalar conversion each).
inline float bf16_bits_to_float(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, sizeof(value));
  return value;
}

template <>
void window_rows<c10::BFloat16>(const c10::BFloat16* in, int64_t channels, const int64_t* rows,
                                int count, c10::BFloat16* out, int64_t* src) {
  const auto* bits_in = reinterpret_cast<const uint16_t*>(in);
  auto* bits_out = reinterpret_cast<uint16_t*>(out);
  std::memcpy(bits_out, bits_in + rows[0] * channels, channels * sizeof(uint16_t));
  if (src != nullptr) std::fill(src, src + channels, rows[0]);
  for (int k = 1; k < count; ++k) {
    const uint16_t* row = bits_in + rows[k] * channels;
    for (int64_t ch = 0; ch < channels; ++ch) {
      const bool greater = bf16_bits_to_float(row[ch]) > bf16_bits_to_float(bits_out[ch]);
      bits_out[ch] = greater ? row[ch] : bits_out[ch];
      if (src != nullptr) src[ch] = greater ? rows[k] : src[ch];
    }
  }
}

std::tuple<Tensor, Tensor> window_max(const Tensor& features, const Tensor& window,
                                      bool with_source) {
  TORCH_CHECK(features.dim() == 2, "features must be (N, C)");
  const Tensor x = features.contiguous();
  const int64_t n = x.size(0), channels = x.size(1), m = window.size(0);
  Tensor values = at::empty({m, channels}, x.options());
  Tensor source = at::empty({with_source ? m : 0, channels}, x.options().dtype(at::kLong));
  const int64_t* w = window.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "window_max", [&] {
    const scalar_t* in = x.const_data_ptr<scalar_t>();
    scalar_t* out = values.mutable_data_ptr<scalar_t>();
    int64_t* src = with_source ? source.mutable_data_ptr<int64_t>() : nullptr;
    at::parallel_for(0, m, 64, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        int64_t rows[4];
        int count = 0;
        for (int k = 0; k < 4; ++k) {
          if (w[4 * i + k] < n) rows[count++] = w[4 * i + k];  // every window has one
        }
        window_rows<scalar_t>(in, channels, rows, count, out + i * channels,
                              src == nullptr ? nullptr : src + i * channels);
      }
    });
  });
  return {values, source};
}

Tensor window_max_backward(const Tensor& grad, const Tensor& source, int64_t num_rows) {
  Tensor out = at::zeros({num_rows, grad.size(1)}, grad.options());
  // Every input row lies in exactly one window: a plain scatter, no accumulation.
  return out.scatter_(0, source, grad.contiguous());
}

// ---------------------------------------------------------------------------------------------
// Start of each sample's sites in the sorted site list: (F + 1,) offsets.
std::vector<int64_t> sample_offsets(const Tensor& coords, int64_t num_samples) {
  std::vector<int64_t> offsets(num_samples + 1, 0);
  const int32_t* c = coords.const_data_ptr<int32_t>();
  const int64_t n = coords.size(0);
  for (int64_t i = 0; i < n; ++i) ++offsets[c[3 * i] + 1];
  std::partial_sum(offsets.begin(), offsets.end(), offsets.begin());
  return offsets;
}

// Sort key of a probability (>= 0) and its position: ascending keys = descending probability,
// then ascending position (the stable order of torch.sort(descending=True, stable=True)).
// Non-negative floats order like their bit patterns; equal probabilities tie exactly as there.
template <typename Acc>
inline uint64_t order_key(Acc prob, int64_t position) {
  const float narrow = static_cast<float>(prob);
  uint32_t bits;
  std::memcpy(&bits, &narrow, sizeof(bits));
  return (static_cast<uint64_t>(0xFFFFFFFFu - bits) << 32) | static_cast<uint32_t>(position);
}

template <typename T, typename Acc>
void nucleus_kernel(const T* scores, const std::vector<int64_t>& offsets, double p, Acc* probs,
                    bool* keep) {
  const int64_t num_samples = static_cast<int64_t>(offsets.size()) - 1;
  at::parallel_for(0, num_samples, 1, [&](int64_t lo, int64_t hi) {
    std::vector<uint64_t> keys;
    for (int64_t s = lo; s < hi; ++s) {
      const int64_t begin = offsets[s], end = offsets[s + 1], count = end - begin;
      if (count == 0) continue;
      Acc peak = -std::numeric_limits<Acc>::infinity();
      for (int64_t i = begin; i < end; ++i) peak = std::max(peak, static_cast<Acc>(scores[i]));
      double total = 0.0;
      for (int64_t i = begin; i < end; ++i) {
        const Acc e = std::exp(static_cast<Acc>(scores[i]) - peak);
        probs[i] = e;
        total += static_cast<double>(e);
      }
      const Acc inverse = static_cast<Acc>(1.0 / total);
      for (int64_t i = begin; i < end; ++i) probs[i] = probs[i] * inverse;
      if (p >= 1.0) {
        std::fill(keep + begin, keep + end, true);
        continue;
      }
      std::fill(keep + begin, keep + end, false);
      // The same float64 running sum as torch.cumsum, and "mass before" as cumsum - value.
      double running = 0.0;
      auto take = [&](int64_t i) {
        const double value = std::max(0.0, static_cast<double>(probs[i]));
        running += value;
        if (running - value >= p) return false;
        keep[i] = true;
        return true;
      };
      if constexpr (std::is_same_v<Acc, float>) {
        keys.resize(count);
        for (int64_t i = 0; i < count; ++i) keys[i] = order_key(probs[begin + i], i);
        std::sort(keys.begin(), keys.end());
        for (int64_t k = 0; k < count; ++k) {
          if (!take(begin + static_cast<int64_t>(keys[k] & 0xFFFFFFFFu))) break;
        }
      } else {  // float64 probabilities: an index sort on the values themselves
        std::vector<int64_t> order(count);
        std::iota(order.begin(), order.end(), begin);
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t a, int64_t b) { return probs[a] > probs[b]; });
        for (int64_t k = 0; k < count; ++k) {
          if (!take(order[k])) break;
        }
      }
    }
  });
}

std::tuple<Tensor, Tensor, Tensor> nucleus(const Tensor& scores, const Tensor& coords,
                                           int64_t num_samples, double p) {
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == coords.size(0),
              "scores must be (N,) with one score per site");
  const Tensor s = scores.contiguous();
  const auto acc = s.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  Tensor probs = at::empty({s.size(0)}, s.options().dtype(acc));
  Tensor keep = at::empty({s.size(0)}, s.options().dtype(at::kBool));
  const auto offsets = sample_offsets(coords, num_samples);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, s.scalar_type(), "nucleus", [&] {
    if (acc == at::kDouble) {
      nucleus_kernel<scalar_t, double>(s.const_data_ptr<scalar_t>(), offsets, p,
                                       probs.mutable_data_ptr<double>(),
                                       keep.mutable_data_ptr<bool>());
    } else {
      nucleus_kernel<scalar_t, float>(s.const_data_ptr<scalar_t>(), offsets, p,
                                      probs.mutable_data_ptr<float>(),
                                      keep.mutable_data_ptr<bool>());
    }
  });
  // The kept rows in order (sites stay sorted): what the next stage gathers.
  const bool* kp = keep.const_data_ptr<bool>();
  const int64_t n = s.size(0);
  const int64_t kept = std::count(kp, kp + n, true);
  Tensor index = at::empty({kept}, s.options().dtype(at::kLong));
  int64_t* ip = index.mutable_data_ptr<int64_t>();
  for (int64_t i = 0, k = 0; i < n; ++i) {
    if (kp[i]) ip[k++] = i;
  }
  return {probs, keep, index};
}

// Additive attention scores without autograd: score[i] = v . tanh(W x_i + t[sample(i)]), with
// the per-frame term t = W_y y + b added row by row (no gathered copy of it) and ATen's
// vectorised tanh, in the dtype of `features` (the caller casts W and v to it).
Tensor additive_scores(const Tensor& features, const Tensor& weight, const Tensor& frame_term,
                       const Tensor& coords, const Tensor& v) {
  TORCH_CHECK(features.dim() == 2 && weight.dim() == 2 && weight.size(1) == features.size(1),
              "additive_scores: features (N, C) and weight (A, C)");
  const int64_t n = features.size(0), a = weight.size(0);
  if (n == 0) return at::empty({0}, features.options());
  Tensor hidden = linear(features.contiguous(), weight.contiguous(), std::nullopt, false);
  const Tensor term = frame_term.to(at::kFloat).contiguous();
  const float* tp = term.const_data_ptr<float>();
  const int32_t* c = coords.const_data_ptr<int32_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, hidden.scalar_type(), "scores", [&] {
    scalar_t* h = hidden.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, 1024, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const float* t = tp + static_cast<int64_t>(c[3 * i]) * a;
        scalar_t* row = h + i * a;
        for (int64_t j = 0; j < a; ++j) {
          row[j] = static_cast<scalar_t>(static_cast<float>(row[j]) + t[j]);
        }
      }
    });
  });
  hidden.tanh_();
  // v is the (1, A) weight of the score layer: the same product F.linear computes.
  return at::mm(hidden, v.to(hidden.scalar_type()).reshape({1, a}).t()).squeeze(1);
}

Tensor segment_softmax_backward(const Tensor& grad, const Tensor& probs, const Tensor& coords,
                                int64_t num_samples) {
  const auto offsets = sample_offsets(coords, num_samples);
  const Tensor g = grad.to(probs.scalar_type()).contiguous();
  const Tensor pr = probs.contiguous();
  Tensor out = at::empty_like(pr);
  AT_DISPATCH_FLOATING_TYPES(pr.scalar_type(), "segment_softmax_backward", [&] {
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* pp = pr.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, num_samples, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t s = lo; s < hi; ++s) {
        double dot = 0.0;
        for (int64_t i = offsets[s]; i < offsets[s + 1]; ++i) dot += double(gp[i]) * pp[i];
        for (int64_t i = offsets[s]; i < offsets[s + 1]; ++i) {
          op[i] = static_cast<scalar_t>(pp[i] * (gp[i] - dot));
        }
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY(mesm, m) {
  m.def("rulebook3x3(Tensor coords, int num_samples, int height, int width) -> (Tensor, Tensor)");
  m.def(
      "subm_conv3x3(Tensor features, Tensor nbr, Tensor weight, Tensor? bias, bool relu, "
      "ScalarType dtype) -> Tensor");
  m.def(
      "subm_conv3x3_backward(Tensor grad_out, Tensor features, Tensor nbr, Tensor weight, "
      "ScalarType dtype, bool[3] output_mask) -> (Tensor, Tensor, Tensor)");
  m.def(
      "pool2x2_rulebook(Tensor coords, Tensor table, int num_samples, int height, int width) "
      "-> (Tensor, Tensor)");
  m.def("window_max(Tensor features, Tensor window, bool with_source) -> (Tensor, Tensor)");
  m.def("window_max_backward(Tensor grad, Tensor source, int num_rows) -> Tensor");
  m.def(
      "additive_scores(Tensor features, Tensor weight, Tensor frame_term, Tensor coords, "
      "Tensor v) -> Tensor");
  m.def(
      "nucleus(Tensor scores, Tensor coords, int num_samples, float p) -> (Tensor, Tensor, "
      "Tensor)");
  m.def(
      "segment_softmax_backward(Tensor grad, Tensor probs, Tensor coords, int num_samples) "
      "-> Tensor");
}

TORCH_LIBRARY_IMPL(mesm, CPU, m) {
  m.impl("rulebook3x3", &rulebook3x3);
  m.impl("subm_conv3x3", &subm_conv3x3);
  m.impl("subm_conv3x3_backward", &subm_conv3x3_backward);
  m.impl("pool2x2_rulebook", &pool2x2_rulebook);
  m.impl("window_max", &window_max);
  m.impl("window_max_backward", &window_max_backward);
  m.impl("additive_scores", &additive_scores);
  m.impl("nucleus", &nucleus);
  m.impl("segment_softmax_backward", &segment_softmax_backward);
}
