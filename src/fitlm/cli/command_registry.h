// Subcommands register themselves here so that each lives in its own file:
//   static fitlm::cli::CommandRegistration reg{"eval", "Score a model on a dataset", setup_eval};
// `setup` adds options to the subcommand and returns the function to run once parsed.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace fitlm::cli {

using RunFn = std::function<int()>;
using SetupFn = std::function<RunFn(CLI::App&)>;

struct Command {
  std::string name;
  std::string description;
  SetupFn setup;
};

std::vector<Command>& commands();
// The process's own command line (main saves it), for a command that restarts itself under a
// launcher (`fitlm train --nproc N` becomes `mpirun -np N fitlm train ...`).
std::vector<std::string>& process_args();

struct CommandRegistration {
  CommandRegistration(std::string name, std::string description, SetupFn setup) {
    commands().push_back({std::move(name), std::move(description), std::move(setup)});
  }
};

}  // namespace fitlm::cli
