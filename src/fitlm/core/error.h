// Errors: one exception type carrying the component that raised it and the exit code the CLI
// should return. User-facing text reads "[component] what was expected, what was found".
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <string_view>

namespace fitlm {

// Exit codes of the `fitlm` binary.
enum class ExitCode : int {
  kOk = 0,
  kInternal = 1,  // a bug or an unexpected runtime failure
  kBadInput = 2,  // malformed file, bad config, wrong shapes, unknown architecture
  kNoFit = 3,     // the allocation plan does not fit the memory budget
  kDiverged = 4,  // NaN/inf loss
  // A rank of a multi-rank job hung (or stopped answering): another rank waited past the comm's
  // timeout (FITLM_COMM_TIMEOUT_S) and ended the whole job.
  kRankFailed = 5,
};

class Error : public std::runtime_error {
 public:
  Error(std::string component, std::string message, ExitCode code)
      : std::runtime_error(fmt::format("[{}] {}", component, message)),
        component_(std::move(component)),
        message_(std::move(message)),
        code_(code) {}
  const std::string& component() const { return component_; }
  const std::string& message() const { return message_; }  // what() without "[component] "
  ExitCode code() const { return code_; }

 private:
  std::string component_;
  std::string message_;
  ExitCode code_;
};

// A user-given value (a YAML scalar, a key, a token, a path) as error messages quote it: at most
// about `max_bytes`, long ones cut in the middle to "head...tail" (the tail often names the
// file), on UTF-8 character boundaries. Every quoted value in an input error goes through it,
// so a 300 KB value gives a short line, not a 300 KB one.
inline std::string clip(std::string_view s, size_t max_bytes = 80) {
  if (s.size() <= max_bytes) return std::string(s);
  constexpr std::string_view kEllipsis = "...";
  const size_t keep = max_bytes > kEllipsis.size() ? max_bytes - kEllipsis.size() : 0;
  auto continuation = [&](size_t i) {
    return i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80;
  };
  size_t head = keep * 2 / 3, tail = s.size() - (keep - head);
  while (head > 0 && continuation(head)) --head;
  while (continuation(tail)) ++tail;
  return std::string(s.substr(0, head)) + std::string(kEllipsis) + std::string(s.substr(tail));
}

// A user-given path in a message: clipped like a value, with room for the long paths of real
// model caches (a name past the 255-byte limit still prints as a readable line).
inline std::string clip_path(std::string_view path) {
  return clip(path, 200);
}

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
