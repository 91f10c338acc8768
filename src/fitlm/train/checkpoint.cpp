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
  io::SafetensorsWriter w;
  std::vector<std::vector<float>> host;
  host.reserve(model.params().size());
  for (Param& p : model.params()) {
    const Tensor& t = p.*field;
    host.emplace_back(static_cast<size_t>(t.numel()));
    model.backend().download(t, host.back().data());
    w.add_f32(p.name + suffix, io::StDType::kF32, dims_of(t), host.back().data());
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

}  // namespace

void fsync_dir(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

std::filesystem::path save_checkpoint(Transformer& model, const TrainerState& state,
                                      const std::filesystem::path& output_dir,
                                      const std::string& base_model,
                                      const std::filesystem::path& config_file) {
  namespace fs = std::filesystem;
  const std::string n = std::to_string(state.global_step);
  const fs::path tmp = output_dir / (kTmpPrefix + n);
  const fs::path final_dir = output_dir / (kPrefix + n);
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  model.backend().synchronize();
  // Masters are the truth: on bf16 devices `value` is only their rounded copy.
  write_tensors(model, &Param::master, "", tmp / "trainable.safetensors");
  write_tensors(model, &Param::adam_m, ".adam_m", tmp / "optimizer_m.safetensors");
  write_tensors(model, &Param::adam_v, ".adam_v", tmp / "optimizer_v.safetensors");
  if (model.mode() == TrainMode::kLora) save_peft_adapter(model, tmp, base_model);
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

TrainerState load_checkpoint(Transformer& model, const std::filesystem::path& dir) {
  const auto state_path = dir / "trainer_state.json";
  if (!paths::exists(state_path, kComponent))
    throw_input_error(kComponent, "{} is not a checkpoint (no trainer_state.json)",
                      clip_path(dir.string()));
  const nlohmann::json j = json_input::parse_file(state_path, kComponent);
  TrainerState s;
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
  } catch (const nlohmann::json::exception& e) {
    throw_input_error(kComponent, "{}: {}", clip_path(state_path.string()),
                      json_input::describe(e));
  }

  read_tensors(model, &Param::master, "", dir / "trainable.safetensors");
  read_tensors(model, &Param::adam_m, ".adam_m", dir / "optimizer_m.safetensors");
  read_tensors(model, &Param::adam_v, ".adam_v", dir / "optimizer_v.safetensors");
  for (Param& p : model.params())
    if (p.master.data != p.value.data) model.backend().copy(p.master, p.value);
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
