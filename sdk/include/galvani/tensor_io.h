// Reading and writing tensors in PyTorch's formats, and atomic file writes.
#pragma once

#include <torch/types.h>

#include <cstddef>
#include <string>

#include "galvani/error.h"

namespace galvani {

/// Loads a tensor saved with Python's `torch.save(tensor, path)` (or with `save_tensor`).
/// Throws IoError naming the file when it is missing, corrupt or holds something other than one tensor.
GALVANI_API torch::Tensor load_tensor(const std::string& path);

/// Checks a PyTorch archive (the zip container of torch.save and torch.jit.save) against the CRC-32 its zip
/// directory records for every stored entry, and that every entry lies inside the file. Throws IoError naming
/// `path` and the damaged entry. Bytes that are not a zip archive (the legacy torch.save format, which has no
/// checksums) are left to the reader. load_tensor and the TorchScript backend call it before reading.
GALVANI_API void verify_archive(const char* data, std::size_t size, const std::string& path);
/// verify_archive on a file (mapped, not copied). Throws IoError when it cannot be read.
GALVANI_API void verify_archive_file(const std::string& path);

/// Saves a tensor so that Python's `torch.load(path)` returns it; written atomically (temporary + rename).
GALVANI_API void save_tensor(const torch::Tensor& tensor, const std::string& path);

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed, then renamed over.
GALVANI_API void write_file_atomic(const std::string& path, const std::string& bytes);

/// Creates `path` and its missing parents; throws IoError naming the folder and the reason when it cannot.
GALVANI_API void create_folders(const std::string& path);

/// "[2, 3, 4]".
GALVANI_API std::string shape_string(torch::IntArrayRef shape);

}  // namespace galvani
