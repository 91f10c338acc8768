// How much host memory a job can still take: the kernel's MemAvailable (/proc/meminfo), which
// counts free memory and the page cache it can drop. Plans that keep buffers in host memory
// (offloaded weights, the embedding table) are checked against it before they pin a byte.
#pragma once

#include <cstddef>
#include <optional>

namespace fitlm {

// nullopt where the machine does not say (no /proc/meminfo).
std::optional<size_t> host_memory_available();

}  // namespace fitlm
