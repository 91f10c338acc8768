// 4-bit blockwise quantization as bitsandbytes does it (NF4 and FP4, optionally with "double
// quantization" of the per-block absmax), the format QLoRA checkpoints use. The rules are in
// ../shared/FORMATS.md section 7; this is the CPU reference (f32 arithmetic) that the CUDA
// dequantize kernel is checked against and that `fitlm quantize` writes with.
//
// Layout of a quantized tensor of n elements (flattened row-major):
//   packed: (n + 1) / 2 bytes, element 2i in the HIGH nibble of byte i, element 2i+1 in the low
//           one (an odd n is padded with the code of the value 0);
//   absmax: ceil(n / blocksize) f32, one per block (the last block may be partial), or, with
//           double quantization, that many 8-bit codes of (absmax − offset) in the signed
//           dynamic map, blocks of 256 codes sharing one f32 nested absmax.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

namespace fitlm::quant {

enum class QuantType : uint8_t { kNF4, kFP4 };

std::string_view quant_type_name(QuantType t);  // "nf4", "fp4"

inline constexpr int kNestedBlocksize = 256;  // double quantization: absmax codes per block

// The 16 code values (bitsandbytes get_4bit_type / the CUDA dequantization tables).
const std::array<float, 16>& code_table(QuantType t);
// The 256 values of bitsandbytes' create_dynamic_map(signed=True, 7, 8), sorted, computed in
// f64 and rounded to f32 (torch's f32 linspace differs from that in the last bit of some
// entries; files carry the map they were quantized with, and readers use the file's).
const std::array<float, 256>& dynamic_map();

// Whether a blocksize is one bitsandbytes accepts (a power of two in 32..4096).
bool valid_blocksize(int64_t blocksize);

struct Quantized4 {
  QuantType type = QuantType::kNF4;
  int64_t blocksize = 64;
  int64_t numel = 0;
  std::vector<uint8_t> packed;  // (numel + 1) / 2
  // Without double quantization: absmax has one f32 per block and codes is empty. With it:
  // absmax_codes has one byte per block, nested_absmax one f32 per 256 codes, plus offset.
  bool double_quant = false;
  std::vector<float> absmax;
  std::vector<uint8_t> absmax_codes;
  std::vector<float> nested_absmax;
  float offset = 0.0f;
  std::array<float, 256> nested_map{};  // the 8-bit code values (dynamic_map() when fitlm wrote it)

  int64_t blocks() const { return (numel + blocksize - 1) / blocksize; }
};

// Quantizes x. Per block: absmax = max|x|, scaled = clamp(x · (1/absmax), −1, 1) in f32, and
// the code is the nearest table value with ties to the lower one (bitsandbytes' CUDA kernels
// compare with strict ">" against the midpoints of adjacent codes; FP4 takes the sign bit from
// x < 0 and the magnitude code the same way). An all-zero block gets absmax 0 and code 0.
Quantized4 quantize4(std::span<const float> x, QuantType type, int64_t blocksize,
                     bool double_quant);

// One block's absmax from its double-quantization code: map[code] · nested, then + offset, each
// rounded to f32 on its own (no fused multiply-add; the CUDA kernel does the same).
inline float decode_absmax(uint8_t code, float nested, float offset, const float* map) {
  volatile float scaled = map[code] * nested;  // volatile: keeps the compiler from fusing
  return scaled + offset;
}

// quantize4 of a tensor read chunk by chunk (chunks of about chunk_elems, whole blocks), so
// that a caller never holds it all in f32: read(begin, out) fills out with elements
// [begin, begin + out.size()). Same result as quantize4 of the whole tensor.
using ChunkReader = std::function<void(int64_t begin, std::span<float> out)>;
Quantized4 quantize4_chunked(int64_t numel, QuantType type, int64_t blocksize, bool double_quant,
                             const ChunkReader& read, int64_t chunk_elems = int64_t{1} << 22);

// The f32 absmax of every block (double quantization undone: code8 · nested + offset).
std::vector<float> block_absmax(const Quantized4& q);
// out[i] = code[nibble i] · absmax[i / blocksize], in f32; out.size() == q.numel.
void dequantize4(const Quantized4& q, std::span<float> out);

}  // namespace fitlm::quant
