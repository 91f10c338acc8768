#include "fitlm/core/paths.h"

#include "fitlm/core/error.h"

namespace fitlm::paths {
namespace {

std::filesystem::file_status status_of(const std::filesystem::path& p,
                                       const std::string& component) {
  std::error_code ec;
  const std::filesystem::file_status s = std::filesystem::status(p, ec);
  // ENOENT and ENOTDIR give not_found (with ec set): the path simply is not there.
  if (s.type() == std::filesystem::file_type::not_found) return s;
  if (ec)
    throw_input_error(component, "{}: cannot access this path: {}", clip_path(p.string()),
                      ec.message());
  return s;
}

}  // namespace

bool exists(const std::filesystem::path& p, const std::string& component) {
  return std::filesystem::exists(status_of(p, component));
}

bool is_directory(const std::filesystem::path& p, const std::string& component) {
  return std::filesystem::is_directory(status_of(p, component));
}

bool is_regular_file(const std::filesystem::path& p, const std::string& component) {
  return std::filesystem::is_regular_file(status_of(p, component));
}

}  // namespace fitlm::paths
