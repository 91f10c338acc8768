// Errors: one exception type carrying the component that raised it and the exit code the CLI
// should return. User-facing text reads "[component] what was expected, what was found".
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace fitlm {

// Exit codes of the `fitlm` binary.
enum class ExitCode : int {
  kOk = 0,
  kInternal = 1,  // a bug or an unexpected runtime failure
  kBadInput = 2,  // malformed file, bad config, wrong shapes, unknown architecture
  kNoFit = 3,     // the allocation plan does not fit the memory budget
  kDiverged = 4,  // NaN/inf loss
};

class Error : public std::runtime_error {
 public:
  Error(std::string component, std::string message, ExitCode code)
      : std::runtime_error(fmt::format("[{}] {}", component, message)),
        component_(std::move(component)),
        code_(code) {}
  const std::string& component() const { return component_; }
  ExitCode code() const { return code_; }

 private:
  std::string component_;
  ExitCode code_;
};

// Bad user input: a file, a field, a config key. Exit code 2.
template <typename... Args>
[[noreturn]] void throw_input_error(const std::string& component, fmt::format_string<Args...> f,
                                    Args&&... args) {
  throw Error(component, fmt::format(f, std::forward<Args>(args)...), ExitCode::kBadInput);
}

// A broken invariant inside fitlm. Exit code 1.
template <typename... Args>
[[noreturn]] void throw_internal_error(const std::string& component,
                                       fmt::format_string<Args...> f, Args&&... args) {
  throw Error(component, fmt::format(f, std::forward<Args>(args)...), ExitCode::kInternal);
}

}  // namespace fitlm

// Invariant check that stays on in release builds.
#define FITLM_CHECK(cond, component, ...)                                              \
  do {                                                                                 \
    if (!(cond))                                                                       \
      ::fitlm::throw_internal_error(component, "check failed: {} ({}:{}): {}", #cond, \
                                    __FILE__, __LINE__, fmt::format(__VA_ARGS__));     \
  } while (0)
