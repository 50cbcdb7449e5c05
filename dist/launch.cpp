#include "dist/launch.h"

#include <algorithm>
#include <cstdlib>

#include <fmt/format.h>

#include "dist/mpi_communicator.h"

namespace shopclip::dist {
namespace {

bool read_int(const GetEnv& getenv, const char* name, int* out) {
  const char* text = getenv(name);
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < 0 || value > 1 << 24) {
    throw DistError(fmt::format("environment variable {}='{}' is not a valid count", name, text));
  }
  *out = static_cast<int>(value);
  return true;
}

}  // namespace

LaunchInfo detect_launch(const GetEnv& getenv) {
  LaunchInfo info;
  if (read_int(getenv, "OMPI_COMM_WORLD_SIZE", &info.world_size)) {
    info.launcher = "mpirun";
    read_int(getenv, "OMPI_COMM_WORLD_RANK", &info.rank);
    if (!read_int(getenv, "OMPI_COMM_WORLD_LOCAL_RANK", &info.local_rank))
      info.local_rank = info.rank;
    if (!read_int(getenv, "OMPI_COMM_WORLD_LOCAL_SIZE", &info.local_world_size)) {
      info.local_world_size = info.world_size;
    }
  } else if (read_int(getenv, "SLURM_STEP_NUM_TASKS", &info.world_size)) {
    // Inside an srun step. The batch script itself has SLURM_NTASKS but is one process.
    info.launcher = "srun";
    read_int(getenv, "SLURM_PROCID", &info.rank);
    read_int(getenv, "SLURM_LOCALID", &info.local_rank);
    info.local_world_size = info.world_size;
    // "2(x3),1": tasks per node for groups of nodes. Nodes get equal shares in every layout this
    // project launches; the first group's count is taken as this node's.
    if (const char* per_node = getenv("SLURM_STEP_TASKS_PER_NODE")) {
      const int first = std::atoi(per_node);
      if (first > 0) info.local_world_size = first;
    }
  }
  if (info.world_size < 1 || info.rank >= info.world_size ||
      info.local_rank >= info.local_world_size) {
    throw DistError(fmt::format(
        "inconsistent launch environment ({}): rank {} of {}, local rank {} of {}", info.launcher,
        info.rank, info.world_size, info.local_rank, info.local_world_size));
  }
  return info;
}

LaunchInfo detect_launch() {
  return detect_launch([](const char* name) { return std::getenv(name); });
}

std::unique_ptr<Communicator> make_communicator(const LaunchInfo& launch) {
  if (launch.world_size == 1) return std::make_unique<SingleProcessCommunicator>();
  auto comm = std::make_unique<MpiCommunicator>();
  if (comm->world_size() != launch.world_size || comm->rank() != launch.rank) {
    throw DistError(fmt::format(
        "{} started {} processes but MPI sees rank {} of {}: the MPI library is not wired to the "
        "launcher (with Slurm, run mpirun inside the allocation or srun --mpi=pmix)",
        launch.launcher, launch.world_size, comm->rank(), comm->world_size()));
  }
  return comm;
}

int threads_per_rank(int requested, int local_world_size, int hardware_threads) {
  if (requested > 0) return requested;
  return std::max(1, hardware_threads / std::max(1, local_world_size));
}

}  // namespace shopclip::dist
