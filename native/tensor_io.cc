#include "tensor_io.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "element_type.h"
#include "ort_api.h"

namespace nimify {

namespace {

constexpr double kMaxSafeInteger = 9007199254740991.0;

std::string ShapeString(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(dims[i]);
  }
  return s + "]";
}

std::string DeclaredShape(const IoInfo& io) {
  std::string s = "[";
  for (size_t i = 0; i < io.shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += io.shape[i] >= 0 ? std::to_string(io.shape[i]) : (io.symbolic[i].empty() ? "?" : io.symbolic[i]);
  }
  return s + "]";
}

bool ReadDims(Napi::Value value, const std::string& what, std::vector<int64_t>* dims, size_t* count, Failure* f) {
  if (!value.IsArray()) {
    f->Set(code::kInvalidArgument, what + ": dims must be an array of non-negative integers");
    return false;
  }
  Napi::Array arr = value.As<Napi::Array>();
  const uint32_t rank = arr.Length();
  dims->resize(rank);
  size_t n = 1;
  for (uint32_t i = 0; i < rank; ++i) {
    Napi::Value d = arr.Get(i);
    double v = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1.0;
    if (!(v >= 0) || v > kMaxSafeInteger || std::floor(v) != v) {
      f->Set(code::kInvalidArgument, what + ": dims[" + std::to_string(i) + "] must be a non-negative integer");
      return false;
    }
    (*dims)[i] = static_cast<int64_t>(v);
    if ((*dims)[i] != 0 && n > std::numeric_limits<size_t>::max() / static_cast<size_t>((*dims)[i])) {
      f->Set(code::kInvalidArgument, what + ": dims " + ShapeString(*dims) + " overflow the element count");
      return false;
    }
    n *= static_cast<size_t>((*dims)[i]);
  }
  *count = n;
  return true;
}

}  // namespace

bool TensorToOrtValue(Napi::Env /*env*/, const IoInfo& io, const std::string& what, Napi::Object tensor, OrtValue** out,
                      Napi::Value* borrowed, Failure* f, std::vector<int64_t>* dims_out) {
  *out = nullptr;
  if (!io.is_tensor) {
    f->Set(code::kUnsupported, what + " is a " + io.type_name + "; nimify feeds and fetches tensors only");
    return false;
  }
  Napi::Value type_value = tensor.Get("type");
  const ElementType* et = type_value.IsString() ? ElementTypeByName(type_value.As<Napi::String>().Utf8Value()) : nullptr;
  if (et == nullptr) {
    f->Set(code::kInvalidArgument, what + ": unknown tensor type");
    return false;
  }
  if (et->onnx != io.elem) {
    f->Set(code::kInvalidArgument, what + ": expected type " + io.type_name + ", received " + et->name);
    return false;
  }
  std::vector<int64_t> dims;
  size_t count = 0;
  if (!ReadDims(tensor.Get("dims"), what, &dims, &count, f)) return false;
  if (io.has_shape) {
    bool ok = dims.size() == io.shape.size();
    for (size_t i = 0; ok && i < dims.size(); ++i) ok = io.shape[i] < 0 || io.shape[i] == dims[i];
    if (!ok) {
      f->Set(code::kInvalidArgument,
             what + ": expected shape " + DeclaredShape(io) + ", received " + ShapeString(dims));
      return false;
    }
  }
  Napi::Value data = tensor.Get("data");

  if (et->onnx == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING) {
    if (!data.IsArray()) {
      f->Set(code::kInvalidArgument, what + ": string tensor data must be an array of strings");
      return false;
    }
    Napi::Array arr = data.As<Napi::Array>();
    if (arr.Length() != count) {
      f->Set(code::kInvalidArgument, what + ": dims " + ShapeString(dims) + " need " + std::to_string(count) +
                                         " elements, received " + std::to_string(arr.Length()));
      return false;
    }
    // Copied: ORT string tensors own std::string storage; JS strings cannot be borrowed. Each
    // element is written with its byte length, so strings with embedded NULs survive.
    OrtValue* v = nullptr;
    if ((*f = FromOrtStatus(g_ort->CreateTensorAsOrtValue(DefaultAllocator(), dims.data(), dims.size(), et->onnx, &v),
                            what))) {
      return false;
    }
    std::string utf8;
    for (uint32_t i = 0; i < count; ++i) {
      Napi::Value s = arr.Get(i);
      if (!s.IsString()) {
        f->Set(code::kInvalidArgument, what + ": data[" + std::to_string(i) + "] is not a string");
        g_ort->ReleaseValue(v);
        return false;
      }
      utf8 = s.As<Napi::String>().Utf8Value();
      char* dst = nullptr;
      if ((*f = FromOrtStatus(g_ort->GetResizedStringTensorElementBuffer(v, i, utf8.size(), &dst), what))) {
        g_ort->ReleaseValue(v);
        return false;
      }
      if (!utf8.empty()) std::memcpy(dst, utf8.data(), utf8.size());
    }
    *out = v;
    *borrowed = Napi::Value();
    return true;
  }

  if (!data.IsTypedArray()) {
    f->Set(code::kInvalidArgument,
           what + ": data must be a " + std::string(TypedArrayName(et->js)) + " for type " + et->name);
    return false;
  }
  Napi::TypedArray ta = data.As<Napi::TypedArray>();
  napi_typedarray_type js_type = ta.TypedArrayType();
  if (js_type != et->js && !(et->js == napi_uint8_array && js_type == napi_uint8_clamped_array)) {
    f->Set(code::kInvalidArgument, what + ": type " + et->name + " needs a " + TypedArrayName(et->js) +
                                       ", received a " + TypedArrayName(js_type));
    return false;
  }
  if (ta.ElementLength() != count) {
    f->Set(code::kInvalidArgument, what + ": dims " + ShapeString(dims) + " need " + std::to_string(count) +
                                       " elements, received " + std::to_string(ta.ElementLength()));
    return false;
  }
  uint8_t* base = static_cast<uint8_t*>(ta.ArrayBuffer().Data());
  void* ptr = base != nullptr ? base + ta.ByteOffset() : nullptr;
  // ORT rejects a null data pointer even for empty tensors; any valid address will do there.
  static uint64_t empty_storage = 0;
  if (ptr == nullptr || count == 0) ptr = &empty_storage;
  OrtValue* v = nullptr;
  if ((*f = FromOrtStatus(g_ort->CreateTensorWithDataAsOrtValue(CpuMemoryInfo(), ptr, count * et->size, dims.data(),
                                                                 dims.size(), et->onnx, &v),
                          what))) {
    return false;
  }
  *out = v;
  *borrowed = data;
  if (dims_out != nullptr) *dims_out = std::move(dims);
  return true;
}

namespace {
Napi::Array DimsArray(Napi::Env env, const std::vector<int64_t>& dims) {
  Napi::Array a = Napi::Array::New(env, dims.size());
  for (size_t i = 0; i < dims.size(); ++i) a.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(dims[i])));
  return a;
}

Napi::Value Triple(Napi::Env env, const char* type, Napi::Value data, Napi::Array dims) {
  Napi::Array triple = Napi::Array::New(env, 3);
  triple.Set(0u, Napi::String::New(env, type));
  triple.Set(1u, data);
  triple.Set(2u, dims);
  return triple;
}

// An uninitialized JS buffer (napi_create_buffer does not zero-fill) viewed as `et`'s typed array.
Napi::Value NewTypedArray(Napi::Env env, const ElementType* et, size_t count, void** data) {
  napi_value buffer = nullptr, arraybuffer = nullptr, typed = nullptr;
  size_t offset = 0;
  const size_t bytes = count * et->size;
  if (napi_create_buffer(env, bytes, data, &buffer) != napi_ok ||
      napi_get_typedarray_info(env, buffer, nullptr, nullptr, nullptr, &arraybuffer, &offset) != napi_ok ||
      napi_create_typedarray(env, et->js, count, arraybuffer, offset, &typed) != napi_ok) {
    return Napi::Value();
  }
  return Napi::Value(env, typed);
}
}  // namespace

Napi::Value AllocateOutput(Napi::Env env, const IoInfo& io, const std::vector<int64_t>& dims, OrtValue** out,
                           Failure* f) {
  const ElementType* et = ElementTypeByOnnx(io.elem);
  size_t count = 1;
  for (int64_t d : dims) count *= static_cast<size_t>(d);
  void* data = nullptr;
  Napi::Value typed = NewTypedArray(env, et, count, &data);
  if (typed.IsEmpty()) {
    f->Set(code::kInternal, "output '" + io.name + "': could not allocate " + std::to_string(count * et->size) + " bytes");
    return Napi::Value();
  }
  static uint64_t empty_storage = 0;
  if (data == nullptr || count == 0) data = &empty_storage;
  if ((*f = FromOrtStatus(g_ort->CreateTensorWithDataAsOrtValue(CpuMemoryInfo(), data, count * et->size, dims.data(),
                                                                 dims.size(), et->onnx, out),
                          "output '" + io.name + "'"))) {
    return Napi::Value();
  }
  return typed;
}

Napi::Value OutputTriple(Napi::Env env, const IoInfo& io, Napi::Value data, const std::vector<int64_t>& dims) {
  return Triple(env, ElementTypeByOnnx(io.elem)->name, data, DimsArray(env, dims));
}

Napi::Value OrtValueToJs(Napi::Env env, OrtValue* value, const std::string& what, Failure* f,
                         size_t* copied_bytes) {
  *copied_bytes = 0;
  int is_tensor = 0;
  if ((*f = FromOrtStatus(g_ort->IsTensor(value, &is_tensor), what)) || !is_tensor) {
    if (!*f) f->Set(code::kUnsupported, what + " is not a tensor; nimify fetches tensors only");
    g_ort->ReleaseValue(value);
    return Napi::Value();
  }
  OrtTensorTypeAndShapeInfo* info = nullptr;
  if ((*f = FromOrtStatus(g_ort->GetTensorTypeAndShape(value, &info), what))) {
    g_ort->ReleaseValue(value);
    return Napi::Value();
  }
  ONNXTensorElementDataType onnx = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  size_t rank = 0, count = 0;
  OrtStatus* st = g_ort->GetTensorElementType(info, &onnx);
  if (st == nullptr) st = g_ort->GetDimensionsCount(info, &rank);
  std::vector<int64_t> dims(rank);
  if (st == nullptr && rank > 0) st = g_ort->GetDimensions(info, dims.data(), rank);
  if (st == nullptr) st = g_ort->GetTensorShapeElementCount(info, &count);
  g_ort->ReleaseTensorTypeAndShapeInfo(info);
  if ((*f = FromOrtStatus(st, what))) {
    g_ort->ReleaseValue(value);
    return Napi::Value();
  }
  const ElementType* et = ElementTypeByOnnx(onnx);
  if (et == nullptr) {
    f->Set(code::kUnsupported, what + " has element type " + OnnxTypeName(onnx) + ", which nimify cannot return");
    g_ort->ReleaseValue(value);
    return Napi::Value();
  }

  Napi::Value data;
  if (onnx == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING) {
    Napi::Array arr = Napi::Array::New(env, count);
    std::string buf;
    for (size_t i = 0; i < count && !*f; ++i) {
      size_t len = 0;
      if ((*f = FromOrtStatus(g_ort->GetStringTensorElementLength(value, i, &len), what))) break;
      buf.resize(len);
      if (len > 0 && (*f = FromOrtStatus(g_ort->GetStringTensorElement(value, len, i, buf.data()), what))) break;
      arr.Set(static_cast<uint32_t>(i), Napi::String::New(env, buf.data(), len));
    }
    data = arr;
  } else {
    // The output copy path (see header): one memcpy into a fresh JS buffer.
    void* src = nullptr;
    void* dst = nullptr;
    const size_t bytes = count * et->size;
    if (bytes > 0) *f = FromOrtStatus(g_ort->GetTensorMutableData(value, &src), what);
    if (!*f) {
      data = NewTypedArray(env, et, count, &dst);
      if (data.IsEmpty()) {
        f->Set(code::kInternal, what + ": could not allocate " + std::to_string(bytes) + " bytes");
      } else if (bytes > 0) {
        std::memcpy(dst, src, bytes);
        *copied_bytes = bytes;
      }
    }
  }
  g_ort->ReleaseValue(value);
  if (*f) return Napi::Value();
  return Triple(env, et->name, data, DimsArray(env, dims));
}

}  // namespace nimify
