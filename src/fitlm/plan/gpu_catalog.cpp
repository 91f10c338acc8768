#include "fitlm/plan/gpu_catalog.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fitlm/core/byte_size.h"
#include "fitlm/core/error.h"

namespace fitlm::plan {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

// Memory: the total the driver reports (nvidia-smi's "MiB" total, which already excludes ECC
// and the driver's reserved region, as commonly read on these cards: it is a bit under the
// nominal "16 GB"/"80 GB"), minus 512 MiB for the CUDA context and the driver's per-process
// allocations, which fitlm's arena cannot use. Typical readings, not measured here: an actual
// card may report a few MiB more or less. Use --gpus 2x22GiB or a --gpu-file to be exact.
constexpr size_t usable(size_t reported_mib) {
  return (reported_mib - 512) * kMiB;
}

// Published figures (vendor datasheets and architecture whitepapers), dense tensor-core rates
// without structured sparsity, bf16 with FP32 accumulate (fp16 where the GPU has no bf16):
// - T4: NVIDIA T4 datasheet (65 TFLOPS FP16 mixed precision, 320 GB/s GDDR6, PCIe gen3 x16).
// - V100 SXM2 16/32 GB: NVIDIA V100 datasheet (125 TFLOPS tensor, 900 GB/s HBM2, NVLink 2
//   300 GB/s total = 150 GB/s per direction).
// - A10: NVIDIA A10 datasheet (BF16 125 TFLOPS dense, 600 GB/s, PCIe gen4).
// - RTX A5000: NVIDIA RTX A5000 datasheet (222.2 tensor TFLOPS with sparsity → 111 dense,
//   768 GB/s, PCIe gen4; the optional NVLink bridge is not assumed).
// - RTX 3090: NVIDIA Ampere GA102 whitepaper (71 TFLOPS FP16/BF16 tensor with FP32 accumulate,
//   dense; 936 GB/s; PCIe gen4).
// - RTX 4090: NVIDIA Ada Lovelace whitepaper (165.2 TFLOPS FP16/BF16 tensor with FP32
//   accumulate, dense; 1008 GB/s; PCIe gen4, no peer-to-peer: traffic goes through the host).
// - L4: NVIDIA L4 datasheet (BF16 242 TFLOPS with sparsity → 121 dense, 300 GB/s, PCIe gen4).
// - L40S: NVIDIA L40S datasheet (BF16 733 TFLOPS with sparsity → 362 dense, 864 GB/s, gen4).
// - A100 SXM4 40/80 GB: NVIDIA A100 datasheet (BF16 312 TFLOPS dense, 1555 / 2039 GB/s,
//   NVLink 3 600 GB/s total = 300 per direction, PCIe gen4).
// - H100 SXM5: NVIDIA H100 datasheet (BF16 1979 TFLOPS with sparsity → 989 dense, 3.35 TB/s,
//   NVLink 4 900 GB/s total = 450 per direction, PCIe gen5).
// - H200 SXM: NVIDIA H200 datasheet (989 dense, 4.8 TB/s, 141 GB, NVLink 4, PCIe gen5).
// PCIe per direction, x16: gen3 15.75, gen4 31.5, gen5 63 GB/s.
constexpr double kGen3 = 15.75, kGen4 = 31.5, kGen5 = 63.0;

GpuSpec gpu(const char* name, size_t reported_mib, bool bf16, double tflops, double hbm,
            double link, double pcie, const char* link_name) {
  GpuSpec g;
  g.name = name;
  g.memory_bytes = usable(reported_mib);
  g.bf16 = bf16;
  g.tensor_tflops = tflops;
  g.hbm_gbps = hbm;
  g.link_gbps = link;
  g.pcie_gbps = pcie;
  g.link = link_name;
  return g;
}

std::string key(const std::string& s) {
  std::string k;
  for (char ch : s)
    if (ch != '-' && ch != '_' && ch != ' ')
      k += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return k;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

}  // namespace

const std::vector<GpuSpec>& builtin_gpus() {
  static const std::vector<GpuSpec> table = {
      gpu("T4", 15360, false, 65, 320, kGen3, kGen3, "PCIe gen3"),
      gpu("V100-16GB", 16160, false, 125, 900, 150, kGen3, "NVLink 2"),
      gpu("V100-32GB", 32510, false, 125, 900, 150, kGen3, "NVLink 2"),
      gpu("A10", 23028, true, 125, 600, kGen4, kGen4, "PCIe gen4"),
      gpu("A5000", 24564, true, 111, 768, kGen4, kGen4, "PCIe gen4"),
      gpu("RTX3090", 24576, true, 71, 936, kGen4, kGen4, "PCIe gen4"),
      gpu("RTX4090", 24564, true, 165, 1008, kGen4, kGen4, "PCIe gen4"),
      gpu("L4", 23034, true, 121, 300, kGen4, kGen4, "PCIe gen4"),
      gpu("L40S", 46068, true, 362, 864, kGen4, kGen4, "PCIe gen4"),
      gpu("A100-40GB", 40960, true, 312, 1555, 300, kGen4, "NVLink 3"),
      gpu("A100-80GB", 81920, true, 312, 2039, 300, kGen4, "NVLink 3"),
      gpu("H100", 81559, true, 989, 3350, 450, kGen5, "NVLink 4"),
      gpu("H200", 143771, true, 989, 4800, 450, kGen5, "NVLink 4"),
  };
  return table;
}

GpuCatalog::GpuCatalog() : gpus_(builtin_gpus()) {}

void GpuCatalog::add_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw_input_error("plan", "{}: cannot read the GPU file", clip_path(path));
  std::stringstream ss;
  ss << in.rdbuf();
  add_json_text(ss.str(), path);
}

void GpuCatalog::add_json_text(const std::string& text, const std::string& origin) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw_input_error("plan", "{}: not JSON ({})", clip_path(origin), e.what());
  }
  const nlohmann::json& list = j.is_object() && j.contains("gpus") ? j["gpus"] : j;
  if (!list.is_array())
    throw_input_error("plan", "{}: expected an array of GPUs or {{\"gpus\": [...]}}",
                      clip_path(origin));
  for (size_t i = 0; i < list.size(); ++i) {
    const nlohmann::json& e = list[i];
    auto bad = [&](const char* what) {
      throw_input_error("plan", "{}: GPU {} ({}): {}", clip_path(origin), i,
                        e.is_object() && e.contains("name") && e["name"].is_string()
                            ? clip(e["name"].get<std::string>())
                            : "no name",
                        what);
    };
    if (!e.is_object() || !e.contains("name") || !e["name"].is_string())
      bad("needs a string \"name\"");
    GpuSpec g;
    g.name = e["name"].get<std::string>();
    if (!e.contains("memory")) bad("needs \"memory\" (\"22GiB\" or bytes)");
    if (e["memory"].is_string())
      g.memory_bytes = parse_byte_size(e["memory"].get<std::string>());
    else if (e["memory"].is_number_unsigned())
      g.memory_bytes = e["memory"].get<size_t>();
    else
      bad("\"memory\" must be a size string or a byte count");
    if (!e.contains("tflops") || !e["tflops"].is_number() || e["tflops"].get<double>() <= 0)
      bad("needs a positive \"tflops\" (dense bf16/fp16 tensor TFLOP/s)");
    g.tensor_tflops = e["tflops"].get<double>();
    g.bf16 = e.value("bf16", true);
    g.hbm_gbps = e.value("hbm_gbps", 500.0);
    g.pcie_gbps = e.value("pcie_gbps", kGen4);
    g.link_gbps = e.value("link_gbps", g.pcie_gbps);
    g.link = e.value("link", std::string("user file"));
    if (g.link_gbps <= 0 || g.pcie_gbps <= 0) bad("bandwidths must be positive");
    auto it = std::find_if(gpus_.begin(), gpus_.end(),
                           [&](const GpuSpec& x) { return key(x.name) == key(g.name); });
    if (it != gpus_.end())
      *it = g;
    else
      gpus_.push_back(g);
  }
}

const GpuSpec* GpuCatalog::find(const std::string& name) const {
  const std::string k = key(name);
  for (const GpuSpec& g : gpus_)
    if (key(g.name) == k) return &g;
  // Common spellings: "rtxa5000", "h100sxm", "a10080gb" and "a100" (the 80 GB one is not
  // assumed: "A100" alone is ambiguous).
  if (k == "rtxa5000") return find("A5000");
  if (k == "h100sxm" || k == "h100sxm5") return find("H100");
  if (k == "h200sxm") return find("H200");
  return nullptr;
}

const GpuSpec* GpuCatalog::find_in_text(const std::string& text) const {
  const std::string t = key(text);
  const GpuSpec* best = nullptr;
  for (const GpuSpec& g : gpus_) {
    const std::string k = key(g.name);
    if (!k.empty() && t.find(k) != std::string::npos &&
        (!best || k.size() > key(best->name).size()))
      best = &g;
  }
  return best;
}

std::string GpuCatalog::names() const {
  std::string s;
  for (const GpuSpec& g : gpus_) s += (s.empty() ? "" : ", ") + g.name;
  return s;
}

GpuSpec anonymous_gpu(size_t bytes) {
  // Generic: a T4-class rate (fp16 65 TFLOPS is the slowest tensor-core GPU of the table, taken
  // as bf16-capable so that the plan's bytes are the bf16 job's: the same as f16), PCIe gen3.
  GpuSpec g;
  g.name = fmt::format("{}MiB", bytes / kMiB);
  g.memory_bytes = bytes;
  g.bf16 = true;
  g.tensor_tflops = 65;
  g.hbm_gbps = 320;
  g.link_gbps = kGen3;
  g.pcie_gbps = kGen3;
  g.link = "PCIe gen3 (assumed)";
  g.anonymous = true;
  return g;
}

std::vector<GpuSpec> parse_gpu_set(const std::string& spec, const GpuCatalog& catalog) {
  std::vector<GpuSpec> out;
  if (trim(spec).empty())
    throw_input_error("plan", "--gpus is empty: give e.g. 2x16GiB, 4xRTX3090, A5000,A5000 or H200");
  for (size_t b = 0; b <= spec.size();) {
    const size_t e = std::min(spec.find(',', b), spec.size());
    const std::string token = trim(spec.substr(b, e - b));
    b = e + 1;
    if (token.empty())
      throw_input_error("plan", "--gpus '{}': an empty item between commas", clip(spec));
    int count = 1;
    std::string what = token;
    const size_t x = token.find_first_of("xX");
    if (x != std::string::npos && x > 0 &&
        std::all_of(token.begin(), token.begin() + static_cast<std::ptrdiff_t>(x),
                    [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)); })) {
      if (x > 4) throw_input_error("plan", "--gpus: '{}': too many GPUs", clip(token));
      count = std::stoi(token.substr(0, x));
      what = trim(token.substr(x + 1));
      if (count < 1 || count > 1024)
        throw_input_error("plan", "--gpus: '{}': the count must be 1 to 1024", clip(token));
    }
    if (what.empty()) throw_input_error("plan", "--gpus: '{}' names no GPU", clip(token));
    GpuSpec g;
    if (const GpuSpec* known = catalog.find(what)) {
      g = *known;
    } else if (std::isdigit(static_cast<unsigned char>(what[0]))) {
      size_t bytes = 0;
      try {
        bytes = parse_byte_size(what);
      } catch (const Error&) {
        throw_input_error("plan",
                          "--gpus: '{}' in '{}' is neither a size (16GiB) nor a known GPU ({})",
                          clip(what), clip(token), catalog.names());
      }
      if (bytes < (size_t{1} << 30))
        throw_input_error("plan", "--gpus: '{}' is under 1 GiB: give a GPU's memory, e.g. 16GiB",
                          clip(what));
      g = anonymous_gpu(bytes);
    } else {
      throw_input_error("plan",
                        "--gpus: unknown GPU '{}' in '{}' (known: {}; or a size: 2x16GiB; "
                        "or add it with --gpu-file)",
                        clip(what), clip(token), catalog.names());
    }
    for (int i = 0; i < count; ++i) out.push_back(g);
  }
  if (out.size() > 1024) throw_input_error("plan", "--gpus: at most 1024 GPUs");
  return out;
}

}  // namespace fitlm::plan
