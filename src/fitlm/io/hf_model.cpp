#include "fitlm/io/hf_model.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <set>

#include "fitlm/backend/quant4_upload.h"
#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/core/paths.h"
#include "fitlm/io/bnb4bit.h"
#include "fitlm/io/moe_checkpoint.h"
#include "fitlm/io/quantize_model.h"
#include "fitlm/io/safetensors_index.h"
#include "fitlm/model/transformer_buffers.h"

namespace fitlm {

ModelConfig read_model_config(const std::filesystem::path& dir) {
  if (!paths::is_directory(dir, "model"))
    throw_input_error("model", "{} is not a directory (expected a Hugging Face model directory)",
                      clip_path(dir.string()));
  const auto path = dir / "config.json";
  if (!paths::exists(path, "model"))
    throw_input_error("model", "{}: no config.json in the model directory",
                      clip_path(dir.string()));
  return ModelConfig::from_file(path);
}

namespace {

// The checks of one base weight against what config.json implies.
void check_weight(const io::ShardedSafetensors& st, const std::filesystem::path& dir,
                  const std::string& name, const Shape& expected) {
  if (!st.contains(name))
    throw_input_error("model", "{}: tensor '{}' is missing from the checkpoint",
                      clip_path(dir.string()), name);
  if (io::is_bnb4bit_weight(st, name)) {  // its quant_state; loading checks the data
    const Shape found(io::bnb4bit_shape(st, name));
    if (!(found == expected))
      throw_input_error("model", "{}: 4-bit tensor '{}' has shape {}, config.json implies {}",
                        clip_path(st.file_of(name).path().string()), name, found.str(),
                        expected.str());
    return;
  }
  const io::SafetensorsTensorInfo& info = st.info(name);
  const Shape found(info.shape);
  if (!(found == expected))
    throw_input_error("model", "{}: tensor '{}' has shape {}, config.json implies {}",
                      clip_path(st.file_of(name).path().string()), name, found.str(),
                      expected.str());
  const auto core = io::to_core_dtype(info.dtype);
  if (!core || !io::st_dtype_is_float_loadable(info.dtype))
    throw_input_error("model", "{}: tensor '{}' has dtype {}; expected F32, BF16 or F16",
                      clip_path(st.file_of(name).path().string()), name,
                      io::st_dtype_name(info.dtype));
}

// A router or experts tensor's sources (io/moe_checkpoint.h), each checked; nullopt for any
// other weight.
std::optional<std::vector<io::MoeSource>> checked_moe_sources(const ModelConfig& config,
                                                              const io::ShardedSafetensors& st,
                                                              const std::filesystem::path& dir,
                                                              const std::string& name,
                                                              const Shape& shape) {
  auto sources = io::moe_tensor_sources(config, st, name, shape);
  if (!sources) return sources;
  if (sources->size() > 1 && !st.contains(sources->front().name))
    throw_input_error("model",
                      "{}: neither tensor '{}' nor the per-expert '{}' is in the checkpoint",
                      clip_path(dir.string()), name, sources->front().name);
  for (const io::MoeSource& s : *sources) {
    check_weight(st, dir, s.name, s.shape);
    if (io::is_bnb4bit_weight(st, s.name))
      throw_input_error("model",
                        "{}: tensor '{}' is 4-bit; 4-bit mixture-of-experts checkpoints are not "
                        "built yet",
                        clip_path(dir.string()), s.name);
  }
  return sources;
}

}  // namespace

void check_model_weights(const ModelConfig& config, const std::filesystem::path& dir) {
  const io::ShardedSafetensors st = io::ShardedSafetensors::open(dir);
  for (const WeightSpec& w : weight_specs(config))
    if (!checked_moe_sources(config, st, dir, w.name, w.shape))
      check_weight(st, dir, w.name, w.shape);
}

void check_tokenizer_fits(const Tokenizer& tokenizer, const ModelConfig& config,
                          const std::filesystem::path& dir) {
  const size_t ids = tokenizer.vocab_size();
  if (ids > static_cast<size_t>(config.vocab_size))
    throw_input_error("model",
                      "{}: tokenizer.json has token ids up to {} ({} ids with the added tokens), "
                      "but the model's embedding has {} rows (vocab_size in config.json): the "
                      "tokenizer does not belong to this model",
                      clip_path(dir.string()), ids - 1, ids, config.vocab_size);
}

std::optional<Base4Layout> base4_layout(const ModelConfig& config, const std::filesystem::path& dir,
                                        const std::optional<QuantizeRequest>& request) {
  const auto bnb = io::read_bnb4bit_config(config.raw, (dir / "config.json").string());
  if (!bnb) {
    if (!request) return std::nullopt;
    return Base4Layout{request->type, request->blocksize, request->double_quant};
  }
  const io::ShardedSafetensors st = io::ShardedSafetensors::open(dir);
  std::optional<Base4Layout> layout;
  std::string first;
  for (const WeightSpec& w : weight_specs(config)) {
    if (w.kind != WeightKind::kLinear) continue;
    if (!st.contains(w.name))
      throw_input_error("model", "{}: tensor '{}' is missing from the checkpoint",
                        clip_path(dir.string()), w.name);
    if (!io::is_bnb4bit_weight(st, w.name))
      throw_input_error("model",
                        "{}: config.json has a 4-bit quantization_config but '{}' is not 4-bit; "
                        "fitlm needs every decoder linear weight quantized alike",
                        clip_path(st.file_of(w.name).path().string()), w.name);
    const io::Bnb4bitWeight h = io::bnb4bit_header(st, w.name);
    const Base4Layout mine{h.q.type, h.q.blocksize, h.q.double_quant};
    if (!layout) {
      layout = mine, first = w.name;
      continue;
    }
    if (mine.type != layout->type || mine.blocksize != layout->blocksize ||
        mine.double_quant != layout->double_quant)
      throw_input_error("model",
                        "{}: '{}' is {} with blocksize {}{}, but '{}' is {} with blocksize {}{}; "
                        "fitlm needs every decoder linear weight quantized alike",
                        clip_path(st.file_of(w.name).path().string()), w.name,
                        quant::quant_type_name(mine.type), mine.blocksize,
                        mine.double_quant ? " and double quantization" : "", first,
                        quant::quant_type_name(layout->type), layout->blocksize,
                        layout->double_quant ? " and double quantization" : "");
  }
  if (layout && request && request->type != layout->type)
    throw_input_error("model", "{} is already quantized as {}; --quantize {} cannot change that",
                      clip_path(dir.string()), quant::quant_type_name(layout->type),
                      quant::quant_type_name(request->type));
  return layout;
}

namespace {

// Elements [begin, begin + out.size()) of a float tensor in the mapped file, as f32.
void read_f32_range(std::span<const std::byte> bytes, DType dtype, int64_t begin,
                    std::span<float> out) {
  const size_t size = dtype_size(dtype);
  const std::byte* p = bytes.data() + static_cast<size_t>(begin) * size;
  for (size_t i = 0; i < out.size(); ++i, p += size) {
    if (dtype == DType::kF32) {
      std::memcpy(&out[i], p, 4);
      continue;
    }
    uint16_t h;
    std::memcpy(&h, p, 2);
    out[i] = dtype == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h);
  }
}

using UseTensor = std::function<void(const std::string&)>;

// ZeRO-3 (RunShape::layer_shard) and offloaded layers (the whole blob, in host memory): of each
// layer's blob (layer_shard_layout) only this rank's bytes are loaded, tensor by tensor: a 16-bit
// tensor's elements in the rank's range are converted (by the backend's upload, as an unsharded
// model's whole tensor is), a 4-bit one is read (bitsandbytes) or quantized (16/32-bit checkpoint)
// whole on the host, as unsharded, and the bytes of its parts in the range are copied. Each
// tensor's pages are released once it is done, so host memory stays near one tensor.
void load_layer_shards(Transformer& model, const io::ShardedSafetensors& st,
                       const std::filesystem::path& dir, const UseTensor& use,
                       const UseTensor& use_bnb4bit) {
  Backend& be = model.backend();
  const DType compute = be.compute_dtype();
  const LayerShardLayout blob = layer_shard_layout(model.config(), model.shape(), compute);
  const ShardBlock mine = blob.range();  // bytes of the blob
  std::map<std::string, Quant4Tensor*> packed;
  for (auto& [name, q] : model.sharded_quantized_weights()) packed[name] = q;
  const LayerRange layers = stage_layers(model.config(), model.shape());
  for (int l = layers.first; l < layers.end; ++l) {
    const Tensor shard = model.layer_shard(l);
    const std::string prefix = fmt::format("model.layers.{}.", l);
    // The rank's part of blob bytes [begin, begin + n): where it starts in the source (bytes
    // from `begin`) and the view of the shard it goes to (`dtype` elements), or nullopt.
    auto overlap = [&](size_t begin, size_t n,
                       DType dtype) -> std::optional<std::pair<size_t, Tensor>> {
      const size_t a = std::max(begin, static_cast<size_t>(mine.offset));
      const size_t b = std::min(begin + n, static_cast<size_t>(mine.end()));
      if (a >= b) return std::nullopt;
      const size_t es = dtype_size(dtype);
      FITLM_CHECK((a - begin) % es == 0 && (b - a) % es == 0, "model",
                  "layer shard boundary inside an element");
      return std::pair{
          a - begin, Tensor(static_cast<char*>(shard.data) + (a - static_cast<size_t>(mine.offset)),
                            dtype, Shape{static_cast<int64_t>((b - a) / es)}, shard.device)};
    };
    for (size_t i = 0; i < blob.entries.size();) {
      const LayerBlobEntry& e = blob.entries[i];
      const std::string name = prefix + e.suffix;
      if (e.part == BlobPart::kWeight || e.part == BlobPart::kBias) {
        ++i;
        check_weight(st, dir, name, e.shape);
        const auto part = overlap(e.offset, e.bytes(), compute);
        if (io::is_bnb4bit_weight(st, name)) {  // dequantized as the unsharded loader does
          if (part) {
            const io::Bnb4bitWeight w = io::read_bnb4bit_weight(st, name);
            std::vector<float> values(static_cast<size_t>(w.q.numel));
            io::dequantize_bnb4bit(w, values);
            be.upload(part->second, values.data() + part->first / dtype_size(compute), DType::kF32);
          }
          use_bnb4bit(name);
          continue;
        }
        if (part) {
          const DType file = *io::to_core_dtype(st.info(name).dtype);
          const size_t first = part->first / dtype_size(compute);  // element
          be.upload(part->second, st.bytes(name).data() + first * dtype_size(file), file);
        }
        use(name);
        continue;
      }
      // A packed weight: its parts are entries i .. j − 1.
      FITLM_CHECK(e.part == BlobPart::kPacked && packed.count(name), "model",
                  "layer blob entry {} is not a packed weight", name);
      size_t j = i + 1;
      while (j < blob.entries.size() && blob.entries[j].projection == e.projection &&
             blob.entries[j].part != BlobPart::kBias)
        ++j;
      Quant4Tensor& q = *packed.at(name);
      check_weight(st, dir, name, q.shape);
      const std::string file = st.file_of(name).path().string();
      bool any = false;
      for (size_t k = i; k < j; ++k)
        any |= overlap(blob.entries[k].offset, blob.entries[k].bytes(), DType::kU8).has_value();
      quant::Quantized4 h;
      const bool bnb = io::is_bnb4bit_weight(st, name);
      if (bnb) {
        const io::Bnb4bitWeight w = io::read_bnb4bit_weight(st, name);
        h = w.q;
        q.round_to = w.dtype;
      } else {
        const io::SafetensorsTensorInfo& info = st.info(name);
        const DType dtype = *io::to_core_dtype(info.dtype);
        q.round_to = dtype;
        // Every rank needs the offset of double quantization (a host-side field), hence the
        // whole tensor quantized even when none of its bytes are this rank's.
        if (any || q.double_quant()) {
          const auto bytes = st.bytes(name);
          h = quant::quantize4_chunked(info.numel(), q.type, q.blocksize, q.double_quant(),
                                       [&](int64_t begin, std::span<float> out) {
                                         read_f32_range(bytes, dtype, begin, out);
                                       });
        } else {
          h.type = q.type, h.blocksize = q.blocksize, h.numel = q.numel();  // for the check
        }
      }
      check_quant4_layout(h, q, name, file);
      q.offset = h.offset;
      for (size_t k = i; k < j && any; ++k) {
        const LayerBlobEntry& p = blob.entries[k];
        const void* src = nullptr;
        size_t size = 0;
        switch (p.part) {
          case BlobPart::kPacked: src = h.packed.data(), size = h.packed.size(); break;
          case BlobPart::kAbsmax:
            if (h.double_quant)
              src = h.absmax_codes.data(), size = h.absmax_codes.size();
            else
              src = h.absmax.data(), size = h.absmax.size() * sizeof(float);
            break;
          case BlobPart::kNestedAbsmax:
            src = h.nested_absmax.data(), size = h.nested_absmax.size() * sizeof(float);
            break;
          case BlobPart::kNestedMap:
            src = h.nested_map.data(), size = h.nested_map.size() * sizeof(float);
            break;
          default: break;
        }
        FITLM_CHECK(src && size == p.bytes(), "model", "{}: part {} has {} bytes, planned {}", name,
                    p.suffix, size, p.bytes());
        if (const auto part = overlap(p.offset, p.bytes(), DType::kU8))
          be.upload(part->second, static_cast<const std::byte*>(src) + part->first, DType::kU8);
      }
      if (bnb)
        use_bnb4bit(name);
      else
        use(name);
      i = j;
    }
  }
}

}  // namespace

void load_model_weights(Transformer& model, const std::filesystem::path& dir) {
  // A quantization_config fitlm cannot read (8-bit, another method) is an error up front.
  io::read_bnb4bit_config(model.config().raw, (dir / "config.json").string());
  const io::ShardedSafetensors st = io::ShardedSafetensors::open(dir);
  Backend& be = model.backend();
  // Every tensor, once on the device, leaves this process's memory (release): host memory while
  // loading stays near one tensor, not the whole mapped checkpoint.
  std::set<std::string> used;
  auto use = [&](const std::string& name) {
    used.insert(name);
    st.release(name);
  };
  auto use_bnb4bit = [&](const std::string& name) {
    for (const auto& n : st.names())
      if (n.rfind(name, 0) == 0) use(n);  // the weight and its companion tensors
  };
  for (auto& [name, q] : model.quantized_weights()) {
    if (const auto sources = checked_moe_sources(model.config(), st, dir, name, q->shape)) {
      // A sparse layer's experts, fused or per expert on disk: quantized as one flat tensor
      // (as a dense weight: blocks run across experts, one double-quantization offset), read
      // source by source (the sources tile it in order, io/moe_checkpoint.h); each source's
      // pages are released once its last chunk is read (the chunks come in order, once each).
      // The dequantized values round to the checkpoint's dtype (the first source's).
      const DType dtype = *io::to_core_dtype(st.info(sources->front().name).dtype);
      const quant::Quantized4 h = quant::quantize4_chunked(
          q->numel(), q->type, q->blocksize, q->double_quant(),
          [&](int64_t begin, std::span<float> out) {
            const int64_t end = begin + static_cast<int64_t>(out.size());
            for (const io::MoeSource& s : *sources) {
              const int64_t a = std::max(begin, s.offset);
              const int64_t b = std::min(end, s.offset + s.shape.numel());
              if (a >= b) continue;
              read_f32_range(
                  st.bytes(s.name), *io::to_core_dtype(st.info(s.name).dtype), a - s.offset,
                  out.subspan(static_cast<size_t>(a - begin), static_cast<size_t>(b - a)));
              if (b == s.offset + s.shape.numel()) use(s.name);
            }
          });
      upload_quant4(be, h, *q, name, st.file_of(sources->front().name).path().string());
      q->round_to = dtype;
      continue;
    }
    check_weight(st, dir, name, q->shape);
    const std::string file = st.file_of(name).path().string();
    if (io::is_bnb4bit_weight(st, name)) {
      const io::Bnb4bitWeight w = io::read_bnb4bit_weight(st, name);
      upload_quant4(be, w.q, *q, name, file);
      q->round_to = w.dtype;
      use_bnb4bit(name);
      continue;
    }
    // Quantized as it is read, as bitsandbytes does when transformers loads with load_in_4bit;
    // the dequantized values round to the checkpoint's dtype, as bitsandbytes' to its own.
    const io::SafetensorsTensorInfo& info = st.info(name);
    const DType dtype = *io::to_core_dtype(info.dtype);
    const auto bytes = st.bytes(name);
    const quant::Quantized4 h = quant::quantize4_chunked(
        info.numel(), q->type, q->blocksize, q->double_quant(),
        [&](int64_t begin, std::span<float> out) { read_f32_range(bytes, dtype, begin, out); });
    upload_quant4(be, h, *q, name, file);
    q->round_to = dtype;
    use(name);
  }
  if (layer_blob_spec(model.shape())) load_layer_shards(model, st, dir, use, use_bnb4bit);
  for (auto& [name, dst] : model.host_weights()) {  // converted on the host, where they stay
    check_weight(st, dir, name, dst.shape);
    st.read_as(name, dst.dtype, dst.data);
    use(name);
  }
  std::map<std::string, Tensor> masters;  // trainable base weights whose master is separate
  for (const Param& p : model.params())
    if (p.full_master().data != p.value.data) masters[p.name] = p.full_master();
  for (auto& [name, dst] : model.named_weights()) {
    const auto it = masters.find(name);
    if (const auto sources = checked_moe_sources(model.config(), st, dir, name, dst.shape)) {
      // Each source into its block of the tensor (the f32 master first in full fine-tuning).
      const Tensor into = it != masters.end() ? it->second : dst;
      for (const io::MoeSource& s : *sources) {
        const Tensor part(
            static_cast<char*>(into.data) + s.offset * static_cast<int64_t>(dtype_size(into.dtype)),
            into.dtype, Shape{s.shape.numel()}, into.device);
        be.upload(part, st.bytes(s.name).data(), *io::to_core_dtype(st.info(s.name).dtype));
        use(s.name);
      }
      if (it != masters.end()) be.copy(it->second, dst);
      continue;
    }
    check_weight(st, dir, name, dst.shape);
    if (io::is_bnb4bit_weight(st, name)) {
      // A 16-bit model on a 4-bit checkpoint: dequantized as bitsandbytes does (f32, then
      // rounded to the quant_state dtype), so the model computes with the weights PEFT sees.
      const io::Bnb4bitWeight w = io::read_bnb4bit_weight(st, name);
      std::vector<float> values(static_cast<size_t>(w.q.numel));
      io::dequantize_bnb4bit(w, values);
      be.upload(it != masters.end() ? it->second : dst, values.data(), DType::kF32);
      if (it != masters.end()) be.copy(it->second, dst);
      use_bnb4bit(name);
      continue;
    }
    const auto core = io::to_core_dtype(st.info(name).dtype);
    // Full fine-tuning: the f32 master gets the file's values unrounded.
    if (it != masters.end()) {
      be.upload(it->second, st.bytes(name).data(), *core);
      be.copy(it->second, dst);
    } else {
      be.upload(dst, st.bytes(name).data(), *core);
    }
    use(name);
  }
  for (const auto& n : st.names())
    if (!used.count(n)) log::debug("model: ignoring tensor {} in checkpoint", n);
  model.commit_staged_masters();
}

}  // namespace fitlm
