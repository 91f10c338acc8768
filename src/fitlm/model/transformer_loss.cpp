// Batch upload, the forward/backward drivers over layers, and the chunked LM-head + loss.
#include <algorithm>
#include <cmath>
#include <limits>

#include "fitlm/core/error.h"
#include "fitlm/model/transformer_impl.h"

namespace fitlm {

Tensor Transformer::Impl::cu_seqlens() const {
  const Tensor cu = m_.arena_->get("input.cu_seqlens");
  return Tensor(cu.data, DType::kI32, Shape{n_segments_ + 1}, cu.device);
}

int64_t Transformer::Impl::upload_batch(const HostBatch& b) {
  const int64_t t = static_cast<int64_t>(b.input_ids.size());
  if (t == 0) throw_input_error("batch", "empty batch");
  if (t > m_.shape_.max_tokens)
    throw_input_error("batch", "batch of {} tokens exceeds the planned {} tokens", t,
                      m_.shape_.max_tokens);
  std::vector<int32_t> cu = b.cu_seqlens;
  if (cu.empty()) cu = {0, static_cast<int32_t>(t)};
  if (cu.front() != 0 || cu.back() != t || !std::is_sorted(cu.begin(), cu.end()))
    throw_input_error("batch", "cu_seqlens must rise from 0 to the token count {}", t);
  if (!b.labels.empty() && static_cast<int64_t>(b.labels.size()) != t)
    throw_input_error("batch", "labels has {} entries for {} input ids", b.labels.size(), t);
  std::vector<int32_t> pos = b.position_ids;
  if (pos.empty()) {
    pos.resize(t);
    for (size_t s = 0; s + 1 < cu.size(); ++s)
      for (int32_t i = cu[s]; i < cu[s + 1]; ++i) pos[i] = i - cu[s];
  }
  if (static_cast<int64_t>(pos.size()) != t)
    throw_input_error("batch", "position_ids has {} entries for {} input ids", pos.size(), t);
  for (int32_t id : b.input_ids)
    if (id < 0 || id >= c_.vocab_size)
      throw_input_error("batch", "token id {} is outside the vocabulary [0, {})", id,
                        c_.vocab_size);
  // HF semantics: position t is scored against labels[t + 1] of the same segment.
  host_targets_.assign(t, -100);
  for (size_t s = 0; s + 1 < cu.size(); ++s) {
    if (c_.sliding_window > 0 && cu[s + 1] - cu[s] > c_.sliding_window)
      throw_input_error("model",
                        "a sequence of {} tokens exceeds the sliding window of {}; sliding-window "
                        "attention is not implemented, use sequence_len <= {}",
                        cu[s + 1] - cu[s], c_.sliding_window, c_.sliding_window);
    if (!b.labels.empty())
      for (int32_t i = cu[s]; i + 1 < cu[s + 1]; ++i) host_targets_[i] = b.labels[i + 1];
  }
  n_segments_ = static_cast<int64_t>(cu.size()) - 1;
  // Segments of one length let a backend run attention as a dense batch (cuDNN on CUDA).
  bool uniform = true;
  for (size_t s = 1; s + 1 < cu.size(); ++s) uniform = uniform && cu[s + 1] - cu[s] == cu[1];
  attn_.segment_len = uniform ? cu[1] : 0;
  const Arena& a = *m_.arena_;
  be_.upload(rows("input.ids", t), b.input_ids.data(), DType::kI32);
  be_.upload(rows("input.positions", t), pos.data(), DType::kI32);
  be_.upload(rows("input.targets", t), host_targets_.data(), DType::kI32);
  be_.upload(cu_seqlens(), cu.data(), DType::kI32);
  (void)a;
  return t;
}

void Transformer::Impl::enter_phase(std::optional<Phase> next) {
  if (!next) fetched_ = {-1, -1};  // the pass ends: other buffers may take the layer buffers' bytes
  if (!m_.shape_.check_lifetimes) return;
  const Arena& arena = *m_.arena_;
  const std::vector<std::string> names = phase_names();
  std::vector<float> host;
  for (const BufferSpec& b : arena.plan().buffers()) {
    if (b.lifetime.is_whole_job() || b.dtype == DType::kI32) continue;
    const Tensor buf = arena.get(b.name);
    // Byte buffers (the gathered blob of layer_shard) are poisoned with 0xFF bytes, which read
    // as NaN through any float view of them.
    const bool bytes = b.dtype == DType::kU8;
    if (phase_ && !b.lifetime.contains(static_cast<int>(*phase_))) {
      host.resize(static_cast<size_t>(buf.numel()));
      be_.download(buf, host.data());
      if (!std::all_of(host.begin(), host.end(),
                       [&](float v) { return bytes ? v == 255.0f : std::isnan(v); }))
        throw_internal_error("plan", "{} was written in phase {}, outside its lifetime ({})",
                             b.name, names[static_cast<size_t>(*phase_)],
                             arena.plan().describe(b.lifetime));
    }
    if (next && !b.lifetime.contains(static_cast<int>(*next))) {
      if (bytes)
        be_.upload(buf, std::vector<uint8_t>(buf.bytes(), 0xFF).data(), DType::kU8);
      else
        be_.fill(buf, std::numeric_limits<float>::quiet_NaN());
    }
  }
  phase_ = next;
}

void Transformer::Impl::forward(int64_t t, bool keep_for_backward) {
  // The plan decides which activations are kept; recompute re-runs layers. Offloaded layer
  // inputs are copied out only when a backward pass follows.
  const bool offloaded = !x_ring_[0].empty();
  const bool copy_out = offloaded && keep_for_backward;
  enter_phase(Phase::kForward);
  fetched_ = {-1, -1};
  start_aux_loss(keep_for_backward);
  const LayerRange r = layers_;
  const bool head = stage_has_head(c_, m_.shape_);
  // A pipeline stage after the first finds its input received in place (stage_input).
  const Tensor x = layer_input(r.first, t);
  if (stage_has_embedding(m_.shape_)) be_.embedding_forward(rows("input.ids", t), m_.embed_, x);
  if (copy_out)
    x_ring_copy_[static_cast<size_t>(r.first % 2)] =
        be_.copy_async(x, host_layer_input(r.first, t));
  for (int l = r.first; l < r.end; ++l) {
    const bool last = l + 1 == r.end;
    const Tensor y = !last ? layer_input(l + 1, t) : rows(head ? "final.x_in" : kStageOutput, t);
    // y's ring buffer held layer l−1's input: its copy out is done before layer l overwrites it.
    if (offloaded && !last) be_.wait_transfer(x_ring_copy_[static_cast<size_t>((l + 1) % 2)]);
    prepare_layer(l, l + 1);
    layer_forward(l, activations(l, t), layer_input(l, t), y, t);
    if (copy_out && !last)
      x_ring_copy_[static_cast<size_t>((l + 1) % 2)] =
          be_.copy_async(y, host_layer_input(l + 1, t));
  }
  if (!head) return;  // a stage before the last: its output is handed on
  // The final norm starts the loss head's phase: its output is read there only.
  enter_phase(Phase::kLoss);
  be_.rmsnorm_forward(rows("final.x_in", t), m_.final_norm_, static_cast<float>(c_.rms_norm_eps),
                      rows("final.xn", t), rows("final.rstd", t));
}

LossResult Transformer::Impl::loss(int64_t t, float grad_scale, bool backward) {
  const Tensor xn = rows("final.xn", t);
  const Tensor targets = rows("input.targets", t);
  const Tensor losses = rows("loss.losses", t);
  const Tensor logits_buf = m_.arena_->get("loss.logits");
  const int64_t chunk = logits_buf.dim(0);
  Tensor dxn = backward ? rows("scratch.dxn", t) : Tensor{};
  for (int64_t r0 = 0; r0 < t; r0 += chunk) {
    const int64_t r1 = std::min(t, r0 + chunk);
    const bool any_scored = std::any_of(host_targets_.begin() + r0, host_targets_.begin() + r1,
                                        [](int32_t v) { return v != -100; });
    if (!any_scored) {  // nothing to score: skip the vocabulary-wide GEMMs
      if (backward) be_.fill(dxn.slice_rows(r0, r1), 0.0f);
      be_.fill(losses.slice_rows(r0, r1), 0.0f);
      continue;
    }
    Tensor logits = logits_buf.slice_rows(0, r1 - r0);
    const Tensor x = xn.slice_rows(r0, r1);
    be_.gemm(x, false, m_.lm_head_, true, logits);  // [rows, V]
    be_.cross_entropy(logits, targets.slice_rows(r0, r1), losses.slice_rows(r0, r1), grad_scale,
                      backward);
    if (!backward) continue;
    be_.gemm(logits, false, m_.lm_head_, false, dxn.slice_rows(r0, r1));  // dxn = dlogits · W
    if (!m_.d_lm_head_.empty()) be_.gemm(logits, true, x, false, m_.d_lm_head_, 1.0f, 1.0f);
  }
  std::vector<float> host(static_cast<size_t>(t));
  be_.download(losses, host.data());
  LossResult r;
  for (int64_t i = 0; i < t; ++i)
    if (host_targets_[i] != -100) r.loss_sum += host[i], ++r.tokens;
  if (backward) finish_aux_loss(r, grad_scale);
  return r;
}

void Transformer::Impl::backward(int64_t t) {
  Tensor dres = rows("scratch.dres", t);
  enter_phase(Phase::kNormBackward);
  fetched_ = {-1, -1};  // the loss head's buffers shared bytes with the layer buffers
  // Offloaded layer inputs come back one layer ahead (the ring buffers shared bytes with the loss
  // head's too). A copy in queues behind the copies out on the one transfer queue.
  const bool offloaded = !x_ring_[0].empty();
  auto copy_in = [&](int l) {
    x_ring_copy_[static_cast<size_t>(l % 2)] =
        be_.copy_async(host_layer_input(l, t), layer_input(l, t));
  };
  const LayerRange r = layers_;
  if (offloaded) copy_in(r.end - 1);
  // A stage before the last starts from ∂L/∂output, received into dres (stage_gradient).
  if (stage_has_head(c_, m_.shape_))
    be_.rmsnorm_backward(rows("scratch.dxn", t), rows("final.x_in", t), m_.final_norm_,
                         rows("final.rstd", t), dres, m_.d_final_norm_);
  for (int l = r.end - 1; l >= r.first; --l) {
    const LayerActivations a = activations(l, t);
    const Tensor x = layer_input(l, t);
    // In N or the previous layer's A: lora.layer, base4.layer and the layer buffers live there too.
    prepare_layer(l, l - 1);
    if (offloaded) {
      be_.wait_transfer(x_ring_copy_[static_cast<size_t>(l % 2)]);
      // Into the buffer layer l+1 read: queued after its backward's ops, overlapping layer l's.
      if (l > r.first) copy_in(l - 1);
    }
    if (!saved_[static_cast<size_t>(l)]) {
      enter_phase(Phase::kRecompute);
      layer_forward(l, a, x, Tensor{}, t);
    }
    layer_backward(l, a, x, dres, t);  // enters M, then A
  }
  // Still in the last A phase; dres now holds ∂L/∂(the stage's input).
  if (!m_.d_embed_.empty()) be_.embedding_backward(rows("input.ids", t), dres, m_.d_embed_);
}

std::vector<float> Transformer::Impl::full_logits(int64_t t) {
  const Tensor xn = rows("final.xn", t);
  const Tensor logits_buf = m_.arena_->get("loss.logits");
  const int64_t chunk = logits_buf.dim(0), v = c_.vocab_size;
  std::vector<float> out(static_cast<size_t>(t * v));
  for (int64_t r0 = 0; r0 < t; r0 += chunk) {
    const int64_t r1 = std::min(t, r0 + chunk);
    Tensor logits = logits_buf.slice_rows(0, r1 - r0);
    be_.gemm(xn.slice_rows(r0, r1), false, m_.lm_head_, true, logits);
    be_.download(logits, out.data() + r0 * v);
  }
  return out;
}

}  // namespace fitlm
