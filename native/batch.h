// A batch: the jobs one scheduler instance runs together, and the two copies batching costs —
// gather (each job's input rows into one batch tensor) and scatter (the batch's output rows
// back into each job's output buffers).
//
// Seams for the GPU (SPEC C3): gather writes into memory obtained from a Staging, and the
// batch tensors are created over it with Staging::memory_info(). The host implementation below
// is plain reusable host memory; a CUDA instance will supply pinned host staging (or device
// buffers plus a copy on its own stream) without touching the scheduler or this file's callers.
//
// Threading: a Batch is built under the scheduler's mutex, then owned by the one instance
// thread that runs it. Its jobs' JS memory stays referenced by the jobs until they are
// delivered on the JS thread.
#pragma once

#include <onnxruntime_c_api.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "errors.h"
#include "session_core.h"

namespace nimify {

class RunJob;

// Where gathered inputs live while a batch runs. One per instance; reused across batches.
class Staging {
 public:
  virtual ~Staging() = default;
  // A buffer of at least `bytes` for input `input`, valid until the next call for that input.
  virtual uint8_t* Buffer(size_t input, size_t bytes) = 0;
  virtual const OrtMemoryInfo* memory_info() const = 0;
};

class HostStaging : public Staging {
 public:
  uint8_t* Buffer(size_t input, size_t bytes) override;
  const OrtMemoryInfo* memory_info() const override;

 private:
  std::vector<std::vector<uint8_t>> buffers_;
};

// Staging in memory from an ORT allocator: the session's pinned (page-locked) host memory on a
// GPU, so ORT uploads a gathered batch in one copy at full bus speed (it copies a bound host input
// to the device when the batch is bound, synchronously). Grows only; freed with the
// staging. The allocator belongs to `core`'s DeviceMemory, which the staging's instance keeps
// alive (it holds the core).
class AllocatorStaging : public Staging {
 public:
  AllocatorStaging(OrtAllocator* allocator, const OrtMemoryInfo* info) : allocator_(allocator), info_(info) {}
  ~AllocatorStaging() override;
  uint8_t* Buffer(size_t input, size_t bytes) override;
  const OrtMemoryInfo* memory_info() const override { return info_; }

 private:
  struct Block {
    void* p = nullptr;
    size_t bytes = 0;
  };
  OrtAllocator* allocator_;
  const OrtMemoryInfo* info_;
  std::vector<Block> blocks_;
};

// The staging an instance of `core` gathers into: pinned memory where its provider has it, else
// plain host memory.
std::unique_ptr<Staging> MakeStaging(const SessionCore& core);

struct Batch {
  std::vector<RunJob*> jobs;
  int64_t rows = 0;  // sum of the jobs' rows (batchable jobs), else 0
  // Rows the batch tensors hold: `rows` plus zero padding (BatchingConfig::pad_to_preferred).
  // Set with the batch (Scheduler::PrepareRun); 0 for a job that cannot share a run.
  int64_t padded_rows = 0;
  // Every batch, a single job's included, runs with run options of its own, created when the
  // batch is formed (Scheduler::PrepareRun; scheduled jobs are prepared without any): a
  // terminate (every job of the batch cancelled, or env teardown) stops exactly this run.
  OrtRunOptions* run_options = nullptr;
  size_t cancelled = 0;  // jobs cancelled while running (scheduler mutex)
  ~Batch();
};

// Device tensors start at multiples of this (cudaMalloc's alignment, TensorRT's I/O requirement).
constexpr size_t kDeviceAlignment = 256;

// Bytes moved by gather and scatter, for stats (the copies batching costs are counted).
struct CopyCounts {
  uint64_t gathered = 0, scattered = 0;
};

// Reads and writes the jobs only through RunJob's slot accessors (input(), output(), ...): the
// instance thread running the batch is the only thread touching them meanwhile.
struct BatchIo {
  // Instance thread. Builds one input OrtValue per model input over `staging` holding every
  // job's rows in order. On failure releases what it built.
  static Failure Gather(const SessionCore& core, const Batch& batch, Staging& staging,
                        std::vector<OrtValue*>* inputs, CopyCounts* counts);
  // Instance thread. Splits the batch outputs (dim 0 = the batch's rows) into each job's
  // outputs: into its buffer when it has one of the right size, else into a new ORT tensor for
  // the copy path. A job whose own (caller-supplied) buffer cannot hold its rows fails alone.
  static Failure Scatter(SessionCore& core, const Batch& batch, const std::vector<OrtValue*>& outputs,
                         CopyCounts* counts);
  // Instance thread. For device-resident outputs (RunJob::outputs_on_device): each batch output
  // (taken from `outputs`, which it nulls) becomes a DeviceValue holding `ran_on`, and each job's
  // output a view of its rows of it — no copy — unless those rows start at an address that is
  // not kDeviceAlignment-aligned in device memory: then the job gets a copy of its own.
  static Failure ScatterViews(const std::shared_ptr<SessionCore>& ran_on, const Batch& batch,
                              std::vector<OrtValue*>* outputs);
};

}  // namespace nimify
