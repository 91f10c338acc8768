#include "fitlm/train/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "fitlm/core/allocation_plan.h"
#include "fitlm/core/log.h"
#include "fitlm/io/safetensors_atomic_file.h"

namespace fitlm::train {
namespace {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t / 60) % 60);
  return fmt::format("{}m{:02}s", t / 60, t % 60);
}

}  // namespace

ProgressReporter::ProgressReporter(int64_t total_steps, int64_t start_step, int64_t logging_steps,
                                   size_t memory_bytes, bool tty)
    : total_(total_steps),
      start_(start_step),
      logging_steps_(std::max<int64_t>(1, logging_steps)),
      memory_(memory_bytes),
      tty_(tty) {}

void ProgressReporter::step(const StepMetrics& m) {
  const double done = static_cast<double>(m.step - start_);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  const double eta = done > 0 ? secs / done * static_cast<double>(total_ - m.step) : NAN;
  if (tty_) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(kWidth * m.step / std::max<int64_t>(1, total_));
    std::string bar(filled, '#');
    bar.append(kWidth - filled, '.');
    const std::string skips =
        m.skipped_steps > 0 ? fmt::format(" skipped {}", m.skipped_steps) : std::string();
    std::fprintf(stderr, "\r[%s] %lld/%lld loss %.4f lr %.2e %.0f tok/s ETA %s mem %s%s   ",
                 bar.c_str(), static_cast<long long>(m.step), static_cast<long long>(total_),
                 m.loss, m.lr, m.tokens_per_s, format_duration(eta).c_str(),
                 format_bytes(memory_).c_str(), skips.c_str());
    std::fflush(stderr);
    bar_drawn_ = true;
    return;
  }
  if (m.step % logging_steps_ == 0 || m.step == total_ || m.step == start_ + 1) {
    std::string scaling;
    if (m.loss_scale > 0)
      scaling = fmt::format("  loss_scale {:g}{}", m.loss_scale,
                            m.skipped ? "  (skipped: gradient overflow)" : "");
    log::info("step {}/{}  loss {:.4f}  lr {:.3e}  grad_norm {:.3f}  {:.0f} tok/s  ETA {}{}",
              m.step, total_, m.loss, m.lr, m.grad_norm, m.tokens_per_s, format_duration(eta),
              scaling);
  }
}

void ProgressReporter::note(const std::string& line) {
  if (bar_drawn_) std::fputc('\n', stderr), bar_drawn_ = false;
  log::info("{}", line);
}

void ProgressReporter::eval(int64_t step, double eval_loss) {
  note(fmt::format("step {}/{}  eval_loss {:.4f}", step, total_, eval_loss));
}

void ProgressReporter::finish() {
  if (bar_drawn_) std::fputc('\n', stderr), bar_drawn_ = false;
}

MetricsLog::MetricsLog(const std::filesystem::path& path, std::optional<int64_t> keep_until)
    : path_(path) {
  // Only a regular file is restarted or rewritten: the ranks other than the lead log to
  // /dev/null, which (as root) must not be removed or replaced by a file.
  std::error_code ec;
  const auto st = std::filesystem::status(path_, ec);
  if (std::filesystem::exists(st) && !std::filesystem::is_regular_file(st)) return;
  if (!keep_until) {
    std::filesystem::remove(path_);  // a fresh run starts a fresh log
    return;
  }
  std::ifstream in(path_);
  std::string kept, line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    // Lines that are not ours (no integer step) are dropped, as unparsable ones are.
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
        j["step"].get<int64_t>() <= *keep_until)
      kept += line + "\n";
  }
  io::write_file_atomic(path_, kept);
}

void MetricsLog::append(const std::string& line) {
  std::ofstream out(path_, std::ios::app);
  out << line << "\n";
}

void MetricsLog::step(const StepMetrics& m) {
  nlohmann::json j = {{"step", m.step},
                      {"epoch", m.epoch},
                      {"loss", m.loss},
                      {"lr", m.lr},
                      {"grad_norm", m.grad_norm},
                      {"tokens", m.tokens},
                      {"tokens_per_s", m.tokens_per_s},
                      {"elapsed_s", m.elapsed_s}};
  if (!std::isfinite(m.grad_norm)) j["grad_norm"] = nullptr;  // JSON has no inf/NaN
  if (m.loss_scale > 0) {  // only under loss scaling, so other runs' lines stay as they were
    j["loss_scale"] = m.loss_scale;
    j["skipped"] = m.skipped;
  }
  append(j.dump());
}

void MetricsLog::ranks(int64_t step, const std::vector<double>& planned_bytes,
                       const std::vector<double>& measured_bytes,
                       const std::vector<double>& host_peak_bytes) {
  append(nlohmann::json{{"step", step},
                        {"rank_planned_bytes", planned_bytes},
                        {"rank_measured_bytes", measured_bytes},
                        {"rank_host_peak_bytes", host_peak_bytes}}
             .dump());
}

void MetricsLog::eval(int64_t step, double eval_loss) {
  append(nlohmann::json{{"step", step}, {"eval_loss", eval_loss}}.dump());
}

bool write_loss_plot(const std::filesystem::path& metrics_jsonl,
                     const std::filesystem::path& svg_path) {
  struct Pt {
    double x, y;
  };
  std::vector<Pt> loss, eval, lr;
  std::ifstream in(metrics_jsonl);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number()) continue;

    const double x = j["step"].get<double>();
    // A non-finite value is written as null (e.g. the loss of a step skipped under fp16).
    auto num = [&](const char* k) { return j.contains(k) && j[k].is_number(); };
    if (num("loss")) loss.push_back({x, j["loss"].get<double>()});
    if (num("lr")) lr.push_back({x, j["lr"].get<double>()});
    if (num("eval_loss")) eval.push_back({x, j["eval_loss"].get<double>()});
  }
  if (loss.empty()) return false;
  constexpr double kW = 720, kH = 240, kL = 70, kR = 20, kT = 30, kB = 40;
  const double xmax = std::max(1.0, loss.back().x);
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
      "fill=\"white\"/>\n",
      kW, 2 * kH);
  // One panel: axes, min/max labels, and polylines (or dots) in the panel's y range.
  auto panel = [&](double y0, const char* title,
                   std::vector<std::pair<const std::vector<Pt>*, const char*>> series) {
    double lo = INFINITY, hi = -INFINITY;
    for (auto& [s, color] : series)
      for (const Pt& p : *s)
        if (std::isfinite(p.y)) lo = std::min(lo, p.y), hi = std::max(hi, p.y);
    if (!std::isfinite(lo)) return;
    if (hi - lo < 1e-12) hi = lo + 1e-12 + std::abs(lo) * 0.01;
    const double pw = kW - kL - kR, ph = kH - kT - kB;
    auto X = [&](double x) { return kL + pw * x / xmax; };
    auto Y = [&](double y) { return y0 + kT + ph * (1 - (y - lo) / (hi - lo)); };
    svg += fmt::format("<text x=\"{}\" y=\"{}\" font-weight=\"bold\">{}</text>\n", kL, y0 + kT - 10,
                       title);
    svg += fmt::format(
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" "
        "stroke=\"#888\"/>\n",
        kL, y0 + kT, pw, ph);
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.3g}</text>\n", kL - 5,
                       y0 + kT + 10, hi);
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.3g}</text>\n", kL - 5,
                       y0 + kT + ph, lo);
    svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">step {}</text>\n", kL + pw,
                       y0 + kT + ph + 18, static_cast<int64_t>(xmax));
    for (auto& [s, color] : series) {
      if (s->size() == 1 || s == &eval) {
        for (const Pt& p : *s)
          svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", X(p.x),
                             Y(p.y), color);
        continue;
      }
      svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"",
                         color);
      for (const Pt& p : *s)
        if (std::isfinite(p.y)) svg += fmt::format("{:.1f},{:.1f} ", X(p.x), Y(p.y));
      svg += "\"/>\n";
    }
  };
  panel(0, "loss (blue: train, red: eval)", {{&loss, "#1f77b4"}, {&eval, "#d62728"}});
  panel(kH, "learning rate", {{&lr, "#2ca02c"}});
  svg += "</svg>\n";
  io::write_file_atomic(svg_path, svg);
  return true;
}

}  // namespace fitlm::train
