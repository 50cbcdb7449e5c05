// The reproducibility record's file checks (launch/provenance.h): which changes to a recorded
// input file are found, and that the hash cache never hides a change of size or time.

#include "launch/provenance.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_support.h"

namespace shopclip {
namespace {

namespace fs = std::filesystem;

class ProvenanceFiles : public ::testing::Test {
 protected:
  void SetUp() override { setenv("SHOPCLIP_CACHE_DIR", dir_.file("cache").c_str(), 1); }
  void TearDown() override { unsetenv("SHOPCLIP_CACHE_DIR"); }

  // A record of the files as they are now.
  nlohmann::json record_of(const std::vector<std::string>& paths) {
    nlohmann::json inputs = nlohmann::json::array();
    for (const auto& path : paths) {
      const FileFingerprint f = fingerprint_file(path);
      inputs.push_back({{"role", "data"}, {"path", f.path}, {"size", f.size}, {"xxh64", f.xxh64}});
    }
    return {{"inputs", inputs}};
  }

  test_support::TempDir dir_;
};

TEST_F(ProvenanceFiles, UnchangedFilesPass) {
  test_support::write_file(dir_.file("a.txt"), "alpha");
  EXPECT_TRUE(changed_inputs(record_of({dir_.file("a.txt")})).empty());
}

TEST_F(ProvenanceFiles, EachKindOfChangeIsNamed) {
  for (const char* name : {"gone.txt", "longer.txt", "edited.txt"})
    test_support::write_file(dir_.file(name), "alpha");
  const auto record =
      record_of({dir_.file("gone.txt"), dir_.file("longer.txt"), dir_.file("edited.txt")});
  fs::remove(dir_.file("gone.txt"));
  test_support::write_file(dir_.file("longer.txt"), "alphabet");
  test_support::write_file(dir_.file("edited.txt"), "alpHa");  // same size, other bytes
  const auto changes = changed_inputs(record);
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_NE(changes[0].find("gone.txt (data) is missing"), std::string::npos) << changes[0];
  EXPECT_NE(changes[1].find("longer.txt (data) has 8 bytes, the run read 5"), std::string::npos)
      << changes[1];
  EXPECT_NE(changes[2].find("edited.txt (data) has other content"), std::string::npos)
      << changes[2];
}

TEST_F(ProvenanceFiles, TheCacheIsKeyedBySizeAndModificationTime) {
  const std::string path = dir_.file("data.txt");
  test_support::write_file(path, "first");
  const std::string first = fingerprint_file(path).xxh64;
  EXPECT_EQ(fingerprint_file(path).xxh64, first);
  // New bytes of the same size and a new modification time: hashed again, not taken from the
  // cache.
  test_support::write_file(path, "fir5t");
  fs::last_write_time(path, fs::last_write_time(path) + std::chrono::seconds(5));
  EXPECT_NE(fingerprint_file(path).xxh64, first);
  EXPECT_EQ(fingerprint_file(path).xxh64, fingerprint_file(path, /*use_cache=*/false).xxh64);
}

TEST_F(ProvenanceFiles, AnUnreadableFileIsAnErrorNamingIt) {
  try {
    fingerprint_file(dir_.file("missing.bin"));
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.bin"), std::string::npos) << e.what();
  }
}

// A student's record names its teacher and every file of the teacher's cache, and only when a
// distillation term (or the teacher's negatives) reads them.
TEST(TrainingInputs, ListTheTeacherAndItsCacheWhenDistillationIsOn) {
  test_support::TempDir dir;
  test_support::write_file(dir.file("teacher/checkpoints/best.pt"), "weights");
  test_support::write_file(dir.file("cache/manifest.json"), "{}");
  test_support::write_file(dir.file("cache/queries-00000.h5"), "q");
  test_support::write_file(dir.file("cache/images-00001.h5"), "i1");
  test_support::write_file(dir.file("cache/images-00000.h5"), "i0");
  test_support::write_file(dir.file("cache/notes.txt"), "not a part");
  Config config;
  config.data.root = dir.file("no-data");
  config.distill.teacher = dir.file("teacher");
  config.distill.teacher_cache = dir.file("cache");
  const auto roles_of = [](const std::vector<InputFile>& inputs, const std::string& role) {
    std::vector<std::string> paths;
    for (const auto& input : inputs)
      if (input.role == role) paths.push_back(input.path);
    return paths;
  };
  EXPECT_TRUE(roles_of(training_inputs(config), "teacher checkpoint").empty());
  config.distill.feature_weight = 1;
  const auto inputs = training_inputs(config);
  EXPECT_EQ(roles_of(inputs, "teacher checkpoint"),
            std::vector<std::string>{dir.file("teacher") + "/checkpoints/best.pt"});
  EXPECT_EQ(roles_of(inputs, "teacher cache manifest"),
            std::vector<std::string>{dir.file("cache") + "/manifest.json"});
  EXPECT_EQ(roles_of(inputs, "teacher cache part"),
            (std::vector<std::string>{dir.file("cache") + "/images-00000.h5",
                                      dir.file("cache") + "/images-00001.h5",
                                      dir.file("cache") + "/queries-00000.h5"}));
  // A checkpoint file named directly.
  config.distill.feature_weight = 0;
  config.distill.teacher_negatives = true;
  config.distill.teacher = dir.file("teacher/checkpoints/best.pt");
  EXPECT_EQ(roles_of(training_inputs(config), "teacher checkpoint"),
            std::vector<std::string>{dir.file("teacher/checkpoints/best.pt")});
}

}  // namespace
}  // namespace shopclip
