// Settlement: how infer()'s promises are settled. The promises are JavaScript's
// (src/runtime/settle.ts): infer() makes one, files its resolving functions under a ticket (a
// small non-negative integer) and passes the ticket to run(). When runs finish, the JS thread
// settles them in bulk: a Settlement records each one's ticket and outcome — [ticket, kind]
// pairs in an Int32Array, the value (when there is one) at the same index of an array — and
// calls the env's settler (setSettler) once with all of them. Per request that spares
// napi_create_promise and napi_resolve_deferred (a persistent handle made and destroyed) and
// TypeScript's .then() on the native promise (a second promise, two closures, one more microtask).
//
// Kinds (SETTLE_KIND in src/runtime/settle.ts): kNull — resolved, every output was written into
// the buffers TypeScript passed (no value); kValue — resolved with values[k]; kError — rejected
// with values[k].
//
// Threading and lifetime: JS thread only. The env's arrays and settler live in AddonData
// (references freed with it at env teardown). A Settlement's handles belong to the handle scope
// it is made in: callers make it outside their per-job scopes.
//
// Re-entrancy: the settler resolves promises, and resolving can run caller code (a `then` getter
// on Object.prototype) that calls infer() again, whose run may settle at once: a Settlement made
// while another one exists (AddonData::settling) uses arrays of its own, so nothing the outer
// one has recorded is overwritten.
#pragma once

#include <napi.h>

#include <cstdint>

namespace nimify {

struct AddonData;

class Settlement {
 public:
  enum class Kind : int32_t { kNull = 0, kValue = 1, kError = 2 };
  // Pairs one settler call carries at most; more are settled in several calls.
  static constexpr size_t kCapacity = 1024;

  explicit Settlement(napi_env env);
  ~Settlement();  // settles what was recorded (Flush)
  Settlement(const Settlement&) = delete;
  Settlement& operator=(const Settlement&) = delete;

  // Records one outcome. `value`: the resolution (kValue) or the rejection (kError); ignored
  // for kNull.
  void Add(int32_t ticket, Kind kind, napi_value value);
  // Calls the settler with everything recorded so far. An exception it throws (it catches its
  // own; this would be a bug) is reported as uncaught rather than left pending in a native frame.
  void Flush();

  // Binding: setSettler(fn) — the env's settler, fn(n, entries, values). Called once per env by
  // src/runtime/settle.ts when it loads; a later call replaces it.
  static Napi::Value SetSettlerJs(const Napi::CallbackInfo& info);
  // Whether the env has a settler (run() refuses to start a request that could not settle).
  static bool Ready(Napi::Env env);

 private:
  napi_env env_;
  AddonData* data_;
  bool nested_;
  napi_value entries_ = nullptr;
  napi_value values_ = nullptr;
  int32_t* pairs_ = nullptr;  // entries_' memory (2 × kCapacity)
  size_t n_ = 0;
};

}  // namespace nimify
