// `fitlm`: one binary, one subcommand per file in this folder (see command_registry.h).
#include <algorithm>
#include <cstdio>

#include "fitlm/cli/command_registry.h"
#include "fitlm/core/error.h"
#include "fitlm/core/log.h"

namespace fitlm::cli {
std::vector<Command>& commands() {
  static std::vector<Command> all;
  return all;
}
std::vector<std::string>& process_args() {
  static std::vector<std::string> args;
  return args;
}
}  // namespace fitlm::cli

int main(int argc, char** argv) {
  using namespace fitlm;
  cli::process_args().assign(argv, argv + argc);
  CLI::App app{
      "fitlm: fine-tune Hugging Face LLMs (Llama, Qwen, Mistral) natively on CPUs and GPUs.\n"
      "Run `fitlm <command> --help` for a command's options."};
  app.require_subcommand(1);
  bool verbose = false, quiet = false;
  app.add_flag("-v,--verbose", verbose, "Print debug messages");
  app.add_flag("-q,--quiet", quiet, "Print only warnings and errors");

  auto& cmds = cli::commands();
  std::sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return a.name < b.name; });
  std::vector<std::pair<CLI::App*, cli::RunFn>> runs;
  for (auto& c : cmds) {
    CLI::App* sub = app.add_subcommand(c.name, c.description);
    runs.emplace_back(sub, c.setup(*sub));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : static_cast<int>(ExitCode::kBadInput);
  }
  log::set_level(verbose ? log::Level::kDebug : quiet ? log::Level::kWarn : log::Level::kInfo);
  try {
    for (auto& [sub, run] : runs)
      if (sub->parsed()) return run();
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: [internal] %s\n", e.what());
    return static_cast<int>(ExitCode::kInternal);
  }
  return 0;
}
