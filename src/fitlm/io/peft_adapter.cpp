#include "fitlm/io/peft_adapter.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"
#include "fitlm/core/log.h"
#include "fitlm/io/safetensors.h"
#include "fitlm/io/safetensors_atomic_file.h"

namespace fitlm {
namespace {

constexpr const char* kComponent = "adapter";

bool is_unset(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return true;
  const auto& v = j[key];
  return (v.is_boolean() && !v.get<bool>()) || (v.is_object() && v.empty()) ||
         (v.is_array() && v.empty()) || (v.is_string() && v == "none");
}

// Typed fields of adapter_config.json; errors name the file and the field.
class PeftFields {
 public:
  PeftFields(const nlohmann::json& j, std::string file) : j_(j), file_(std::move(file)) {}
  [[noreturn]] void fail(const char* key, const char* expected, const nlohmann::json& v) const {
    throw_input_error(kComponent, "{}: field '{}': expected {}, found {}", file_, key, expected,
                      clip(v.dump()));
  }
  const nlohmann::json* find(const char* key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  double number(const char* key, double fallback) const {
    const nlohmann::json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) fail(key, "a number", *v);
    return v->get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    const nlohmann::json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) fail(key, "true or false", *v);
    return v->get<bool>();
  }
  const std::string& file() const { return file_; }

 private:
  const nlohmann::json& j_;
  std::string file_;
};

}  // namespace

LoraConfig read_peft_config(const std::filesystem::path& dir) {
  const auto path = dir / "adapter_config.json";
  const nlohmann::json j = json_input::parse_file(path, kComponent, "invalid JSON");
  const std::string file = clip_path(path.string());
  return json_input::read_fields(kComponent, file, [&] {
    const auto type = j.is_object() ? j.find("peft_type") : j.end();
    if (!j.is_object() || type == j.end() || *type != "LORA")
      throw_input_error(kComponent, "{}: peft_type must be \"LORA\"", file);
    for (const char* key : {"use_dora", "rank_pattern", "alpha_pattern", "modules_to_save",
                            "layers_to_transform", "bias", "fan_in_fan_out"})
      if (!is_unset(j, key))
        throw_input_error(kComponent, "{}: '{}' = {} is not supported", file, key,
                          clip(j[key].dump()));
    const PeftFields f(j, file);
    LoraConfig c;
    const nlohmann::json* r = f.find("r");
    if (!r) throw_input_error(kComponent, "{}: missing field 'r'", file);
    // The same bound as the lora_r key of a training config.
    if (!r->is_number_integer() || r->get<int64_t>() < 1 || r->get<int64_t>() > (1 << 16))
      f.fail("r", "an integer in [1, 65536]", *r);
    c.r = static_cast<int>(r->get<int64_t>());
    c.alpha = static_cast<float>(f.number("lora_alpha", static_cast<double>(c.r)));
    c.dropout = static_cast<float>(f.number("lora_dropout", 0.0));
    c.use_rslora = f.boolean("use_rslora", false);
    const nlohmann::json* t = f.find("target_modules");
    if (!t) throw_input_error(kComponent, "{}: missing field 'target_modules'", file);
    std::vector<std::string> names;
    if (t->is_string()) {
      names.push_back(t->get<std::string>());
    } else if (t->is_array()) {
      for (const auto& n : *t) {
        if (!n.is_string()) f.fail("target_modules", "a list of module names", *t);
        names.push_back(n.get<std::string>());
      }
    } else {
      f.fail("target_modules", "a module name or a list of them", *t);
    }
    try {
      c.targets = parse_lora_targets(names);
    } catch (const Error& e) {
      throw_input_error(kComponent, "{}: field 'target_modules': {}", file, e.message());
    }
    return c;
  });
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
    be.upload(p.full_master(), st.bytes(name).data(), *core);
    if (p.full_master().data != p.value.data) be.copy(p.full_master(), p.value);
    ++loaded;
  }
  model.commit_staged_masters();
  if (loaded < st.tensors().size())
    log::warn("{}: {} tensors not used by the model", path.string(), st.tensors().size() - loaded);
}

void write_peft_config(const LoraConfig& lc, const std::filesystem::path& dir,
                       const std::string& base_model_name_or_path) {
  std::filesystem::create_directories(dir);
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
  io::write_file_atomic(dir / "adapter_config.json", cfg.dump(2) + "\n");
}

void write_peft_tensors(Transformer& model, const std::filesystem::path& file) {
  io::SafetensorsWriter w;  // each tensor downloaded while the file is written
  Backend& be = model.backend();
  for (Param& p : model.params()) {
    const Tensor master = p.full_master();
    w.add_f32_produced(p.name, io::StDType::kF32,
                       {master.shape.dims.begin(), master.shape.dims.begin() + master.ndim()},
                       [&be, master](float* out) { be.download(master, out); });
  }
  w.write(file);
}

void save_peft_adapter(Transformer& model, const std::filesystem::path& dir,
                       const std::string& base_model_name_or_path) {
  std::filesystem::create_directories(dir);
  write_peft_tensors(model, dir / "adapter_model.safetensors");
  write_peft_config(model.lora(), dir, base_model_name_or_path);
}

}  // namespace fitlm
