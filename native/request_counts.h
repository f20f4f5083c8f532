// RequestCounts: what became of a model's infer() requests, by Triton's success/failure split
// (/work/shared/reference: success, failure with reason REJECTED | CANCELED | BACKEND). The
// definitions, as the TypeScript ModelStats documents them (src/runtime/binding.ts):
//   admitted  — infer() requests accepted: queued by the scheduler, or handed to the Executor
//               (requests refused by validation, QUEUE_FULL or DISPOSED are not);
//   rejected  — refused with QUEUE_FULL (queue depth or predicted wait); never admitted;
//   succeeded — admitted and resolved;
//   failed    — admitted, ran, and failed (ORT or output conversion);
//   expired   — admitted and settled with TIMEOUT (dropped from the queue at its deadline, or its
//               run terminated by timeoutMs);
//   cancelled — admitted and settled with ABORTED (AbortSignal, env teardown) or DISPOSED.
// So admitted = succeeded + failed + expired + cancelled + (requests not yet settled).
// inferSync() calls are not requests: they show in SessionStats::runs/failures only.
//
// Threading: JS thread only, no lock. Admission is counted in Session::Run, rejection in
// Scheduler::Submit, outcomes in RunJob::Settle (the one place every infer() promise settles),
// reads and resets in Session::Stats / Session::ResetStats — all on the env's JS thread, and a
// SessionCore belongs to one env.
#pragma once

#include <cstdint>
#include <cstring>

#include "errors.h"

namespace nimify {

struct RequestCounts {
  uint64_t admitted = 0, rejected = 0;
  uint64_t succeeded = 0, failed = 0, expired = 0, cancelled = 0;

  // JS thread, as a job's promise settles: `cancel_code` is the job's cancel reason (or null),
  // `ok` whether it resolved.
  void Settled(const char* cancel_code, bool ok) {
    if (cancel_code != nullptr) {
      (std::strcmp(cancel_code, code::kTimeout) == 0 ? expired : cancelled)++;
    } else {
      (ok ? succeeded : failed)++;
    }
  }
  void Reset() { *this = RequestCounts(); }
};

}  // namespace nimify
