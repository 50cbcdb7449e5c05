#include "launch/version.h"

#include "core/cpu_blas.h"
#include "core/model/linear.h"

// The C API only (Open MPI's C++ bindings would need their own library).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <unistd.h>

#include <H5public.h>
#include <faiss/Index.h>
#include <fmt/format.h>
#include <torch/version.h>

#include <cmath>
#include <fstream>
#include <string>
#include <thread>

#include "launch/commands.h"
#include "shopclip_build_config.h"

namespace shopclip {
namespace {

// The first line of /proc/cpuinfo's "model name", or "".
std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      return colon == std::string::npos ? "" : line.substr(colon + 2);
    }
  }
  return "";
}

double memory_gib() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  double kib = 0;
  in >> key >> kib;  // "MemTotal: N kB"
  return kib / (1024.0 * 1024.0);
}

// The BLAS library this process loaded (from /proc/self/maps): what LibTorch's matrix products
// really run on, whatever the build asked for.
std::string loaded_blas() {
  std::ifstream in("/proc/self/maps");
  for (std::string line; std::getline(in, line);) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    // The CPU BLAS: a CUDA LibTorch also maps cuBLAS, which is not what this names.
    const bool cpu_blas =
        (path.find("blas") != std::string::npos && path.find("cublas") == std::string::npos) ||
        path.find("libmkl") != std::string::npos;
    if (cpu_blas) {
      return path;
    }
  }
  return "";
}

std::string hostname() {
  char name[256] = {};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

}  // namespace

nlohmann::ordered_json build_and_machine() {
  char mpi_library[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  MPI_Get_library_version(mpi_library, &length);  // allowed before MPI_Init
  std::string mpi(mpi_library, length);
  if (const auto comma = mpi.find(','); comma != std::string::npos) mpi.resize(comma);
  std::string hdf5 = H5_VERS_INFO;
  if (const auto colon = hdf5.rfind(": "); colon != std::string::npos)
    hdf5 = hdf5.substr(colon + 2);
  return {{"build",
           {{"compiler", SHOPCLIP_CXX_COMPILER},
            {"build_type", SHOPCLIP_BUILD_TYPE},
            {"flags", SHOPCLIP_CXX_FLAGS},
            {"cmake_options", SHOPCLIP_CMAKE_OPTIONS},
            {"nccl_backend", SHOPCLIP_WITH_NCCL != 0},
            {"cuda_toolkit", SHOPCLIP_CUDA_VERSION},
            {"nccl_headers", SHOPCLIP_NCCL_VERSION},
            {"libtorch_with_cuda", SHOPCLIP_TORCH_CUDA != 0},
            {"onednn_gemm", SHOPCLIP_WITH_ONEDNN != 0}}},
          {"libraries",
           {{"libtorch_headers", TORCH_VERSION},  // Debian's 1.13.1 headers say 1.13.0
            {"faiss", fmt::format("{}.{}.{}", FAISS_VERSION_MAJOR, FAISS_VERSION_MINOR,
                                  FAISS_VERSION_PATCH)},
            {"hdf5", hdf5},
            {"mpi", mpi},
            {"blas_loaded", loaded_blas()},
            {"openblas_core", loaded_openblas_core()},
            {"onednn_isa", onednn_isa()},
            // The library of the linear layers' CPU products (core/model/linear.h).
            {"cpu_gemm", cpu_gemm_name(cpu_gemm())}}},
          {"machine",
           {{"host", hostname()},
            {"cpu", cpu_model()},
            {"cores", std::thread::hardware_concurrency()},
            {"memory_gib", std::round(memory_gib() * 10) / 10}}}};
}

void register_version_command(CommandRegistry& commands) {
  commands.add("version",
               "print the build, the library versions, the BLAS in use and the machine (JSON)",
               Processes::kOne, [](CommandContext&) {
                 fmt::print("{}\n", build_and_machine().dump(2));
                 return 0;
               });
}

}  // namespace shopclip
