#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

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
