#include "fitlm/io/safetensors_index.h"

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <unordered_set>

#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"
#include "fitlm/core/paths.h"
#include "fitlm/io/safetensors_atomic_file.h"

namespace fitlm::io {
namespace {

namespace fs = std::filesystem;
constexpr const char* kComponent = "safetensors";
constexpr uintmax_t kMaxIndexBytes = 100'000'000;

// A shard name must stay inside the model directory: a plain relative path, no "..".
bool is_safe_relative(const fs::path& p) {
  if (p.empty() || p.is_absolute()) return false;
  for (const auto& part : p)
    if (part == "..") return false;
  return true;
}

// Parses the index json into tensor name -> shard file name, rejecting duplicate names (which
// a json object would otherwise collapse silently).
std::map<std::string, std::string> parse_index(const fs::path& index) {
  const std::string file = clip_path(index.string());
  std::error_code ec;
  const uintmax_t size = fs::file_size(index, ec);
  if (ec) throw_input_error(kComponent, "{}: cannot read: {}", file, ec.message());
  if (size > kMaxIndexBytes)
    throw_input_error(kComponent, "{}: {} bytes, more than the {} an index may have", file, size,
                      kMaxIndexBytes);
  std::ifstream in(index, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in) throw_input_error(kComponent, "{}: cannot read", file);
  const std::string text = ss.str();

  std::string top_key, duplicate;
  std::unordered_set<std::string> seen;
  auto on_event = [&](int depth, nlohmann::json::parse_event_t ev, nlohmann::json& v) {
    if (ev != nlohmann::json::parse_event_t::key) return true;
    if (depth == 1) top_key = v.get<std::string>();
    if (depth == 2 && top_key == "weight_map" && duplicate.empty() &&
        !seen.insert(v.get<std::string>()).second)
      duplicate = v.get<std::string>();
    return true;
  };
  const nlohmann::json j = json_input::parse(text, kComponent, file, on_event);

  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw_input_error(kComponent,
                      "{}: expected an object with a \"weight_map\" object of tensor name -> "
                      "shard file",
                      file);
  if (!duplicate.empty())
    throw_input_error(kComponent, "{}: tensor '{}': appears more than once in weight_map", file,
                      duplicate);
  std::map<std::string, std::string> map;
  for (const auto& [name, shard] : j["weight_map"].items()) {
    if (!shard.is_string())
      throw_input_error(kComponent,
                        "{}: tensor '{}': weight_map value must be a shard file name, "
                        "found {}",
                        file, name, shard.type_name());
    map.emplace(name, shard.get<std::string>());
  }
  return map;
}

}  // namespace

ShardedSafetensors ShardedSafetensors::open(const fs::path& path) {
  ShardedSafetensors s;
  fs::path index;
  if (paths::is_directory(path, kComponent)) {
    if (paths::exists(path / kSafetensorsIndexName, kComponent)) {
      index = path / kSafetensorsIndexName;
    } else if (paths::exists(path / kSafetensorsSingleName, kComponent)) {
      s.shards_.push_back(SafetensorsFile::open(path / kSafetensorsSingleName));
    } else {
      throw_input_error(kComponent, "{}: found neither {} nor {}", clip_path(path.string()),
                        kSafetensorsIndexName, kSafetensorsSingleName);
    }
  } else if (path.string().ends_with(".json")) {
    index = path;
  } else {
    s.shards_.push_back(SafetensorsFile::open(path));
  }

  if (!index.empty()) {
    s.index_path_ = index;
    const std::map<std::string, std::string> weight_map = parse_index(index);
    const fs::path dir = index.parent_path();
    // Check every shard exists before mapping any, so a missing one is reported as such.
    std::map<std::string, size_t> shard_pos;
    for (const auto& [name, shard] : weight_map) {
      if (shard_pos.count(shard)) continue;
      if (!is_safe_relative(shard))
        throw_input_error(kComponent, "{}: tensor '{}': shard '{}' must be a file name inside {}",
                          clip_path(index.string()), clip(name), clip(shard),
                          clip_path(dir.string()));
      if (!paths::is_regular_file(dir / shard, kComponent))
        throw_input_error(kComponent, "{}: shard '{}' (holding tensor '{}') does not exist in {}",
                          clip_path(index.string()), clip(shard), clip(name),
                          clip_path(dir.string()));
      shard_pos.emplace(shard, shard_pos.size());
    }
    std::vector<std::string> order(shard_pos.size());
    for (const auto& [shard, i] : shard_pos) order[i] = shard;
    for (const auto& shard : order) s.shards_.push_back(SafetensorsFile::open(dir / shard));
    for (const auto& [name, shard] : weight_map) {
      const size_t i = shard_pos.at(shard);
      if (!s.shards_[i].contains(name))
        throw_input_error(kComponent,
                          "{}: tensor '{}': mapped to shard '{}' which does not hold it",
                          clip_path(index.string()), clip(name), clip(shard));
      s.shard_of_.emplace(name, i);
      s.names_.push_back(name);  // std::map iteration: already sorted
    }
    return s;
  }

  for (const auto& t : s.shards_[0].tensors()) {
    s.shard_of_.emplace(t.name, 0);
    s.names_.push_back(t.name);
  }
  std::sort(s.names_.begin(), s.names_.end());
  return s;
}

bool ShardedSafetensors::contains(std::string_view name) const {
  return shard_of_.count(std::string(name)) > 0;
}

const SafetensorsFile& ShardedSafetensors::file_of(std::string_view name) const {
  const auto it = shard_of_.find(std::string(name));
  if (it == shard_of_.end()) {
    const fs::path& where = index_path_.empty() ? shards_[0].path() : index_path_;
    throw_input_error(kComponent, "{}: tensor '{}': not in this checkpoint", where.string(), name);
  }
  return shards_[it->second];
}

namespace {

// Removes the files of an earlier save (model.safetensors, the index, model-*-of-*.safetensors)
// that are not in `keep`, so that neither fitlm nor transformers can load a stale mix.
void remove_stale_model_files(const fs::path& dir, const std::vector<fs::path>& keep) {
  std::unordered_set<std::string> names;
  for (const auto& p : keep) names.insert(p.filename().string());
  static const std::regex kShardName(R"(model-\d{5}-of-\d{5}\.safetensors)");
  std::error_code ec;
  for (const auto& de : fs::directory_iterator(dir)) {
    const std::string f = de.path().filename().string();
    const bool ours = f == kSafetensorsSingleName || f == kSafetensorsIndexName ||
                      std::regex_match(f, kShardName);
    if (ours && !names.count(f)) fs::remove(de.path(), ec);  // best effort
  }
}

// The index goes last: a crash before this leaves the previous save's index intact.
fs::path write_index(const fs::path& dir, const nlohmann::json& weight_map, uint64_t total) {
  nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  const fs::path path = dir / kSafetensorsIndexName;
  write_file_atomic(path, index.dump(2) + "\n");
  return path;
}

}  // namespace

std::string shard_file_name(size_t i, size_t n) {
  return fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, n);
}

std::vector<fs::path> write_sharded(const fs::path& dir,
                                    const std::vector<SafetensorsEntry>& tensors,
                                    uint64_t max_shard_bytes,
                                    const std::map<std::string, std::string>& metadata) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw_input_error(kComponent, "{}: cannot create directory: {}", dir.string(), ec.message());

  // Greedy packing in the given order, so shards follow the model's layer order.
  std::vector<SafetensorsWriter> shards(1);
  uint64_t in_shard = 0, total = 0;
  for (const auto& e : tensors) {
    if (max_shard_bytes > 0 && in_shard > 0 && in_shard + e.bytes() > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().add(e);
    in_shard += e.bytes();
    total += e.bytes();
  }
  for (auto& w : shards)
    for (const auto& [k, v] : metadata) w.set_metadata(k, v);

  std::vector<fs::path> written;
  if (shards.size() == 1) {
    written.push_back(dir / kSafetensorsSingleName);
    shards[0].write(written.back());
  } else {
    nlohmann::json weight_map = nlohmann::json::object();
    const size_t n = shards.size();
    for (size_t i = 0; i < n; ++i) {
      const std::string name = shard_file_name(i, n);
      shards[i].write(dir / name);
      written.push_back(dir / name);
      for (const auto& e : shards[i].entries()) weight_map[e.name] = name;
    }
    written.push_back(write_index(dir, weight_map, total));
  }
  remove_stale_model_files(dir, written);
  return written;
}

fs::path write_shard_index(const fs::path& dir, size_t n) {
  nlohmann::json weight_map = nlohmann::json::object();
  uint64_t total = 0;
  std::vector<fs::path> keep;
  for (size_t i = 0; i < n; ++i) {
    const std::string name = shard_file_name(i, n);
    const SafetensorsFile f = SafetensorsFile::open(dir / name);
    for (const SafetensorsTensorInfo& t : f.tensors()) {
      if (weight_map.contains(t.name))
        throw_input_error(kComponent, "{}: tensor '{}' is in both {} and {}", dir.string(),
                          clip(t.name), weight_map[t.name].get<std::string>(), name);
      weight_map[t.name] = name;
      total += t.bytes();
    }
    keep.push_back(dir / name);
  }
  keep.push_back(write_index(dir, weight_map, total));
  remove_stale_model_files(dir, keep);
  return keep.back();
}

}  // namespace fitlm::io
