#pragma once
// What this binary is and runs on: the build (compiler, flags, build type, CMake options), the
// libraries it was compiled against and the BLAS it loaded, and the machine. Printed by
// `shopclip version`; the part of a run's reproducibility record that does not depend on the run.

#include <nlohmann/json.hpp>

namespace shopclip {

// {"build": {...}, "libraries": {...}, "machine": {...}}; every value a string or a number.
nlohmann::ordered_json build_and_machine();

}  // namespace shopclip
