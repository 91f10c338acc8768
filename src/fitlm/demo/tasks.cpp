#include "fitlm/demo/tasks.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "fitlm/demo/tiny_model.h"
#include "fitlm/text/batch.h"

namespace fitlm::demo {

std::vector<TaskRow> make_rows(Task task, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<TaskRow> rows;
  for (int i = 0; i < n; ++i) {
    const int len = 3 + static_cast<int>(rng() % 4);
    std::string w;
    for (int j = 0; j < len; ++j) w += static_cast<char>('a' + rng() % 26);
    std::string up = w;
    for (char& ch : up) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    switch (task) {
      case Task::kCopy: rows.push_back({"copy " + w, w}); break;
      case Task::kLower: rows.push_back({"lower " + up, w}); break;
      case Task::kUpper: rows.push_back({"upper " + w, up}); break;
      case Task::kShout: rows.push_back({"shout " + w, up}); break;
    }
  }
  return rows;
}

std::vector<int32_t> prompt_ids(const std::string& prompt) {
  std::vector<int32_t> ids = {kBosId};
  for (unsigned char ch : prompt + "\n") ids.push_back(ch);
  return ids;
}

void write_rows_jsonl(const std::filesystem::path& path, const std::vector<TaskRow>& rows) {
  std::ofstream out(path);
  for (const TaskRow& r : rows) {
    std::vector<int32_t> ids = prompt_ids(r.prompt);
    std::vector<int32_t> labels(ids.size(), kIgnoreLabel);
    for (unsigned char ch : r.answer) ids.push_back(ch), labels.push_back(ch);
    ids.push_back(kEosId);
    labels.push_back(kEosId);
    out << nlohmann::json{{"input_ids", ids}, {"labels", labels}}.dump() << "\n";
  }
}

std::vector<std::string> greedy_answers(Transformer& model, const std::vector<TaskRow>& rows,
                                        int max_new) {
  const int64_t capacity = model.shape().max_tokens;
  const int vocab = model.config().vocab_size;
  std::vector<std::vector<int32_t>> seqs;
  for (const TaskRow& r : rows) seqs.push_back(prompt_ids(r.prompt));
  std::vector<std::string> answers(rows.size());
  std::vector<bool> done(rows.size(), false);
  for (int step = 0; step < max_new; ++step) {
    // Pack the unfinished sequences into as few forward passes as fit.
    size_t i = 0;
    while (i < seqs.size()) {
      TokenBatch b;
      std::vector<size_t> members;
      b.cu_seqlens.push_back(0);
      for (; i < seqs.size(); ++i) {
        if (done[i]) continue;
        if (b.size() + static_cast<int64_t>(seqs[i].size()) > capacity) break;
        members.push_back(i);
        for (size_t t = 0; t < seqs[i].size(); ++t) {
          b.input_ids.push_back(seqs[i][t]);
          b.labels.push_back(kIgnoreLabel);
          b.position_ids.push_back(static_cast<int32_t>(t));
        }
        b.cu_seqlens.push_back(static_cast<int32_t>(b.size()));
      }
      if (members.empty()) {
        if (i < seqs.size() && !done[i]) ++i;  // too long for the model: leave unanswered
        continue;
      }
      const std::vector<float> logits = model.logits(b);
      for (size_t m = 0; m < members.size(); ++m) {
        const float* row = logits.data() + static_cast<size_t>(b.cu_seqlens[m + 1] - 1) * vocab;
        const int32_t next = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
        const size_t s = members[m];
        if (next == kEosId || next >= 256) {
          done[s] = true;
        } else {
          seqs[s].push_back(next);
          answers[s] += static_cast<char>(next);
        }
      }
    }
  }
  return answers;
}

double exact_match(const std::vector<std::string>& answers, const std::vector<TaskRow>& rows) {
  if (rows.empty()) return 0.0;
  int64_t ok = 0;
  for (size_t i = 0; i < rows.size(); ++i) ok += answers[i] == rows[i].answer;
  return static_cast<double>(ok) / static_cast<double>(rows.size());
}

}  // namespace fitlm::demo
