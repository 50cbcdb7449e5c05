#include "core/cpu_blas.h"

#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

namespace shopclip {
namespace {

CpuFeatures avx2_fma() {
  CpuFeatures f;
  f.avx2 = f.fma = true;
  return f;
}

CpuFeatures avx512() {
  CpuFeatures f = avx2_fma();
  f.avx512f = f.avx512bw = f.avx512dq = f.avx512vl = true;
  return f;
}

TEST(OpenBlasCore, AFallbackCoreIsReplacedByTheBestKernelsTheCpuRuns) {
  EXPECT_EQ(better_openblas_core("Prescott", avx512()), "SkylakeX");
  EXPECT_EQ(better_openblas_core("Prescott", avx2_fma()), "Haswell");
  EXPECT_EQ(better_openblas_core("Sandybridge", avx2_fma()), "Haswell");
  CpuFeatures partial = avx512();
  partial.avx512bw = false;  // the SkylakeX kernels need BW too
  EXPECT_EQ(better_openblas_core("Core2", partial), "Haswell");
  EXPECT_EQ(better_openblas_core("Prescott", CpuFeatures{}), "");
}

TEST(OpenBlasCore, ADetectedModernCoreOrAnotherBlasIsLeftAlone) {
  for (const char* core : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", "zen"})
    EXPECT_EQ(better_openblas_core(core, avx512()), "") << core;
  EXPECT_EQ(better_openblas_core("", avx512()), "");  // not OpenBLAS
}

// This test binary re-executed itself at start when OpenBLAS had loaded weaker kernels
// (tests/test_support.cpp), so no better core is left to ask for. (On a CPU OpenBLAS detects, or
// without OpenBLAS, there was none to begin with.)
TEST(OpenBlasCore, ThisProcessRunsTheBestKernelsOfThisCpu) {
  const char* reexec = std::getenv("SHOPCLIP_BLAS_REEXEC");
  if (reexec != nullptr && std::string(reexec) == "0") GTEST_SKIP() << "SHOPCLIP_BLAS_REEXEC=0";
  const std::string loaded = loaded_openblas_core();
  EXPECT_EQ(better_openblas_core(loaded, this_cpu_features()), "") << "loaded " << loaded;
}

}  // namespace
}  // namespace shopclip
