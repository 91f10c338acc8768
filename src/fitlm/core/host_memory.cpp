#include "fitlm/core/host_memory.h"

#include <fstream>
#include <sstream>
#include <string>

namespace fitlm {

std::optional<size_t> host_memory_available() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    size_t kib = 0;
    if (fields >> key >> kib && key == "MemAvailable:") return kib * 1024;
  }
  return std::nullopt;
}

}  // namespace fitlm
