// What a run reports: a progress bar on a terminal (plain log lines otherwise), metrics.jsonl
// (one JSON object per logged step or eval), and an SVG plot of loss and learning rate.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace fitlm::train {

struct StepMetrics {
  int64_t step = 0;  // optimizer steps done (1-based after the first step)
  int64_t total_steps = 0;
  double epoch = 0.0;  // fractional
  double loss = 0.0;   // mean over the step's scored tokens
  double lr = 0.0;
  double grad_norm = 0.0;  // inf/NaN on a skipped step (null in metrics.jsonl)
  // Loss scaling (fp16): the scale this step's gradients were computed with (0 = no scaling),
  // whether the update was skipped because they overflowed, and the skips so far in the run.
  double loss_scale = 0.0;
  bool skipped = false;
  int64_t skipped_steps = 0;
  int64_t tokens = 0;  // tokens processed in this step
  double tokens_per_s = 0.0;
  double elapsed_s = 0.0;
};

class ProgressReporter {
 public:
  // tty: redraw one line with \r; otherwise a log line every `logging_steps` steps.
  ProgressReporter(int64_t total_steps, int64_t start_step, int64_t logging_steps,
                   size_t memory_bytes, bool tty);
  void step(const StepMetrics& m);
  void eval(int64_t step, double eval_loss);
  void note(const std::string& line);  // a message that must not garble the bar
  void finish();

 private:
  int64_t total_, start_, logging_steps_;
  size_t memory_;
  bool tty_;
  bool bar_drawn_ = false;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

// Appends JSON lines to output_dir/metrics.jsonl.
class MetricsLog {
 public:
  // On resume, lines for steps after `keep_until_step` (written by the interrupted run past its
  // last checkpoint) are dropped so the file reads as one uninterrupted run.
  MetricsLog(const std::filesystem::path& path, std::optional<int64_t> keep_until_step);
  void step(const StepMetrics& m);
  void eval(int64_t step, double eval_loss);
  // Several ranks: each rank's planned device bytes (its arena), the device bytes measured in
  // use by the run (0 where the backend cannot tell) and the process's peak host RSS so far
  // (loading included), one line after the run's first step.
  void ranks(int64_t step, const std::vector<double>& planned_bytes,
             const std::vector<double>& measured_bytes, const std::vector<double>& host_peak_bytes);
  const std::filesystem::path& path() const { return path_; }

 private:
  void append(const std::string& line);
  std::filesystem::path path_;
};

// Reads metrics.jsonl and writes an SVG with two panels (loss with eval points; learning rate)
// over steps. Returns false (and writes nothing) when there is nothing to plot.
bool write_loss_plot(const std::filesystem::path& metrics_jsonl,
                     const std::filesystem::path& svg_path);

}  // namespace fitlm::train
