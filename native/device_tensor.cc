#include "device_tensor.h"

#include "device_memory.h"
#include "element_type.h"
#include "env_state.h"
#include "ort_api.h"
#include "tensor_io.h"

namespace nimify {

namespace {

// Passed by New() to the constructor: JS cannot make a wrapper of nothing.
int kConstructToken = 0;

// Copies a DeviceValue into a JS buffer off the JS thread, through its session's DeviceMemory
// (a memcpy from host memory; from a device, ORT's copy: device_copy.h). The buffer is created and
// referenced on the JS thread before the copy and handed back after it.
class DownloadWorker : public Napi::AsyncWorker {
 public:
  DownloadWorker(Napi::Env env, std::shared_ptr<DeviceValue> value, Napi::Value array, void* data)
      : Napi::AsyncWorker(env, "nimify.download"),
        deferred_(Napi::Promise::Deferred::New(env)),
        value_(std::move(value)),
        data_(data) {
    array_ = Napi::Persistent(array.As<Napi::Object>());
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

  // Worker thread.
  void Execute() override {
    if (value_->bytes == 0) return;
    OrtValue* dst = nullptr;
    Failure f = FromOrtStatus(g_ort->CreateTensorWithDataAsOrtValue(CpuMemoryInfo(), data_, value_->bytes,
                                                                   value_->dims.data(), value_->dims.size(),
                                                                   value_->elem, &dst),
                              "download");
    if (!f) f = value_->core->memory().Copy(value_->value, dst, "DeviceTensor.download()");
    if (dst != nullptr) g_ort->ReleaseValue(dst);
    if (f) failure_ = f;
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (failure_) {
      deferred_.Reject(MakeError(env, failure_).Value());
      return;
    }
    Napi::Array dims = Napi::Array::New(env, value_->dims.size());
    for (size_t i = 0; i < value_->dims.size(); ++i) dims.Set(static_cast<uint32_t>(i), static_cast<double>(value_->dims[i]));
    Napi::Array out = Napi::Array::New(env, 2);
    out.Set(0u, array_.Value());
    out.Set(1u, dims);
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<DeviceValue> value_;
  Napi::ObjectReference array_;
  void* data_;
  Failure failure_;
};

}  // namespace

DeviceValue::~DeviceValue() {
  if (value != nullptr) g_ort->ReleaseValue(value);
}

Failure DeviceValue::Describe() {
  Failure f;
  OrtTensorTypeAndShapeInfo* info = nullptr;
  if ((f = FromOrtStatus(g_ort->GetTensorTypeAndShape(value, &info), "describing a device tensor"))) return f;
  size_t rank = 0, count = 0;
  OrtStatus* st = g_ort->GetTensorElementType(info, &elem);
  if (st == nullptr) st = g_ort->GetDimensionsCount(info, &rank);
  dims.assign(rank, 0);
  if (st == nullptr && rank > 0) st = g_ort->GetDimensions(info, dims.data(), rank);
  if (st == nullptr) st = g_ort->GetTensorShapeElementCount(info, &count);
  g_ort->ReleaseTensorTypeAndShapeInfo(info);
  if ((f = FromOrtStatus(st, "describing a device tensor"))) return f;
  if ((f = FromOrtStatus(g_ort->GetTensorMemoryInfo(value, &memory), "describing a device tensor"))) return f;
  const ElementType* et = ElementTypeByOnnx(elem);
  if (et == nullptr || et->size == 0) {
    f.Set(code::kUnsupported, "a device tensor of element type " + OnnxTypeName(elem) + " (numeric tensors only)");
    return f;
  }
  bytes = count * et->size;
  return f;
}

Napi::Function DeviceTensor::Define(Napi::Env env) {
  return DefineClass(env, "DeviceTensor",
                     {
                         InstanceMethod<&DeviceTensor::Describe>("describe"),
                         InstanceMethod<&DeviceTensor::Download>("download"),
                         InstanceMethod<&DeviceTensor::Dispose>("dispose"),
                     });
}

DeviceTensor::DeviceTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DeviceTensor>(info) {
  if (info.Length() != 2 || !info[0].IsExternal() || info[0].As<Napi::External<int>>().Data() != &kConstructToken ||
      !info[1].IsExternal()) {
    MakeError(info.Env(), code::kInvalidArgument, "DeviceTensor: made by infer() with outputLocation 'device', not by new")
        .ThrowAsJavaScriptException();
    return;
  }
  // New() passes the value by a pointer to its shared_ptr, alive for the constructor call.
  value_ = *info[1].As<Napi::External<std::shared_ptr<DeviceValue>>>().Data();
  // The memory is outside V8's heap: tell the GC, so that undisposed tensors (device memory
  // included) weigh on its decisions.
  external_bytes_ = static_cast<int64_t>(value_->bytes);
  Napi::MemoryManagement::AdjustExternalMemory(info.Env(), external_bytes_);
}

DeviceTensor::~DeviceTensor() { Release(Env()); }

void DeviceTensor::Release(Napi::Env env) {
  value_.reset();
  if (external_bytes_ != 0) Napi::MemoryManagement::AdjustExternalMemory(env, -external_bytes_);
  external_bytes_ = 0;
}

Napi::Value DeviceTensor::New(Napi::Env env, std::shared_ptr<DeviceValue> value) {
  AddonData* addon = GetAddonData(env);
  Napi::EscapableHandleScope scope(env);
  Napi::Object obj = addon->device_tensor_ctor.New(
      {Napi::External<int>::New(env, &kConstructToken), Napi::External<std::shared_ptr<DeviceValue>>::New(env, &value)});
  if (env.IsExceptionPending()) return Napi::Value();
  return scope.Escape(obj);
}

std::shared_ptr<DeviceValue> DeviceTensor::From(Napi::Env env, Napi::Value v, bool* is_device) {
  *is_device = false;
  if (!v.IsObject()) return nullptr;
  Napi::Object o = v.As<Napi::Object>();
  if (!o.InstanceOf(GetAddonData(env)->device_tensor_ctor.Value())) return nullptr;
  // An object made from the prototype (Object.create), not by New(), wraps nothing: not one.
  void* wrapped = nullptr;
  if (napi_unwrap(env, o, &wrapped) != napi_ok || wrapped == nullptr) return nullptr;
  *is_device = true;
  return static_cast<DeviceTensor*>(wrapped)->value_;
}

Napi::Value DeviceTensor::Describe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!value_) {
    MakeError(env, code::kDisposed, "DeviceTensor: disposed").ThrowAsJavaScriptException();
    return Napi::Value();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("type", OnnxTypeName(value_->elem));
  Napi::Array dims = Napi::Array::New(env, value_->dims.size());
  for (size_t i = 0; i < value_->dims.size(); ++i) dims.Set(static_cast<uint32_t>(i), static_cast<double>(value_->dims[i]));
  out.Set("dims", dims);
  out.Set("location", LocationOf(value_->memory));
  out.Set("byteLength", static_cast<double>(value_->bytes));
  return out;
}

Napi::Value DeviceTensor::Download(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto rejected = [&](const char* c, const std::string& message) {
    auto d = Napi::Promise::Deferred::New(env);
    d.Reject(MakeError(env, c, message).Value());
    return d.Promise();
  };
  if (!value_) return rejected(code::kDisposed, "DeviceTensor.download(): the tensor was disposed");
  const ElementType* et = ElementTypeByOnnx(value_->elem);
  size_t count = 1;
  for (int64_t d : value_->dims) count *= static_cast<size_t>(d);
  void* data = nullptr;
  Napi::Value array = NewTypedArray(env, et, count, &data);
  if (array.IsEmpty()) {
    if (env.IsExceptionPending()) env.GetAndClearPendingException();
    return rejected(code::kInternal, "DeviceTensor.download(): could not allocate " + std::to_string(value_->bytes) + " bytes");
  }
  auto* worker = new DownloadWorker(env, value_, array, data);
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

Napi::Value DeviceTensor::Dispose(const Napi::CallbackInfo& info) {
  Release(info.Env());
  return info.Env().Undefined();
}

}  // namespace nimify
