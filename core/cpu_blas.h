#pragma once
// OpenBLAS picks its kernels once, when the library is loaded, from the CPU's model number. A CPU
// newer than the OpenBLAS release gets a fallback: Debian bookworm's 0.3.21 does not know Intel's
// Emerald Rapids (family 6, model 207) and runs the generic SSE3 "Prescott" kernels there, whose
// 2048^2 matrix product reaches 58 GFLOP/s on 2 cores against 307 with the AVX-512 "SkylakeX"
// kernels (experiments/results/cpu-speed-*.md). The environment variable OPENBLAS_CORETYPE
// overrides the choice, but only at load time: a program that finds weak kernels loaded sets it
// and executes itself again (reexec_with_better_blas_kernels).

#include <string>

namespace shopclip {

// The CPU features OpenBLAS's x86-64 kernels need.
struct CpuFeatures {
  bool avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
};
CpuFeatures this_cpu_features();

// The core type whose kernels OpenBLAS loaded (openblas_get_corename, e.g. "Haswell"); "" when
// the BLAS in this process is not OpenBLAS.
std::string loaded_openblas_core();

// The OpenBLAS core type to ask for on a CPU with `features` when `loaded` has kernels older than
// AVX2 (it is none of Haswell, Zen, SkylakeX, Cooperlake, SapphireRapids): "SkylakeX" with
// AVX-512 F/BW/DQ/VL, else "Haswell" with AVX2 and FMA; "" when nothing better runs or `loaded`
// already uses AVX2 or AVX-512 kernels (a detected core is left alone) or is "" (not OpenBLAS).
std::string better_openblas_core(const std::string& loaded, const CpuFeatures& features);

// When better_openblas_core(loaded, this CPU) names a core and OPENBLAS_CORETYPE is unset: sets
// OPENBLAS_CORETYPE to it and replaces this process by a fresh run of the same executable with
// the same arguments (execv of /proc/self/exe; the pid, the environment and open files stay, so
// mpirun, srun and callers see the same process). Returns otherwise, and when the exec fails.
// Call first thing in main(), before threads, MPI or files. SHOPCLIP_BLAS_REEXEC=0 disables it.
void reexec_with_better_blas_kernels();

}  // namespace shopclip
