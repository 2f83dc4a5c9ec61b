#include "galvani/tensor_io.h"

#include <torch/serialize.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <filesystem>
#include <random>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

namespace galvani {

std::string shape_string(torch::IntArrayRef shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

torch::Tensor load_tensor(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open tensor file '" + path + "'");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.empty()) throw IoError("tensor file '" + path + "' is empty");
  torch::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    // Files written by C++ torch::save are TorchScript archives rather than pickles.
    try {
      torch::Tensor t;
      torch::load(t, path);
      return t;
    } catch (const std::exception&) {
    }
    std::string what = e.what();
    if (auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
    throw IoError("cannot read '" + path + "' as a tensor saved with torch.save: " + what);
  }
  if (!value.isTensor())
    throw IoError("'" + path + "' holds a " + value.tagKind() +
                  ", not a tensor; save one tensor with torch.save(tensor, path)");
  return value.toTensor();
}

void create_folders(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec || !std::filesystem::is_directory(path))
    throw IoError("cannot create the folder '" + path + "': " +
                  (ec ? ec.message() : std::string("a file of that name is in the way")));
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rng());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw IoError("cannot write '" + path + "': cannot create a temporary file next to it");
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      ::close(fd);
      std::remove(tmp.c_str());
      throw IoError("cannot write '" + path + "': write failed (disk full?)");
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::remove(tmp.c_str());
    throw IoError("cannot write '" + path + "': flushing to disk failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw IoError("cannot write '" + path + "': renaming the temporary file failed");
  }
}

void save_tensor(const torch::Tensor& tensor, const std::string& path) {
  const auto bytes = torch::pickle_save(tensor.detach().cpu().contiguous());
  write_file_atomic(path, std::string(bytes.begin(), bytes.end()));
}

}  // namespace galvani
