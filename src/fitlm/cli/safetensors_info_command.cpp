// `fitlm safetensors-info PATH [--json]`: lists the tensors of a safetensors file or a
// (sharded) model directory with dtype, shape and the fp64 sum of their values -- a quick way
// to check what a checkpoint holds, and the hook our PyTorch cross-check tests read through.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>

#include "fitlm/cli/command_registry.h"
#include "fitlm/io/safetensors_index.h"

namespace fitlm::cli {
namespace {

template <typename T>
double sum_as(std::span<const std::byte> b) {
  double s = 0;
  for (size_t i = 0; i + sizeof(T) <= b.size(); i += sizeof(T)) {
    T v;
    std::memcpy(&v, b.data() + i, sizeof(T));
    s += static_cast<double>(v);
  }
  return s;
}

double sum_halves(std::span<const std::byte> b, float (*to_f32)(uint16_t)) {
  double s = 0;
  for (size_t i = 0; i + 2 <= b.size(); i += 2) {
    uint16_t h;
    std::memcpy(&h, b.data() + i, 2);
    s += to_f32(h);
  }
  return s;
}

// Sum of the tensor's values in fp64, streaming over the mapping (no fp32 copy of big
// tensors); nullopt for dtypes fitlm does not load.
std::optional<double> tensor_sum(const io::ShardedSafetensors& st, const std::string& name) {
  const io::StDType t = st.info(name).dtype;
  if (!io::st_dtype_is_float_loadable(t) && !io::st_dtype_is_raw_loadable(t)) return std::nullopt;
  const std::span<const std::byte> b = st.bytes(name);
  switch (t) {
    case io::StDType::kF32: return sum_as<float>(b);
    case io::StDType::kBF16: return sum_halves(b, bf16_to_f32);
    case io::StDType::kF16: return sum_halves(b, f16_to_f32);
    case io::StDType::kU8: return sum_as<uint8_t>(b);
    case io::StDType::kBOOL: return sum_as<uint8_t>(b);
    case io::StDType::kI8: return sum_as<int8_t>(b);
    case io::StDType::kI32: return sum_as<int32_t>(b);
    case io::StDType::kI64: return sum_as<int64_t>(b);
    default: return std::nullopt;
  }
}

int run_info(const std::string& path, bool json, bool sums) {
  const io::ShardedSafetensors st = io::ShardedSafetensors::open(path);
  nlohmann::ordered_json out = {{"path", path}};
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  for (const auto& shard : st.shards())
    for (const auto& [k, v] : shard.metadata()) meta[k] = v;
  out["metadata"] = meta;
  out["tensors"] = nlohmann::ordered_json::array();
  uint64_t total = 0;
  for (const auto& name : st.names()) {
    const io::SafetensorsTensorInfo& info = st.info(name);
    total += info.bytes();
    nlohmann::ordered_json t = {{"name", name},
                                {"dtype", io::st_dtype_name(info.dtype)},
                                {"shape", info.shape},
                                {"bytes", info.bytes()},
                                {"file", st.file_of(name).path().filename().string()}};
    const std::optional<double> s = sums ? tensor_sum(st, name) : std::nullopt;
    t["sum"] = s ? nlohmann::ordered_json(*s) : nlohmann::ordered_json(nullptr);
    if (json) {
      out["tensors"].push_back(std::move(t));
    } else {
      std::printf("%-60s %-8s %-20s%s\n", name.c_str(), t["dtype"].get<std::string>().c_str(),
                  fmt::format("[{}]", fmt::join(info.shape, ", ")).c_str(),
                  s ? fmt::format(" sum={:.9g}", *s).c_str() : "");
    }
  }
  if (json) {
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("%zu tensors, %llu bytes in %zu file(s)\n", st.names().size(),
                static_cast<unsigned long long>(total), st.shards().size());
  }
  return 0;
}

RunFn setup(CLI::App& app) {
  struct Opts {
    std::string path;
    bool json = false, no_sums = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("path", o->path, "A .safetensors file, an index json, or a model directory")
      ->required();
  app.add_flag("--json", o->json, "Print JSON instead of a table");
  app.add_flag("--no-sums", o->no_sums, "Skip reading the data to sum each tensor");
  return [o] { return run_info(o->path, o->json, !o->no_sums); };
}

CommandRegistration reg{"safetensors-info",
                        "List the tensors of a safetensors file or model directory", setup};

}  // namespace
}  // namespace fitlm::cli
