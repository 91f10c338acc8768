// `fitlm tokenize`: encode text with a model's tokenizer.json (or decode ids), for inspection and
// for the transformers.js parity test, which feeds a whole corpus through --jsonl in one process.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fitlm/cli/command_registry.h"
#include "fitlm/core/error.h"
#include "fitlm/core/json_input.h"
#include "fitlm/core/log.h"
#include "fitlm/text/tokenizer.h"

namespace fitlm::cli {
namespace {

using Json = nlohmann::json;

struct TokenizeOptions {
  std::string model, text, file;
  bool text_given = false, json = false, jsonl = false, decode = false, no_special = false,
       skip_special = false, no_cleanup = false, stats = false;
  int threads = 0;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_input_error("tokenize", "{}: cannot open file", clip_path(path));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string ids_text(const std::vector<int32_t>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i)
    fmt::format_to(std::back_inserter(s), "{}{}", i ? "," : "", ids[i]);
  return s + "]";
}

std::vector<int32_t> parse_ids(const Json& j, const std::string& where) {
  if (!j.is_array()) throw_input_error("tokenize", "{}: expected a JSON array of token ids", where);
  std::vector<int32_t> ids;
  for (const Json& v : j) {
    if (!v.is_number_integer())
      throw_input_error("tokenize", "{}: token ids must be integers, found {}", where,
                        clip(v.dump()));
    // decode() reports ids outside the vocabulary; an id that int32 cannot hold is one too.
    if (v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX)
      throw_input_error("tokenize", "{}: token id {} is not in the vocabulary", where,
                        clip(v.dump()));
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  return ids;
}

// One JSON value per line; blank lines are kept as errors so line numbers stay aligned.
std::vector<Json> read_jsonl(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_input_error("tokenize", "{}: cannot open file", clip_path(path));
  std::vector<Json> out;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n)
    out.push_back(json_input::parse(line, "tokenize", fmt::format("{}:{}", clip_path(path), n)));
  return out;
}

void print_stats(const char* what, size_t items, size_t bytes, double seconds) {
  std::fprintf(stderr, "%s %zu texts, %zu bytes in %.3f s: %.2f MB/s\n", what, items, bytes,
               seconds, seconds > 0 ? bytes / seconds / 1e6 : 0.0);
}

int run_jsonl(const TokenizeOptions& o, const Tokenizer& tok) {
  const std::vector<Json> lines = read_jsonl(o.file);
  std::string out;
  if (o.decode) {
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < lines.size(); ++i) {
      const auto ids = parse_ids(lines[i], fmt::format("{}:{}", clip_path(o.file), i + 1));
      const std::string text =
          o.no_cleanup ? tok.decode(ids, o.skip_special, false) : tok.decode(ids, o.skip_special);
      out += dump(Json(text)) + "\n";
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o.stats) print_stats("decoded", lines.size(), out.size(), s);
  } else {
    std::vector<std::string> texts;
    texts.reserve(lines.size());
    size_t bytes = 0;
    for (size_t i = 0; i < lines.size(); ++i) {
      if (!lines[i].is_string())
        throw_input_error("tokenize", "{}:{}: expected a JSON string", clip_path(o.file), i + 1);
      texts.push_back(lines[i].get<std::string>());
      bytes += texts.back().size();
    }
    const auto t0 = std::chrono::steady_clock::now();
    const auto all = tok.encode_batch(texts, !o.no_special, o.threads);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o.stats) print_stats("encoded", texts.size(), bytes, s);
    for (const auto& ids : all) out += ids_text(ids) + "\n";
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int run_tokenize(const TokenizeOptions& o) {
  if (o.text_given == !o.file.empty())
    throw_input_error("tokenize", "give exactly one of --text and --file");
  if (o.jsonl && o.file.empty()) throw_input_error("tokenize", "--jsonl needs --file");
  const Tokenizer tok = Tokenizer::from_dir(o.model);
  if (o.jsonl) return run_jsonl(o, tok);
  const std::string input = o.text_given ? o.text : read_file(o.file);

  if (o.decode) {
    const Json parsed = json_input::parse(input, "tokenize", "--decode input");
    const auto ids = parse_ids(parsed, "--decode input");
    const std::string text =
        o.no_cleanup ? tok.decode(ids, o.skip_special, false) : tok.decode(ids, o.skip_special);
    if (o.json)
      std::printf("%s\n", dump(Json{{"text", text}}).c_str());
    else
      std::printf("%s\n", text.c_str());
    return 0;
  }

  const auto ids = tok.encode(input, !o.no_special);
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(tok.id_to_token(id));
  if (o.json) {
    std::printf("%s\n", dump(Json{{"ids", ids}, {"tokens", pieces}}).c_str());
    return 0;
  }
  for (size_t i = 0; i < ids.size(); ++i)
    std::printf("%d\t%s\n", ids[i], dump(Json(pieces[i])).c_str());
  std::printf("%zu tokens\n", ids.size());
  return 0;
}

RunFn setup_tokenize(CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  app.footer(
      "Input: --text STR, or --file PATH (the whole file is one text).\n"
      "Output: one line per token (id, then the vocab piece as a JSON string), or with --json one\n"
      "object {\"ids\": [...], \"tokens\": [...]}.\n"
      "Batch mode (--jsonl): PATH holds one JSON string per line; prints one JSON array of ids\n"
      "per line, in order, encoding on --threads threads. With --decode each line is a JSON array\n"
      "of ids and each output line the decoded text as a JSON string.\n"
      "--decode without --jsonl reads a JSON array of ids from --text or --file.");
  app.add_option("--model", o->model,
                 "Model directory holding tokenizer.json (and tokenizer_config.json)")
      ->required();
  app.add_option("--text", o->text, "Text to encode (or ids to decode)")
      ->each([o](const std::string&) { o->text_given = true; });
  app.add_option("--file", o->file, "File to read the input from");
  app.add_flag("--json", o->json, "Print one JSON object");
  app.add_flag("--jsonl", o->jsonl, "Batch mode: one JSON value per input and output line");
  app.add_flag("--no-special", o->no_special,
               "Do not add the post-processor's special tokens (e.g. BOS); added tokens in the "
               "text are still recognised");
  app.add_flag("--decode", o->decode, "Decode ids to text instead of encoding");
  app.add_flag("--skip-special", o->skip_special, "With --decode: drop special tokens");
  app.add_flag("--no-cleanup", o->no_cleanup,
               "With --decode: do not apply clean_up_tokenization_spaces (lossless decode)");
  app.add_option("--threads", o->threads, "Encoding threads for --jsonl (0 = all cores)");
  app.add_flag("--stats", o->stats, "Print texts, bytes and MB/s of the batch to stderr");
  return [o] { return run_tokenize(*o); };
}

CommandRegistration registration{"tokenize", "Encode text with a model's tokenizer (or decode ids)",
                                 setup_tokenize};

}  // namespace
}  // namespace fitlm::cli
