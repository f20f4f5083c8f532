// DeviceTensor: a tensor that stays where the model's session keeps it (its device: GPU memory
// on a CUDA session, the session's host memory on a CPU one) instead of being copied into a JS
// buffer — infer()'s `outputLocation: 'device'` (issue 15 item 3). It can be fed to a later
// infer() of a model on the same device without leaving it, downloaded to a JS buffer, or
// disposed.
//
// Ownership: a DeviceValue owns one OrtValue. A request's output from a batch is a view of its
// rows in the batch's output tensor: the view's `parent` keeps that tensor alive for as long as
// any request's view of it is. `core` keeps the session (whose allocator owns the memory)
// alive: a DeviceTensor outlives its model's dispose(). Held by shared_ptr: the JS wrapper holds
// one (dropped by dispose() or the wrapper's finalizer), and every job feeding it holds another
// until it settles, so dispose() during a run cannot free memory ORT is reading.
// Threading: the wrapper is the JS thread's; a DeviceValue is read (never written) by instance
// and executor threads through the jobs that hold it, and released on whichever thread drops
// its last reference (ReleaseValue is thread-safe).
#pragma once

#include <napi.h>
#include <onnxruntime_c_api.h>

#include <memory>
#include <string>
#include <vector>

#include "errors.h"
#include "session_core.h"

namespace nimify {

struct DeviceValue {
  std::shared_ptr<SessionCore> core;      // declared first: released last
  std::shared_ptr<DeviceValue> parent;    // the batch output this one is a view of, if any
  OrtValue* value = nullptr;              // owned
  ONNXTensorElementDataType elem = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> dims;
  size_t bytes = 0;
  const OrtMemoryInfo* memory = nullptr;  // the value's (ORT's, valid while `value` is)
  ~DeviceValue();
  // Reads elem, dims, bytes and memory from `value`. Any thread.
  Failure Describe();
};

class DeviceTensor : public Napi::ObjectWrap<DeviceTensor> {
 public:
  static Napi::Function Define(Napi::Env env);
  // JS thread: a wrapper of `value` (described).
  static Napi::Value New(Napi::Env env, std::shared_ptr<DeviceValue> value);
  // JS thread: the DeviceValue behind `v` when it is a DeviceTensor wrapper; `*is_device` says
  // whether it was one (a disposed one gives null with *is_device true).
  static std::shared_ptr<DeviceValue> From(Napi::Env env, Napi::Value v, bool* is_device);

  explicit DeviceTensor(const Napi::CallbackInfo& info);
  ~DeviceTensor() override;

 private:
  // Drops the value and gives back the bytes reported to the GC (dispose(), or the finalizer).
  void Release(Napi::Env env);
  // () -> { type, dims, location, byteLength } (read once by TypeScript's DeviceTensor).
  Napi::Value Describe(const Napi::CallbackInfo& info);
  // () -> Promise<[typedArray, dims]>: a copy in a new JS buffer, made off the JS thread.
  Napi::Value Download(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);  // () -> undefined; idempotent

  std::shared_ptr<DeviceValue> value_;  // null once disposed
  int64_t external_bytes_ = 0;          // reported with napi_adjust_external_memory while held
};

}  // namespace nimify
