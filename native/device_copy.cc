#include "device_copy.h"

#include <cstring>
#include <shared_mutex>
#include <vector>

#include "device_memory.h"
#include "element_type.h"
#include "ort_api.h"
#include "tensor_io.h"

namespace nimify {

namespace {

// A minimal ONNX model, protobuf-encoded by hand: y = Identity(x), x and y tensors of `elem` with
// no declared shape (any rank), opset 13. Field numbers are onnx.proto's.
class Proto {
 public:
  Proto& Varint(uint32_t field, uint64_t v) {
    Key(field, 0);
    Raw(v);
    return *this;
  }
  Proto& Bytes(uint32_t field, const std::string& s) {
    Key(field, 2);
    Raw(s.size());
    out_ += s;
    return *this;
  }
  Proto& Message(uint32_t field, const Proto& m) { return Bytes(field, m.out_); }
  const std::string& str() const { return out_; }

 private:
  void Key(uint32_t field, uint32_t wire) { Raw((static_cast<uint64_t>(field) << 3) | wire); }
  void Raw(uint64_t v) {
    do {
      uint8_t b = v & 0x7F;
      v >>= 7;
      out_.push_back(static_cast<char>(v != 0 ? (b | 0x80) : b));
    } while (v != 0);
  }
  std::string out_;
};

std::string IdentityModel(ONNXTensorElementDataType elem) {
  Proto tensor_type;
  tensor_type.Varint(1, static_cast<uint64_t>(elem));  // TypeProto.Tensor.elem_type
  Proto type;
  type.Message(1, tensor_type);  // TypeProto.tensor_type
  Proto x, y;
  x.Bytes(1, "x").Message(2, type);  // ValueInfoProto name, type
  y.Bytes(1, "y").Message(2, type);
  Proto node;
  node.Bytes(1, "x").Bytes(2, "y").Bytes(4, "Identity");  // NodeProto input, output, op_type
  Proto graph;
  graph.Message(1, node).Bytes(2, "nimify_copy").Message(11, x).Message(12, y);
  Proto opset;
  opset.Bytes(1, "").Varint(2, 13);
  Proto model;
  model.Varint(1, 8).Bytes(2, "nimify").Message(7, graph).Message(8, opset);  // ir_version, producer, graph, opset_import
  return model.str();
}

}  // namespace

DeviceCopier::~DeviceCopier() {
  if (session_ != nullptr) g_ort->ReleaseSession(session_);
}

void DeviceCopier::Configure(Via via, const EpRequest* provider) {
  via_ = via;
  has_provider_ = provider != nullptr;
  if (provider == nullptr) return;
  // Where the copies run and the model's memory settings — none of its tuning (CUDA graphs,
  // TensorRT engines): an Identity needs none. TensorRT's memory is CUDA memory.
  provider_ = EpRequest();
  provider_.name = provider->library.empty() && provider->name == "tensorrt" ? "cuda" : provider->name;
  provider_.ort_name = provider->ort_name;
  provider_.library = provider->library;
  provider_.required = true;
  for (size_t i = 0; i < provider->keys.size(); ++i) {
    const std::string& k = provider->keys[i];
    if (k == "device_id" || k == "gpu_mem_limit" || k == "arena_extend_strategy") {
      provider_.keys.push_back(k);
      provider_.values.push_back(provider->values[i]);
    }
  }
}

Failure DeviceCopier::Prepare() {
  Failure f;
  if (via_ == Via::kIdentityRun) Session(&f);
  return f;
}

OrtSession* DeviceCopier::Session(Failure* f) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (session_ != nullptr) return session_;
    if (session_failure_) {
      *f = session_failure_;
      return nullptr;
    }
  }
  OrtSessionOptions* opts = nullptr;
  if ((*f = FromOrtStatus(g_ort->CreateSessionOptions(&opts), "creating the copy session"))) return nullptr;
  *f = FromOrtStatus(g_ort->SetIntraOpNumThreads(opts, 1), "creating the copy session");
  const OrtEpDevice* device = nullptr;
  if (!*f && has_provider_) *f = AppendProvider(opts, provider_, &device);
  OrtSession* session = nullptr;
  if (!*f) {
    const std::string model = IdentityModel(ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8);
    *f = FromOrtStatus(g_ort->CreateSessionFromArray(Env(), model.data(), model.size(), opts, &session),
                       "creating the copy session");
  }
  g_ort->ReleaseSessionOptions(opts);
  std::lock_guard<std::mutex> lock(mu_);
  if (session_ != nullptr) {
    // Another thread made one meanwhile: keep that one.
    if (session != nullptr) g_ort->ReleaseSession(session);
    *f = Failure();
    return session_;
  }
  if (*f) {
    session_failure_ = *f;
    return nullptr;
  }
  session_ = session;
  return session_;
}

namespace {

// Element count and bytes of a tensor; false on an ORT error (then `*f` says why).
bool Bytes(const OrtValue* v, const std::string& what, size_t* bytes, Failure* f) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  size_t count = 0;
  ONNXTensorElementDataType elem = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  if ((*f = FromOrtStatus(g_ort->GetTensorTypeAndShape(v, &info), what))) return false;
  OrtStatus* st = g_ort->GetTensorShapeElementCount(info, &count);
  if (st == nullptr) st = g_ort->GetTensorElementType(info, &elem);
  g_ort->ReleaseTensorTypeAndShapeInfo(info);
  if ((*f = FromOrtStatus(st, what))) return false;
  const ElementType* et = ElementTypeByOnnx(elem);
  if (et == nullptr || et->size == 0) {
    f->Set(code::kUnsupported, what + ": copies numeric tensors only, not " + OnnxTypeName(elem));
    return false;
  }
  *bytes = count * et->size;
  return true;
}

}  // namespace

Failure DeviceCopier::Copy(const OrtValue* src, OrtValue* dst, const std::string& what) {
  Failure f;
  const OrtMemoryInfo *from = nullptr, *to = nullptr;
  if ((f = FromOrtStatus(g_ort->GetTensorMemoryInfo(src, &from), what))) return f;
  if ((f = FromOrtStatus(g_ort->GetTensorMemoryInfo(dst, &to), what))) return f;
  size_t bytes = 0, dst_bytes = 0;
  if (!Bytes(src, what, &bytes, &f) || !Bytes(dst, what, &dst_bytes, &f)) return f;
  if (bytes != dst_bytes) {
    f.Set(code::kInternal, what + ": " + std::to_string(bytes) + " bytes into " + std::to_string(dst_bytes));
    return f;
  }
  if (bytes == 0) return f;
  uint8_t* s = TensorData(const_cast<OrtValue*>(src));
  uint8_t* d = TensorData(dst);
  if (s == nullptr || d == nullptr) {
    f.Set(code::kInternal, what + ": a tensor without memory");
    return f;
  }
  if (via_ == Via::kMemcpy || (IsHostMemory(from) && IsHostMemory(to) && via_ == Via::kCopyTensors)) {
    std::memcpy(d, s, bytes);
    return f;
  }
  const std::string route = " (from " + LocationOf(from) + " to " + LocationOf(to) + ")";
  std::shared_lock<std::shared_mutex> capture = SharedDeviceCalls(true);
  if (via_ == Via::kCopyTensors) return FromOrtStatus(g_ort->CopyTensors(Env(), &src, &dst, nullptr, 1), what + route);
  OrtSession* session = Session(&f);
  if (f) {
    f.message = what + route + ": " + f.message;
    return f;
  }
  // The bytes, as uint8 tensors over the same memory: one session copies every element type.
  const int64_t n = static_cast<int64_t>(bytes);
  OrtValue *in = nullptr, *out = nullptr;
  OrtIoBinding* binding = nullptr;
  f = FromOrtStatus(g_ort->CreateTensorWithDataAsOrtValue(from, s, bytes, &n, 1, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, &in), what + route);
  if (!f) f = FromOrtStatus(g_ort->CreateTensorWithDataAsOrtValue(to, d, bytes, &n, 1, ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, &out), what + route);
  if (!f) f = FromOrtStatus(g_ort->CreateIoBinding(session, &binding), what + route);
  if (!f) f = FromOrtStatus(g_ort->BindInput(binding, "x", in), what + route);
  if (!f) f = FromOrtStatus(g_ort->BindOutput(binding, "y", out), what + route);
  if (!f) f = FromOrtStatus(g_ort->RunWithBinding(session, nullptr, binding), what + route);
  if (!f) f = FromOrtStatus(g_ort->SynchronizeBoundOutputs(binding), what + route);
  if (binding != nullptr) g_ort->ReleaseIoBinding(binding);
  if (in != nullptr) g_ort->ReleaseValue(in);
  if (out != nullptr) g_ort->ReleaseValue(out);
  return f;
}

}  // namespace nimify
