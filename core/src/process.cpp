#include "galvani/core/process.h"

#include <malloc.h>

namespace galvani::core {

void tune_allocator() {
  // 32 MiB is glibc's largest mmap threshold on 64-bit systems.
  mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
}

}  // namespace galvani::core
