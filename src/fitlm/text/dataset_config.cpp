#include "fitlm/text/dataset_config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

#include "fitlm/core/error.h"
#include "fitlm/core/paths.h"

namespace fitlm {
namespace {

template <typename T>
T scalar(const YAML::Node& node, const std::string& source, const std::string& key,
         const char* expected) {
  try {
    return node.as<T>();
  } catch (const YAML::Exception&) {
    throw_input_error("config", "{}:{}: '{}' must be {}", source, node.Mark().line + 1, key,
                      expected);
  }
}

}  // namespace

DataConfig parse_data_config(const std::string& yaml_text, const std::filesystem::path& base_dir,
                             const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw_input_error("config", "{}:{}: invalid YAML: {}", source, e.mark.line + 1, e.msg);
  }
  if (!root.IsMap()) throw_input_error("config", "{}: expected a mapping of keys", source);
  DataConfig c;
  if (auto n = root["base_model"])
    c.base_model = scalar<std::string>(n, source, "base_model", "a path");
  if (auto n = root["sequence_len"])
    c.sequence_len = scalar<int64_t>(n, source, "sequence_len", "an integer");
  if (auto n = root["sample_packing"])
    c.sample_packing = scalar<bool>(n, source, "sample_packing", "true or false");
  if (auto n = root["train_on_inputs"])
    c.train_on_inputs = scalar<bool>(n, source, "train_on_inputs", "true or false");
  if (auto n = root["on_bad_row"])
    c.on_bad_row = parse_on_bad_row(scalar<std::string>(n, source, "on_bad_row", "fail or skip"));
  if (auto n = root["seed"]) c.seed = scalar<uint64_t>(n, source, "seed", "a non-negative integer");
  if (auto n = root["val_set_size"])
    c.val_set_size = scalar<double>(n, source, "val_set_size", "a fraction");
  const YAML::Node ds = root["datasets"];
  if (!ds || !ds.IsSequence() || ds.size() == 0)
    throw_input_error("config", "{}: 'datasets' must be a list of {{path, type}}", source);
  for (size_t i = 0; i < ds.size(); ++i) {
    const std::string key = "datasets[" + std::to_string(i) + "]";
    const YAML::Node d = ds[i];
    if (!d.IsMap() || !d["path"] || !d["type"])
      throw_input_error("config", "{}:{}: '{}' must have 'path' and 'type'", source,
                        d.Mark().line + 1, key);
    DatasetSource src;
    src.path = scalar<std::string>(d["path"], source, key + ".path", "a path");
    src.type = parse_dataset_type(
        scalar<std::string>(d["type"], source, key + ".type", "a type"),
        fmt::format("{}:{}: '{}.type'", clip_path(source), d["type"].Mark().line + 1, key));

    if (d["format"])
      src.file_format =
          scalar<std::string>(d["format"], source, key + ".format", "jsonl, json or csv");
    // Paths as written work from the current directory; a config kept next to its data also
    // works from anywhere.
    if (src.path.is_relative() && !paths::exists(src.path, "config") &&
        paths::exists(base_dir / src.path, "config"))
      src.path = base_dir / src.path;
    c.datasets.push_back(std::move(src));
  }
  return c;
}

DataConfig load_data_config(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw_input_error("config", "{}: cannot open the config file", path.string());
  std::ostringstream buf;
  buf << in.rdbuf();
  return parse_data_config(buf.str(), path.parent_path(), path.string());
}

}  // namespace fitlm
