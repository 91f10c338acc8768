// ChatTemplate: the model's Jinja chat template rendered with the variables transformers'
// apply_chat_template passes: messages, add_generation_prompt, tools=None, documents=None, the
// tokenizer's special tokens (special_tokens_map), raise_exception and strftime_now, and the
// caller's extra kwargs on top.
#include "fitlm/text/chat_template.h"

#include <ctime>
#include <fstream>
#include <sstream>

#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"
#include "fitlm/text/jinja/evaluator.h"

namespace fitlm {

using OJson = nlohmann::ordered_json;

struct ChatTemplate::Impl {
  std::string source;
  jinja::Template tmpl;
  OJson special_tokens = OJson::object();
};

namespace {

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_input_error("chat_template", "{}: cannot open file", path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

OJson read_config(const std::filesystem::path& path) {
  OJson j = json_input::parse_ordered(read_text(path), "chat_template", clip_path(path.string()));
  if (!j.is_object())
    throw_input_error("chat_template", "{}: expected a JSON object", clip_path(path.string()));
  return j;
}

// A token is a string, or an AddedToken dict {"content": ..., "lstrip": ...} in older configs.
std::optional<std::string> token_text(const OJson& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string())
    return j["content"].get<std::string>();
  return std::nullopt;
}

// transformers' special_tokens_map: the attributes that are set (None ones are left out, so the
// template sees them undefined).
OJson special_tokens_of(const OJson& config) {
  OJson out = OJson::object();
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                          "cls_token", "mask_token"}) {
    if (!config.contains(key)) continue;
    if (auto t = token_text(config[key])) out[key] = *t;
  }
  if (config.contains("additional_special_tokens") &&
      config["additional_special_tokens"].is_array()) {
    OJson list = OJson::array();
    for (const OJson& t : config["additional_special_tokens"])
      if (auto s = token_text(t)) list.push_back(*s);
    if (!list.empty()) out["additional_special_tokens"] = std::move(list);
  }
  return out;
}

std::string template_of(const OJson& config, const std::filesystem::path& path) {
  const auto it = config.find("chat_template");
  if (it == config.end() || it->is_null())
    throw_input_error("chat_template", "{}: no chat_template (the tokenizer has no chat template)",
                      path.string());
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {  // [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
    // transformers builds {t["name"]: t["template"]}: every entry needs both, as strings.
    for (size_t i = 0; i < it->size(); ++i) {
      const OJson& t = (*it)[i];
      if (!t.is_object())
        throw_input_error("chat_template",
                          "{}: chat_template[{}]: expected an object with "
                          "'name' and 'template', found {}",
                          path.string(), i, t.type_name());
      for (const char* field : {"name", "template"}) {
        const auto f = t.find(field);
        if (f == t.end())
          throw_input_error("chat_template", "{}: chat_template[{}].{}: missing", path.string(), i,
                            field);
        if (!f->is_string())
          throw_input_error("chat_template",
                            "{}: chat_template[{}].{}: expected a string, found {}", path.string(),
                            i, field, f->type_name());
      }
    }
    for (const OJson& t : *it)
      if (t["name"].get_ref<const std::string&>() == "default")
        return t["template"].get<std::string>();
    throw_input_error("chat_template", "{}: chat_template is a list without a 'default' entry",
                      path.string());
  }
  throw_input_error("chat_template", "{}: chat_template must be a string or a list of templates",
                    path.string());
}

std::string strftime_now(const std::string& format) {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char buf[512];
  const size_t n = std::strftime(buf, sizeof buf, format.c_str(), &local);
  return std::string(buf, n);
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source, std::string bos_token, std::string eos_token)
    : impl_(std::make_unique<Impl>(Impl{source, jinja::Template(source), OJson::object()})) {
  // An empty token stands for "not set", as a None token is left out of special_tokens_map.
  if (!bos_token.empty()) impl_->special_tokens["bos_token"] = std::move(bos_token);
  if (!eos_token.empty()) impl_->special_tokens["eos_token"] = std::move(eos_token);
}

ChatTemplate ChatTemplate::from_tokenizer_config(const std::filesystem::path& path) {
  const OJson config = read_config(path);
  ChatTemplate t(template_of(config, path), "", "");
  t.impl_->special_tokens = special_tokens_of(config);
  return t;
}

ChatTemplate ChatTemplate::from_model_dir(const std::filesystem::path& dir) {
  const auto jinja_file = dir / "chat_template.jinja";
  const auto config_file = dir / "tokenizer_config.json";
  if (!std::filesystem::exists(jinja_file)) return from_tokenizer_config(config_file);
  ChatTemplate t(read_text(jinja_file), "", "");
  if (std::filesystem::exists(config_file))
    t.impl_->special_tokens = special_tokens_of(read_config(config_file));
  return t;
}

std::optional<ChatTemplate> ChatTemplate::find_in_model_dir(const std::filesystem::path& dir) {
  if (std::filesystem::exists(dir / "chat_template.jinja")) return from_model_dir(dir);
  std::ifstream in(dir / "tokenizer_config.json");
  if (!in) return std::nullopt;
  const auto j = nlohmann::json::parse(in, nullptr, false);
  if (!j.is_object() || !j.contains("chat_template") || j["chat_template"].is_null())
    return std::nullopt;
  return from_model_dir(dir);
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt, const nlohmann::json& extra) const {
  OJson list = OJson::array();
  for (const ChatMessage& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  return render_json(list, add_generation_prompt, OJson(extra));
}

std::string ChatTemplate::render_json(const OJson& messages, bool add_generation_prompt,
                                      const OJson& extra) const {
  using jinja::Value;
  if (!extra.is_object())
    throw_input_error("chat_template", "extra template variables must be a JSON object");
  std::map<std::string, Value> vars;
  for (auto it = impl_->special_tokens.begin(); it != impl_->special_tokens.end(); ++it)
    vars[it.key()] = Value::of(it.value());
  vars["messages"] = Value::of(messages);
  vars["add_generation_prompt"] = Value::of(add_generation_prompt);
  vars["tools"] = Value::of(OJson(nullptr));
  vars["documents"] = Value::of(OJson(nullptr));
  vars["raise_exception"] =
      Value::function("raise_exception", [](const jinja::CallArgs& a) -> Value {
        throw_input_error("chat_template", "{}", a.args.empty() ? "" : jinja::to_str(a.args[0]));
      });
  vars["strftime_now"] = Value::function("strftime_now", [](const jinja::CallArgs& a) {
    return Value::of(strftime_now(a.args.empty() ? "" : jinja::to_str(a.args[0])));
  });
  for (auto it = extra.begin(); it != extra.end(); ++it) vars[it.key()] = Value::of(it.value());
  return impl_->tmpl.render(vars);
}

const std::string& ChatTemplate::source() const {
  return impl_->source;
}

const OJson& ChatTemplate::special_tokens() const {
  return impl_->special_tokens;
}

}  // namespace fitlm
