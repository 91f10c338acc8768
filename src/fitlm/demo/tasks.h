// Synthetic instruction tasks with exactly checkable answers, and a batched greedy decoder, for
// the built-in demo and the end-to-end tests. Text is byte-tokenized (tiny_model.h): a row is
// <s> "copy hello\n" "hello" </s>, and only the answer and </s> are scored.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "fitlm/model/transformer.h"

namespace fitlm::demo {

enum class Task {
  kCopy,   // "copy hello"  -> "hello"
  kLower,  // "lower HELLO" -> "hello"
  kUpper,  // "upper hello" -> "HELLO"
  kShout,  // "shout hello" -> "HELLO"   (the demo's LoRA task: a new word for a known skill)
};

struct TaskRow {
  std::string prompt;  // without the trailing newline
  std::string answer;
};

// n rows of `task` over random lowercase words of 3..6 letters, from `seed`.
std::vector<TaskRow> make_rows(Task task, int n, uint64_t seed);

// Token ids of a prompt as the model sees it before the answer: <s> prompt "\n".
std::vector<int32_t> prompt_ids(const std::string& prompt);

// Writes rows as `pretokenized` JSONL ({input_ids, labels}: -100 on the prompt).
void write_rows_jsonl(const std::filesystem::path& path, const std::vector<TaskRow>& rows);

// Greedy decoding of every prompt (many prompts per forward pass as separate segments) until
// </s> or max_new tokens; returns the decoded answers. The model must be built with
// max_tokens large enough for one prompt plus max_new.
std::vector<std::string> greedy_answers(Transformer& model, const std::vector<TaskRow>& rows,
                                        int max_new);

// Fraction of rows whose greedy answer equals the expected answer exactly.
double exact_match(const std::vector<std::string>& answers, const std::vector<TaskRow>& rows);

}  // namespace fitlm::demo
