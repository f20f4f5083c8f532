// DeviceCopier: copies tensors between a session's device and the host (or within the device)
// outside any model run: uploads into and downloads out of fixed buffers (CUDA graphs),
// device-resident copies, DeviceTensor.download().
//
// ORT's own CopyTensors uses the data transfers registered with its environment, which only
// plugin-EP libraries provide: a CUDA or TensorRT provider appended through the legacy API (what
// onnxruntime-node installs) has none. So for those the copier runs the copy as a model: one
// Identity session over bytes (uint8), on the same provider and device with the model's memory
// settings (gpu_mem_limit, arena strategy), with uint8 views of the source and the destination
// bound as its input and output (IoBinding), so ORT's provider moves the bytes. A plugin-EP
// library copies through CopyTensors.
//
// Ownership and threads: owned by the DeviceMemory of one SessionCore. Copy() may be called from
// any thread (instance threads, the download worker). The session is made once (Prepare at load
// for models that copy on every batch, else on first use), under `mu_` only for the hand-over;
// ORT runs one session from many threads safely. Device calls take the capture lock shared
// (CaptureLock: a CUDA graph being captured forbids other threads' device calls).
#pragma once

#include <onnxruntime_c_api.h>

#include <mutex>
#include <string>

#include "errors.h"
#include "execution_providers.h"

namespace nimify {

class DeviceCopier {
 public:
  enum class Via : uint8_t {
    kMemcpy,         // a CPU session: both sides are host memory
    kCopyTensors,    // a plugin-EP library: ORT's environment has its data transfer
    kIdentityRun,    // a legacy provider (or NIMIFY_IO_BINDING=fixed on the CPU): an Identity session
  };
  DeviceCopier() = default;
  DeviceCopier(const DeviceCopier&) = delete;
  DeviceCopier& operator=(const DeviceCopier&) = delete;
  ~DeviceCopier();

  // Load thread. `provider`: the provider the copies run on (null: the CPU).
  void Configure(Via via, const EpRequest* provider);
  Via via() const { return via_; }
  // Load thread: makes the Identity session now (kIdentityRun), so that a provider that cannot
  // run it fails the load rather than a request.
  Failure Prepare();

  // Any thread: copies `src` into `dst` (same element type and shape). Synchronous: when it
  // returns, `dst` holds the bytes.
  Failure Copy(const OrtValue* src, OrtValue* dst, const std::string& what);

 private:
  // The Identity session, made on first use (outside `mu_`: creating a CUDA session takes long);
  // a failure is kept and reported by every later call.
  OrtSession* Session(Failure* f);

  Via via_ = Via::kMemcpy;
  EpRequest provider_;
  bool has_provider_ = false;
  std::mutex mu_;                 // guards the two fields below
  OrtSession* session_ = nullptr;  // owned; released in the destructor
  Failure session_failure_;
};

}  // namespace nimify
