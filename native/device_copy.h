// DeviceCopier: copies tensors between a session's device and the host (or within the device)
// outside any model run: uploads into and downloads out of fixed buffers (CUDA graphs),
// device-resident copies, DeviceTensor.download().
//
// ORT's own CopyTensors uses the data transfers registered with its environment, which only
// plugin-EP libraries provide: a CUDA or TensorRT provider appended through the legacy API (what
// onnxruntime-node installs) has none. So for those the copier runs the copy as a model: an
// Identity session on the same provider and device, one per element type, made on first use,
// with the source bound as its input and the destination as its output (IoBinding), so ORT's
// provider moves the bytes. A plugin-EP library copies through CopyTensors.
//
// Ownership and threads: owned by the DeviceMemory of one SessionCore. Copy() may be called from
// any thread (instance threads, the download worker); the lazily made sessions are guarded by
// `mu_` while looked up, and ORT runs one session from many threads safely.
#pragma once

#include <onnxruntime_c_api.h>

#include <map>
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

  // Load thread. `provider`: the provider the copies run on (its device_id only; null: the CPU).
  void Configure(Via via, const EpRequest* provider);
  Via via() const { return via_; }

  // Any thread: copies `src` into `dst` (same element type and shape). Synchronous: when it
  // returns, `dst` holds the bytes.
  Failure Copy(const OrtValue* src, OrtValue* dst, const std::string& what);

 private:
  // Under mu_: the Identity session for `elem`, made on first use.
  OrtSession* IdentitySession(ONNXTensorElementDataType elem, Failure* f);

  Via via_ = Via::kMemcpy;
  EpRequest provider_;
  bool has_provider_ = false;
  std::mutex mu_;
  std::map<ONNXTensorElementDataType, OrtSession*> sessions_;  // owned; released in the destructor
};

}  // namespace nimify
