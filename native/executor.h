// Executor: the process-wide pool of native threads that run inferences.
//
// Why not the libuv threadpool: its 4 threads are shared with fs/dns/zlib, and a queued
// napi_async_work costs two thread handoffs plus a per-job JS callback scope. Executor threads
// are nimify's own; they spin briefly for new work before sleeping, so a caller issuing runs
// back to back pays no futex wake-up, and completions go back to JS through one threadsafe
// function per env (see EnvState), which coalesces wake-ups when many runs finish together.
//
// Lifetime: created on first use and deliberately never destroyed (threads blocked in a
// condition variable cannot be joined safely from static destructors at process exit).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace nimify {

class Task {
 public:
  virtual ~Task() = default;
  virtual void Run() = 0;  // on an executor thread; must not touch JS
};

class Executor {
 public:
  static Executor& Instance();
  // Any thread. Ownership of `task` stays with the caller; the task must stay alive until it
  // signals completion itself.
  void Submit(Task* task);

 private:
  explicit Executor(size_t n);
  void Loop();
  Task* TryPop();

  std::mutex mu_;  // guards queue_ and sleeping_
  std::condition_variable cv_;
  std::deque<Task*> queue_;
  size_t sleeping_ = 0;
  std::atomic<bool> spinner_{false};  // one idle thread at a time polls before sleeping
  std::atomic<size_t> queued_{0};     // == queue_.size(), readable without the lock
  std::vector<std::thread> threads_;  // detached at once (see Lifetime above)
};

}  // namespace nimify
