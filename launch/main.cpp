// shopclip: the command-line entry point. It sets up the process group, lets every launch/ file
// register its commands (launch/commands.h), parses and dispatches. Commands stay thin: parse,
// build typed configs, call into core/ and data/, report. Any exception ends the process with a
// message and exit 1; under several processes it ends the whole job.

#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "core/cpu_blas.h"
#include "core/log.h"
#include "dist/communicator.h"
#include "dist/launch.h"
#include "dist/mpi_communicator.h"
#include "launch/commands.h"

int main(int argc, char** argv) {
  using namespace shopclip;
  // Before anything else: OpenBLAS may have loaded kernels far slower than this CPU can run
  // (core/cpu_blas.h); then this process starts again with better ones asked for.
  reexec_with_better_blas_kernels();
  // Under mpirun or srun with several processes, MPI comes up first (it may rewrite argv); one
  // process never touches MPI.
  std::unique_ptr<dist::MpiRuntime> mpi;
  std::unique_ptr<dist::Communicator> comm;
  try {
    const dist::LaunchInfo launch = dist::detect_launch();
    if (launch.world_size > 1) mpi = std::make_unique<dist::MpiRuntime>(&argc, &argv);
    comm = dist::make_communicator(launch);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shopclip: cannot set up the process group: %s\n", e.what());
    return 1;
  }
  Logger log(comm->rank(), comm->world_size());
  CLI::App app{"shopclip: train and evaluate e-commerce text-to-image retrieval models"};
  CommandRegistry commands(app);
  register_pipeline_commands(commands);
  register_inspect_commands(commands);
  register_feature_commands(commands);
  register_distill_commands(commands);
  register_ensemble_commands(commands);
  register_index_commands(commands);
  register_serve_command(commands);
  register_sweep_commands(commands);
  register_reproduce_command(commands);
  register_bench_commands(commands);
  register_version_command(commands);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    CommandContext context{*comm, log, std::vector<std::string>(argv, argv + argc)};
    return commands.dispatch(context);
  } catch (const std::exception& e) {
    log.error("{}", e.what());
    // No rank may be left waiting in a collective for this one: end the whole job.
    if (comm->world_size() > 1) comm->abort(1);
    return 1;
  }
}
