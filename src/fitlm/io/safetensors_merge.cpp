#include "fitlm/io/safetensors_merge.h"

#include <map>
#include <string>

#include "fitlm/core/error.h"
#include "fitlm/io/safetensors.h"

namespace fitlm::io {

void merge_safetensors(const std::vector<std::filesystem::path>& inputs,
                       const std::filesystem::path& output) {
  // The files stay mapped until the writer has copied their bytes.
  std::vector<SafetensorsFile> files;
  for (const std::filesystem::path& p : inputs) files.push_back(SafetensorsFile::open(p));
  std::map<std::string, const std::filesystem::path*> seen;
  SafetensorsWriter w;
  for (const SafetensorsFile& f : files)
    for (const SafetensorsTensorInfo& t : f.tensors()) {
      const auto [it, fresh] = seen.emplace(t.name, &f.path());
      if (!fresh)
        throw_input_error("safetensors", "merge into {}: tensor '{}' is in both {} and {}",
                          output.string(), t.name, it->second->string(), f.path().string());
      w.add_bytes(t.name, t.dtype, t.shape, f.data(t.name));
    }
  w.write(output);
}

}  // namespace fitlm::io
