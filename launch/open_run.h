#pragma once
// A shopclip run opened for inference by the commands that serve or index its model (index build,
// bench index, serve): its checkpoint, its config and the model on this rank's device.

#include <string>
#include <vector>

#include "core/config.h"
#include "core/model/dual_encoder.h"
#include "dist/communicator.h"

namespace shopclip {

// A run's checkpoint (default its best.pt) and config (run.dir and the overrides applied, the
// model section the checkpoint's), on this rank's device.
struct OpenedRun {
  std::string checkpoint;
  Config config;
  LoadedModel loaded;
};

// Throws data::DataError naming <run>/config.yaml when the folder is not a run, and what
// Config::load and load_model throw for a bad config or checkpoint.
OpenedRun open_run(const std::string& run, const std::string& checkpoint_arg,
                   const std::vector<std::string>& extra_overrides, dist::Communicator& comm);

}  // namespace shopclip
