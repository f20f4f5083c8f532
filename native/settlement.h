// Settlement: how infer()'s promises are settled. The promises are JavaScript's
// (src/runtime/settle.ts): infer() makes one, files its resolving functions under a ticket (a
// small non-negative integer) and passes the ticket to run(). When runs finish, the JS thread
// settles them in bulk: a Settlement records each one's ticket and outcome — [ticket, kind,
// offset] triples in an Int32Array, the value (when there is one) at the same index of an
// array, and the bytes of its outputs copied at settlement (RunJob: tiny outputs written into
// the job's own memory) at `offset` of a shared ArrayBuffer — and calls the env's settler
// (setSettler) once with all of them. Per request that spares napi_create_promise and
// napi_resolve_deferred (a persistent handle made and destroyed), TypeScript's .then() on the
// native promise (a second promise, two closures, one more microtask), and for a tiny output the
// JS view ORT would write into (a typed array made, read and referenced natively).
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
  // The data buffer's layout unit: each copied output starts 8-byte aligned (wrap() in
  // src/runtime/io-plan.ts rounds the same way).
  static constexpr size_t Align8(size_t n) { return (n + 7) & ~size_t{7}; }

  enum class Kind : int32_t { kNull = 0, kValue = 1, kError = 2 };
  // Outcomes one settler call carries at most, and the bytes of copied outputs; more are settled
  // in several calls.
  static constexpr size_t kCapacity = 1024;
  static constexpr size_t kDataBytes = 64 * 1024;

  explicit Settlement(napi_env env);
  ~Settlement();  // settles what was recorded (Flush)
  Settlement(const Settlement&) = delete;
  Settlement& operator=(const Settlement&) = delete;

  // Room for `bytes` (at most kDataBytes) of the next outcome's copied outputs, 8-byte aligned,
  // and for its entry: returns where to write them and sets `*offset`; the Add that follows
  // (with that offset) records the entry in the same settler call. Null when the arrays could
  // not be made.
  uint8_t* Reserve(size_t bytes, int32_t* offset);
  // Records one outcome. `value`: the resolution (kValue) or the rejection (kError); ignored
  // for kNull. `offset`: where its copied outputs are (Reserve), else 0.
  void Add(int32_t ticket, Kind kind, napi_value value, int32_t offset = 0);
  // Calls the settler with everything recorded so far. An exception it throws (it catches its
  // own; this would be a bug) is reported as uncaught rather than left pending in a native frame.
  // The arrays' memory is looked up again after the call (a settler that detached one gets new ones).
  void Flush();

  // Binding: setSettler(fn) — the env's settler, fn(n, entries, values, data). Called once per env by
  // src/runtime/settle.ts when it loads; a later call replaces it.
  static Napi::Value SetSettlerJs(const Napi::CallbackInfo& info);
  // Whether the env has a settler (run() refuses to start a request that could not settle).
  static bool Ready(Napi::Env env);

 private:
  void Renew();  // new arrays, kept as the env's unless nested; none (pointers null) on failure

  napi_env env_;
  AddonData* addon_;
  bool nested_;
  napi_value entries_ = nullptr;
  napi_value values_ = nullptr;
  napi_value data_buffer_ = nullptr;
  int32_t* triples_ = nullptr;  // entries_' memory (3 × kCapacity)
  uint8_t* data_ = nullptr;     // data_buffer_'s memory (kDataBytes)
  size_t n_ = 0;
  size_t data_used_ = 0;
};

}  // namespace nimify
