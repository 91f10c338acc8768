#include "fitlm/io/peft_adapter.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "fitlm/core/error.h"
#include "fitlm/core/log.h"
#include "fitlm/io/safetensors.h"
#include "fitlm/io/safetensors_atomic_file.h"

namespace fitlm {
namespace {

constexpr const char* kComponent = "adapter";

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw_input_error(kComponent, "cannot open {}", path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw_input_error(kComponent, "{}: invalid JSON: {}", path.string(), e.what());
  }
}

bool is_unset(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return true;
  const auto& v = j[key];
  return (v.is_boolean() && !v.get<bool>()) || (v.is_object() && v.empty()) ||
         (v.is_array() && v.empty()) || (v.is_string() && v == "none");
}

}  // namespace

LoraConfig read_peft_config(const std::filesystem::path& dir) {
  const auto path = dir / "adapter_config.json";
  const nlohmann::json j = read_json(path);
  if (!j.is_object() || j.value("peft_type", "") != "LORA")
    throw_input_error(kComponent, "{}: peft_type must be \"LORA\"", path.string());
  for (const char* key : {"use_dora", "rank_pattern", "alpha_pattern", "modules_to_save",
                          "layers_to_transform", "bias", "fan_in_fan_out"})
    if (!is_unset(j, key))
      throw_input_error(kComponent, "{}: '{}' = {} is not supported", path.string(), key,
                        j[key].dump());
  LoraConfig c;
  try {
    c.r = j.at("r").get<int>();
    c.alpha = j.value("lora_alpha", static_cast<float>(c.r));
    c.dropout = j.value("lora_dropout", 0.0f);
    c.use_rslora = j.value("use_rslora", false);
    const auto& t = j.at("target_modules");
    if (t.is_string()) {
      c.targets = parse_lora_targets({t.get<std::string>()});
    } else {
      c.targets = parse_lora_targets(t.get<std::vector<std::string>>());
    }
  } catch (const nlohmann::json::exception& e) {
    throw_input_error(kComponent, "{}: {}", path.string(), e.what());
  }
  if (c.r <= 0) throw_input_error(kComponent, "{}: r must be positive", path.string());
  return c;
}

void load_peft_weights(Transformer& model, const std::filesystem::path& dir) {
  const auto path = dir / "adapter_model.safetensors";
  const io::SafetensorsFile st = io::SafetensorsFile::open(path);
  Backend& be = model.backend();
  size_t loaded = 0;
  for (Param& p : model.params()) {
    // PEFT files may keep the adapter name ("lora_A.default.weight") in older versions.
    std::string name = p.name;
    if (!st.contains(name)) {
      std::string alt = name;
      alt.replace(alt.rfind(".weight"), 7, ".default.weight");
      if (st.contains(alt)) name = alt;
    }
    if (!st.contains(name))
      throw_input_error(kComponent, "{}: tensor '{}' is missing", path.string(), p.name);
    const auto& info = st.info(name);
    if (!(Shape(info.shape) == p.value.shape))
      throw_input_error(kComponent, "{}: tensor '{}' has shape {}, the model expects {}",
                        path.string(), name, Shape(info.shape).str(), p.value.shape.str());
    const auto core = io::to_core_dtype(info.dtype);
    if (!core || !io::st_dtype_is_float_loadable(info.dtype))
      throw_input_error(kComponent, "{}: tensor '{}' must be F32, BF16 or F16", path.string(),
                        name);
    be.upload(p.master, st.bytes(name).data(), *core);
    if (p.master.data != p.value.data) be.copy(p.master, p.value);
    ++loaded;
  }
  if (loaded < st.tensors().size())
    log::warn("{}: {} tensors not used by the model", path.string(),
              st.tensors().size() - loaded);
}

void save_peft_adapter(Transformer& model, const std::filesystem::path& dir,
                       const std::string& base_model_name_or_path) {
  std::filesystem::create_directories(dir);
  const LoraConfig& lc = model.lora();
  nlohmann::json cfg = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"base_model_name_or_path", base_model_name_or_path},
      {"r", lc.r},
      {"lora_alpha", lc.alpha},
      {"lora_dropout", lc.dropout},
      {"use_rslora", lc.use_rslora},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"init_lora_weights", true},
      {"inference_mode", true},
      {"modules_to_save", nullptr},
      {"layers_to_transform", nullptr},
      {"rank_pattern", nlohmann::json::object()},
      {"alpha_pattern", nlohmann::json::object()},
      {"use_dora", false},
  };
  std::vector<std::string> targets;
  for (Projection p : lc.targets) targets.push_back(projection_name(p));
  cfg["target_modules"] = targets;

  io::SafetensorsWriter w;
  std::vector<std::vector<float>> host;  // keeps the values alive until write()
  host.reserve(model.params().size());
  for (Param& p : model.params()) {
    host.emplace_back(static_cast<size_t>(p.master.numel()));
    model.backend().download(p.master, host.back().data());
    w.add_f32(p.name, io::StDType::kF32, {p.master.shape.dims.begin(),
                                           p.master.shape.dims.begin() + p.master.ndim()},
              host.back().data());
  }
  w.write(dir / "adapter_model.safetensors");
  io::write_file_atomic(dir / "adapter_config.json", cfg.dump(2) + "\n");
}

}  // namespace fitlm
