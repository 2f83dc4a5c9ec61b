// Process-wide settings the command line and the benchmarks apply once at start-up.
#pragma once

namespace galvani::core {

/// Keeps freed blocks of up to 32 MiB in the heap instead of returning them to the system: path passes
/// allocate the same large chunk and layer buffers over and over, and with glibc's defaults every one of them
/// was a fresh mapping paid for in page faults (a NIG run on the example CNN went from 1.07 s to 0.78 s on
/// one core). The process keeps its peak heap until it exits.
void tune_allocator();

}  // namespace galvani::core
