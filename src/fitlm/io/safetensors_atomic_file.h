// Crash-safe file replacement for the safetensors writers: bytes go to `path.tmp`, which is
// fsynced and renamed over `path`, then the directory is fsynced so the rename itself survives
// a power loss. Readers see either the old file or the complete new one, never a torn write.
// (General enough for checkpoints too; kept here until io/ has a shared home for it.)
#pragma once

#include <cstddef>
#include <filesystem>
#include <string_view>

namespace fitlm::io {

class AtomicFileWriter {
 public:
  // Creates (truncates) `path.tmp`. Throws Error (kBadInput) naming the path on failure.
  explicit AtomicFileWriter(std::filesystem::path path);
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  // Without commit(), the temp file is removed and `path` is left as it was.
  ~AtomicFileWriter();

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  void commit();

 private:
  std::filesystem::path path_, tmp_;
  int fd_ = -1;
};

// Writes the whole of `contents` to `path` through an AtomicFileWriter.
void write_file_atomic(const std::filesystem::path& path, std::string_view contents);

}  // namespace fitlm::io
