#include "fitlm/io/bnb4bit.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "fitlm/core/error.h"
#include "fitlm/core/tensor.h"
#include "fitlm/io/model_dir_files.h"

namespace fitlm::io {
namespace {

constexpr const char* kComponent = "bnb4bit";

std::string state_key(const std::string& weight_name, quant::QuantType t) {
  return fmt::format("{}.quant_state.bitsandbytes__{}", weight_name, quant::quant_type_name(t));
}

const SafetensorsTensorInfo& expect_tensor(const ShardedSafetensors& st, const std::string& name,
                                           StDType dtype, const std::vector<int64_t>& shape,
                                           const std::string& weight_name) {
  if (!st.contains(name))
    throw_input_error(kComponent, "{}: 4-bit weight '{}' has no '{}'",
                      st.file_of(weight_name).path().string(), weight_name, name);
  const auto& info = st.info(name);
  if (info.dtype != dtype || info.shape != shape)
    throw_input_error(kComponent, "{}: '{}' is {} {}, expected {} {}",
                      st.file_of(name).path().string(), name, st_dtype_name(info.dtype),
                      Shape(info.shape).str(), st_dtype_name(dtype), Shape(shape).str());
  return info;
}

template <typename T>
void read_raw(const ShardedSafetensors& st, const std::string& name, std::vector<T>& out) {
  const auto b = st.bytes(name);
  out.resize(b.size() / sizeof(T));
  std::memcpy(out.data(), b.data(), out.size() * sizeof(T));
}

}  // namespace

std::optional<Bnb4bitConfig> read_bnb4bit_config(const nlohmann::json& config,
                                                 const std::string& path) {
  if (!config.is_object() || !config.contains("quantization_config")) return std::nullopt;
  const auto& q = config["quantization_config"];
  auto str = [&](const char* key, const char* def) -> std::string {
    if (!q.contains(key) || q[key].is_null()) return def;
    if (!q[key].is_string())
      throw_input_error(kComponent, "{}: quantization_config.{} must be a string", path, key);
    return q[key].get<std::string>();
  };
  auto flag = [&](const char* key, bool def) {
    if (!q.contains(key) || q[key].is_null()) return def;
    if (!q[key].is_boolean())
      throw_input_error(kComponent, "{}: quantization_config.{} must be true or false", path, key);
    return q[key].get<bool>();
  };
  if (!q.is_object())
    throw_input_error(kComponent, "{}: quantization_config must be an object", path);
  const std::string method = str("quant_method", "bitsandbytes");
  if (method != "bitsandbytes")
    throw_input_error(kComponent,
                      "{}: quantization_config.quant_method '{}': fitlm reads only "
                      "bitsandbytes 4-bit checkpoints",
                      path, method);
  if (flag("load_in_8bit", false))
    throw_input_error(kComponent,
                      "{}: an 8-bit bitsandbytes checkpoint (load_in_8bit); fitlm "
                      "reads 4-bit ones (nf4, fp4)",
                      path);
  if (!flag("load_in_4bit", false))
    throw_input_error(kComponent, "{}: quantization_config without load_in_4bit: true", path);
  Bnb4bitConfig c;
  const std::string type = str("bnb_4bit_quant_type", "fp4");  // transformers' default
  if (type == "nf4")
    c.type = quant::QuantType::kNF4;
  else if (type == "fp4")
    c.type = quant::QuantType::kFP4;
  else
    throw_input_error(kComponent,
                      "{}: quantization_config.bnb_4bit_quant_type '{}': expected "
                      "nf4 or fp4",
                      path, type.substr(0, 40));
  c.double_quant = flag("bnb_4bit_use_double_quant", false);
  const std::string compute = str("bnb_4bit_compute_dtype", "float32");
  const auto cd = dtype_from_torch_name(compute);
  if (!cd)
    throw_input_error(kComponent,
                      "{}: quantization_config.bnb_4bit_compute_dtype '{}': expected "
                      "bfloat16, float16 or float32",
                      path, compute.substr(0, 40));
  c.compute_dtype = *cd;
  const std::string storage = str("bnb_4bit_quant_storage", "uint8");
  if (storage != "uint8")
    throw_input_error(kComponent,
                      "{}: quantization_config.bnb_4bit_quant_storage '{}': fitlm "
                      "reads uint8 storage",
                      path, storage.substr(0, 40));
  return c;
}

nlohmann::json bnb4bit_config_json(const Bnb4bitConfig& c) {
  nlohmann::ordered_json j;
  j["_load_in_4bit"] = true;
  j["_load_in_8bit"] = false;
  j["bnb_4bit_compute_dtype"] = torch_dtype_name(c.compute_dtype);
  j["bnb_4bit_quant_storage"] = "uint8";
  j["bnb_4bit_quant_type"] = std::string(quant::quant_type_name(c.type));
  j["bnb_4bit_use_double_quant"] = c.double_quant;
  j["llm_int8_enable_fp32_cpu_offload"] = false;
  j["llm_int8_has_fp16_weight"] = false;
  j["llm_int8_skip_modules"] = nullptr;
  j["llm_int8_threshold"] = 6.0;
  j["load_in_4bit"] = true;
  j["load_in_8bit"] = false;
  j["quant_method"] = "bitsandbytes";
  return nlohmann::json::parse(j.dump());
}

bool is_bnb4bit_weight(const ShardedSafetensors& st, const std::string& weight_name) {
  return st.contains(state_key(weight_name, quant::QuantType::kNF4)) ||
         st.contains(state_key(weight_name, quant::QuantType::kFP4));
}

namespace {

// The quant_state of `name`, parsed and checked: w holds everything but the data.
struct QuantState {
  Bnb4bitWeight w;
  nlohmann::json json;
  std::string key, file;
};

QuantState read_quant_state(const ShardedSafetensors& st, const std::string& name) {
  QuantState qs;
  Bnb4bitWeight& w = qs.w;
  std::string& key = qs.key;
  for (auto t : {quant::QuantType::kNF4, quant::QuantType::kFP4})
    if (st.contains(state_key(name, t))) {
      w.q.type = t;
      key = state_key(name, t);
    }
  if (key.empty()) throw_input_error(kComponent, "'{}' has no bitsandbytes quant_state", name);
  qs.file = st.file_of(key).path().string();
  const std::string& file = qs.file;
  const auto state_bytes = st.bytes(key);
  nlohmann::json& s = qs.json;
  try {
    s = nlohmann::json::parse(
        reinterpret_cast<const char*>(state_bytes.data()),
        reinterpret_cast<const char*>(state_bytes.data()) + state_bytes.size());
  } catch (const nlohmann::json::exception&) {
    throw_input_error(kComponent, "{}: '{}' is not valid JSON", file, key);
  }
  auto field = [&](const char* k) -> const nlohmann::json& {
    if (!s.is_object() || !s.contains(k))
      throw_input_error(kComponent, "{}: '{}' has no \"{}\"", file, key, k);
    return s[k];
  };
  if (!field("quant_type").is_string() ||
      field("quant_type").get<std::string>() != quant::quant_type_name(w.q.type))
    throw_input_error(kComponent, "{}: '{}': quant_type must be \"{}\" (the key's suffix)", file,
                      key, quant::quant_type_name(w.q.type));
  if (!field("blocksize").is_number_integer() ||
      !quant::valid_blocksize(field("blocksize").get<int64_t>()))
    throw_input_error(kComponent, "{}: '{}': blocksize must be a power of two in 32..4096", file,
                      key);
  w.q.blocksize = field("blocksize").get<int64_t>();
  const auto dt = field("dtype").is_string()
                      ? dtype_from_torch_name(field("dtype").get<std::string>())
                      : std::nullopt;
  if (!dt)
    throw_input_error(kComponent, "{}: '{}': dtype must be bfloat16, float16 or float32", file,
                      key);
  w.dtype = *dt;
  const auto& shape = field("shape");
  if (!shape.is_array() || shape.size() != 2 || !shape[0].is_number_integer() ||
      !shape[1].is_number_integer() || shape[0].get<int64_t>() <= 0 ||
      shape[1].get<int64_t>() <= 0 || shape[0].get<int64_t>() > (int64_t{1} << 31) ||
      shape[1].get<int64_t>() > (int64_t{1} << 31))
    throw_input_error(kComponent, "{}: '{}': shape must be [out, in] of positive sizes", file, key);
  w.shape = {shape[0].get<int64_t>(), shape[1].get<int64_t>()};
  w.q.numel = w.shape[0] * w.shape[1];
  w.q.double_quant = s.contains("nested_blocksize");
  return qs;
}

}  // namespace

Bnb4bitWeight bnb4bit_header(const ShardedSafetensors& st, const std::string& name) {
  return read_quant_state(st, name).w;
}

std::vector<int64_t> bnb4bit_shape(const ShardedSafetensors& st, const std::string& name) {
  return bnb4bit_header(st, name).shape;
}

Bnb4bitWeight read_bnb4bit_weight(const ShardedSafetensors& st, const std::string& name) {
  QuantState qs = read_quant_state(st, name);
  Bnb4bitWeight& w = qs.w;
  const nlohmann::json& s = qs.json;
  const std::string &key = qs.key, &file = qs.file;
  auto field = [&](const char* k) -> const nlohmann::json& {
    if (!s.contains(k)) throw_input_error(kComponent, "{}: '{}' has no \"{}\"", file, key, k);
    return s[k];
  };
  const int64_t blocks = w.q.blocks();

  expect_tensor(st, name, StDType::kU8, {(w.q.numel + 1) / 2, 1}, name);
  read_raw(st, name, w.q.packed);
  const auto& qmap = expect_tensor(st, name + ".quant_map", StDType::kF32, {16}, name);
  (void)qmap;
  std::vector<float> map;
  read_raw(st, name + ".quant_map", map);
  const auto& table = quant::code_table(w.q.type);
  for (int i = 0; i < 16; ++i)
    if (!(std::fabs(map[i] - table[i]) <= 1e-6f))
      throw_input_error(kComponent, "{}: '{}.quant_map'[{}] = {} is not the {} table's {}", file,
                        name, i, map[i], quant::quant_type_name(w.q.type), table[i]);
  if (!w.q.double_quant) {
    expect_tensor(st, name + ".absmax", StDType::kF32, {blocks}, name);
    read_raw(st, name + ".absmax", w.q.absmax);
    return std::move(w);
  }
  const auto& nb = field("nested_blocksize");
  if (!nb.is_number_integer() || nb.get<int64_t>() != quant::kNestedBlocksize)
    throw_input_error(kComponent, "{}: '{}': nested_blocksize must be 256", file, key);
  if (!field("nested_dtype").is_string() || field("nested_dtype").get<std::string>() != "float32")
    throw_input_error(kComponent, "{}: '{}': nested_dtype must be \"float32\"", file, key);
  if (!field("nested_offset").is_number() || !std::isfinite(field("nested_offset").get<double>()))
    throw_input_error(kComponent, "{}: '{}': nested_offset must be a finite number", file, key);
  w.q.offset = static_cast<float>(field("nested_offset").get<double>());
  const int64_t nested = (blocks + quant::kNestedBlocksize - 1) / quant::kNestedBlocksize;
  expect_tensor(st, name + ".absmax", StDType::kU8, {blocks}, name);
  read_raw(st, name + ".absmax", w.q.absmax_codes);
  expect_tensor(st, name + ".nested_absmax", StDType::kF32, {nested}, name);
  read_raw(st, name + ".nested_absmax", w.q.nested_absmax);
  expect_tensor(st, name + ".nested_quant_map", StDType::kF32, {256}, name);
  std::vector<float> nmap;
  read_raw(st, name + ".nested_quant_map", nmap);
  for (int i = 0; i < 256; ++i) w.q.nested_map[i] = nmap[i];
  for (float v : nmap)
    if (!std::isfinite(v))
      throw_input_error(kComponent, "{}: '{}.nested_quant_map' holds a non-finite value", file,
                        name);
  for (float v : w.q.nested_absmax)
    if (!std::isfinite(v))
      throw_input_error(kComponent, "{}: '{}.nested_absmax' holds a non-finite value", file, name);
  return std::move(w);
}

void dequantize_bnb4bit(const Bnb4bitWeight& w, std::span<float> out) {
  quant::dequantize4(w.q, out);
  round_to_storage(out, w.dtype);
}

std::string bnb4bit_quant_state_json(const Bnb4bitWeight& w) {
  std::string s = fmt::format(
      "{{\"quant_type\": \"{}\", \"blocksize\": {}, \"dtype\": \"{}\", \"shape\": [{}, {}]",
      quant::quant_type_name(w.q.type), w.q.blocksize, torch_dtype_name(w.dtype), w.shape[0],
      w.shape[1]);
  if (w.q.double_quant)
    // Python's repr of the f32 offset (shortest round trip of its double value), as json.dumps.
    s += fmt::format(
        ", \"nested_blocksize\": {}, \"nested_dtype\": \"float32\", \"nested_offset\": {}",
        quant::kNestedBlocksize, static_cast<double>(w.q.offset));
  return s + "}";
}

void add_bnb4bit_entries(std::vector<SafetensorsEntry>& entries, const std::string& name,
                         const Bnb4bitWeight& w, std::vector<std::shared_ptr<void>>& keep) {
  auto own = [&](auto value) {
    auto p = std::make_shared<decltype(value)>(std::move(value));
    keep.push_back(p);
    return p->data();
  };
  entries.push_back(
      SafetensorsEntry::from_bytes(name, StDType::kU8, {(w.q.numel + 1) / 2, 1}, own(w.q.packed)));
  if (w.q.double_quant)
    entries.push_back(SafetensorsEntry::from_bytes(name + ".absmax", StDType::kU8, {w.q.blocks()},
                                                   own(w.q.absmax_codes)));
  else
    entries.push_back(SafetensorsEntry::from_bytes(name + ".absmax", StDType::kF32, {w.q.blocks()},
                                                   own(w.q.absmax)));
  const auto& table = quant::code_table(w.q.type);
  entries.push_back(
      SafetensorsEntry::from_bytes(name + ".quant_map", StDType::kF32, {16},
                                   own(std::vector<float>(table.begin(), table.end()))));
  if (w.q.double_quant) {
    entries.push_back(SafetensorsEntry::from_bytes(name + ".nested_absmax", StDType::kF32,
                                                   {static_cast<int64_t>(w.q.nested_absmax.size())},
                                                   own(w.q.nested_absmax)));
    entries.push_back(SafetensorsEntry::from_bytes(
        name + ".nested_quant_map", StDType::kF32, {256},
        own(std::vector<float>(w.q.nested_map.begin(), w.q.nested_map.end()))));
  }
  const std::string state = bnb4bit_quant_state_json(w);
  entries.push_back(SafetensorsEntry::from_bytes(
      state_key(name, w.q.type), StDType::kU8, {static_cast<int64_t>(state.size())},
      own(std::vector<char>(state.begin(), state.end()))));
}

}  // namespace fitlm::io
