#include "fitlm/io/peft_adapter.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

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

// The MoE target a PEFT target parameter names ("gate.weight" is what PEFT writes for
// target_modules ["gate"]; the longer forms match the same parameters), or nullopt.
std::optional<MoeTarget> moe_target_of_parameter(const std::string& n) {
  if (n == "gate.weight" || n == "mlp.gate.weight") return MoeTarget::kRouter;
  if (n == "mlp.experts.gate_up_proj" || n == "experts.gate_up_proj")
    return MoeTarget::kExpertsGateUp;
  if (n == "mlp.experts.down_proj" || n == "experts.down_proj") return MoeTarget::kExpertsDown;
  return std::nullopt;
}

// A list of names (or one name) of field `key`.
std::vector<std::string> name_list(const PeftFields& f, const char* key, const nlohmann::json& t) {
  std::vector<std::string> names;
  if (t.is_string()) {
    names.push_back(t.get<std::string>());
  } else if (t.is_array()) {
    for (const auto& n : t) {
      if (!n.is_string()) f.fail(key, "a list of names", t);
      names.push_back(n.get<std::string>());
    }
  } else {
    f.fail(key, "a name or a list of them", t);
  }
  return names;
}

}  // namespace

Shape peft_shape(const Param& p) {
  if (p.peft_experts == 0) return p.value.shape;
  return Shape{p.value.dim(1), p.value.dim(2) * p.peft_experts};
}

std::vector<float> to_peft_layout(const Param& p, std::vector<float> values) {
  if (p.peft_experts == 0) return values;
  std::vector<float> out(values.size());
  expert_b_to_peft(values.data(), out.data(), p.peft_experts, p.value.dim(1), p.value.dim(2));
  return out;
}

std::vector<float> from_peft_layout(const Param& p, std::vector<float> values) {
  if (p.peft_experts == 0) return values;
  std::vector<float> out(values.size());
  expert_b_from_peft(values.data(), out.data(), p.peft_experts, p.value.dim(1), p.value.dim(2));
  return out;
}

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
    const nlohmann::json* tp = f.find("target_parameters");
    const std::vector<std::string> params =
        tp ? name_list(f, "target_parameters", *tp) : std::vector<std::string>{};
    if (!t && params.empty())
      throw_input_error(kComponent, "{}: missing field 'target_modules'", file);
    c.targets.clear();
    if (t) {
      const std::vector<std::string> names = name_list(f, "target_modules", *t);
      try {
        if (!names.empty()) c.targets = parse_lora_targets(names);
      } catch (const Error& e) {
        throw_input_error(kComponent, "{}: field 'target_modules': {}", file, e.message());
      }
      c.moe_targets = parse_moe_lora_targets(names);
      if (names.empty() && params.empty())
        throw_input_error(kComponent, "{}: field 'target_modules' is empty", file);
    }
    std::vector<MoeTarget> listed;  // in the file's order: it decides PEFT's nesting
    for (const std::string& n : params) {
      const std::optional<MoeTarget> m = moe_target_of_parameter(n);
      if (!m)
        throw_input_error(kComponent,
                          "{}: field 'target_parameters': '{}' is not supported (fitlm reads "
                          "gate.weight, mlp.experts.gate_up_proj, mlp.experts.down_proj)",
                          file, clip(n));
      listed.push_back(*m);
      if (!c.targets_moe(*m)) c.moe_targets.push_back(*m);
    }
    // peft_moe_tensor_name's nesting assumes gate_up_proj is listed first, as fitlm writes it.
    const auto at = [&](MoeTarget m) { return std::find(listed.begin(), listed.end(), m); };
    if (at(MoeTarget::kExpertsDown) < at(MoeTarget::kExpertsGateUp) &&
        at(MoeTarget::kExpertsGateUp) != listed.end())
      throw_input_error(kComponent,
                        "{}: field 'target_parameters' lists mlp.experts.down_proj before "
                        "mlp.experts.gate_up_proj, which nests PEFT's tensor names the other "
                        "way; fitlm reads them in the order gate_up_proj, down_proj",
                        file);
    std::sort(c.moe_targets.begin(), c.moe_targets.end());
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
    if (!(Shape(info.shape) == peft_shape(p)))
      throw_input_error(kComponent, "{}: tensor '{}' has shape {}, the model expects {}",
                        path.string(), name, Shape(info.shape).str(), peft_shape(p).str());
    const auto core = io::to_core_dtype(info.dtype);
    if (!core || !io::st_dtype_is_float_loadable(info.dtype))
      throw_input_error(kComponent, "{}: tensor '{}' must be F32, BF16 or F16", path.string(),
                        name);
    if (p.peft_experts > 0) {  // permuted into fitlm's layout on the host
      std::vector<float> host(static_cast<size_t>(info.numel()));
      st.read_f32(name, host.data());
      host = from_peft_layout(p, std::move(host));
      be.upload(p.full_master(), host.data(), DType::kF32);
    } else {
      be.upload(p.full_master(), st.bytes(name).data(), *core);
    }
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
  std::vector<std::string> targets, params;
  for (Projection p : lc.targets) targets.push_back(projection_name(p));
  // The router and experts as PEFT writes them: target parameters, gate_up_proj before
  // down_proj (the order peft_moe_tensor_name's nesting assumes); no target_modules at all when
  // only they are targeted.
  for (MoeTarget m : kAllMoeTargets)
    if (lc.targets_moe(m)) params.push_back(moe_target_parameter(m));
  cfg["target_modules"] = targets.empty() ? nlohmann::json(nullptr) : nlohmann::json(targets);
  if (!params.empty()) cfg["target_parameters"] = params;
  io::write_file_atomic(dir / "adapter_config.json", cfg.dump(2) + "\n");
}

void write_peft_tensors(Transformer& model, const std::filesystem::path& file) {
  io::SafetensorsWriter w;  // each tensor downloaded while the file is written
  Backend& be = model.backend();
  for (Param& p : model.params()) {
    const Tensor master = p.full_master();
    const Shape shape = peft_shape(p);
    w.add_f32_produced(p.name, io::StDType::kF32,
                       {shape.dims.begin(), shape.dims.begin() + shape.ndim},
                       [&be, master, &p](float* out) {
                         if (p.peft_experts == 0) return be.download(master, out);
                         std::vector<float> host(static_cast<size_t>(master.numel()));
                         be.download(master, host.data());
                         host = to_peft_layout(p, std::move(host));
                         std::copy(host.begin(), host.end(), out);
                       });
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
