#include "dist/launch.h"

#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include <fmt/format.h>

#include "dist/mpi_communicator.h"
#include "shopclip_build_config.h"
#if SHOPCLIP_WITH_NCCL
#include "dist/nccl_communicator.h"
#endif

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

bool nccl_backend_built() {
  return SHOPCLIP_WITH_NCCL != 0;
}

std::unique_ptr<Communicator> make_device_communicator(Communicator& bootstrap,
                                                       const torch::Device& device) {
  if (!device.is_cuda() || bootstrap.world_size() == 1) return nullptr;
#if SHOPCLIP_WITH_NCCL
  return std::make_unique<NcclCommunicator>(bootstrap);
#else
  throw DistError(
      "CUDA training on several ranks needs the NCCL backend, and this build has none: rebuild "
      "where CMake finds the CUDA toolkit and NCCL (see the README, 'Distributed training')");
#endif
}

int threads_per_rank(int requested, int local_world_size, int bound_cpus, int node_cpus) {
  if (requested > 0) return requested;
  if (bound_cpus > 0 && bound_cpus < node_cpus) return bound_cpus;
  return std::max(1, node_cpus / std::max(1, local_world_size));
}

int threads_for_this_rank(int requested, int local_world_size) {
  const int node_cpus = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  cpu_set_t affinity;
  CPU_ZERO(&affinity);
  const int bound_cpus =
      sched_getaffinity(0, sizeof(affinity), &affinity) == 0 ? CPU_COUNT(&affinity) : node_cpus;
  return threads_per_rank(requested, local_world_size, bound_cpus, node_cpus);
}

}  // namespace shopclip::dist
