#include "galvani/tensor_io.h"

#include <torch/serialize.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <filesystem>
#include <random>
#include <sstream>
#include <vector>

#include <zlib.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace galvani {

std::string shape_string(torch::IntArrayRef shape) {
  std::ostringstream out;
  out << '[';
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

namespace {

// Little-endian fields of the zip format (APPNOTE.TXT 4.3).
std::uint64_t le(const unsigned char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Inflates a raw deflate stream of `packed` bytes, which must give exactly `size` bytes, computing their CRC-32
// on the way. False when the stream is corrupt or of another length.
bool inflate_crc(const unsigned char* data, std::uint64_t packed, std::uint64_t size, std::uint32_t& crc) {
  z_stream z{};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return false;
  std::vector<unsigned char> out(64 * 1024);
  z.next_in = const_cast<unsigned char*>(data);
  std::uint64_t left = packed;  // fed in pieces: avail_in is 32 bits wide
  uLong sum = crc32(0L, Z_NULL, 0);
  std::uint64_t total = 0;
  int status = Z_OK;
  while (status == Z_OK) {
    if (z.avail_in == 0 && left > 0) {
      z.avail_in = static_cast<uInt>(std::min<std::uint64_t>(left, 1u << 30));
      left -= z.avail_in;
    }
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(out.size());
    status = inflate(&z, Z_NO_FLUSH);
    const auto produced = out.size() - z.avail_out;
    sum = crc32_z(sum, out.data(), produced);
    total += produced;
    if (status == Z_OK && produced == 0 && z.avail_in == 0 && left == 0) break;  // input ends before the stream
  }
  inflateEnd(&z);
  crc = static_cast<std::uint32_t>(sum);
  return status == Z_STREAM_END && total == size;
}

constexpr std::uint32_t kLocalHeader = 0x04034b50, kCentralHeader = 0x02014b50, kEnd = 0x06054b50,
                        kEnd64Locator = 0x07064b50, kEnd64 = 0x06064b50;

}  // namespace

void verify_archive(const char* data, std::size_t n, const std::string& path) {
  const auto* b = reinterpret_cast<const unsigned char*>(data);
  if (n < 4 || le(b, 4) != kLocalHeader) return;  // not a zip archive
  const auto damaged = [&](const std::string& why) {
    throw IoError("'" + path + "' is damaged: " + why +
                  "; it changed after it was written (a partial copy or download, a flipped bit): write it again");
  };
  // The end-of-directory record sits in the last 22 + 65535 (comment) bytes.
  std::size_t end = n;
  for (std::size_t i = n >= 22 ? n - 22 : 0; n >= 22 && n - i <= 22 + 65535; --i) {
    if (le(b + i, 4) == kEnd) {
      end = i;
      break;
    }
    if (i == 0) break;
  }
  if (end == n) damaged("its zip directory is missing (the file is cut short)");
  std::uint64_t entries = le(b + end + 10, 2), dir_size = le(b + end + 12, 4), dir_at = le(b + end + 16, 4);
  if (entries == 0xFFFF || dir_size == 0xFFFFFFFF || dir_at == 0xFFFFFFFF) {  // zip64
    if (end < 20 || le(b + end - 20, 4) != kEnd64Locator) damaged("its zip64 directory locator is missing");
    const std::uint64_t at = le(b + end - 20 + 8, 8);
    if (at > n || n - at < 56 || le(b + at, 4) != kEnd64) damaged("its zip64 directory record is missing");
    entries = le(b + at + 32, 8);
    dir_size = le(b + at + 40, 8);
    dir_at = le(b + at + 48, 8);
  }
  if (dir_at > n || dir_size > n - dir_at) damaged("its zip directory points past the end of the file");
  std::size_t p = dir_at;
  for (std::uint64_t e = 0; e < entries; ++e) {
    if (n - p < 46 || le(b + p, 4) != kCentralHeader)
      damaged("its zip directory is corrupt at entry " + std::to_string(e));
    const auto method = le(b + p + 10, 2);
    const auto crc = static_cast<std::uint32_t>(le(b + p + 16, 4));
    std::uint64_t packed = le(b + p + 20, 4), size = le(b + p + 24, 4), local = le(b + p + 42, 4);
    const std::size_t name_len = le(b + p + 28, 2), extra_len = le(b + p + 30, 2), comment_len = le(b + p + 32, 2);
    if (n - p - 46 < name_len + extra_len + comment_len)
      damaged("its zip directory is corrupt at entry " + std::to_string(e));
    const std::string name(reinterpret_cast<const char*>(b + p + 46), name_len);
    // Sizes and offsets of 0xFFFFFFFF are in the zip64 extra field, in this order.
    for (const unsigned char *x = b + p + 46 + name_len, *x_end = x + extra_len; x_end - x >= 4;) {
      const auto id = le(x, 2), len = le(x + 2, 2);
      if (static_cast<std::uint64_t>(x_end - x - 4) < len) break;
      if (id == 1) {
        const unsigned char *f = x + 4, *f_end = f + len;
        for (std::uint64_t* field : {&size, &packed, &local})
          if (*field == 0xFFFFFFFF && f_end - f >= 8) {
            *field = le(f, 8);
            f += 8;
          }
      }
      x += 4 + len;
    }
    if (local > n || n - local < 30 || le(b + local, 4) != kLocalHeader)
      damaged("the entry '" + name + "' has no header where the zip directory says");
    const std::uint64_t start = local + 30 + le(b + local + 26, 2) + le(b + local + 28, 2);
    if (start > n || packed > n - start) damaged("the entry '" + name + "' is cut short");
    std::uint32_t computed = 0;
    if (method == 0) {  // stored, as PyTorch writes tensors: the CRC covers these very bytes
      computed = static_cast<std::uint32_t>(crc32_z(0L, b + start, static_cast<z_size_t>(packed)));
    } else if (method == 8) {  // deflated (TorchScript code): the CRC covers the inflated bytes
      if (!inflate_crc(b + start, packed, size, computed))
        damaged("the entry '" + name + "' does not inflate to its recorded " + std::to_string(size) + " bytes");
    }
    if (method == 0 || method == 8) {
      if (computed != crc) {
        char sums[64];
        std::snprintf(sums, sizeof sums, "recorded %08x, computed %08x", crc, computed);
        damaged("the entry '" + name + "' fails its CRC-32 check (" + sums + ")");
      }
    }
    p += 46 + name_len + extra_len + comment_len;
  }
}

void verify_archive_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError("cannot open '" + path + "'");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || st.st_size == 0) {
    ::close(fd);
    if (st.st_size == 0) throw IoError("'" + path + "' is empty");
    throw IoError("cannot read '" + path + "'");
  }
  void* map = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) throw IoError("cannot read '" + path + "'");
  struct Unmap {
    void* p;
    std::size_t n;
    ~Unmap() { ::munmap(p, n); }
  } unmap{map, static_cast<std::size_t>(st.st_size)};
  verify_archive(static_cast<const char*>(map), unmap.n, path);
}

torch::Tensor load_tensor(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open tensor file '" + path + "'");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.empty()) throw IoError("tensor file '" + path + "' is empty");
  verify_archive(bytes.data(), bytes.size(), path);
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
