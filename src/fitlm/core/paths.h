// File-system queries on user-given paths. std::filesystem's throwing forms report a path that
// cannot even be looked at (a name over 255 bytes, a parent without search permission) as a
// filesystem_error, which would reach the user as an internal error; these report it as an input
// error naming the path (clipped). A path that does not exist is not an error: they return false.
#pragma once

#include <filesystem>
#include <string>

namespace fitlm::paths {

bool exists(const std::filesystem::path& p, const std::string& component);
bool is_directory(const std::filesystem::path& p, const std::string& component);
bool is_regular_file(const std::filesystem::path& p, const std::string& component);

}  // namespace fitlm::paths
