#include "device_copy.h"

#include <cstring>
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
  for (auto& [elem, session] : sessions_) g_ort->ReleaseSession(session);
}

void DeviceCopier::Configure(Via via, const EpRequest* provider) {
  via_ = via;
  has_provider_ = provider != nullptr;
  if (provider == nullptr) return;
  // Only where the copies run: the provider and its device, none of the model's tuning (CUDA
  // graphs, TensorRT engines) — an Identity needs none of it. TensorRT's memory is CUDA memory.
  provider_ = EpRequest();
  provider_.name = provider->library.empty() && provider->name == "tensorrt" ? "cuda" : provider->name;
  provider_.ort_name = provider->ort_name;
  provider_.library = provider->library;
  provider_.required = true;
  for (size_t i = 0; i < provider->keys.size(); ++i) {
    if (provider->keys[i] == "device_id") {
      provider_.keys.push_back("device_id");
      provider_.values.push_back(provider->values[i]);
    }
  }
}

OrtSession* DeviceCopier::IdentitySession(ONNXTensorElementDataType elem, Failure* f) {
  auto it = sessions_.find(elem);
  if (it != sessions_.end()) return it->second;
  OrtSessionOptions* opts = nullptr;
  if ((*f = FromOrtStatus(g_ort->CreateSessionOptions(&opts), "creating the copy session"))) return nullptr;
  *f = FromOrtStatus(g_ort->SetIntraOpNumThreads(opts, 1), "creating the copy session");
  const OrtEpDevice* device = nullptr;
  if (!*f && has_provider_) *f = AppendProvider(opts, provider_, &device);
  OrtSession* session = nullptr;
  if (!*f) {
    const std::string model = IdentityModel(elem);
    *f = FromOrtStatus(g_ort->CreateSessionFromArray(Env(), model.data(), model.size(), opts, &session),
                       "creating the copy session");
  }
  g_ort->ReleaseSessionOptions(opts);
  if (*f) return nullptr;
  sessions_.emplace(elem, session);
  return session;
}

Failure DeviceCopier::Copy(const OrtValue* src, OrtValue* dst, const std::string& what) {
  Failure f;
  const OrtMemoryInfo *from = nullptr, *to = nullptr;
  if ((f = FromOrtStatus(g_ort->GetTensorMemoryInfo(src, &from), what))) return f;
  if ((f = FromOrtStatus(g_ort->GetTensorMemoryInfo(dst, &to), what))) return f;
  OrtTensorTypeAndShapeInfo* info = nullptr;
  size_t count = 0;
  ONNXTensorElementDataType elem = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  if ((f = FromOrtStatus(g_ort->GetTensorTypeAndShape(src, &info), what))) return f;
  OrtStatus* st = g_ort->GetTensorShapeElementCount(info, &count);
  if (st == nullptr) st = g_ort->GetTensorElementType(info, &elem);
  g_ort->ReleaseTensorTypeAndShapeInfo(info);
  if ((f = FromOrtStatus(st, what))) return f;
  const ElementType* et = ElementTypeByOnnx(elem);
  if (et == nullptr || et->size == 0) {
    f.Set(code::kUnsupported, what + ": copies numeric tensors only, not " + OnnxTypeName(elem));
    return f;
  }
  if (count == 0) return f;
  if (via_ == Via::kMemcpy || (via_ == Via::kCopyTensors && IsHostMemory(from) && IsHostMemory(to))) {
    std::memcpy(TensorData(dst), TensorData(const_cast<OrtValue*>(src)), count * et->size);
    return f;
  }
  const std::string route = " (from " + LocationOf(from) + " to " + LocationOf(to) + ")";
  if (via_ == Via::kCopyTensors) {
    return FromOrtStatus(g_ort->CopyTensors(Env(), &src, &dst, nullptr, 1), what + route);
  }
  OrtSession* session = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    session = IdentitySession(elem, &f);
  }
  if (f) {
    f.message = what + route + ": " + f.message;
    return f;
  }
  OrtIoBinding* binding = nullptr;
  if ((f = FromOrtStatus(g_ort->CreateIoBinding(session, &binding), what + route))) return f;
  f = FromOrtStatus(g_ort->BindInput(binding, "x", src), what + route);
  if (!f) f = FromOrtStatus(g_ort->BindOutput(binding, "y", dst), what + route);
  if (!f) f = FromOrtStatus(g_ort->RunWithBinding(session, nullptr, binding), what + route);
  if (!f) f = FromOrtStatus(g_ort->SynchronizeBoundOutputs(binding), what + route);
  g_ort->ReleaseIoBinding(binding);
  return f;
}

}  // namespace nimify
