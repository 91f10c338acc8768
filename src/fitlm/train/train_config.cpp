#include "fitlm/train/train_config.h"

#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "fitlm/adapters/lora.h"
#include "fitlm/core/byte_size.h"
#include "fitlm/core/error.h"
#include "fitlm/core/paths.h"
#include "fitlm/text/dataset.h"

namespace fitlm::train {
namespace {

constexpr const char* kComponent = "config";

struct Context {
  std::string source;  // file name, or "command line"
  std::string key;
};

[[noreturn]] void type_error(const Context& ctx, const char* expected, const YAML::Node& n) {
  std::string found;
  if (n.IsScalar()) {
    found = "'" + clip(n.Scalar()) + "'";
  } else if (n.IsSequence()) {
    found = "a list";
  } else if (n.IsMap()) {
    found = "a mapping";
  } else {
    found = "nothing";
  }
  throw_input_error(kComponent, "{}: key '{}': expected {}, found {}", ctx.source, ctx.key,
                    expected, found);
}

template <typename T>
T scalar_as(const Context& ctx, const YAML::Node& n, const char* expected) {
  if (!n.IsScalar()) type_error(ctx, expected, n);
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    type_error(ctx, expected, n);
  }
}

int64_t get_int(const Context& ctx, const YAML::Node& n) {
  return scalar_as<int64_t>(ctx, n, "an integer");
}
// An integer in [lo, hi]: the bounds keep sizes that multiply into buffer sizes from
// overflowing (and absurd values from reaching the planner).
int64_t get_int_in(const Context& ctx, const YAML::Node& n, int64_t lo, int64_t hi) {
  const int64_t v = get_int(ctx, n);
  if (v < lo || v > hi)
    throw_input_error(kComponent, "{}: key '{}' must be in [{}, {}], found {}", ctx.source, ctx.key,
                      lo, hi, v);
  return v;
}
int64_t get_nonneg(const Context& ctx, const YAML::Node& n) {
  const int64_t v = get_int(ctx, n);
  if (v < 0)
    throw_input_error(kComponent, "{}: key '{}' must be >= 0, found {}", ctx.source, ctx.key, v);
  return v;
}
double get_double(const Context& ctx, const YAML::Node& n) {
  return scalar_as<double>(ctx, n, "a number");
}
bool get_bool(const Context& ctx, const YAML::Node& n) {
  return scalar_as<bool>(ctx, n, "true or false");
}
std::string get_string(const Context& ctx, const YAML::Node& n) {
  if (!n.IsScalar()) type_error(ctx, "a string", n);
  return n.Scalar();
}
// A list of strings, or one string (axolotl accepts both for target modules).
std::vector<std::string> get_string_list(const Context& ctx, const YAML::Node& n) {
  if (n.IsScalar()) return {n.Scalar()};
  if (!n.IsSequence()) type_error(ctx, "a list of strings", n);
  std::vector<std::string> out;
  for (const auto& e : n) {
    if (!e.IsScalar()) type_error(ctx, "a list of strings", n);
    out.push_back(e.Scalar());
  }
  return out;
}

std::vector<DatasetSource> get_datasets(const Context& ctx, const YAML::Node& n) {
  if (!n.IsSequence()) type_error(ctx, "a list of {path, type}", n);
  std::vector<DatasetSource> out;
  for (size_t i = 0; i < n.size(); ++i) {
    const YAML::Node& d = n[i];
    Context c{ctx.source, fmt::format("{}[{}]", ctx.key, i)};
    if (d.IsScalar()) {  // a bare path: alpaca
      out.push_back({d.Scalar(), DatasetType::kAlpaca, ""});
      continue;
    }
    if (!d.IsMap()) type_error(c, "a mapping {path, type}", d);
    DatasetSource s;
    for (const auto& kv : d) {
      if (!kv.first.IsScalar()) type_error(c, "a mapping with string keys", kv.first);
      const std::string k = kv.first.Scalar();
      Context ck{ctx.source, c.key + "." + clip(k)};
      if (k == "path") {
        s.path = get_string(ck, kv.second);
      } else if (k == "type") {
        s.type = parse_dataset_type(get_string(ck, kv.second),
                                    fmt::format("{}: key '{}'", ctx.source, ck.key));
      } else if (k == "format" || k == "ds_type") {
        s.file_format = get_string(ck, kv.second);
      } else {
        const std::string hint = closest_key(k, {"path", "type", "format", "ds_type"});
        throw_input_error(kComponent, "{}: unknown key '{}'{}", ctx.source, clip(ck.key),
                          hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint));
      }
    }
    if (s.path.empty())
      throw_input_error(kComponent, "{}: key '{}' needs a 'path'", ctx.source, c.key);
    out.push_back(std::move(s));
  }
  return out;
}

// `loss_scale: dynamic | none | <number>` (a number is a fixed scale).
void set_loss_scale(const Context& ctx, const YAML::Node& n, TrainConfig& t) {
  if (!n.IsScalar()) type_error(ctx, "dynamic, none or a positive number", n);
  const std::string v = n.Scalar();
  if (v == "dynamic") {
    t.loss_scale = LossScaleKind::kDynamic;
    return;
  }
  if (v == "none" || v == "false" || v == "off") {
    t.loss_scale = LossScaleKind::kNone;
    return;
  }
  double x = 0.0;
  try {
    x = n.as<double>();
  } catch (const YAML::Exception&) {
    const std::string hint = closest_key(v, {"dynamic", "none"});
    throw_input_error(kComponent,
                      "{}: key '{}': expected dynamic, none or a positive number, "
                      "found '{}'{}",
                      ctx.source, ctx.key, clip(v),
                      hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint));
  }
  if (!(x > 0) || !std::isfinite(x))
    throw_input_error(kComponent,
                      "{}: key '{}': a fixed loss scale must be a positive number, "
                      "found {}",
                      ctx.source, ctx.key, clip(v));
  t.loss_scale = LossScaleKind::kFixed;
  t.loss_scale_value = x;
}

using Setter = std::function<void(const Context&, const YAML::Node&, TrainConfig&)>;

const std::vector<std::pair<std::string, Setter>>& setters() {
  using C = const Context&;
  using N = const YAML::Node&;
  using T = TrainConfig&;
  static const std::vector<std::pair<std::string, Setter>> table = {
      {"base_model", [](C c, N n, T t) { t.base_model = get_string(c, n); }},
      {"datasets", [](C c, N n, T t) { t.datasets = get_datasets(c, n); }},
      {"test_datasets", [](C c, N n, T t) { t.test_datasets = get_datasets(c, n); }},
      {"val_set_size", [](C c, N n, T t) { t.val_set_size = get_double(c, n); }},
      {"sequence_len", [](C c, N n, T t) { t.sequence_len = get_int(c, n); }},
      {"sample_packing", [](C c, N n, T t) { t.sample_packing = get_bool(c, n); }},
      {"pad_to_sequence_len", [](C c, N n, T t) { t.pad_to_sequence_len = get_bool(c, n); }},
      {"train_on_inputs", [](C c, N n, T t) { t.train_on_inputs = get_bool(c, n); }},
      {"on_bad_row", [](C c, N n, T t) { t.on_bad_row = get_string(c, n); }},
      {"adapter",
       [](C c, N n, T t) {
         const std::string v = get_string(c, n);
         if (v == "lora") {
           t.adapter = AdapterKind::kLora;
         } else if (v == "full" || v.empty()) {
           t.adapter = AdapterKind::kFull;
         } else if (v == "qlora") {
           t.adapter = AdapterKind::kLora;
           t.load_in_4bit = true;
         } else {
           throw_input_error(kComponent,
                             "{}: key 'adapter': expected lora, qlora or full, "
                             "found '{}'",
                             c.source, clip(v));
         }
       }},
      {"lora_model_dir", [](C c, N n, T t) { t.lora_model_dir = get_string(c, n); }},
      {"lora_r", [](C c, N n, T t) { t.lora_r = static_cast<int>(get_int_in(c, n, 1, 1 << 16)); }},
      {"lora_alpha", [](C c, N n, T t) { t.lora_alpha = get_double(c, n); }},
      {"lora_dropout", [](C c, N n, T t) { t.lora_dropout = get_double(c, n); }},
      {"lora_target_modules", [](C c, N n, T t) { t.lora_target_modules = get_string_list(c, n); }},
      {"lora_target_linear",  // axolotl: true means every linear projection
       [](C c, N n, T t) {
         if (get_bool(c, n)) t.lora_target_modules = {"all-linear"};
       }},
      {"use_rslora", [](C c, N n, T t) { t.use_rslora = get_bool(c, n); }},
      {"load_in_4bit", [](C c, N n, T t) { t.load_in_4bit = get_bool(c, n); }},
      {"bnb_4bit_quant_type", [](C c, N n, T t) { t.bnb_4bit_quant_type = get_string(c, n); }},
      {"bnb_4bit_use_double_quant",
       [](C c, N n, T t) { t.bnb_4bit_use_double_quant = get_bool(c, n); }},
      {"bnb_4bit_compute_dtype",
       [](C c, N n, T t) { t.bnb_4bit_compute_dtype = get_string(c, n); }},
      {"micro_batch_size",
       [](C c, N n, T t) {
         t.micro_batch_auto = n.IsScalar() && n.Scalar() == "auto";
         t.micro_batch_size = t.micro_batch_auto ? 1 : get_int(c, n);
       }},
      {"global_batch_size", [](C c, N n, T t) { t.global_batch_size = get_int(c, n); }},
      {"gradient_accumulation_steps",
       [](C c, N n, T t) {
         t.gradient_accumulation_steps = get_int(c, n);
         t.gradient_accumulation_set = true;
       }},
      {"num_epochs", [](C c, N n, T t) { t.num_epochs = get_double(c, n); }},
      {"max_steps", [](C c, N n, T t) { t.max_steps = get_nonneg(c, n); }},
      {"learning_rate", [](C c, N n, T t) { t.learning_rate = get_double(c, n); }},
      {"lr_scheduler",
       [](C c, N n, T t) {
         const std::string v = get_string(c, n);
         if (v == "cosine") {
           t.lr_scheduler = SchedulerKind::kCosine;
         } else if (v == "linear") {
           t.lr_scheduler = SchedulerKind::kLinear;
         } else if (v == "constant" || v == "constant_with_warmup") {
           t.lr_scheduler = SchedulerKind::kConstant;
         } else {
           throw_input_error(kComponent,
                             "{}: key 'lr_scheduler': expected cosine, linear or constant, "
                             "found '{}'",
                             c.source, clip(v));
         }
       }},
      {"warmup_steps", [](C c, N n, T t) { t.warmup_steps = get_nonneg(c, n); }},
      {"warmup_ratio", [](C c, N n, T t) { t.warmup_ratio = get_double(c, n); }},
      {"weight_decay", [](C c, N n, T t) { t.weight_decay = get_double(c, n); }},
      {"max_grad_norm", [](C c, N n, T t) { t.max_grad_norm = get_double(c, n); }},
      {"adam_beta1", [](C c, N n, T t) { t.adam_beta1 = get_double(c, n); }},
      {"adam_beta2", [](C c, N n, T t) { t.adam_beta2 = get_double(c, n); }},
      {"adam_epsilon", [](C c, N n, T t) { t.adam_epsilon = get_double(c, n); }},
      {"optimizer",  // only AdamW exists; accept its common names so axolotl files load
       [](C c, N n, T) {
         const std::string v = get_string(c, n);
         if (v != "adamw" && v != "adamw_torch" && v != "adamw_torch_fused" && v != "adamw_hf")
           throw_input_error(kComponent,
                             "{}: key 'optimizer': only adamw is implemented, "
                             "found '{}'",
                             c.source, clip(v));
       }},
      {"gradient_checkpointing",
       [](C c, N n, T t) {
         t.gradient_checkpointing_auto = n.IsScalar() && n.Scalar() == "auto";
         t.gradient_checkpointing = t.gradient_checkpointing_auto || get_bool(c, n);
       }},
      {"max_memory",  // one cap for every GPU, or a list (one per GPU of a node)
       [](C c, N n, T t) {
         try {
           t.max_memory_per_gpu.clear();
           if (n.IsSequence()) {
             if (n.size() == 0) throw_input_error(kComponent, "an empty list");
             for (const YAML::Node& e : n)
               t.max_memory_per_gpu.push_back(parse_byte_size(get_string(c, e)));
             t.max_memory =
                 *std::min_element(t.max_memory_per_gpu.begin(), t.max_memory_per_gpu.end());
           } else {
             t.max_memory = parse_byte_size(get_string(c, n));
           }
         } catch (const Error& e) {
           throw_input_error(kComponent, "{}: key 'max_memory': {}", c.source, e.message());
         }
       }},
      {"bf16",  // axolotl also writes `bf16: auto`
       [](C c, N n, T t) {
         t.bf16 = n.IsScalar() && n.Scalar() == "auto" ? true : get_bool(c, n);
       }},
      {"fp16", [](C c, N n, T t) { t.fp16 = get_bool(c, n); }},
      {"loss_scale", [](C c, N n, T t) { set_loss_scale(c, n, t); }},
      {"loss_scale_init", [](C c, N n, T t) { t.loss_scale_init = get_double(c, n); }},
      {"loss_scale_growth_interval",
       [](C c, N n, T t) { t.loss_scale_growth_interval = get_int(c, n); }},
      {"loss_scale_min", [](C c, N n, T t) { t.loss_scale_min = get_double(c, n); }},
      {"seed", [](C c, N n, T t) { t.seed = static_cast<uint64_t>(get_nonneg(c, n)); }},
      {"backend", [](C c, N n, T t) { t.backend = get_string(c, n); }},
      {"strategy", [](C c, N n, T t) { t.strategy = get_string(c, n); }},
      {"offload",  // a buffer class, or a list of them
       [](C c, N n, T t) {
         std::vector<std::string> classes;
         if (n.IsSequence())
           for (const YAML::Node& e : n) classes.push_back(get_string(c, e));
         else
           classes.push_back(get_string(c, n));
         t.offload_weights = t.offload_optimizer = t.offload_activations = false;
         for (const std::string& v : classes) {
           if (v == "weights") {
             t.offload_weights = true;
           } else if (v == "optimizer") {
             t.offload_optimizer = true;
           } else if (v == "activations") {
             t.offload_activations = true;
           } else if (v != "none") {
             throw_input_error(kComponent,
                               "{}: key 'offload': expected weights, optimizer, activations or "
                               "none, found '{}'",
                               c.source, clip(v));
           }
         }
       }},
      {"output_dir", [](C c, N n, T t) { t.output_dir = get_string(c, n); }},
      {"save_steps", [](C c, N n, T t) { t.save_steps = get_nonneg(c, n); }},
      {"save_total_limit", [](C c, N n, T t) { t.save_total_limit = get_nonneg(c, n); }},
      {"eval_steps", [](C c, N n, T t) { t.eval_steps = get_nonneg(c, n); }},
      {"logging_steps", [](C c, N n, T t) { t.logging_steps = get_nonneg(c, n); }},
      {"resume_from_checkpoint",
       [](C c, N n, T t) { t.resume_from_checkpoint = n.IsNull() ? "" : get_string(c, n); }},
  };
  return table;
}

void apply_key(TrainConfig& cfg, const std::string& key, const YAML::Node& value,
               const std::string& source) {
  for (const auto& [name, set] : setters())
    if (name == key) {
      if (value.IsNull() && key != "resume_from_checkpoint") return;  // `key:` keeps the default
      set(Context{source, key}, value, cfg);
      return;
    }
  const std::string hint = closest_key(key, train_config_keys());
  throw_input_error(kComponent, "{}: unknown key '{}'{}", source, clip(key),
                    hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint));
}

// A path as written when it exists, else next to the config file (configs travel with data).
std::filesystem::path resolve(const TrainConfig& c, const std::filesystem::path& p,
                              const std::string& source, const char* key) {
  try {
    if (p.empty() || p.is_absolute() || paths::exists(p, kComponent) || c.config_dir.empty())
      return p;
    const auto beside = c.config_dir / p;
    return paths::exists(beside, kComponent) ? beside : p;
  } catch (const Error& e) {
    throw_input_error(kComponent, "{}: key '{}': {}", source, key, e.message());
  }
}

}  // namespace

const std::vector<std::string>& train_config_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const auto& [name, set] : setters()) k.push_back(name);
    return k;
  }();
  return keys;
}

std::string closest_key(const std::string& key, const std::vector<std::string>& candidates) {
  auto distance = [](const std::string& a, const std::string& b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= b.size(); ++j)
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
      std::swap(prev, cur);
    }
    return prev[b.size()];
  };
  std::string best;
  size_t best_d = SIZE_MAX;
  const size_t limit = std::max<size_t>(1, key.size() / 3);
  for (const auto& c : candidates) {
    // The distance is at least the length difference: skip hopeless candidates (a 300 KB key
    // would otherwise cost a 300 KB x |candidate| table each).
    if ((key.size() > c.size() ? key.size() - c.size() : c.size() - key.size()) > limit) continue;
    const size_t d = distance(key, c);
    if (d < best_d) best_d = d, best = c;
  }
  // Suggest only plausible typos: at most a third of the key's length (and 1 for short keys).
  return best_d <= limit ? best : "";
}

TrainConfig parse_train_config(const std::string& yaml_text, const std::filesystem::path& source,
                               const std::vector<std::string>& overrides) {
  TrainConfig cfg;
  cfg.config_path = source;
  cfg.config_dir = source.has_parent_path() ? source.parent_path() : std::filesystem::path{};
  const std::string src = clip_path(source.string());
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw_input_error(kComponent, "{}: invalid YAML: {}", src, e.what());
  }
  if (!root.IsNull() && !root.IsMap())
    throw_input_error(kComponent, "{}: expected a mapping of keys at the top level", src);
  if (root.IsMap())
    for (const auto& kv : root) {
      if (!kv.first.IsScalar())
        throw_input_error(kComponent, "{}:{}: expected a key name, found a {}", src,
                          kv.first.Mark().line + 1, kv.first.IsMap() ? "mapping" : "list");
      apply_key(cfg, kv.first.Scalar(), kv.second, src);
    }
  for (const std::string& o : overrides) {
    const size_t eq = o.find('=');
    if (eq == std::string::npos || eq == 0)
      throw_input_error(kComponent, "command line: expected --key=value, found '--{}'", clip(o));
    std::string key = o.substr(0, eq);
    std::replace(key.begin(), key.end(), '-', '_');  // --max-steps works like --max_steps
    YAML::Node value;
    try {
      value = YAML::Load(o.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      throw_input_error(kComponent, "command line: --{}: invalid value: {}", clip(key), e.what());
    }
    apply_key(cfg, key, value, "command line");
  }
  for (auto& d : cfg.datasets) d.path = resolve(cfg, d.path, src, "datasets");
  for (auto& d : cfg.test_datasets) d.path = resolve(cfg, d.path, src, "test_datasets");

  return cfg;
}

TrainConfig load_train_config(const std::filesystem::path& path,
                              const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) throw_input_error(kComponent, "cannot open config file {}", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_train_config(ss.str(), path, overrides);
}

void validate_train_config(const TrainConfig& c) {
  const std::string src = c.config_path.empty() ? "config" : clip_path(c.config_path.string());
  auto fail = [&](const std::string& msg) { throw_input_error(kComponent, "{}: {}", src, msg); };
  // A path that cannot even be looked at (a name over 255 bytes) is this key's input error.
  auto query = [&](const char* key, const std::filesystem::path& p, auto&& test) {
    try {
      return test(p);
    } catch (const Error& e) {
      throw_input_error(kComponent, "{}: key '{}': {}", src, key, e.message());
    }
  };
  auto is_dir = [](const std::filesystem::path& p) { return paths::is_directory(p, kComponent); };
  auto exists = [](const std::filesystem::path& p) { return paths::exists(p, kComponent); };
  auto is_file = [](const std::filesystem::path& p) {
    return paths::is_regular_file(p, kComponent);
  };
  if (c.base_model.empty()) fail("key 'base_model' is required (a Hugging Face model directory)");
  if (!query("base_model", c.base_model, is_dir))
    fail(fmt::format("base_model: '{}' is not a directory", clip_path(c.base_model)));
  if (!query("base_model", std::filesystem::path(c.base_model) / "config.json", exists))
    fail(fmt::format("base_model: '{}' has no config.json", clip_path(c.base_model)));
  if (c.datasets.empty()) fail("key 'datasets' is required: [{path: FILE, type: alpaca}]");
  for (const auto* list : {&c.datasets, &c.test_datasets})
    for (const auto& d : *list)
      if (!query(list == &c.datasets ? "datasets" : "test_datasets", d.path, is_file))
        fail(fmt::format("dataset file '{}' does not exist", clip_path(d.path.string())));
  if (!c.lora_model_dir.empty() &&
      !query("lora_model_dir", std::filesystem::path(c.lora_model_dir) / "adapter_config.json",
             exists))
    fail(fmt::format("lora_model_dir: '{}' has no adapter_config.json",
                     clip_path(c.lora_model_dir)));
  if (!c.lora_model_dir.empty() && c.adapter != AdapterKind::kLora)
    fail("lora_model_dir needs adapter: lora");
  if (c.sequence_len < 2) fail("sequence_len must be at least 2");
  if (c.micro_batch_size < 1) fail("micro_batch_size must be at least 1");
  // Bounds that keep micro_batch_size x sequence_len (the tokens of one micro-batch, which sizes
  // every activation buffer) far from overflowing: 16M tokens in a sequence, 64M per batch.
  if (c.sequence_len > (int64_t{1} << 24))
    fail(fmt::format("key 'sequence_len' must be at most {}, found {}", int64_t{1} << 24,
                     c.sequence_len));

  if (c.micro_batch_size > (int64_t{1} << 26) / c.sequence_len)
    fail(fmt::format("micro_batch_size x sequence_len must be at most {} tokens, found {} x {}",
                     int64_t{1} << 26, c.micro_batch_size, c.sequence_len));

  if (c.gradient_accumulation_steps < 1) fail("gradient_accumulation_steps must be at least 1");
  if (c.global_batch_size < 0) fail("global_batch_size must be at least 1");
  if (c.global_batch_size > 0 && !c.micro_batch_auto)
    fail(
        "global_batch_size goes with micro_batch_size: auto (it keeps the sequences per step "
        "while the planner picks the micro-batch); otherwise set gradient_accumulation_steps");
  if (c.global_batch_size > 0 && c.gradient_accumulation_set)
    fail("global_batch_size and gradient_accumulation_steps are both set; give one");
  if (c.micro_batch_auto && c.max_memory == 0)
    fail(
        "micro_batch_size: auto needs max_memory (e.g. max_memory: 22GiB): the planner picks "
        "the fastest micro-batch whose plan fits it");
  if (c.max_steps == 0 && !(c.num_epochs > 0)) fail("set num_epochs > 0 or max_steps > 0");
  if (!(c.learning_rate > 0)) fail("learning_rate must be positive");
  if (c.warmup_ratio < 0 || c.warmup_ratio >= 1) fail("warmup_ratio must be in [0, 1)");
  if (c.val_set_size < 0 || c.val_set_size >= 1) fail("val_set_size must be in [0, 1)");
  if (c.lora_r < 1) fail("lora_r must be at least 1");
  if (c.adapter == AdapterKind::kLora) try {
      parse_lora_targets(c.lora_target_modules);
    } catch (const Error& e) {
      fail(fmt::format("key 'lora_target_modules': {}", e.message()));
    }
  if (c.lora_dropout < 0 || c.lora_dropout >= 1) fail("lora_dropout must be in [0, 1)");
  if (c.max_grad_norm < 0) fail("max_grad_norm must be >= 0 (0 disables clipping)");
  if (c.bf16 && c.fp16) fail("bf16 and fp16 are both true; choose one");
  if (c.bnb_4bit_quant_type != "nf4" && c.bnb_4bit_quant_type != "fp4")
    fail(fmt::format("bnb_4bit_quant_type: expected nf4 or fp4, found '{}'",
                     c.bnb_4bit_quant_type.substr(0, 40)));
  if (c.strategy != "auto" && c.strategy != "ddp" && c.strategy != "zero2" &&
      c.strategy != "zero3" && c.strategy != "pipeline")
    fail(fmt::format("strategy: expected auto, ddp, zero2, zero3 or pipeline, found '{}'",
                     c.strategy.substr(0, 40)));
  if (c.strategy == "pipeline" && c.gradient_checkpointing_auto)
    fail(
        "gradient_checkpointing: auto is not built for strategy: pipeline (each stage would "
        "need its own count); give true or false (`fitlm plan --strategy pipeline` shows what "
        "fits)");
  if (c.load_in_4bit && c.adapter == AdapterKind::kFull)
    fail("load_in_4bit needs adapter: lora or qlora (4-bit base weights are frozen)");
  if (!c.bnb_4bit_compute_dtype.empty()) {
    const std::string& d = c.bnb_4bit_compute_dtype;
    if (d != "bfloat16" && d != "float16" && d != "float32")
      fail(fmt::format("bnb_4bit_compute_dtype: expected bfloat16, float16 or float32, found '{}'",
                       d.substr(0, 40)));
    if ((d == "bfloat16" && c.fp16) || (d == "float16" && c.bf16))
      fail(fmt::format("bnb_4bit_compute_dtype: {} contradicts {}: true", d,
                       c.fp16 ? "fp16" : "bf16"));
  }
  if (c.gradient_checkpointing_auto && c.max_memory == 0)
    fail("gradient_checkpointing: auto needs max_memory (e.g. max_memory: 15GiB)");
  if (!(c.loss_scale_init > 0) || !std::isfinite(c.loss_scale_init))
    fail(fmt::format("loss_scale_init must be a positive number, found {}", c.loss_scale_init));
  if (c.loss_scale_growth_interval < 1) fail("loss_scale_growth_interval must be at least 1");
  if (!(c.loss_scale_min > 0) || c.loss_scale_min > c.loss_scale_init)
    fail(fmt::format("loss_scale_min must be in (0, loss_scale_init = {}], found {}",
                     c.loss_scale_init, c.loss_scale_min));
  if (c.on_bad_row != "fail" && c.on_bad_row != "skip") fail("on_bad_row must be fail or skip");
  // output_dir: create it and prove we can write there, before hours of training.
  std::error_code ec;
  std::filesystem::create_directories(c.output_dir, ec);
  if (ec || !std::filesystem::is_directory(c.output_dir, ec))
    fail(fmt::format("output_dir '{}' cannot be created: {}", clip_path(c.output_dir.string()),
                     ec ? ec.message() : "not a directory"));
  if (::access(c.output_dir.c_str(), W_OK) != 0)
    fail(fmt::format("output_dir '{}' is not writable", clip_path(c.output_dir.string())));
}

}  // namespace fitlm::train
