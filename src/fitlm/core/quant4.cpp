#include "fitlm/core/quant4.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace fitlm::quant {
namespace {

// NF4: create_normal_map(0.9677083) as bitsandbytes ships it (its CUDA dequantization table).
constexpr std::array<float, 16> kNF4 = {-1.0f,
                                        -0.6961928009986877f,
                                        -0.5250730514526367f,
                                        -0.39491748809814453f,
                                        -0.28444138169288635f,
                                        -0.18477343022823334f,
                                        -0.09105003625154495f,
                                        0.0f,
                                        0.07958029955625534f,
                                        0.16093020141124725f,
                                        0.24611230194568634f,
                                        0.33791524171829224f,
                                        0.44070982933044434f,
                                        0.5626170039176941f,
                                        0.7229568362236023f,
                                        1.0f};

// FP4 (e2m1 with bitsandbytes' exponent bias): magnitudes {0, 0.0625, 8, 12, 4, 6, 2, 3} / 12
// for codes 0..7, code | 8 is the negative.
std::array<float, 16> make_fp4() {
  constexpr float kMag[8] = {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f};
  std::array<float, 16> t{};
  for (int i = 0; i < 8; ++i) {
    t[i] = kMag[i] / 12.0f;
    t[i + 8] = -kMag[i] / 12.0f;
  }
  return t;
}

std::array<float, 256> make_dynamic_map() {
  std::vector<double> v;
  for (int i = 0; i < 7; ++i) {
    const int n = (1 << i) + 1;  // linspace(0.1, 1, n): n − 1 means
    const double scale = std::pow(10.0, i - 6);
    for (int j = 0; j + 1 < n; ++j) {
      const double lo = 0.1 + 0.9 * j / (n - 1), hi = 0.1 + 0.9 * (j + 1) / (n - 1);
      v.push_back(scale * (lo + hi) / 2.0);
      v.push_back(-scale * (lo + hi) / 2.0);
    }
  }
  v.push_back(0.0);
  v.push_back(1.0);
  std::sort(v.begin(), v.end());
  std::array<float, 256> m{};
  for (size_t i = 0; i < m.size(); ++i) m[i] = static_cast<float>(v[i]);
  return m;
}

// Midpoints of a sorted table, rounded to f32 as the CUDA kernels' literals are.
template <size_t N>
std::array<float, N - 1> midpoints(const std::array<float, N>& sorted) {
  std::array<float, N - 1> m{};
  for (size_t i = 0; i + 1 < N; ++i)
    m[i] = static_cast<float>((double{sorted[i]} + double{sorted[i + 1]}) / 2.0);
  return m;
}

// Index of the nearest sorted value, ties to the lower: how many midpoints x exceeds. NaN
// exceeds none (index 0), as in bitsandbytes' comparison trees.
template <size_t M>
int nearest(const std::array<float, M>& mids, float x) {
  int lo = 0, hi = static_cast<int>(M);  // answer in [0, M]
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (x > mids[mid])
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

struct Code4 {
  // Sorted code values and, for each sorted position, the 4-bit code that has that value.
  std::array<float, 15> mids;
  std::array<uint8_t, 16> code_of_rank;
};

Code4 nf4_codes() {
  Code4 c{midpoints(kNF4), {}};
  for (int i = 0; i < 16; ++i) c.code_of_rank[i] = static_cast<uint8_t>(i);
  return c;
}

// FP4 quantizes the magnitude (codes 0..7 sorted by value) and takes the sign from x < 0.
struct Fp4Codes {
  std::array<float, 7> mids;
  std::array<uint8_t, 8> code_of_rank;
};
Fp4Codes fp4_codes() {
  const auto& t = code_table(QuantType::kFP4);
  std::array<uint8_t, 8> order = {0, 1, 2, 3, 4, 5, 6, 7};
  std::sort(order.begin(), order.end(), [&](uint8_t a, uint8_t b) { return t[a] < t[b]; });
  std::array<float, 8> sorted{};
  for (int i = 0; i < 8; ++i) sorted[i] = t[order[i]];
  return {midpoints(sorted), order};
}

uint8_t quantize_one(QuantType type, float scaled) {
  if (type == QuantType::kNF4) {
    static const Code4 c = nf4_codes();
    return c.code_of_rank[nearest(c.mids, scaled)];
  }
  static const Fp4Codes c = fp4_codes();
  const uint8_t sign = scaled < 0.0f ? 8 : 0;
  return static_cast<uint8_t>(c.code_of_rank[nearest(c.mids, std::fabs(scaled))] | sign);
}

// Blockwise absmax scaling shared by the 4-bit and the 8-bit (nested) steps.
float block_scale_input(float x, float inv_absmax) {
  return std::clamp(x * inv_absmax, -1.0f, 1.0f);  // NaN stays NaN (code 0)
}

float absmax_of(std::span<const float> x) {
  float m = 0.0f;
  for (float v : x) m = std::max(m, std::fabs(v));
  return m;
}

}  // namespace

std::string_view quant_type_name(QuantType t) {
  return t == QuantType::kNF4 ? "nf4" : "fp4";
}

const std::array<float, 16>& code_table(QuantType t) {
  static const std::array<float, 16> fp4 = make_fp4();
  return t == QuantType::kNF4 ? kNF4 : fp4;
}

const std::array<float, 256>& dynamic_map() {
  static const std::array<float, 256> m = make_dynamic_map();
  return m;
}

bool valid_blocksize(int64_t b) {
  return b >= 32 && b <= 4096 && (b & (b - 1)) == 0;
}

namespace {

// Codes of the elements [begin, begin + x.size()) (begin a multiple of the blocksize) into
// q.packed, and their blocks' absmax into absmax.
void quantize_blocks(std::span<const float> x, int64_t begin, Quantized4& q,
                     std::vector<float>& absmax) {
  const int64_t bs = q.blocksize, n = static_cast<int64_t>(x.size());
  for (int64_t off = 0; off < n; off += bs) {
    const auto block =
        x.subspan(static_cast<size_t>(off), static_cast<size_t>(std::min(bs, n - off)));
    const float m = absmax_of(block);
    absmax[static_cast<size_t>((begin + off) / bs)] = m;
    const float inv = 1.0f / m;
    for (size_t k = 0; k < block.size(); ++k) {
      const int64_t i = begin + off + static_cast<int64_t>(k);
      const uint8_t code = quantize_one(q.type, block_scale_input(block[k], inv));
      q.packed[i / 2] |= static_cast<uint8_t>((i % 2 == 0) ? code << 4 : code);
    }
  }
}

// Double quantization: offset = mean(absmax) (in f64), then 8-bit blockwise quantization of
// absmax − offset in the signed dynamic map, blocks of 256.
void double_quantize(const std::vector<float>& absmax, Quantized4& q) {
  double sum = 0.0;
  for (float a : absmax) sum += a;
  q.offset = absmax.empty() ? 0.0f : static_cast<float>(sum / static_cast<double>(absmax.size()));
  q.nested_map = dynamic_map();
  static const auto mids = midpoints(dynamic_map());
  const int64_t n = static_cast<int64_t>(absmax.size());
  q.absmax_codes.resize(absmax.size());
  for (int64_t b = 0; b * kNestedBlocksize < n; ++b) {
    const int64_t begin = b * kNestedBlocksize, end = std::min(n, begin + kNestedBlocksize);
    float m = 0.0f;
    for (int64_t i = begin; i < end; ++i) m = std::max(m, std::fabs(absmax[i] - q.offset));
    q.nested_absmax.push_back(m);
    const float inv = 1.0f / m;
    for (int64_t i = begin; i < end; ++i)
      q.absmax_codes[i] =
          static_cast<uint8_t>(nearest(mids, block_scale_input(absmax[i] - q.offset, inv)));
  }
}

}  // namespace

Quantized4 quantize4_chunked(int64_t numel, QuantType type, int64_t blocksize, bool double_quant,
                             const ChunkReader& read, int64_t chunk_elems) {
  if (!valid_blocksize(blocksize))
    throw std::invalid_argument("quantize4: blocksize must be a power of two in 32..4096");
  Quantized4 q;
  q.type = type;
  q.blocksize = blocksize;
  q.numel = numel;
  q.double_quant = double_quant;
  q.packed.assign(static_cast<size_t>((q.numel + 1) / 2), 0);
  std::vector<float> absmax(static_cast<size_t>(q.blocks()));
  const int64_t chunk = std::max<int64_t>(1, chunk_elems / blocksize) * blocksize;
  std::vector<float> buf(static_cast<size_t>(std::min(chunk, numel)));
  for (int64_t begin = 0; begin < numel; begin += chunk) {
    const std::span<float> part(buf.data(), static_cast<size_t>(std::min(chunk, numel - begin)));
    read(begin, part);
    quantize_blocks(part, begin, q, absmax);
  }
  // An odd count is padded with one element of value 0 (bitsandbytes pads the scaled values).
  if (q.numel % 2 == 1) q.packed.back() |= quantize_one(type, 0.0f);
  if (double_quant)
    double_quantize(absmax, q);
  else
    q.absmax = std::move(absmax);
  return q;
}

Quantized4 quantize4(std::span<const float> x, QuantType type, int64_t blocksize,
                     bool double_quant) {
  return quantize4_chunked(
      static_cast<int64_t>(x.size()), type, blocksize, double_quant,
      [&](int64_t begin, std::span<float> out) {
        std::copy_n(x.begin() + begin, out.size(), out.begin());
      },
      static_cast<int64_t>(x.size()));
}

std::vector<float> block_absmax(const Quantized4& q) {
  if (!q.double_quant) return q.absmax;
  std::vector<float> a(q.absmax_codes.size());
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = decode_absmax(q.absmax_codes[i], q.nested_absmax[i / kNestedBlocksize], q.offset,
                         q.nested_map.data());
  }
  return a;
}

void dequantize4(const Quantized4& q, std::span<float> out) {
  if (static_cast<int64_t>(out.size()) != q.numel)
    throw std::invalid_argument("dequantize4: output size differs from the tensor's");
  const auto absmax = block_absmax(q);
  const auto& table = code_table(q.type);
  for (int64_t i = 0; i < q.numel; ++i) {
    const uint8_t byte = q.packed[i / 2];
    const uint8_t code = (i % 2 == 0) ? byte >> 4 : byte & 0x0f;
    out[i] = table[code] * absmax[i / q.blocksize];
  }
}

}  // namespace fitlm::quant
