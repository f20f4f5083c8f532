#include "executor.h"

#include <chrono>
#include <cstdlib>
#include <string>

namespace nimify {

namespace {

size_t ThreadCount() {
  if (const char* env = std::getenv("NIMIFY_THREADS")) {
    long n = std::strtol(env, nullptr, 10);
    if (n >= 1 && n <= 256) return static_cast<size_t>(n);
  }
  unsigned hw = std::thread::hardware_concurrency();
  if (hw < 2) hw = 2;
  return hw > 16 ? 16 : hw;
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// How long an idle thread polls for new work before sleeping. Long enough to cover the JS side
// of one infer() call between two sequential runs; short enough to cost nothing measurable when
// the process is idle.
constexpr auto kSpin = std::chrono::microseconds(50);

}  // namespace

Executor& Executor::Instance() {
  static Executor* instance = new Executor(ThreadCount());  // never destroyed, see header
  return *instance;
}

Executor::Executor(size_t n) {
  threads_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    threads_.emplace_back([this] { Loop(); });
    threads_.back().detach();
  }
}

void Executor::Submit(Task* task) {
  bool wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(task);
    queued_.fetch_add(1, std::memory_order_release);
    wake = sleeping_ > 0;
  }
  if (wake) cv_.notify_one();
}

Task* Executor::TryPop() {
  std::lock_guard<std::mutex> lock(mu_);
  if (queue_.empty()) return nullptr;
  Task* t = queue_.front();
  queue_.pop_front();
  queued_.fetch_sub(1, std::memory_order_relaxed);
  return t;
}

void Executor::Loop() {
  for (;;) {
    Task* task = TryPop();
    // At most one idle thread spins; the others sleep at once, so idle spinners never take a
    // core from a thread doing real work (ORT's own pool threads included).
    if (task == nullptr && !spinner_.exchange(true)) {
      // Poll a lock-free counter (a `pause` is ~40-140 cycles) and take the lock only when it
      // says there is work, so a submit is picked up within a fraction of a microsecond.
      const auto until = std::chrono::steady_clock::now() + kSpin;
      for (unsigned n = 0; task == nullptr; ++n) {
        if (queued_.load(std::memory_order_acquire) > 0) {
          task = TryPop();
          continue;
        }
        CpuRelax();
        if ((n & 63) == 0 && std::chrono::steady_clock::now() >= until) break;
      }
      spinner_.store(false);
    }
    if (task == nullptr) {
      std::unique_lock<std::mutex> lock(mu_);
      ++sleeping_;
      cv_.wait(lock, [this] { return !queue_.empty(); });
      --sleeping_;
      task = queue_.front();
      queue_.pop_front();
      queued_.fetch_sub(1, std::memory_order_relaxed);
    }
    task->Run();
  }
}

}  // namespace nimify
