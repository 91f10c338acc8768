// Shared by the libFuzzer targets (docs/fuzzing.md): what counts as a finding, a scratch
// directory for the APIs that read files, and cutting one input into several parts.
//
// A bad input must come back as an input error (fitlm::Error with ExitCode::kBadInput), which
// the CLI reports with exit code 2. Anything else the parsers let out -- an internal error, a
// std:: or nlohmann exception, an unknown exception -- would reach the user as exit code 1 or
// worse, so the target prints it and traps: libFuzzer then saves the input as a crash, like
// it does for sanitizer reports and signals.
#pragma once

#include <cxxabi.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <typeinfo>
#include <vector>

#include "fitlm/core/error.h"
#include "fitlm/core/log.h"

namespace fitlm::fuzz {

[[noreturn]] inline void report_finding(const char* kind, const char* type, const char* what) {
  std::fprintf(stderr, "==fitlm-fuzz== FINDING: %s: %s: %s\n", kind, type, what);
  std::fflush(stderr);
  __builtin_trap();
}

inline std::string demangled_current_exception_type() {
  const std::type_info* t = abi::__cxa_current_exception_type();
  if (t == nullptr) return "unknown";
  int status = 0;
  char* name = abi::__cxa_demangle(t->name(), nullptr, nullptr, &status);
  std::string out = status == 0 && name ? name : t->name();
  std::free(name);
  return out;
}

// FITLM_FUZZ_IGNORE="text1|text2": exceptions whose message contains one of these count as
// input errors, so that a campaign gets past a known, not yet fixed finding that every run
// would otherwise hit first (e.g. "out_of_range.406" for JSON numbers beyond double).
inline bool ignored_finding(std::string_view what) {
  static const std::string patterns = [] {
    const char* env = std::getenv("FITLM_FUZZ_IGNORE");
    return std::string(env ? env : "");
  }();
  for (std::string_view rest = patterns; !rest.empty();) {
    const size_t bar = rest.find('|');
    const std::string_view p = rest.substr(0, bar);
    if (!p.empty() && what.find(p) != std::string_view::npos) return true;
    rest.remove_prefix(bar == std::string_view::npos ? rest.size() : bar + 1);
  }
  return false;
}

// Runs fn(): returns normally, or throws an input error (ignored). Anything else traps.
template <typename Fn>
void expect_input_errors(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    if (e.code() == ExitCode::kBadInput || ignored_finding(e.what())) return;
    report_finding("fitlm::Error that is not an input error", "fitlm::Error", e.what());
  } catch (const std::exception& e) {
    if (ignored_finding(e.what())) return;
    report_finding("exception other than fitlm::Error", demangled_current_exception_type().c_str(),
                   e.what());
  } catch (...) {
    report_finding("exception other than fitlm::Error", demangled_current_exception_type().c_str(),
                   "");
  }
}

// One directory per process under $TMPDIR (/tmp), removed at exit. libFuzzer runs one input at
// a time per process, so each input may simply overwrite the files of the previous one.
class ScratchDir {
 public:
  ScratchDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("fitlm-fuzz-" + std::to_string(static_cast<long>(::getpid())));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

  // Writes `bytes` to path()/name and returns that path.
  std::filesystem::path write(const std::string& name, std::string_view bytes) const {
    const auto p = path_ / name;
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) report_finding("fuzz harness", "I/O", ("cannot write " + p.string()).c_str());
    return p;
  }
  void remove(const std::string& name) const {
    std::error_code ec;
    std::filesystem::remove(path_ / name, ec);
  }

 private:
  std::filesystem::path path_;
};

inline const ScratchDir& scratch() {
  static const ScratchDir dir;
  return dir;
}

// Several files in one input: the parts are separated by a line holding only "#--" (the
// dictionaries carry the separator, so mutations can add and remove parts).
inline constexpr std::string_view kPartSeparator = "\n#--\n";

inline std::vector<std::string_view> split_parts(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  for (size_t pos; (pos = rest.find(kPartSeparator)) != std::string_view::npos;) {
    parts.push_back(rest.substr(0, pos));
    rest.remove_prefix(pos + kPartSeparator.size());
  }
  parts.push_back(rest);
  return parts;
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Parsers log warnings for odd but accepted inputs; at fuzzing speed that is just noise.
inline void quiet_logs() {
  log::set_level(log::Level::kError);
}

}  // namespace fitlm::fuzz
