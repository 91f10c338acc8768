// Known GPUs for `fitlm plan --gpus`: memory, bf16 support, published tensor rates and
// bandwidths, and the parser of GPU sets ("2x16GiB", "4xRTX3090", "A5000,A5000", "H200").
// Every rate here is a vendor's published figure, not a measurement (gpu_catalog.cpp cites the
// datasheets); the planner's cost model (plan/search.h) scales them by a calibrated efficiency.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace fitlm::plan {

struct GpuSpec {
  std::string name;          // "H200", "RTX3090", or "16GiB" for an anonymous GPU
  size_t memory_bytes = 0;   // what fitlm may allocate: the driver's reported total minus the
                             // CUDA context (see gpu_catalog.cpp)
  bool bf16 = true;          // has bf16 tensor cores (sm_80+); else the job runs in f16
  double tensor_tflops = 0;  // published dense bf16 (or fp16 where no bf16) tensor TFLOP/s,
                             // FP32 accumulate, without sparsity
  double hbm_gbps = 0;       // published memory bandwidth, GB/s
  double link_gbps = 0;      // inter-GPU link to assume, GB/s per direction (NVLink or PCIe)
  double pcie_gbps = 0;      // host link, GB/s per direction (offload transfers)
  std::string link;          // "PCIe gen4", "NVLink 4", ... (for output)
  bool anonymous = false;    // from a bare size: generic, conservative rates
};

// The CUDA backend's fixed device reserve outside the arena (cuBLASLt workspace, reduction
// scratch, cuDNN reserve, grouped-GEMM pointer arrays, MoE counts). It mirrors
// cuda_fixed_workspace_bytes() (backend/cuda/cuda_backend.cpp), which only exists in CUDA
// builds; tests/cuda/plan_reserve_cuda_test.cpp checks that the two agree.
inline constexpr size_t kCudaFixedWorkspaceBytes =
    (size_t{32} << 20) + 256 + (size_t{16} << 20) + 3 * 1024 * sizeof(void*) + 512 * 4;

// The built-in table, in a fixed order.
const std::vector<GpuSpec>& builtin_gpus();

class GpuCatalog {
 public:
  GpuCatalog();  // the built-in table
  // Adds (or replaces, by name) GPUs from a JSON file: an array of objects, or {"gpus": [...]},
  // each {"name", "memory" ("22GiB" or bytes), "bf16", "tflops", "hbm_gbps", "link_gbps",
  // "pcie_gbps", "link"}. Input error naming the file and the bad entry.
  void add_file(const std::string& path);
  void add_json_text(const std::string& text, const std::string& origin);
  // By name, case-insensitive, ignoring '-', '_' and ' ' ("rtx-3090" = "RTX3090"); nullptr when
  // unknown.
  const GpuSpec* find(const std::string& name) const;
  // The GPU whose name a device description contains ("cuda:0 NVIDIA H200 (sm_90, ...)" →
  // H200), the longest such name ("L40S" over "L4"); nullptr when none does.
  const GpuSpec* find_in_text(const std::string& text) const;
  const std::vector<GpuSpec>& gpus() const { return gpus_; }
  std::string names() const;  // "T4, V100-16GB, ..."

 private:
  std::vector<GpuSpec> gpus_;
};

// A generic GPU of `bytes` usable memory: PCIe gen3, conservative rates.
GpuSpec anonymous_gpu(size_t bytes);

// "2x16GiB", "4xRTX3090", "A5000,A5000", "H200", "2xA100-80GB,H100": comma-separated items,
// each [COUNTx]NAME-or-SIZE. Input error ([plan]) naming the bad token and the known names.
std::vector<GpuSpec> parse_gpu_set(const std::string& spec, const GpuCatalog& catalog);

}  // namespace fitlm::plan
