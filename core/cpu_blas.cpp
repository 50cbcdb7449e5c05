#include "core/cpu_blas.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

namespace shopclip {

CpuFeatures this_cpu_features() {
  __builtin_cpu_init();
  CpuFeatures f;
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512vl = __builtin_cpu_supports("avx512vl");
  return f;
}

std::string loaded_openblas_core() {
  // Looked up at run time: the executables link libblas.so.3, which need not be OpenBLAS.
  using CoreName = char* (*)();
  const auto core_name = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (core_name == nullptr) return "";
  const char* name = core_name();
  return name == nullptr ? "" : name;
}

std::string better_openblas_core(const std::string& loaded, const CpuFeatures& f) {
  if (loaded.empty()) return "";
  for (const char* modern : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"}) {
    if (strcasecmp(loaded.c_str(), modern) == 0) return "";
  }
  if (f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl) return "SkylakeX";
  if (f.avx2 && f.fma) return "Haswell";
  return "";
}

void reexec_with_better_blas_kernels() {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  if (const char* switch_value = std::getenv("SHOPCLIP_BLAS_REEXEC");
      switch_value != nullptr && std::strcmp(switch_value, "0") == 0) {
    return;
  }
  const std::string core = better_openblas_core(loaded_openblas_core(), this_cpu_features());
  if (core.empty()) return;
  // The arguments as this process received them (NUL-separated).
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<char*> argv;
  for (std::size_t start = 0; start < cmdline.size();) {
    argv.push_back(const_cast<char*>(cmdline.data() + start));
    start += std::strlen(cmdline.data() + start) + 1;
  }
  if (argv.empty()) return;
  argv.push_back(nullptr);
  setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
  execv("/proc/self/exe", argv.data());
  unsetenv("OPENBLAS_CORETYPE");  // exec failed: carry on with the kernels loaded
}

}  // namespace shopclip
