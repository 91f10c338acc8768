#include "fitlm/text/pack.h"

#include <algorithm>

#include "fitlm/core/error.h"
#include "fitlm/text/dataset_split.h"

namespace fitlm {

PackingStrategy parse_packing_strategy(std::string_view name) {
  if (name == "ffd" || name == "first_fit_decreasing") return PackingStrategy::kFirstFitDecreasing;
  if (name == "sequential") return PackingStrategy::kSequential;
  throw_input_error("pack", "packing strategy must be 'ffd' or 'sequential', found '{}'", name);
}

namespace {

// Max-tree over the room left in each row, so first-fit finds the leftmost row with room in
// O(log n) instead of scanning every open row (O(n^2) on 100k examples).
class RoomTree {
 public:
  RoomTree(size_t n, int64_t capacity) : size_(1) {
    while (size_ < n) size_ *= 2;
    tree_.assign(2 * size_, capacity);
  }
  // Leftmost leaf with room >= need (a leaf that is still empty always has full capacity).
  size_t first_fit(int64_t need) const {
    size_t node = 1;
    while (node < size_) node = tree_[2 * node] >= need ? 2 * node : 2 * node + 1;
    return node - size_;
  }
  void take(size_t leaf, int64_t amount) {
    size_t node = leaf + size_;
    tree_[node] -= amount;
    for (node /= 2; node >= 1; node /= 2)
      tree_[node] = std::max(tree_[2 * node], tree_[2 * node + 1]);
  }

 private:
  size_t size_;
  std::vector<int64_t> tree_;
};

}  // namespace

std::vector<std::vector<int64_t>> pack_rows(const std::vector<int64_t>& lengths,
                                            const std::vector<int64_t>& order, int64_t capacity,
                                            PackingStrategy strategy) {
  std::vector<std::vector<int64_t>> rows;
  for (int64_t i : order)
    FITLM_CHECK(lengths[i] >= 1 && lengths[i] <= capacity, "pack",
                "example {} has {} tokens, rows hold {}", i, lengths[i], capacity);
  if (strategy == PackingStrategy::kSequential) {
    int64_t used = capacity;
    for (int64_t i : order) {
      if (used + lengths[i] > capacity) {
        rows.emplace_back();
        used = 0;
      }
      rows.back().push_back(i);
      used += lengths[i];
    }
    return rows;
  }
  std::vector<int64_t> by_length = order;
  std::stable_sort(by_length.begin(), by_length.end(),
                   [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
  RoomTree room(std::max<size_t>(by_length.size(), 1), capacity);
  for (int64_t i : by_length) {
    const size_t r = room.first_fit(lengths[i]);
    if (r == rows.size()) rows.emplace_back();
    rows[r].push_back(i);
    room.take(r, lengths[i]);
  }
  return rows;
}

TokenBatch make_batch(const std::vector<Example>& examples,
                      const std::vector<std::vector<int64_t>>& rows, const BatchOptions& opt) {
  TokenBatch b;
  b.cu_seqlens.push_back(0);
  auto add_segment = [&](const std::vector<int32_t>& ids, const std::vector<int32_t>* labels) {
    for (size_t t = 0; t < ids.size(); ++t) {
      b.input_ids.push_back(ids[t]);
      // The first label of a segment would be predicted from the previous segment's last
      // token; it is never a target.
      b.labels.push_back(labels && t > 0 ? (*labels)[t] : kIgnoreLabel);
      b.position_ids.push_back(static_cast<int32_t>(t));
    }
    b.cu_seqlens.push_back(static_cast<int32_t>(b.input_ids.size()));
  };
  for (const auto& row : rows) {
    int64_t used = 0;
    for (int64_t i : row) {
      const Example& ex = examples[static_cast<size_t>(i)];
      add_segment(ex.input_ids, &ex.labels);
      used += static_cast<int64_t>(ex.input_ids.size());
    }
    FITLM_CHECK(!opt.pad_to_sequence_len || used <= opt.sequence_len, "pack",
                "row of {} tokens exceeds sequence_len {}", used, opt.sequence_len);
    if (opt.pad_to_sequence_len && used < opt.sequence_len)
      add_segment(std::vector<int32_t>(static_cast<size_t>(opt.sequence_len - used), opt.pad_id),
                  nullptr);
  }
  return b;
}

Batcher::Batcher(const std::vector<Example>& examples, BatchOptions options)
    : examples_(examples), opt_(options) {
  if (opt_.micro_batch_size < 1)
    throw_input_error("pack", "micro_batch_size must be at least 1, found {}",
                      opt_.micro_batch_size);
  for (size_t i = 0; i < examples_.size(); ++i)
    if (static_cast<int64_t>(examples_[i].input_ids.size()) > opt_.sequence_len ||
        examples_[i].input_ids.empty())
      throw_internal_error("pack", "example {} has {} tokens; sequence_len is {}", i,
                           examples_[i].input_ids.size(), opt_.sequence_len);
}

void Batcher::plan_epoch(int64_t epoch) {
  if (planned_epoch_ == epoch) return;
  const int64_t n = static_cast<int64_t>(examples_.size());
  std::vector<int64_t> order;
  if (opt_.shuffle) {
    order = shuffled_indices(n, mix_seed(opt_.seed, static_cast<uint64_t>(epoch)));
  } else {
    order.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) order[i] = i;
  }
  rows_.clear();
  if (!opt_.sample_packing) {
    for (int64_t i : order) rows_.push_back({i});
  } else {
    std::vector<int64_t> lengths(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
      lengths[i] = static_cast<int64_t>(examples_[i].input_ids.size());
    rows_ = pack_rows(lengths, order, opt_.sequence_len, opt_.packing);
    // FFD emits rows from long to short examples; shuffle the rows so that each batch is not
    // biased by length. A second stream keeps this independent of the example order.
    if (opt_.shuffle && opt_.packing == PackingStrategy::kFirstFitDecreasing)
      shuffle_in_place(rows_, mix_seed(opt_.seed ^ 0x5041434Bull, static_cast<uint64_t>(epoch)));
  }
  planned_epoch_ = epoch;
}

const std::vector<std::vector<int64_t>>& Batcher::rows_of_epoch(int64_t epoch) {
  plan_epoch(epoch);
  return rows_;
}

int64_t Batcher::batches_in_epoch(int64_t epoch) {
  plan_epoch(epoch);
  const int64_t n_rows = static_cast<int64_t>(rows_.size());
  return (n_rows + opt_.micro_batch_size - 1) / opt_.micro_batch_size;
}

void Batcher::seek(StreamPosition pos) {
  if (pos == StreamPosition{}) {  // the start is valid even for an empty dataset
    pos_ = pos;
    return;
  }
  if (pos.epoch < 0 || pos.index < 0 || pos.index >= batches_in_epoch(pos.epoch))
    throw_input_error("pack",
                      "stream position (epoch {}, batch {}) is outside the data ({} "
                      "batches in that epoch)",
                      pos.epoch, pos.index, pos.epoch < 0 ? 0 : batches_in_epoch(pos.epoch));
  pos_ = pos;
}

TokenBatch Batcher::next() {
  plan_epoch(pos_.epoch);
  if (rows_.empty()) throw_internal_error("pack", "next() on a Batcher without examples");
  const size_t begin = static_cast<size_t>(pos_.index * opt_.micro_batch_size);
  const size_t end = std::min(rows_.size(), begin + static_cast<size_t>(opt_.micro_batch_size));
  const std::vector<std::vector<int64_t>> rows(rows_.begin() + begin, rows_.begin() + end);
  TokenBatch batch = make_batch(examples_, rows, opt_);
  if (++pos_.index >= batches_in_epoch(pos_.epoch)) pos_ = {pos_.epoch + 1, 0};
  return batch;
}

uint64_t Batcher::fingerprint() const {
  // FNV-1a over the options that shape batches and every example's tokens and labels.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xFF;
      h *= 1099511628211ull;
    }
  };
  mix(static_cast<uint64_t>(opt_.sequence_len));
  mix(static_cast<uint64_t>(opt_.micro_batch_size));
  mix(opt_.sample_packing);
  mix(static_cast<uint64_t>(opt_.packing));
  mix(opt_.pad_to_sequence_len);
  mix(static_cast<uint64_t>(opt_.pad_id));
  mix(opt_.shuffle);
  mix(opt_.seed);
  mix(examples_.size());
  for (const Example& ex : examples_) {
    mix(ex.input_ids.size());
    for (int32_t id : ex.input_ids) mix(static_cast<uint32_t>(id));
    for (int32_t l : ex.labels) mix(static_cast<uint32_t>(l));
  }
  return h;
}

}  // namespace fitlm
