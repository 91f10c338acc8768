#include "fitlm/train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"
#include "fitlm/core/log.h"
#include "fitlm/core/paths.h"
#include "fitlm/io/peft_adapter.h"
#include "fitlm/io/safetensors.h"
#include "fitlm/io/safetensors_atomic_file.h"
#include "fitlm/train/model_output.h"

namespace fitlm::train {
namespace {

constexpr const char* kComponent = "checkpoint";
constexpr const char* kPrefix = "checkpoint-";
constexpr const char* kTmpPrefix = ".tmp-checkpoint-";

std::vector<int64_t> dims_of(const Tensor& t) {
  return {t.shape.dims.begin(), t.shape.dims.begin() + t.ndim()};
}

// Step number of a "checkpoint-N" directory name, or -1.
int64_t step_of(const std::filesystem::path& p) {
  const std::string name = p.filename().string();
  if (name.rfind(kPrefix, 0) != 0) return -1;
  const std::string digits = name.substr(std::strlen(kPrefix));
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit)) return -1;
  return std::stoll(digits);
}

std::vector<std::pair<int64_t, std::filesystem::path>> list_checkpoints(
    const std::filesystem::path& output_dir) {
  std::vector<std::pair<int64_t, std::filesystem::path>> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(output_dir, ec)) {
    const int64_t n = step_of(e.path());
    if (n >= 0 && std::filesystem::exists(e.path() / "trainer_state.json"))
      out.emplace_back(n, e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Writes `name → host copy of tensor` for one field of every param into one safetensors file.
void write_tensors(Transformer& model, Tensor Param::*field, const std::string& suffix,
                   const std::filesystem::path& path) {
  io::SafetensorsWriter w;  // each tensor downloaded while the file is written
  Backend& be = model.backend();
  for (Param& p : model.params()) {
    const Tensor t = p.*field;
    w.add_f32_produced(p.name + suffix, io::StDType::kF32, dims_of(t),
                       [&be, t](float* out) { be.download(t, out); });
  }
  w.write(path);
}

void read_tensors(Transformer& model, Tensor Param::*field, const std::string& suffix,
                  const std::filesystem::path& path) {
  const io::SafetensorsFile st = io::SafetensorsFile::open(path);
  for (Param& p : model.params()) {
    const std::string name = p.name + suffix;
    Tensor& t = p.*field;
    if (!st.contains(name))
      throw_input_error(kComponent, "{}: tensor '{}' is missing", path.string(), name);
    const auto& info = st.info(name);
    if (info.dtype != io::StDType::kF32 || !(Shape(info.shape) == t.shape))
      throw_input_error(kComponent, "{}: tensor '{}' must be F32 {}, found {} {}", path.string(),
                        name, t.shape.str(), io::st_dtype_name(info.dtype),
                        Shape(info.shape).str());
    model.backend().upload(t, st.bytes(name).data(), DType::kF32);
  }
}

std::string shard_file_name(int rank, int world) {
  return fmt::format("optimizer-rank-{}-of-{}.safetensors", rank, world);
}

// The tensors of a rank's optimizer file, in the optimizer params' order.
struct ShardField {
  Tensor Param::*field;
  const char* suffix;
};
constexpr ShardField kShardFields[] = {
    {&Param::master, ".master"}, {&Param::adam_m, ".adam_m"}, {&Param::adam_v, ".adam_v"}};

// This rank's optimizer file: its master and moment blocks. The whole values are rebuilt from
// the blocks: each rank casts its master block into its block of the value, and the caller
// exchanges the blocks (dist::Strategy::after_update) before training goes on.
void read_optimizer_shard(Transformer& model, const std::filesystem::path& dir,
                          const CheckpointRanks& ranks) {
  const std::filesystem::path path = dir / shard_file_name(ranks.rank, ranks.world);
  if (!std::filesystem::exists(path))
    throw_input_error(kComponent,
                      "resume: {} has no {}: rank {} of the {} ranks that wrote it is missing "
                      "its optimizer state; the checkpoint is incomplete",
                      clip_path(dir.string()), shard_file_name(ranks.rank, ranks.world), ranks.rank,
                      ranks.world);
  const io::SafetensorsFile st = io::SafetensorsFile::open(path);
  for (Param& p : model.optimizer_params())
    for (const ShardField& f : kShardFields) {
      Tensor& t = p.*f.field;
      const std::string name = p.name + f.suffix;
      if (!st.contains(name))
        throw_input_error(kComponent, "{}: tensor '{}' is missing", path.string(), name);
      const auto& info = st.info(name);
      if (info.dtype != io::StDType::kF32 || !(Shape(info.shape) == Shape{t.numel()}))
        throw_input_error(kComponent, "{}: tensor '{}' must be F32 [{}], found {} {}",
                          path.string(), name, t.numel(), io::st_dtype_name(info.dtype),
                          Shape(info.shape).str());
      if (t.numel() > 0) model.backend().upload(t, st.bytes(name).data(), DType::kF32);
    }
  // The value's block from the master's, which the strategy all-gathers; a split model's
  // (unsharded) values whole.
  for (Param& p : model.optimizer_params()) {
    if (ranks.split_model) {
      if (p.master.data != p.value.data) model.backend().copy(p.master, p.value);
    } else if (p.shard.size > 0) {
      model.backend().copy(p.master, p.value.flat_range(p.shard.offset, p.shard.end()));
    }
  }
}

}  // namespace

std::filesystem::path checkpoint_staging_dir(const std::filesystem::path& output_dir,
                                             int64_t step) {
  return output_dir / (kTmpPrefix + std::to_string(step));
}

std::filesystem::path begin_checkpoint(const std::filesystem::path& output_dir, int64_t step) {
  const std::filesystem::path tmp = checkpoint_staging_dir(output_dir, step);
  std::filesystem::remove_all(tmp);
  std::filesystem::create_directories(tmp);
  return tmp;
}

void write_optimizer_shard(Transformer& model, const std::filesystem::path& staging_dir,
                           const CheckpointRanks& ranks) {
  model.backend().synchronize();
  io::SafetensorsWriter w;  // each tensor downloaded while the file is written
  Backend& be = model.backend();
  for (Param& p : model.optimizer_params())
    for (const ShardField& f : kShardFields) {
      const Tensor t = p.*f.field;
      w.add_f32_produced(p.name + f.suffix, io::StDType::kF32, {t.numel()},
                         [&be, t](float* out) { be.download(t, out); });
    }
  w.write(staging_dir / shard_file_name(ranks.rank, ranks.world));
  if (ranks.split_model && model.mode() == TrainMode::kLora)
    write_adapter_part(model, staging_dir, ranks.rank, ranks.world);
}

void fsync_dir(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

std::filesystem::path save_checkpoint(Transformer& model, const TrainerState& state,
                                      const std::filesystem::path& output_dir,
                                      const std::string& base_model,
                                      const std::filesystem::path& config_file,
                                      const CheckpointRanks& ranks) {
  namespace fs = std::filesystem;
  const std::string n = std::to_string(state.global_step);
  const fs::path tmp = output_dir / (kTmpPrefix + n);
  const fs::path final_dir = output_dir / (kPrefix + n);
  if (!ranks.sharded_optimizer) begin_checkpoint(output_dir, state.global_step);
  model.backend().synchronize();
  if (ranks.sharded_optimizer) {
    for (int r = 0; r < ranks.world; ++r)
      if (!fs::exists(tmp / shard_file_name(r, ranks.world)))
        throw_internal_error(kComponent, "{}: rank {} did not write its optimizer file {}",
                             tmp.string(), r, shard_file_name(r, ranks.world));
  } else {
    // Masters are the truth: on bf16 devices `value` is only their rounded copy.
    write_tensors(model, &Param::master, "", tmp / "trainable.safetensors");
    write_tensors(model, &Param::adam_m, ".adam_m", tmp / "optimizer_m.safetensors");
    write_tensors(model, &Param::adam_v, ".adam_v", tmp / "optimizer_v.safetensors");
  }
  if (model.mode() == TrainMode::kLora && ranks.split_model)
    join_adapter_parts(model, tmp, base_model, ranks.world);
  else if (model.mode() == TrainMode::kLora)
    save_peft_adapter(model, tmp, base_model);
  if (!config_file.empty() && fs::exists(config_file))
    io::write_file_atomic(tmp / "train_config.yaml", [&] {
      std::ifstream in(config_file);
      return std::string(std::istreambuf_iterator<char>(in), {});
    }());
  nlohmann::json j = {
      {"global_step", state.global_step},
      {"total_steps", state.total_steps},
      {"epoch", state.data.epoch},
      {"batch_index", state.data.index},
      {"seed", state.seed},
      {"data_fingerprint", state.data_fingerprint},
      {"adapter", state.adapter},
      {"format", "fitlm-checkpoint-1"},
      {"optimizer_steps", state.optimizer_steps},
      {"skipped_steps", state.skipped_steps},
  };
  if (ranks.sharded_optimizer) j["optimizer_shards"] = ranks.world;
  if (ranks.split_model) j["pipeline_stages"] = ranks.world;
  // nlohmann writes doubles with round-trip precision, so the scale reads back bit-exact.
  if (state.loss_scaler)
    j["loss_scaler"] = {{"scale", state.loss_scaler->scale},
                        {"growth_tracker", state.loss_scaler->growth_tracker}};
  io::write_file_atomic(tmp / "trainer_state.json", j.dump(2) + "\n");
  fsync_dir(tmp);
  if (fs::exists(final_dir)) fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  fsync_dir(output_dir);
  return final_dir;
}

TrainerState load_checkpoint(Transformer& model, const std::filesystem::path& dir,
                             const CheckpointRanks& ranks) {
  const auto state_path = dir / "trainer_state.json";
  if (!paths::exists(state_path, kComponent))
    throw_input_error(kComponent, "{} is not a checkpoint (no trainer_state.json)",
                      clip_path(dir.string()));
  const nlohmann::json j = json_input::parse_file(state_path, kComponent);
  TrainerState s;
  int shards = 0, stages = 0;
  try {
    s.global_step = j.at("global_step").get<int64_t>();
    s.total_steps = j.at("total_steps").get<int64_t>();
    s.data.epoch = j.at("epoch").get<int64_t>();
    s.data.index = j.at("batch_index").get<int64_t>();
    s.seed = j.at("seed").get<uint64_t>();
    s.data_fingerprint = j.at("data_fingerprint").get<uint64_t>();
    s.adapter = j.at("adapter").get<std::string>();
    s.optimizer_steps = j.value("optimizer_steps", s.global_step);
    s.skipped_steps = j.value("skipped_steps", int64_t{0});
    if (j.contains("loss_scaler")) {
      const nlohmann::json& ls = j.at("loss_scaler");
      s.loss_scaler =
          LossScalerState{ls.at("scale").get<double>(), ls.at("growth_tracker").get<int64_t>()};
    }
    shards = j.value("optimizer_shards", 0);
    stages = j.value("pipeline_stages", 0);
  } catch (const nlohmann::json::exception& e) {
    throw_input_error(kComponent, "{}: {}", clip_path(state_path.string()),
                      json_input::describe(e));
  }
  const int want_stages = ranks.split_model ? ranks.world : 0;
  if (stages != want_stages) {
    auto pipeline = [](int n) {
      return n ? fmt::format("a pipeline over {} stages", n) : std::string("not a pipeline");
    };
    throw_input_error(kComponent,
                      "resume: {} was written by {}, this run is {}: resume with the strategy and "
                      "number of ranks that wrote it",
                      clip_path(dir.string()), pipeline(stages), pipeline(want_stages));
  }
  const int want = ranks.sharded_optimizer ? ranks.world : 0;
  if (shards != want)
    throw_input_error(kComponent,
                      "resume: {} holds {}, this run {}: resume with the strategy and number of "
                      "ranks that wrote it",
                      clip_path(dir.string()),
                      shards ? fmt::format("the optimizer state of {} ranks (zero2)", shards)
                             : std::string("whole optimizer state (one process or ddp)"),
                      want ? fmt::format("shards it over {} ranks (zero2)", want)
                           : std::string("keeps it whole"));
  if (ranks.sharded_optimizer) {
    read_optimizer_shard(model, dir, ranks);
  } else {
    read_tensors(model, &Param::master, "", dir / "trainable.safetensors");
    read_tensors(model, &Param::adam_m, ".adam_m", dir / "optimizer_m.safetensors");
    read_tensors(model, &Param::adam_v, ".adam_v", dir / "optimizer_v.safetensors");
    for (Param& p : model.params())
      if (p.master.data != p.value.data) model.backend().copy(p.master, p.value);
  }
  return s;
}

std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& output_dir) {
  const auto all = list_checkpoints(output_dir);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

void prune_checkpoints(const std::filesystem::path& output_dir, int64_t keep) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(output_dir, ec))
    if (e.path().filename().string().rfind(kTmpPrefix, 0) == 0)
      std::filesystem::remove_all(e.path(), ec);
  if (keep <= 0) return;
  const auto all = list_checkpoints(output_dir);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) {
    log::debug("removing old checkpoint {}", all[i].second.string());
    std::filesystem::remove_all(all[i].second, ec);
  }
}

}  // namespace fitlm::train
