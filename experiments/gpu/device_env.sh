# Sourced (bash) on a machine with a CUDA LibTorch (PyTorch's) but none of shopclip's Debian
# packages, in the repository root: unpacks .devdeps/prefix.tar.xz (made by
# experiments/gpu/fetch_deps.sh) once into $SHOPCLIP_DEPS and sets what CMake, pkg-config, the
# relocated Open MPI and the loader need. Defines shopclip_cmake_args (an array) for the configure.
deps_root=${SHOPCLIP_DEPS:-/tmp/shopclip-deps}
if [ ! -d "$deps_root/prefix" ]; then
  mkdir -p "$deps_root"
  tar -C "$deps_root" -xJf .devdeps/prefix.tar.xz
fi
deps_prefix=$deps_root/prefix/usr
deps_lib=$deps_prefix/lib/x86_64-linux-gnu
# FAISS's exported target names the BLAS and LAPACK by absolute /usr paths.
sed -i -e "s#\([\";]\)/usr/lib/x86_64-linux-gnu/libblas.so#\1$deps_lib/libblas.so#g" \
  -e "s#\([\";]\)/usr/lib/x86_64-linux-gnu/liblapack.so#\1$deps_lib/liblapack.so#g" \
  "$deps_lib/cmake/faiss/faiss-targets.cmake"
export PATH=$deps_prefix/bin:$PATH
export OPAL_PREFIX=$deps_prefix  # Open MPI finds its components and help files from here
export LD_LIBRARY_PATH=$deps_lib:$deps_lib/openblas-openmp:$deps_lib/hdf5/serial${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PKG_CONFIG_PATH=$deps_lib/pkgconfig:$deps_prefix/share/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$deps_root/prefix  # the .pc files say prefix=/usr
# Components that need libraries we do not carry (InfiniBand, UCX, OFI) are skipped quietly.
export OMPI_MCA_mca_base_component_show_load_errors=0 OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
export OMPI_MCA_btl_vader_single_copy_mechanism=none PMIX_MCA_pcompress_base_silence_warning=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
shopclip_cmake_args=(
  "-DCMAKE_PREFIX_PATH=${SHOPCLIP_TORCH_PREFIX:-};$deps_prefix"
  -DCMAKE_POLICY_VERSION_MINIMUM=3.5
  "-DPKG_CONFIG_EXECUTABLE=$deps_prefix/bin/pkgconf"
  "-DSHOPCLIP_OPENMP_BLAS_DIR=$deps_lib/openblas-openmp"
  "-DHDF5_ROOT=$deps_prefix"
  "-DHDF5_C_INCLUDE_DIR=$deps_prefix/include/hdf5/serial"
  "-DHDF5_hdf5_LIBRARY_RELEASE=$deps_lib/hdf5/serial/libhdf5.so"
  -DMPI_SKIP_COMPILER_WRAPPER=ON -DMPI_C_LIB_NAMES=mpi
  "-DMPI_C_HEADER_DIR=$deps_lib/openmpi/include"
  "-DMPI_mpi_LIBRARY=$deps_lib/openmpi/lib/libmpi.so"
  "-DMPIEXEC_EXECUTABLE=$deps_prefix/bin/mpirun.openmpi"
  "-DTCMALLOC_LIBRARY=$deps_lib/libtcmalloc_minimal.so"
  "-DICU_ROOT=$deps_prefix"
)
