// The YAML training config: part 0 is the file (`fitlm train CONFIG.yaml`), part 1 (optional)
// command-line overrides, one `key=value` per line (`--key=value`). Read by
// parse_train_config and, for the data keys, by parse_data_config (`fitlm data inspect`).
// validate_train_config is left out: it creates output_dir, wherever the input points it.
#include <string>
#include <vector>

#include "fitlm/text/dataset_config.h"
#include "fitlm/train/train_config.h"
#include "fuzz_common.h"

using namespace fitlm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = fuzz::split_parts(data, size);
  const std::string yaml(parts[0]);
  std::vector<std::string> overrides;
  if (parts.size() > 1) {
    std::string_view rest = parts[1];
    while (!rest.empty()) {
      const size_t nl = rest.find('\n');
      overrides.emplace_back(rest.substr(0, nl));
      rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    }
  }
  const auto source = fuzz::scratch().path() / "train.yaml";
  fuzz::expect_input_errors([&] { (void)train::parse_train_config(yaml, source, overrides); });
  fuzz::expect_input_errors(
      [&] { (void)parse_data_config(yaml, fuzz::scratch().path(), source.string()); });
  return 0;
}
