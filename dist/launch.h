#pragma once
// How this process was launched, and the communicator that goes with it.
//
// Rank, world size and local rank come from Open MPI's mpirun (OMPI_COMM_WORLD_RANK, _SIZE,
// _LOCAL_RANK, _LOCAL_SIZE), from Slurm's srun (SLURM_PROCID, SLURM_STEP_NUM_TASKS,
// SLURM_LOCALID; only inside a job step, not in the batch script itself), or default to one
// process. One process never touches MPI, so the debug mode needs no launcher.

#include <functional>
#include <memory>
#include <string>

#include "dist/communicator.h"

namespace shopclip::dist {

struct LaunchInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string launcher = "none";  // "mpirun", "srun" or "none"
};

using GetEnv = std::function<const char*(const char*)>;

// Reads the launcher's variables. Throws DistError when they are present but not integers or
// inconsistent (rank >= size).
LaunchInfo detect_launch(const GetEnv& getenv);
LaunchInfo detect_launch();

// The communicator for this process: MPI when world_size > 1 (an MpiRuntime must exist; its view
// of the world must match the launcher's, else DistError explains the likely cause), the
// single-process backend otherwise.
std::unique_ptr<Communicator> make_communicator(const LaunchInfo& launch);

// The communicator for tensors on `device`: null for CPU tensors or one process (use the
// bootstrap itself); for CUDA with several ranks an NCCL communicator bootstrapped over the
// given (MPI) one, which must outlive it. Throws DistError when this build has no NCCL backend.
std::unique_ptr<Communicator> make_device_communicator(Communicator& bootstrap,
                                                       const torch::Device& device);

// True when this binary was built with the NCCL backend (CMake found CUDA and NCCL).
bool nccl_backend_built();

// CPU threads for this rank: `requested` when > 0; else, when the launcher bound the process to
// fewer CPUs than the node has (srun --cpus-per-task with binding, mpirun --bind-to), those
// CPUs; else the node's CPUs divided among the ranks sharing it (at least 1), so ranks don't
// oversubscribe the node.
int threads_per_rank(int requested, int local_world_size, int bound_cpus, int node_cpus);

// threads_per_rank with this process's CPU affinity and the node's CPU count.
int threads_for_this_rank(int requested, int local_world_size);

}  // namespace shopclip::dist
