#include "core/train/callbacks.h"

#include <fmt/format.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "data/files.h"
#include "dist/gradients.h"

namespace shopclip {

using nlohmann::json;

// ---- metrics ------------------------------------------------------------------------------------

MetricsLog::MetricsLog(const std::string& path, int log_every, const std::optional<Resume>& resume)
    : log_every_(log_every) {
  if (path.empty()) return;
  // A fresh run starts its metrics anew (a crash before the first checkpoint leaves old lines).
  out_.open(path, resume ? std::ios::app : std::ios::trunc);
  if (!out_) throw std::runtime_error(fmt::format("cannot write '{}'", path));
  // A resumed process says where it picked up, so a resume that silently restarted from step 0
  // (and would end with the same weights, training being deterministic) can be told apart.
  if (resume) {
    write(json{{"type", "resume"},
               {"step", resume->step},
               {"epochs_done", resume->epochs_done},
               {"processes", resume->processes},
               {"elapsed_s", resume->elapsed_seconds}}
              .dump());
  }
}

void MetricsLog::write(const std::string& row) {
  if (!out_.is_open()) return;
  out_ << row << "\n";
  out_.flush();
}

void MetricsLog::on_step_end(const StepEvent& event) {
  running_loss_ += event.result->loss;
  ++running_count_;
  if (event.step % log_every_ != 0) return;
  json row = {{"type", "train"},
              {"step", event.step},
              {"epoch", event.epoch_position},
              {"loss", running_loss_ / running_count_}};
  for (const auto& [name, value] : event.result->parts)
    row[name] = value;
  row.update({{"lr", event.lr},
              {"logit_scale", event.logit_scale},
              {"samples_per_s", event.samples_per_second},
              {"elapsed_s", event.elapsed_seconds}});
  write(row.dump());
  running_loss_ = 0;
  running_count_ = 0;
}

void MetricsLog::on_evaluation(const EvalEvent& event) {
  json row = scores_json(event.scores);
  row.update({{"type", event.weights == "raw" ? "eval" : "eval_" + event.weights},
              {"split", event.split},
              {"epoch", event.epoch},
              {"step", event.step},
              {"elapsed_s", event.elapsed_seconds}});
  write(row.dump());
}

// ---- progress -----------------------------------------------------------------------------------

void ProgressReport::on_epoch_begin(int epoch, std::int64_t steps) {
  bar_ = std::make_unique<ProgressBar>(log_, fmt::format("epoch {}/{}", epoch + 1, epochs_), steps,
                                       "step");
}

void ProgressReport::on_step_end(const StepEvent& event) {
  bar_->update(event.epoch_steps_done,
               fmt::format("loss {:.4f} lr {:.2e} {:.0f} samples/s", event.result->loss, event.lr,
                           event.samples_per_second));
}

StepProfile::StepProfile(std::string run_dir, std::int64_t first_step, int steps, Logger& log)
    : run_dir_(std::move(run_dir)), first_(first_step), last_(first_step + steps - 1), log_(log) {
  if (steps < 1) throw std::invalid_argument("StepProfile: steps must be >= 1");
}

void StepProfile::on_step_begin(std::int64_t step) {
  if (step >= first_ && step <= last_) profiler_.start();
}

void StepProfile::on_step_end(const StepEvent& event) {
  if (!profiler_.running()) return;
  profiler_.stop();
  if (event.step != last_) return;
  const OperatorProfile profile = profiler_.result(static_cast<int>(last_ - first_ + 1));
  const std::string table = profile_markdown(profile, 30);
  // Atomic writes: a failure (a full disk) throws naming the file instead of leaving a silent
  // empty table.
  data::write_file_atomic(
      run_dir_ + "/profile.md",
      fmt::format("# Operator profile of training steps {} to {}\n\n", first_, last_) + table);
  data::write_file_atomic(run_dir_ + "/profile.json", profile_json(profile) + "\n");
  log_.info("operator profile of steps {} to {} in {}/profile.md:\n{}", first_, last_, run_dir_,
            profile_markdown(profile, 10));
}

void ProgressReport::on_epoch_end(int, double samples_per_second) {
  if (bar_) bar_->finish(fmt::format("{:.0f} samples/s", samples_per_second));
  bar_.reset();
}

// ---- replicas -----------------------------------------------------------------------------------

void ReplicaCheck::on_step_end(const StepEvent& event) {
  if (comm_.world_size() == 1 || every_ <= 0 || event.step % every_ != 0) return;
  try {
    dist::check_replicas_identical(comm_, replicas_->tensors, replicas_->names);
  } catch (const dist::DistError& e) {
    throw dist::DistError(fmt::format("after step {}: {}", event.step, e.what()));
  }
}

// ---- fault injection ----------------------------------------------------------------------------

void FaultInjection::on_model_ready(Replicas& replicas) {
  replicas_ = &replicas;
  if (rank_ == plan_.diverge_rank && plan_.diverge_at_step == 0) perturb();
}

void FaultInjection::on_step_begin(std::int64_t step) {
  if (plan_.fail_at_step == step && plan_.fail_rank == rank_) {
    throw std::runtime_error(
        fmt::format("injected failure before step {} (--inject-failure)", plan_.fail_at_step));
  }
}

void FaultInjection::on_step_end(const StepEvent& event) {
  if (rank_ == plan_.diverge_rank && plan_.diverge_at_step == event.step) perturb();
}

void FaultInjection::perturb() {
  torch::NoGradGuard no_grad;
  bool found = false;
  for (std::size_t i = 0; i < replicas_->tensors.size(); ++i) {
    auto& tensor = replicas_->tensors[i];
    if (!tensor.is_floating_point()) continue;
    if (!plan_.diverge_tensor.empty() && replicas_->names[i] != plan_.diverge_tensor) continue;
    tensor.add_(0.25);
    found = true;
  }
  if (!found) {
    throw std::invalid_argument(fmt::format(
        "--inject-divergence: no floating-point tensor named '{}'", plan_.diverge_tensor));
  }
  log_.warn("injected divergence: rank {} added 0.25 to {} (--inject-divergence)", rank_,
            plan_.diverge_tensor.empty() ? "every parameter and buffer"
                                         : "'" + plan_.diverge_tensor + "'");
}

}  // namespace shopclip
