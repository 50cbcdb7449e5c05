#include "launch/open_run.h"

#include <filesystem>

#include <fmt/format.h>

#include "core/device.h"
#include "data/error.h"

namespace shopclip {

namespace fs = std::filesystem;

OpenedRun open_run(const std::string& run, const std::string& checkpoint_arg,
                   const std::vector<std::string>& extra_overrides, dist::Communicator& comm) {
  OpenedRun opened;
  opened.checkpoint = checkpoint_arg.empty() ? (fs::path(run) / "checkpoints" / "best.pt").string()
                                             : checkpoint_arg;
  const std::string config_path = (fs::path(run) / "config.yaml").string();
  if (!fs::exists(config_path)) {
    throw data::DataError(
        fmt::format("{}: missing; is {} a shopclip run folder?", config_path, run));
  }
  std::vector<std::string> overrides = {"run.dir=" + run};
  overrides.insert(overrides.end(), extra_overrides.begin(), extra_overrides.end());
  opened.config = Config::load(config_path, overrides);
  opened.loaded = load_model(opened.checkpoint);
  opened.config.model = opened.loaded.config.model;  // the architecture is the checkpoint's
  opened.loaded.model->to(training_device(opened.config.run.device, comm.local_rank()));
  return opened;
}

}  // namespace shopclip
