// Micro-batches from examples: unpacked (one example per row) or packed (`sample_packing`: many
// examples per row of sequence_len), rows laid end to end in a TokenBatch with one segment per
// example (FORMATS.md section 8: position ids restart, the first label of a segment is -100).
// The stream of batches is a pure function of (examples, options, epoch), so a checkpoint saves
// a StreamPosition and a restart continues with exactly the same batches.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "fitlm/text/batch.h"
#include "fitlm/text/dataset.h"

namespace fitlm {

enum class PackingStrategy {
  kFirstFitDecreasing,  // longest first into the first row with room: fewest rows
  kSequential,          // in (shuffled) order; a new row when the next example does not fit
};
PackingStrategy parse_packing_strategy(std::string_view name);  // "ffd" | "sequential"

struct BatchOptions {
  int64_t sequence_len = 2048;
  int64_t micro_batch_size = 1;  // rows per micro-batch
  bool sample_packing = false;
  PackingStrategy packing = PackingStrategy::kFirstFitDecreasing;
  // Pad every row to sequence_len (fixed shapes for GPU kernels/graphs). The padding is its own
  // trailing segment: pad_id tokens, labels -100, positions from 0.
  bool pad_to_sequence_len = false;
  int32_t pad_id = 0;
  bool shuffle = true;  // a fresh order every epoch, from mix_seed(seed, epoch)
  uint64_t seed = 42;
};

// Groups example indices into rows of at most `capacity` tokens. `order` is the order in which
// examples are considered (FFD: a stable sort by length, longest first, so ties keep `order`).
// Every example must fit (length <= capacity).
std::vector<std::vector<int64_t>> pack_rows(const std::vector<int64_t>& lengths,
                                            const std::vector<int64_t>& order, int64_t capacity,
                                            PackingStrategy strategy);

// Lays rows out as one TokenBatch (one segment per example, plus padding when asked).
TokenBatch make_batch(const std::vector<Example>& examples,
                      const std::vector<std::vector<int64_t>>& rows, const BatchOptions& options);

// Where the stream stands: `index` is the next micro-batch of `epoch`. Two integers: what a
// checkpoint saves.
struct StreamPosition {
  int64_t epoch = 0;
  int64_t index = 0;
  bool operator==(const StreamPosition&) const = default;
};

class Batcher {
 public:
  // Keeps a reference to `examples`; they must outlive the Batcher and not change. An empty
  // set is allowed (an absent eval set): it has 0 batches per epoch and next() is an error.
  Batcher(const std::vector<Example>& examples, BatchOptions options);

  TokenBatch next();  // the batch at position(), then advances (to the next epoch at its end)
  StreamPosition position() const { return pos_; }
  void seek(StreamPosition pos);  // restore a checkpointed position

  int64_t batches_in_epoch(int64_t epoch);
  // The rows (example indices) of an epoch, in batch order.
  const std::vector<std::vector<int64_t>>& rows_of_epoch(int64_t epoch);
  // A hash of the example lengths and options: a checkpoint stores it to refuse resuming on a
  // different dataset or batching.
  uint64_t fingerprint() const;

 private:
  void plan_epoch(int64_t epoch);

  const std::vector<Example>& examples_;
  BatchOptions opt_;
  StreamPosition pos_;
  int64_t planned_epoch_ = -1;
  std::vector<std::vector<int64_t>> rows_;  // of planned_epoch_
};

}  // namespace fitlm
