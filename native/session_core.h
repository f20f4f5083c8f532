// SessionCore: one OrtSession plus the metadata read from it, with no JS in it.
//
// Ownership: held by std::shared_ptr. The JS Session wrapper holds one reference and every
// in-flight RunJob holds another, so the OrtSession outlives both a dispose() that races a run
// and an environment teardown (worker_threads) that finalizes wrappers before the threadpool
// drains. All fields are immutable after Create(); OrtSession::Run is thread-safe, so any
// number of threads may run the same core concurrently without a lock.
#pragma once

#include <onnxruntime_c_api.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "device_memory.h"
#include "errors.h"
#include "execution_providers.h"
#include "request_counts.h"
#include "run_cost.h"

namespace nimify {

struct SessionConfig {
  int intra_op_threads = -1;  // -1 = ORT default
  int inter_op_threads = -1;
  int optimization_level = -1;  // GraphOptimizationLevel, -1 = ORT default (all)
  int execution_mode = -1;      // ExecutionMode, -1 = ORT default (sequential)
  int log_severity = -1;        // 0 verbose .. 4 fatal, -1 = env default (warning)
  int allow_spinning = -1;      // -1 = ORT default (spin); 0/1 = session.{intra,inter}_op.allow_spinning
  int memory_arena = -1;        // -1 = ORT default (arena on); 0/1 = Disable/EnableCpuMemArena
  std::string optimized_model_path;
  std::vector<std::pair<std::string, int64_t>> free_dimension_overrides;
  std::vector<EpRequest> execution_providers;  // in preference order; the CPU provider is always the last resort
  // NIMIFY_IO_BINDING (diagnostics): run a CPU session's batches through IoBinding (kAlways) or
  // on fixed buffers (kFixed), the paths a device session takes.
  enum class IoBinding : uint8_t { kDefault, kAlways, kFixed };
  IoBinding io_binding = IoBinding::kDefault;
};

struct IoInfo {
  std::string name;
  bool is_tensor = true;        // sequences/maps are described but cannot be fed
  ONNXTensorElementDataType elem = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::string type_name;        // "float32", ..., or "sequence"/"map"/"optional" for non-tensors
  std::vector<int64_t> shape;   // -1 for a dynamic dim
  std::vector<std::string> symbolic;  // dim names where the model gives one, else ""
  bool has_shape = true;        // false when the model declares no rank
};

struct ModelMetadata {
  std::string producer_name, graph_name, domain, description, graph_description;
  int64_t version = 0;
  std::vector<std::pair<std::string, std::string>> custom;
};

// Counters updated by any thread running the session; read by Session.stats().
struct SessionStats {
  std::atomic<uint64_t> runs{0}, failures{0};
  std::atomic<uint64_t> outputs_zero_copy{0};  // outputs ORT wrote straight into JS memory
  std::atomic<uint64_t> outputs_copied{0};     // outputs that took the copy path
  std::atomic<uint64_t> bytes_copied{0};
  std::atomic<uint64_t> shape_fallbacks{0};    // runs repeated because a predicted shape was wrong
  RequestCounts requests;  // infer() outcomes: JS thread only (request_counts.h)
  uint64_t inline_runs = 0;  // infer() runs on the JS thread without a scheduler: JS thread only
};

class SessionCore {
 public:
  SessionStats stats;

  // Runs on a threadpool thread. Exactly one of path / (bytes, length) is used.
  static std::shared_ptr<SessionCore> Create(const std::string& path, const uint8_t* bytes, size_t length,
                                             const SessionConfig& config, Failure* failure);
  ~SessionCore();
  SessionCore(const SessionCore&) = delete;
  SessionCore& operator=(const SessionCore&) = delete;

  OrtSession* session() const { return session_; }
  const std::vector<IoInfo>& inputs() const { return inputs_; }
  const std::vector<IoInfo>& outputs() const { return outputs_; }
  const ModelMetadata& metadata() const { return metadata_; }
  // ORT log severity for runs: the session's logSeverityLevel when given, else fatal-only, since
  // every run failure already reaches the caller as a NimifyError (ORT would also print it).
  int run_log_severity() const { return run_log_severity_; }
  // The providers the session was created with, in preference order, ending with "cpu"; and
  // those requested but not used, with why (execution_providers.h).
  const std::vector<std::string>& providers() const { return providers_; }
  const std::vector<EpSkip>& skipped_providers() const { return skipped_providers_; }
  // Whether the session runs on a provider besides the CPU (a device): the one rule for "GPU
  // model" (no inline batches, Session::Describe's onDevice, Triton's KIND_GPU).
  bool on_device() const { return providers_.size() > 1; }
  // Where the session's device keeps tensors and the host memory it uploads from (pinned on a
  // GPU); CPU memory for a CPU session (device_memory.h).
  const DeviceMemory& memory() const { return *memory_; }
  // Whether batches run through IoBinding (Instance::Execute): every device session, and a CPU
  // session loaded with NIMIFY_IO_BINDING=always or fixed (SessionConfig::io_binding: the device
  // path's code on the CPU). Requests asking for device-resident outputs use it on any session.
  bool io_binding() const { return io_binding_; }
  // Whether batches run on fixed device buffers (one set per batch size, the same addresses
  // every run): a provider with CUDA graphs enabled (cuda's enableCudaGraph, tensorrt's
  // cudaGraph), whose captured graphs replay on the addresses they were captured with; or a CPU
  // session loaded with NIMIFY_IO_BINDING=fixed (diagnostics: the same path on the CPU).
  bool fixed_buffers() const { return fixed_buffers_; }
  // The graph of a CUDA-graph provider is selected per batch size (run option gpu_graph_id).
  bool cuda_graph() const { return cuda_graph_; }
  const char* const* input_names() const { return input_names_.data(); }
  const char* const* output_names() const { return output_names_.data(); }
  // options.inlineBelowMicros for a model without a scheduler (RunJob::Submit); 0: never inline.
  // Set on the JS thread when the load completes, before any run; 0 for sessions on io_binding
  // (a device run waits on the device: the event loop would be blocked for it).
  double inline_below_us() const { return inline_below_us_; }
  void set_inline_below_us(double us) { inline_below_us_ = io_binding_ ? 0 : us; }
  // Every measured run teaches it, on the Executor's threads (the primary session, ORT's pool)
  // and on the JS thread (the inline session, when there is one: single-threaded): one estimate
  // of both, which a model whose runs the pool speeds up underestimates for the JS thread (see
  // inline_session). Separate estimates were tried: one that a slow moment pushed over the
  // bound was never measured again, and the model stayed off the JS thread for good.
  RunCost& run_cost() { return run_cost_; }
  // The session runs made on the JS thread use (inline runs and batches): a second session of
  // the same model with one intra-op thread when the load made one (session.cc,
  // InlineSessionWanted), else this one. ORT's intra-op pool splits even a tiny batch across its
  // threads; on the JS thread, which is the thread a tiny model's throughput is bound by, the
  // fork and join cost more than they save (tiny MLP, 64 rows, 2-core VM: 30 µs per batch with
  // the default pool, 15 µs on one thread), and the pool's spinning threads take the other
  // cores from the JS thread. Set on the JS thread when the load completes, before any run.
  // The inline decision predicts from runs on both sessions (run_cost(), the scheduler's
  // Estimator): low for the JS thread when the pool speeds a model's runs up (README, "Inline runs").
  const std::shared_ptr<SessionCore>& inline_session(const std::shared_ptr<SessionCore>& self) const {
    return inline_session_ ? inline_session_ : self;
  }
  bool has_inline_session() const { return inline_session_ != nullptr; }
  void set_inline_session(std::shared_ptr<SessionCore> single) { inline_session_ = std::move(single); }

 private:
  SessionCore() = default;
  bool ReadMetadata(Failure* failure);

  OrtSession* session_ = nullptr;
  std::vector<IoInfo> inputs_, outputs_;
  std::vector<const char*> input_names_, output_names_;  // point into inputs_/outputs_ names
  ModelMetadata metadata_;
  int run_log_severity_ = 4;
  std::vector<std::string> providers_;
  std::vector<EpSkip> skipped_providers_;
  // Released before the session (~SessionCore): its pinned allocator is the session's.
  std::unique_ptr<DeviceMemory> memory_;
  bool io_binding_ = false;
  bool fixed_buffers_ = false;
  bool cuda_graph_ = false;
  double inline_below_us_ = 0;
  RunCost run_cost_;
  std::shared_ptr<SessionCore> inline_session_;  // owned; holds no reference back
};

// Why runs of `core` cannot use fixed buffers (an input or output with a dynamic dim besides the
// first, which buffers are made per size of; strings), or "" when they can.
std::string FixedShapeProblem(const SessionCore& core);
// For runs that are not gathered (a model that does not batch): why an output's size cannot be
// known before the run — a dynamic first dim that no input's dynamic first dim names — or "".
std::string LoneShapeProblem(const SessionCore& core);

}  // namespace nimify
