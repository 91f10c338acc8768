// Parsing of user-given memory sizes: "15GiB", "15GB", "800MiB", "1.5G", "1024" (bytes).
#pragma once

#include <cstddef>
#include <string>

namespace fitlm {

// Binary and decimal units are both accepted (GiB = 2^30, GB = 10^9; a bare G means GiB as
// nvidia-smi and PyTorch report memory). Error names the text on bad input.
size_t parse_byte_size(const std::string& text);

}  // namespace fitlm
