// `fitlm data inspect`: shows what training will see — a rendered example with the scored part
// marked, the summary of every row (kept, skipped by reason, truncated, dropped), token counts and
// a length histogram — so that a wrong mask or a silently broken file is caught before a run.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "fitlm/cli/command_registry.h"
#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"
#include "fitlm/text/batch.h"
#include "fitlm/text/chat_template.h"
#include "fitlm/text/dataset.h"
#include "fitlm/text/dataset_config.h"
#include "fitlm/text/pack.h"
#include "fitlm/text/tokenizer.h"

namespace fitlm::cli {
namespace {

struct InspectOptions {
  std::string file, config, model, type, on_bad_row;
  int64_t sequence_len = 0;  // 0 = from the config, else 2048
  int n = 1;
  bool train_on_inputs = false, packing = false, color = false, no_color = false;
};

// Guesses the type from the first readable row's fields when --type is not given.
DatasetType guess_type(const std::filesystem::path& path) {
  for (const RawRow& row : read_rows(path)) {
    if (!row.error.empty() || !row.value.is_object()) continue;
    const auto& v = row.value;
    if (v.contains("conversations")) return DatasetType::kShareGpt;
    if (v.contains("messages")) return DatasetType::kMessages;
    if (v.contains("instruction")) return DatasetType::kAlpaca;
    if (v.contains("input_ids")) return DatasetType::kPretokenized;
    if (v.contains("text")) return DatasetType::kCompletion;
    break;
  }
  throw_input_error("data", "{}: cannot tell the dataset type from the first row; pass --type",
                    path.string());
}

// The decoded text of ids[begin, end), cut from decodes of prefixes so that SentencePiece
// decoders, which treat the first token specially, show the text as it sits in the sequence.
class PrefixDecoder {
 public:
  PrefixDecoder(const TextCodec& codec, const std::vector<int32_t>& ids)
      : codec_(codec), ids_(ids) {}
  std::string slice(size_t begin, size_t end) const {
    const std::string a = prefix(begin), b = prefix(end);
    if (b.compare(0, a.size(), a) == 0) return b.substr(a.size());
    return codec_.decode(std::span<const int32_t>(ids_.data() + begin, end - begin));
  }

 private:
  std::string prefix(size_t n) const {
    return codec_.decode(std::span<const int32_t>(ids_.data(), n));
  }
  const TextCodec& codec_;
  const std::vector<int32_t>& ids_;
};

// Scored runs in green on a terminal, else between [[ and ]]. Position 0 is never a target.
void print_example(const Example& ex, const TextCodec& codec, bool color) {
  const auto& ids = ex.input_ids;
  const PrefixDecoder dec(codec, ids);
  auto scored = [&](size_t t) { return t > 0 && ex.labels[t] != kIgnoreLabel; };
  std::string out;
  for (size_t begin = 0; begin < ids.size();) {
    size_t end = begin + 1;
    while (end < ids.size() && scored(end) == scored(begin)) ++end;
    const std::string text = dec.slice(begin, end);
    if (!scored(begin))
      out += text;
    else if (color)
      out += "\033[32m" + text + "\033[0m";
    else
      out += "[[" + text + "]]";
    begin = end;
  }
  std::fputs(out.c_str(), stdout);
  if (out.empty() || out.back() != '\n') std::fputc('\n', stdout);
}

void print_histogram(const std::vector<int64_t>& lengths, int64_t sequence_len) {
  if (lengths.empty()) return;
  const int64_t max_len = *std::max_element(lengths.begin(), lengths.end());
  const int64_t top = std::max<int64_t>(std::min(sequence_len, max_len), 1);
  constexpr int kBins = 10;
  const int64_t width = (top + kBins - 1) / kBins;
  std::vector<int64_t> count(kBins, 0);
  for (int64_t len : lengths) ++count[std::min<int64_t>((len - 1) / width, kBins - 1)];
  const int64_t most = *std::max_element(count.begin(), count.end());
  std::vector<int64_t> sorted = lengths;
  std::sort(sorted.begin(), sorted.end());
  const size_t p95 = std::min(sorted.size() - 1, sorted.size() * 95 / 100);
  fmt::print("lengths (tokens): min {}, median {}, p95 {}, max {}\n", sorted.front(),
             sorted[sorted.size() / 2], sorted[p95], sorted.back());
  for (int b = 0; b < kBins; ++b) {
    if (b * width + 1 > top) break;
    const int bar = most ? static_cast<int>(40 * count[b] / most) : 0;
    fmt::print("  {:>6} - {:<6} {:>8}  {}\n", b * width + 1, (b + 1) * width, count[b],
               std::string(static_cast<size_t>(bar), '#'));
  }
}

int run_inspect(const InspectOptions& o) {
  if (o.file.empty() == o.config.empty())
    throw_input_error("data", "give either a dataset FILE or --config CONFIG.yaml");
  if (o.n < 0) throw_input_error("data", "--n must be >= 0, found {}", o.n);
  DataConfig cfg;
  if (!o.config.empty()) cfg = load_data_config(o.config);
  if (!o.file.empty()) {
    DatasetSource src;
    src.path = o.file;
    src.type = o.type.empty() ? guess_type(o.file) : parse_dataset_type(o.type, "--type");
    cfg.datasets = {src};
  } else if (!o.type.empty()) {
    for (auto& d : cfg.datasets) d.type = parse_dataset_type(o.type, "--type");
  }
  if (o.sequence_len > 0) cfg.sequence_len = o.sequence_len;
  if (o.train_on_inputs) cfg.train_on_inputs = true;
  if (o.packing) cfg.sample_packing = true;
  if (!o.on_bad_row.empty()) cfg.on_bad_row = parse_on_bad_row(o.on_bad_row);
  const std::filesystem::path model = o.model.empty() ? cfg.base_model : o.model;
  if (model.empty())
    throw_input_error("data", "--model DIR is needed (or base_model in the config)");

  const Tokenizer tok = Tokenizer::from_dir(model);
  const TokenizerCodec codec(tok);
  const std::optional<ChatTemplate> tmpl =
      json_input::read_fields("data", (model / "tokenizer_config.json").string(),
                              [&] { return ChatTemplate::find_in_model_dir(model); });

  const ChatRenderFn render = tmpl ? chat_render_fn(*tmpl) : ChatRenderFn{};
  const bool color = !o.no_color && (o.color || ::isatty(1));

  DatasetSummary total;
  std::vector<Example> all;
  for (const DatasetSource& src : cfg.datasets) {
    DatasetOptions opt;
    opt.type = src.type;
    opt.file_format = src.file_format;
    opt.sequence_len = cfg.sequence_len;
    opt.train_on_inputs = cfg.train_on_inputs;
    opt.on_bad_row = cfg.on_bad_row;
    Dataset ds = load_dataset(src.path, opt, codec, render);
    fmt::print(
        "== {} (type {}, sequence_len {}, train_on_inputs {}{})\n", src.path.string(),
        dataset_type_name(src.type), cfg.sequence_len, cfg.train_on_inputs,
        src.type == DatasetType::kAlpaca && !render ? ", no chat template: Alpaca prompt" : "");
    const int shown = std::min<int>(o.n, static_cast<int>(ds.examples.size()));
    for (int i = 0; i < shown; ++i) {
      const Example& ex = ds.examples[i];
      fmt::print("-- example {} ({}:{}): {} tokens, {} scored{}\n", i + 1, src.path.string(),
                 ex.line, ex.input_ids.size(), count_scored(ex.labels),
                 color ? " (scored text in green)" : " (scored text between [[ and ]])");
      print_example(ex, codec, color);
    }
    fmt::print("-- summary\n{}\n", ds.summary.to_string());
    total.add(ds.summary);
    for (auto& e : ds.examples) all.push_back(std::move(e));
  }
  if (cfg.datasets.size() > 1) fmt::print("== all datasets\n{}\n", total.to_string());
  std::vector<int64_t> lengths;
  for (const Example& e : all) lengths.push_back(static_cast<int64_t>(e.input_ids.size()));
  print_histogram(lengths, cfg.sequence_len);
  if (cfg.sample_packing && !all.empty()) {
    BatchOptions bo;
    bo.sequence_len = cfg.sequence_len;
    bo.sample_packing = true;
    bo.seed = cfg.seed;
    Batcher batcher(all, bo);
    const int64_t rows = static_cast<int64_t>(batcher.rows_of_epoch(0).size());
    fmt::print("packing: {} examples into {} rows of {} tokens ({:.1f}% filled)\n", all.size(),
               rows, cfg.sequence_len,
               100.0 * static_cast<double>(total.tokens) / (rows * cfg.sequence_len));
  }
  return 0;
}

RunFn setup_data(CLI::App& app) {
  auto o = std::make_shared<InspectOptions>();
  app.require_subcommand(1);
  CLI::App* inspect = app.add_subcommand(
      "inspect", "Show a rendered example with the scored part marked, counts and lengths");
  inspect->footer(
      "Either FILE (.jsonl, .json, .csv) with --model, or --config CONFIG.yaml (base_model,\n"
      "datasets: [{path, type}], sequence_len, sample_packing, train_on_inputs, on_bad_row).\n"
      "Options given here override the config. Without --type the type is guessed from the\n"
      "first row's fields. Scored tokens (labels != -100) are shown in green on a terminal,\n"
      "between [[ and ]] otherwise.");
  inspect->add_option("FILE", o->file, "Dataset file");
  inspect->add_option("--config", o->config, "Training config (YAML)");
  inspect->add_option("--model", o->model,
                      "Model directory (tokenizer.json, tokenizer_config.json)");
  inspect->add_option("--type", o->type,
                      "alpaca | sharegpt | messages | completion | pretokenized");
  inspect->add_option("--sequence-len", o->sequence_len, "Truncate examples to N tokens");
  inspect->add_option("--n", o->n, "Examples to print per dataset (default 1)");
  inspect->add_flag("--train-on-inputs", o->train_on_inputs, "Score every token");
  inspect->add_flag("--sample-packing", o->packing, "Report how examples pack into rows");
  inspect->add_option("--on-bad-row", o->on_bad_row, "fail (default) | skip");
  inspect->add_flag("--color", o->color, "Colour the scored text even when not on a terminal");
  inspect->add_flag("--no-color", o->no_color, "Mark the scored text with [[ ]] on a terminal too");
  return [o, inspect]() -> int {
    if (inspect->parsed()) return run_inspect(*o);
    return 0;
  };
}

CommandRegistration registration{"data", "Inspect datasets: rendering, loss masks, lengths",
                                 setup_data};

}  // namespace
}  // namespace fitlm::cli
