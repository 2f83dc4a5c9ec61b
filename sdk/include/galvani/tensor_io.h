// Reading and writing tensors in PyTorch's formats, and atomic file writes.
#pragma once

#include <torch/types.h>

#include <string>

#include "galvani/error.h"

namespace galvani {

/// Loads a tensor saved with Python's `torch.save(tensor, path)` (or with `save_tensor`).
/// Throws IoError naming the file when it is missing, corrupt or holds something other than one tensor.
GALVANI_API torch::Tensor load_tensor(const std::string& path);

/// Saves a tensor so that Python's `torch.load(path)` returns it; written atomically (temporary + rename).
GALVANI_API void save_tensor(const torch::Tensor& tensor, const std::string& path);

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed, then renamed over.
GALVANI_API void write_file_atomic(const std::string& path, const std::string& bytes);

/// Creates `path` and its missing parents; throws IoError naming the folder and the reason when it cannot.
GALVANI_API void create_folders(const std::string& path);

/// "[2, 3, 4]".
GALVANI_API std::string shape_string(torch::IntArrayRef shape);

}  // namespace galvani
