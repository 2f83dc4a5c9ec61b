// The shard schedule every run and every benchmark floor goes through: each shard once, with its rows, the
// threads and grad mode a run uses, and the first error rethrown after the running shards finish.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <atomic>
#include <mutex>
#include <set>
#include <stdexcept>

#include "galvani/core/execute.h"

using galvani::core::for_each_shard;
using galvani::core::ShardRange;
using galvani::core::ShardSchedule;

TEST(ShardSchedule, EveryShardOnceWithItsRowsThreadsAndGradMode) {
  ShardSchedule s;
  s.inputs = 10;
  s.shard_size = 4;
  s.concurrency = 2;
  s.intra_threads = 1;
  ASSERT_EQ(s.shards(), 3u);
  std::mutex m;
  std::set<std::tuple<std::size_t, std::int64_t, std::int64_t>> seen;
  std::vector<std::size_t> done;
  bool grad = true;
  int threads = 0;
  torch::NoGradGuard caller_has_no_grad;
  for_each_shard(
      s,
      [&](const ShardRange& r) {
        std::lock_guard<std::mutex> lock(m);
        seen.insert({r.index, r.start, r.length});
        grad = grad && torch::GradMode::is_enabled();
        threads = std::max(threads, at::get_num_threads());
      },
      [&](std::size_t n) { done.push_back(n); });
  EXPECT_EQ(seen, (std::set<std::tuple<std::size_t, std::int64_t, std::int64_t>>{{0, 0, 4}, {1, 4, 4}, {2, 8, 2}}));
  EXPECT_EQ(done, (std::vector<std::size_t>{1, 2, 3}));
  EXPECT_TRUE(grad);
  EXPECT_EQ(threads, 1);
  // Over the first 5 inputs: the same shard size.
  EXPECT_EQ(s.over(5).shards(), 2u);
  EXPECT_EQ(s.over(50).inputs, 10);
}

TEST(ShardSchedule, TheFirstErrorStopsNewShardsAndIsRethrown) {
  ShardSchedule s;
  s.inputs = 64;
  s.shard_size = 1;
  s.concurrency = 1;  // one at a time: nothing starts after the failing shard
  std::atomic<int> ran{0};
  try {
    for_each_shard(s, [&](const ShardRange& r) {
      ++ran;
      if (r.index == 3) throw std::runtime_error("shard 3 failed");
    });
    FAIL() << "the error was swallowed";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "shard 3 failed");
  }
  EXPECT_EQ(ran.load(), 4);
}
