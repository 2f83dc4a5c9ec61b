#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "galvani/tensor_io.h"
#include "test_support.h"

TEST(TensorIo, RoundTripsThroughPickleFormat) {
  const auto t = torch::arange(12, torch::kDouble).reshape({3, 4}) / 7;
  const auto path = galvani::testing::temp_dir() + "/t.pt";
  galvani::save_tensor(t, path);
  EXPECT_TRUE(torch::equal(galvani::load_tensor(path), t));
  // No temporary file is left next to it.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST(TensorIo, ReadsTensorsSavedByPythonTorchSave) {
  // The bundled example's images, written by Python's torch.save.
  const auto t = galvani::load_tensor(std::string(GALVANI_SOURCE_DIR) + "/docs/examples/fashion_test.pt");
  ASSERT_EQ(t.dim(), 4);
  EXPECT_EQ(t.size(1), 1);
  EXPECT_EQ(t.size(2), 28);
  EXPECT_GE(t.min().item<double>(), 0.0);
  EXPECT_LE(t.max().item<double>(), 1.0);
}

TEST(TensorIo, MissingOrCorruptFilesAreIoErrors) {
  EXPECT_THROW(galvani::load_tensor("/nonexistent/x.pt"), galvani::IoError);
  const auto bad = galvani::testing::temp_dir() + "/bad.pt";
  std::ofstream(bad) << "this is not a tensor";
  try {
    galvani::load_tensor(bad);
    FAIL();
  } catch (const galvani::IoError& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos);
  }
}

// One byte flipped in a tensor's payload (a bad copy) changes numbers silently unless the checksum is read.
TEST(TensorIo, DamagedArchivesFailTheirChecksum) {
  const auto original = std::string(GALVANI_SOURCE_DIR) + "/docs/examples/fashion_test.pt";
  const auto damaged = galvani::testing::damaged_copy(original, "data/0");
  try {
    galvani::load_tensor(damaged);
    FAIL() << "a damaged tensor file was read";
  } catch (const galvani::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("data/0' fails its CRC-32 check"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("write it again"), std::string::npos) << e.what();
  }
  // A file cut short loses its zip directory.
  std::ifstream in(original, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto cut = galvani::testing::temp_dir() + "/cut.pt";
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  try {
    galvani::load_tensor(cut);
    FAIL() << "half a tensor file was read";
  } catch (const galvani::IoError& e) {
    EXPECT_NE(std::string(e.what()).find("cut short"), std::string::npos) << e.what();
  }
  // The undamaged file still reads, and so does what save_tensor writes (its CRCs are right).
  EXPECT_NO_THROW(galvani::load_tensor(original));
  const auto path = galvani::testing::temp_dir() + "/ok.pt";
  galvani::save_tensor(torch::rand({3, 5}), path);
  EXPECT_NO_THROW(galvani::verify_archive_file(path));
}
