// The 1F1B schedule (dist/pipeline_schedule.h) and the stage split (model/stage_partition.h).
#include "fitlm/dist/pipeline_schedule.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "fitlm/core/error.h"
#include "fitlm/model/presets.h"
#include "fitlm/model/stage_partition.h"

namespace fitlm {
namespace {

// Every micro-batch runs forward once and (before the last stage) backward once, forward first,
// in micro-batch order; a stage never holds more than its in-flight count, and the micro-batches
// in flight at once have distinct slots; played together, the stages never wait on each other in
// a cycle (each op's input is produced by an op that can run earlier).
TEST(PipelineSchedule, OneFOneBRunsEveryMicroBatchWithinItsSlots) {
  for (int stages : {1, 2, 3, 4, 8})
    for (int micro : {1, 2, 3, 5, 8, 16, 32}) {
      SCOPED_TRACE(::testing::Message() << stages << " stages, " << micro << " micro-batches");
      std::vector<std::vector<dist::PipelineOp>> program;
      for (int s = 0; s < stages; ++s) {
        const auto ops = dist::one_f_one_b(s, stages, micro);
        const int slots = dist::one_f_one_b_in_flight(s, stages, micro);
        EXPECT_EQ(slots, std::min(stages - s, micro));
        const bool last = s + 1 == stages;
        std::set<int> held;
        int next_f = 0, next_b = 0;
        for (const dist::PipelineOp& op : ops) {
          EXPECT_EQ(op.slot, op.micro % slots);
          if (op.forward) {
            EXPECT_EQ(op.micro, next_f++);
            if (last) continue;
            for (int m : held) EXPECT_NE(m % slots, op.slot) << "slot reused while held";
            held.insert(op.micro);
            EXPECT_LE(static_cast<int>(held.size()), slots);
          } else {
            EXPECT_FALSE(last);
            EXPECT_EQ(op.micro, next_b++);
            EXPECT_EQ(held.erase(op.micro), 1u);
          }
        }
        EXPECT_EQ(next_f, micro);
        EXPECT_EQ(next_b, last ? 0 : micro);
        program.push_back(ops);
      }
      // Play the stages: forward m on s needs forward m on s−1; backward m on s needs the last
      // stage's forward (which includes its backward) or the backward on s+1.
      std::vector<size_t> pc(static_cast<size_t>(stages), 0);
      std::vector<std::set<int>> done_f(stages), done_b(stages);
      for (bool moved = true; moved;) {
        moved = false;
        for (int s = 0; s < stages; ++s) {
          if (pc[s] == program[s].size()) continue;
          const dist::PipelineOp op = program[s][pc[s]];
          const bool ready = op.forward ? s == 0 || done_f[s - 1].count(op.micro)
                                        : (s + 2 == stages ? done_f[s + 1].count(op.micro)
                                                           : done_b[s + 1].count(op.micro));
          if (!ready) continue;
          (op.forward ? done_f : done_b)[s].insert(op.micro);
          ++pc[s];
          moved = true;
        }
      }
      for (int s = 0; s < stages; ++s) EXPECT_EQ(pc[s], program[s].size()) << "stage " << s;
    }
}

// Plays the stages' steps with send/recv that complete only together (rendezvous, the worst
// case of Comm's blocking calls): every program must run to its end. A message is (kind, micro)
// on a link; a recv must meet the send of the same message.
bool runs_without_deadlock(const std::vector<std::vector<dist::PipelineStep>>& programs) {
  using K = dist::StepKind;
  const int n = static_cast<int>(programs.size());
  std::vector<size_t> pc(static_cast<size_t>(n), 0);
  auto head = [&](int s) -> const dist::PipelineStep* {
    return pc[s] < programs[s].size() ? &programs[s][pc[s]] : nullptr;
  };
  for (bool moved = true; moved;) {
    moved = false;
    for (int s = 0; s < n; ++s) {
      const dist::PipelineStep* h = head(s);
      if (!h) continue;
      if (h->kind == K::kForward || h->kind == K::kBackward) {
        ++pc[s], moved = true;
        continue;
      }
      // A send meets the peer's recv of the same micro-batch's message.
      const bool down = h->kind == K::kSendOutput, up = h->kind == K::kSendGradient;
      if (!down && !up) continue;  // recvs complete when their sender arrives
      const int peer = down ? s + 1 : s - 1;
      const dist::PipelineStep* p = head(peer);
      const K want = down ? K::kRecvInput : K::kRecvGradient;
      if (p && p->kind == want && p->micro == h->micro) {
        ++pc[s], ++pc[peer], moved = true;
      }
    }
  }
  for (int s = 0; s < n; ++s)
    if (pc[s] != programs[s].size()) return false;
  return true;
}

TEST(PipelineSchedule, CommunicationOrderNeverDeadlocks) {
  using K = dist::StepKind;
  for (int stages : {1, 2, 3, 4, 5, 8})
    for (int micro : {1, 2, 3, 4, 7, 16, 33}) {
      SCOPED_TRACE(::testing::Message() << stages << " stages, " << micro << " micro-batches");
      std::vector<std::vector<dist::PipelineStep>> programs;
      for (int s = 0; s < stages; ++s) {
        programs.push_back(dist::one_f_one_b_steps(s, stages, micro));
        // The compute steps are one_f_one_b's, in its order; each backward has its gradient.
        const auto ops = dist::one_f_one_b(s, stages, micro);
        std::vector<dist::PipelineOp> compute;
        std::set<int> grads;
        for (const dist::PipelineStep& st : programs.back()) {
          if (st.kind == K::kRecvGradient) grads.insert(st.micro);
          if (st.kind == K::kBackward) EXPECT_TRUE(grads.count(st.micro)) << "stage " << s;
          if (st.kind == K::kForward || st.kind == K::kBackward)
            compute.push_back({st.kind == K::kForward, st.micro, st.slot});
        }
        ASSERT_EQ(compute.size(), ops.size());
        for (size_t i = 0; i < ops.size(); ++i) {
          EXPECT_EQ(compute[i].forward, ops[i].forward);
          EXPECT_EQ(compute[i].micro, ops[i].micro);
        }
      }
      EXPECT_TRUE(runs_without_deadlock(programs));
    }
  // Sending each output as soon as it is computed (receiving gradients only before backward)
  // deadlocks on two stages: the check above can fail.
  std::vector<std::vector<dist::PipelineStep>> naive = {{}, dist::one_f_one_b_steps(1, 2, 4)};
  for (const dist::PipelineOp& op : dist::one_f_one_b(0, 2, 4)) {
    if (op.forward) {
      naive[0].push_back({K::kForward, op.micro, op.slot});
      naive[0].push_back({K::kSendOutput, op.micro, op.slot});
    } else {
      naive[0].push_back({K::kRecvGradient, op.micro, op.slot});
      naive[0].push_back({K::kBackward, op.micro, op.slot});
    }
  }
  EXPECT_FALSE(runs_without_deadlock(naive));
}

TEST(StagePartition, EveryStageFitsItsCapAndTheLargestIsAsSmallAsPossible) {
  const ModelConfig c = preset_config("llama-3.2-1b");
  LoraConfig lora;
  lora.r = 16;
  RunShape base;
  base.max_tokens = 1024;
  base.with_optimizer = true;
  base.recompute = RecomputePolicy::kFull;
  auto bytes = [&](RunShape::Stage st) {
    RunShape s = base;
    s.stage = st;
    return plan_transformer(c, TrainMode::kLora, lora, s, DType::kBF16).total_bytes();
  };
  for (int stages : {2, 3, 4}) {
    std::vector<int> in_flight;
    for (int s = 0; s < stages; ++s) in_flight.push_back(dist::one_f_one_b_in_flight(s, stages, 8));
    // No caps: the even split (the first stages take the larger shares).
    const auto even = partition_stages(c, TrainMode::kLora, lora, base, DType::kBF16,
                                       std::vector<size_t>(stages, 0), in_flight);
    ASSERT_EQ(static_cast<int>(even.size()), stages);
    int most = 0;
    for (const auto& st : even) most = std::max(most, st.end_layer - st.first_layer);
    EXPECT_EQ(most, (c.num_layers + stages - 1) / stages);
    // A small first GPU: the first stage takes fewer layers, every stage fits its cap, the
    // stages cover every layer in order.
    std::vector<size_t> caps(static_cast<size_t>(stages), size_t{64} << 30);
    caps[0] = bytes({0, 2, in_flight[0]}) + 1;
    const auto split =
        partition_stages(c, TrainMode::kLora, lora, base, DType::kBF16, caps, in_flight);
    int first = 0;
    for (int s = 0; s < stages; ++s) {
      EXPECT_EQ(split[s].first_layer, first);
      EXPECT_GT(split[s].end_layer, split[s].first_layer);
      EXPECT_EQ(split[s].in_flight, in_flight[s]);
      EXPECT_LE(bytes(split[s]), caps[s]) << "stage " << s;
      first = split[s].end_layer;
    }
    EXPECT_EQ(first, c.num_layers);
    EXPECT_EQ(split[0].end_layer, 2);
  }
  // Nothing fits: refused with what an even split needs; more stages than layers: input error.
  try {
    partition_stages(c, TrainMode::kLora, lora, base, DType::kBF16, {1 << 20, 1 << 20}, {2, 1});
    ADD_FAILURE() << "fitted in 1 MiB";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kNoFit);
    EXPECT_NE(e.message().find("stage 1: layers 8-15"), std::string::npos) << e.message();
  }
  EXPECT_THROW(partition_stages(c, TrainMode::kLora, lora, base, DType::kBF16,
                                std::vector<size_t>(17, 0), std::vector<int>(17, 1)),
               Error);
}

}  // namespace
}  // namespace fitlm
