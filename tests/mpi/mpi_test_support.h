#pragma once
// The world communicator of the running mpirun test job (set by mpi_test_main.cpp).

#include "dist/communicator.h"

namespace shopclip::test_support {
extern dist::Communicator* mpi_world;
}
