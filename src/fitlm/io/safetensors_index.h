// Sharded safetensors checkpoints as Hugging Face writes them (FORMATS.md §1):
// `model-00001-of-00004.safetensors` ... plus `model.safetensors.index.json` =
// {"metadata": {"total_size": N}, "weight_map": {"tensor": "shard file"}}, or one
// `model.safetensors` when everything fits in a single file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fitlm/io/safetensors.h"

namespace fitlm::io {

inline constexpr std::string_view kSafetensorsIndexName = "model.safetensors.index.json";
inline constexpr std::string_view kSafetensorsSingleName = "model.safetensors";

// All tensors of a checkpoint, looked up by name across its shards. Move-only (owns the maps).
class ShardedSafetensors {
 public:
  // `path` is a model directory (its index json wins over model.safetensors, as in the Hub's
  // sharded uploads), an index json, or a single .safetensors file. Throws Error (kBadInput)
  // naming the index file and shard when the index is malformed or a shard is missing.
  static ShardedSafetensors open(const std::filesystem::path& path);

  // Tensor names, sorted.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(std::string_view name) const;
  const SafetensorsFile& file_of(std::string_view name) const;  // throws if absent
  const SafetensorsTensorInfo& info(std::string_view name) const {
    return file_of(name).info(name);
  }
  std::span<const std::byte> bytes(std::string_view name) const {
    return file_of(name).bytes(name);
  }
  void read_f32(std::string_view name, float* dst) const { file_of(name).read_f32(name, dst); }
  void release(std::string_view name) const { file_of(name).release(name); }
  void read_as(std::string_view name, DType dst_dtype, void* dst) const {
    file_of(name).read_as(name, dst_dtype, dst);
  }

  const std::vector<SafetensorsFile>& shards() const { return shards_; }
  // The index json this checkpoint came from; empty for a single file.
  const std::filesystem::path& index_path() const { return index_path_; }

 private:
  std::filesystem::path index_path_;
  std::vector<SafetensorsFile> shards_;
  std::unordered_map<std::string, size_t> shard_of_;  // tensor name -> position in shards_
  std::vector<std::string> names_;
};

// Writes `tensors` into `dir` (created if needed): shards of at most `max_shard_bytes` of
// tensor data each (a larger tensor gets a shard of its own; 0 = no limit), filled in the
// given order, plus the index json -- or one model.safetensors when a single shard suffices.
// Each file is written atomically; files of an earlier save that the new one does not use
// (model.safetensors, the index, model-*-of-*.safetensors) are removed afterwards so that
// neither fitlm nor transformers can load a stale mix. Returns the files written.
std::vector<std::filesystem::path> write_sharded(
    const std::filesystem::path& dir, const std::vector<SafetensorsEntry>& tensors,
    uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata = {});

// "model-0000{i+1}-of-0000{n}.safetensors": shard i (from 0) of n, as the Hub names them.
std::string shard_file_name(size_t i, size_t n);

// When `n` shards named shard_file_name(i, n) are in `dir`, written by several processes (each
// pipeline stage its tensors): the index json over them, from their headers, then the earlier
// save's files that are not among them removed as write_sharded does. A tensor in two shards is
// an input error. Returns the index's path.
std::filesystem::path write_shard_index(const std::filesystem::path& dir, size_t n);

}  // namespace fitlm::io
