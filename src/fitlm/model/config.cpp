#include "fitlm/model/config.h"

#include <cmath>

#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"

namespace fitlm {
namespace {

constexpr const char* kComponent = "config";

// Upper bounds on the sizes config.json may declare. They sit well above every released model
// (Llama-3.1-405B: 126 layers, hidden 16384, intermediate 53248, 128 heads; the largest
// vocabularies ~262k; head_dim <= 256) and keep every buffer size the planner computes far
// from overflowing: a config beyond them is a mistake or an attack, and is refused before the
// planner (whose work grows with the layer count) or any allocation runs.
constexpr int kMaxLayers = 1024;
constexpr int kMaxHiddenSize = 1 << 16;
constexpr int kMaxIntermediateSize = 1 << 20;
constexpr int kMaxVocabSize = 1 << 24;
constexpr int kMaxHeads = 1024;
constexpr int kMaxHeadDim = 1024;

struct ArchInfo {
  const char* name;
  Architecture arch;
  const char* model_type;
};
constexpr ArchInfo kArchitectures[] = {
    {"LlamaForCausalLM", Architecture::kLlama, "llama"},
    {"MistralForCausalLM", Architecture::kMistral, "mistral"},
    {"Qwen2ForCausalLM", Architecture::kQwen2, "qwen2"},
    {"Qwen3ForCausalLM", Architecture::kQwen3, "qwen3"},
    {"MixtralForCausalLM", Architecture::kMixtral, "mixtral"},
    {"Qwen3MoeForCausalLM", Architecture::kQwen3Moe, "qwen3_moe"},
};
constexpr int kMaxExperts = 4096;

// Typed field access that names the file and the key in every error.
class Fields {
 public:
  Fields(const nlohmann::json& j, const std::string& source) : j_(j), source_(source) {}

  bool has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }

  int require_int(const char* key) const {
    if (!has(key)) throw_input_error(kComponent, "{}: missing required field '{}'", source_, key);
    return as_int(key, j_[key]);
  }
  // A required size: an integer in [1, max].
  int require_size(const char* key, int max) const {
    const int v = require_int(key);
    check_size(key, v, max);
    return v;
  }
  void check_size(const char* key, int v, int max) const {
    if (v == 0)
      throw_input_error(kComponent, "{}: field '{}' must be positive, found 0", source_, key);
    if (v > max)
      throw_input_error(kComponent,
                        "{}: field '{}' is {}, more than fitlm accepts (at most {}; no released "
                        "model comes close)",
                        source_, key, v, max);
  }
  int get_int(const char* key, int fallback) const {
    return has(key) ? as_int(key, j_[key]) : fallback;
  }
  double get_double(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_number())
      throw_input_error(kComponent, "{}: field '{}' must be a number, found {}", source_, key,
                        clip(j_[key].dump()));
    return j_[key].get<double>();
  }
  bool get_bool(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    if (!j_[key].is_boolean())
      throw_input_error(kComponent, "{}: field '{}' must be true or false, found {}", source_, key,
                        clip(j_[key].dump()));
    return j_[key].get<bool>();
  }

 private:
  int as_int(const char* key, const nlohmann::json& v) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > (1ll << 31) - 1)
      throw_input_error(kComponent, "{}: field '{}' must be a non-negative integer, found {}",
                        source_, key, clip(v.dump()));
    return v.get<int>();
  }
  const nlohmann::json& j_;
  const std::string& source_;
};

RopeScaling read_rope_scaling(const nlohmann::json& j, const std::string& source, double& theta) {
  RopeScaling rs;
  // transformers v5 writes `rope_parameters` (with rope_theta inside); v4 `rope_scaling`.
  const nlohmann::json* params = nullptr;
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object())
    params = &j["rope_parameters"];
  else if (j.contains("rope_scaling") && j["rope_scaling"].is_object())
    params = &j["rope_scaling"];
  if (!params) return rs;
  const Fields f(*params, source);
  if (params->contains("rope_theta")) theta = f.get_double("rope_theta", theta);
  std::string type = "default";
  for (const char* key : {"rope_type", "type"})
    if (params->contains(key) && (*params)[key].is_string()) {
      type = (*params)[key].get<std::string>();
      break;
    }
  if (type != "default" && type != "linear" && type != "llama3")
    throw_input_error(kComponent,
                      "{}: rope scaling type '{}' is not supported (supported: default, linear, "
                      "llama3)",
                      source, clip(type));
  rs.type = type;
  rs.factor = f.get_double("factor", 1.0);
  rs.low_freq_factor = f.get_double("low_freq_factor", 1.0);
  rs.high_freq_factor = f.get_double("high_freq_factor", 4.0);
  rs.original_max_position_embeddings = f.get_int("original_max_position_embeddings", 8192);
  if (type == "llama3" && !(rs.high_freq_factor > rs.low_freq_factor))
    throw_input_error(kComponent,
                      "{}: llama3 rope scaling needs high_freq_factor > "
                      "low_freq_factor",
                      source);
  return rs;
}

}  // namespace

std::string supported_architectures() {
  std::string s;
  for (const auto& a : kArchitectures) s += (s.empty() ? "" : ", ") + std::string(a.name);
  return s;
}

namespace {

// Mixtral: num_local_experts experts of intermediate_size, the top k always renormalised.
// Qwen3-MoE: num_experts of moe_intermediate_size, renormalised when norm_topk_prob, and dense
// layers (intermediate_size) where mlp_only_layers or decoder_sparse_step say so.
void read_moe_fields(ModelConfig& c, const nlohmann::json& j, const Fields& f,
                     const std::string& source) {
  MoeConfig& m = c.moe;
  const bool mixtral = c.arch == Architecture::kMixtral;
  const char* experts_key = mixtral ? "num_local_experts" : "num_experts";
  m.num_experts = f.require_size(experts_key, kMaxExperts);
  m.experts_per_token = f.require_size("num_experts_per_tok", kMaxExperts);
  if (m.experts_per_token > m.num_experts)
    throw_input_error(kComponent, "{}: num_experts_per_tok ({}) is more than {} ({})", source,
                      m.experts_per_token, experts_key, m.num_experts);
  if (mixtral) {
    m.expert_intermediate_size = c.intermediate_size;
    m.normalize_top_k = true;
    m.aux_loss_coef = f.get_double("router_aux_loss_coef", 0.001);
    m.router_jitter = f.get_double("router_jitter_noise", 0.0);
  } else {
    m.expert_intermediate_size = f.require_size("moe_intermediate_size", kMaxIntermediateSize);
    m.normalize_top_k = f.get_bool("norm_topk_prob", false);
    m.sparse_step = f.get_int("decoder_sparse_step", 1);
    f.check_size("decoder_sparse_step", m.sparse_step, kMaxLayers);
    m.aux_loss_coef = f.get_double("router_aux_loss_coef", 0.001);
    if (j.contains("mlp_only_layers") && !j["mlp_only_layers"].is_null()) {
      const auto& list = j["mlp_only_layers"];
      if (!list.is_array())
        throw_input_error(kComponent, "{}: field 'mlp_only_layers' must be a list of layer indices",
                          source);
      for (const auto& v : list) {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= c.num_layers)
          throw_input_error(kComponent,
                            "{}: field 'mlp_only_layers' holds {}, which is not a layer index "
                            "(0 to {})",
                            source, clip(v.dump()), c.num_layers - 1);
        m.mlp_only_layers.push_back(v.get<int>());
      }
    }
  }
  m.aux_loss = f.get_bool("output_router_logits", false);
}

ModelConfig read_config_fields(const nlohmann::json& j, const std::string& source) {
  if (!j.is_object()) throw_input_error(kComponent, "{}: expected a JSON object", source);
  ModelConfig c;
  c.raw = j;
  if (!j.contains("architectures") || !j["architectures"].is_array() ||
      j["architectures"].empty() || !j["architectures"][0].is_string())
    throw_input_error(kComponent, "{}: missing field 'architectures' (supported: {})", source,
                      supported_architectures());
  c.architecture_name = j["architectures"][0].get<std::string>();
  bool known = false;
  for (const auto& a : kArchitectures)
    if (c.architecture_name == a.name) {
      c.arch = a.arch;
      c.model_type = a.model_type;
      known = true;
    }
  if (!known)
    throw_input_error(kComponent, "{}: architecture '{}' is not supported (supported: {})", source,
                      clip(c.architecture_name), supported_architectures());

  const Fields f(j, source);
  c.vocab_size = f.require_size("vocab_size", kMaxVocabSize);
  c.hidden_size = f.require_size("hidden_size", kMaxHiddenSize);
  c.intermediate_size = f.require_size("intermediate_size", kMaxIntermediateSize);
  c.num_layers = f.require_size("num_hidden_layers", kMaxLayers);
  c.num_heads = f.require_size("num_attention_heads", kMaxHeads);
  c.num_kv_heads = f.get_int("num_key_value_heads", c.num_heads);
  f.check_size("num_key_value_heads", c.num_kv_heads, kMaxHeads);
  const int default_head_dim =
      (c.arch == Architecture::kQwen3 || c.arch == Architecture::kQwen3Moe) && !f.has("head_dim")
          ? 128
          : c.hidden_size / c.num_heads;
  c.head_dim = f.get_int("head_dim", default_head_dim);
  if (c.num_heads % c.num_kv_heads != 0)
    throw_input_error(kComponent,
                      "{}: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                      source, c.num_heads, c.num_kv_heads);
  if (c.head_dim % 2 != 0 || c.head_dim == 0)
    throw_input_error(kComponent, "{}: head_dim must be even and positive, found {}{}", source,
                      c.head_dim, f.has("head_dim") ? "" : " (hidden_size / num_attention_heads)");
  f.check_size("head_dim", c.head_dim, kMaxHeadDim);
  c.max_position_embeddings = f.get_int("max_position_embeddings", 4096);
  c.rms_norm_eps = f.get_double("rms_norm_eps", 1e-6);
  c.rope_theta = f.get_double("rope_theta", 10000.0);
  c.rope_scaling = read_rope_scaling(j, source, c.rope_theta);
  c.tie_word_embeddings = f.get_bool("tie_word_embeddings", false);

  if (j.contains("hidden_act") && j["hidden_act"] != "silu")
    throw_input_error(kComponent, "{}: hidden_act '{}' is not supported (only silu)", source,
                      clip(j["hidden_act"].dump()));
  const bool attention_bias = f.get_bool("attention_bias", false);
  switch (c.arch) {
    case Architecture::kLlama:
      c.qkv_bias = c.o_bias = attention_bias;
      c.mlp_bias = f.get_bool("mlp_bias", false);
      break;
    case Architecture::kMistral: break;
    case Architecture::kQwen2:
      c.qkv_bias = true;  // Qwen2 has no attention_bias key: q/k/v always carry a bias
      if (f.get_bool("use_sliding_window", false))
        c.sliding_window = f.get_int("sliding_window", 0);
      break;
    case Architecture::kMixtral: c.sliding_window = f.get_int("sliding_window", 0); break;
    case Architecture::kQwen3Moe:
    case Architecture::kQwen3:
      c.qkv_bias = c.o_bias = attention_bias;
      c.qk_norm = true;
      if (f.get_bool("use_sliding_window", false))
        c.sliding_window = f.get_int("sliding_window", 0);
      break;
  }
  if (c.arch == Architecture::kMistral) c.sliding_window = f.get_int("sliding_window", 0);
  if (c.arch == Architecture::kMixtral || c.arch == Architecture::kQwen3Moe)
    read_moe_fields(c, j, f, source);

  c.bos_token_id = f.get_int("bos_token_id", -1);
  // eos_token_id: an id or a list of ids; other values are ignored, as before, but an integer
  // must be a possible token id (get<int>() would silently wrap a huge one).
  auto eos_id = [&](const nlohmann::json& v) {
    if (!v.is_number_integer()) return;
    if (v.get<int64_t>() < 0 || v.get<int64_t>() > (1ll << 31) - 1)
      throw_input_error(kComponent, "{}: field 'eos_token_id' holds {}, which is not a token id",
                        source, clip(v.dump()));
    c.eos_token_ids.push_back(v.get<int>());
  };
  if (j.contains("eos_token_id")) {
    const auto& e = j["eos_token_id"];
    if (e.is_array())
      for (const auto& v : e) eos_id(v);
    else
      eos_id(e);
  }
  return c;
}

}  // namespace

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& source) {
  // The readers below check every type they read; the net turns anything they miss into an
  // input error naming the file rather than an internal one.
  return json_input::read_fields(kComponent, source, [&] { return read_config_fields(j, source); });
}

ModelConfig ModelConfig::from_file(const std::filesystem::path& path) {
  return from_json(json_input::parse_file(path, kComponent, "invalid JSON"), path.string());
}

nlohmann::json ModelConfig::to_json() const {
  nlohmann::json j = raw.is_object() ? raw : nlohmann::json::object();
  j["architectures"] = {architecture_name};
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_layers;
  j["num_attention_heads"] = num_heads;
  j["num_key_value_heads"] = num_kv_heads;
  j["head_dim"] = head_dim;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["hidden_act"] = "silu";
  if (!j.contains("max_position_embeddings"))
    j["max_position_embeddings"] = max_position_embeddings;
  return j;
}

std::vector<float> ModelConfig::rope_inv_freq() const {
  const int half = head_dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) {
    // HF: 1 / base ** (arange(0, dim, 2, dtype=int64).float() / dim), in f32.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv[i] = 1.0f / std::pow(static_cast<float>(rope_theta), exponent);
  }
  if (rope_scaling.type == "linear") {
    for (auto& f : inv) f = static_cast<float>(f / rope_scaling.factor);
  } else if (rope_scaling.type == "llama3") {
    const double orig = rope_scaling.original_max_position_embeddings;
    const double low_wl = orig / rope_scaling.low_freq_factor;
    const double high_wl = orig / rope_scaling.high_freq_factor;
    const double pi = 3.14159265358979323846;
    for (auto& f : inv) {
      const double wl = 2.0 * pi / f;
      if (wl < high_wl) continue;
      if (wl > low_wl) {
        f = static_cast<float>(f / rope_scaling.factor);
      } else {
        const double s = (orig / wl - rope_scaling.low_freq_factor) /
                         (rope_scaling.high_freq_factor - rope_scaling.low_freq_factor);
        f = static_cast<float>((1.0 - s) * f / rope_scaling.factor + s * f);
      }
    }
  }
  return inv;
}

bool ModelConfig::sparse_layer(int l) const {
  if (moe.num_experts == 0) return false;
  for (int d : moe.mlp_only_layers)
    if (d == l) return false;
  return (l + 1) % moe.sparse_step == 0;
}

bool ModelConfig::has_sparse_layers() const {
  for (int l = 0; l < num_layers; ++l)
    if (sparse_layer(l)) return true;
  return false;
}

bool ModelConfig::has_dense_layers() const {
  for (int l = 0; l < num_layers; ++l)
    if (!sparse_layer(l)) return true;
  return false;
}

int64_t ModelConfig::parameter_count() const {
  const int64_t h = hidden_size, i = intermediate_size, v = vocab_size;
  int64_t attention = h * q_dim() + 2 * h * kv_dim() + q_dim() * h + 2 * h;
  if (qkv_bias) attention += q_dim() + 2 * kv_dim();
  if (o_bias) attention += h;
  if (qk_norm) attention += 2 * head_dim;
  const int64_t dense_mlp = 3 * h * i + (mlp_bias ? 2 * i + h : 0);
  const int64_t sparse_mlp =
      static_cast<int64_t>(moe.num_experts) * (3 * h * moe.expert_intermediate_size) +
      static_cast<int64_t>(moe.num_experts) * h;
  int64_t layers = 0;
  for (int l = 0; l < num_layers; ++l)
    layers += attention + (sparse_layer(l) ? sparse_mlp : dense_mlp);
  return layers + v * h * (tie_word_embeddings ? 1 : 2) + h;
}

int64_t ModelConfig::active_parameter_count() const {
  int64_t idle = 0;
  const int64_t per_expert = 3 * int64_t{hidden_size} * moe.expert_intermediate_size;
  for (int l = 0; l < num_layers; ++l)
    if (sparse_layer(l)) idle += (moe.num_experts - moe.experts_per_token) * per_expert;
  return parameter_count() - idle;
}

}  // namespace fitlm
