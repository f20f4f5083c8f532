#include "tensor_io.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <limits>

#include "element_type.h"
#include "ort_api.h"

namespace nimify {

namespace {

// ORT rejects a null data pointer even for empty tensors; any valid address will do there.
uint64_t g_empty_storage = 0;

}  // namespace

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

Napi::Value NewTypedArray(Napi::Env env, const ElementType* et, size_t count, void** data) {
  napi_value buffer = nullptr, arraybuffer = nullptr, typed = nullptr;
  size_t offset = 0;
  if (napi_create_buffer(env, count * et->size, data, &buffer) != napi_ok ||
      napi_get_typedarray_info(env, buffer, nullptr, nullptr, nullptr, &arraybuffer, &offset) != napi_ok ||
      napi_create_typedarray(env, et->js, count, arraybuffer, offset, &typed) != napi_ok) {
    return Napi::Value();
  }
  return Napi::Value(env, typed);
}

std::string TensorName(const IoInfo& io, bool is_output) {
  return std::string(is_output ? "output '" : "input '") + io.name + "'";
}

namespace {

// The element type of `io` and the element count of `dims`, both checked against the model:
// a tensor nimify can carry, dims that fit its declared shape and do not overflow.
const ElementType* CheckedTensor(const IoInfo& io, bool is_output, const std::vector<int64_t>& dims, size_t* count,
                                 Failure* f) {
  if (!io.is_tensor) {
    f->Set(code::kUnsupported, TensorName(io, is_output) + " is a " + io.type_name +
                                   "; nimify feeds and fetches tensors only");
    return nullptr;
  }
  const ElementType* et = ElementTypeByOnnx(io.elem);
  if (et == nullptr) {
    f->Set(code::kUnsupported, TensorName(io, is_output) + " has element type " + io.type_name +
                                   ", which nimify cannot carry");
    return nullptr;
  }
  *count = 1;
  for (int64_t d : dims) {
    if (d < 0 || (d != 0 && *count > std::numeric_limits<size_t>::max() / 16 / static_cast<size_t>(d))) {
      f->Set(code::kInvalidArgument, TensorName(io, is_output) + ": dims " + ShapeString(dims) +
                                         " are negative or overflow the element count");
      return nullptr;
    }
    *count *= static_cast<size_t>(d);
  }
  if (io.has_shape) {
    bool ok = dims.size() == io.shape.size();
    for (size_t i = 0; ok && i < dims.size(); ++i) ok = io.shape[i] < 0 || io.shape[i] == dims[i];
    if (!ok) {
      f->Set(code::kInvalidArgument, TensorName(io, is_output) + ": expected shape " + DeclaredShape(io) +
                                         ", received " + ShapeString(dims));
      return nullptr;
    }
  }
  return et;
}

// A view of `ptr` (count elements of `et`) in `*view` when given and the rank allows, else an
// OrtValue over it in `*out`.
bool DescribeOrWrap(const IoInfo& io, bool is_output, const ElementType* et, void* ptr, size_t count,
                    const std::vector<int64_t>& dims, OrtValue** out, Failure* f, TensorView* view) {
  if (view != nullptr && dims.size() <= kMaxViewRank) {
    view->data = static_cast<uint8_t*>(ptr);
    view->bytes = count * et->size;
    view->rank = static_cast<uint32_t>(dims.size());
    std::copy(dims.begin(), dims.end(), view->dims);
    return true;
  }
  if (OrtStatus* st = g_ort->CreateTensorWithDataAsOrtValue(CpuMemoryInfo(), ptr, count * et->size, dims.data(),
                                                            dims.size(), et->onnx, out)) {
    *f = FromOrtStatus(st, TensorName(io, is_output));
    return false;
  }
  return true;
}

}  // namespace

bool OwnedOutput(const IoInfo& io, uint8_t* memory, size_t capacity, const std::vector<int64_t>& dims, size_t* bytes,
                 OrtValue** out, Failure* f, TensorView* view) {
  *out = nullptr;
  size_t count = 0;
  const ElementType* et = CheckedTensor(io, true, dims, &count, f);
  if (et == nullptr) return false;
  if (et->onnx == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING || count * et->size > capacity) {
    f->Set(code::kInvalidArgument, TensorName(io, true) + ": an output copied at settlement must be numeric and at most " +
                                       std::to_string(capacity) + " bytes, received " + ShapeString(dims) + " of " +
                                       et->name);
    return false;
  }
  *bytes = count * et->size;
  return DescribeOrWrap(io, true, et, count == 0 ? static_cast<void*>(&g_empty_storage) : memory, count, dims, out, f,
                        view);
}

bool TensorToOrtValue(const IoInfo& io, bool is_output, Napi::Value data, const std::vector<int64_t>& dims,
                      OrtValue** out, bool* borrowed, Failure* f, TensorView* view, uint8_t* copy_to) {
  *out = nullptr;
  *borrowed = false;
  size_t count = 0;
  const ElementType* et = CheckedTensor(io, is_output, dims, &count, f);
  if (et == nullptr) return false;

  if (et->onnx == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING) {
    if (is_output) {
      f->Set(code::kInvalidArgument, TensorName(io, is_output) + ": string outputs cannot be preallocated");
      return false;
    }
    if (!data.IsArray()) {
      f->Set(code::kInvalidArgument, TensorName(io, is_output) + ": string tensor data must be an array of strings");
      return false;
    }
    Napi::Array arr = data.As<Napi::Array>();
    if (arr.Length() != count) {
      f->Set(code::kInvalidArgument, TensorName(io, is_output) + ": dims " + ShapeString(dims) + " need " +
                                         std::to_string(count) + " elements, received " +
                                         std::to_string(arr.Length()));
      return false;
    }
    // Copied: ORT string tensors own std::string storage; JS strings cannot be borrowed. Each
    // element is written with its byte length, so strings with embedded NULs survive.
    OrtValue* v = nullptr;
    if (OrtStatus* st = g_ort->CreateTensorAsOrtValue(DefaultAllocator(), dims.data(), dims.size(), et->onnx, &v)) {
      *f = FromOrtStatus(st, TensorName(io, is_output));
      return false;
    }
    std::string utf8;
    for (uint32_t i = 0; i < count; ++i) {
      Napi::Value s = arr.Get(i);
      if (!s.IsString()) {
        f->Set(code::kInvalidArgument, TensorName(io, is_output) + ": data[" + std::to_string(i) + "] is not a string");
        g_ort->ReleaseValue(v);
        return false;
      }
      utf8 = s.As<Napi::String>().Utf8Value();
      char* dst = nullptr;
      if (OrtStatus* st = g_ort->GetResizedStringTensorElementBuffer(v, i, utf8.size(), &dst)) {
        *f = FromOrtStatus(st, TensorName(io, is_output));
        g_ort->ReleaseValue(v);
        return false;
      }
      if (!utf8.empty()) std::memcpy(dst, utf8.data(), utf8.size());
    }
    *out = v;
    return true;
  }

  napi_env env = data.Env();
  napi_typedarray_type js_type;
  size_t length = 0, offset = 0;
  void* ptr = nullptr;
  // (napi_get_typedarray_info fails with napi_invalid_arg for anything but a typed array.)
  if (napi_get_typedarray_info(env, data, &js_type, &length, &ptr, nullptr, &offset) != napi_ok) {
    f->Set(code::kInvalidArgument, TensorName(io, is_output) + ": data must be a " + TypedArrayName(et->js) +
                                       " for type " + et->name);
    return false;
  }
  if (js_type != et->js && !(et->js == napi_uint8_array && js_type == napi_uint8_clamped_array)) {
    f->Set(code::kInvalidArgument, TensorName(io, is_output) + ": type " + et->name + " needs a " +
                                       TypedArrayName(et->js) + ", received a " + TypedArrayName(js_type));
    return false;
  }
  if (length != count) {
    f->Set(code::kInvalidArgument, TensorName(io, is_output) + ": dims " + ShapeString(dims) + " need " +
                                       std::to_string(count) + " elements, received " + std::to_string(length));
    return false;
  }
  if (ptr == nullptr || count == 0) {
    ptr = &g_empty_storage;  // nothing is read or written: nothing borrowed
  } else if (copy_to != nullptr) {
    std::memcpy(copy_to, ptr, count * et->size);
    ptr = copy_to;
  } else {
    *borrowed = true;
  }
  if (!DescribeOrWrap(io, is_output, et, ptr, count, dims, out, f, view)) {
    *borrowed = false;
    return false;
  }
  return true;
}

Failure ViewToOrtValue(const IoInfo& io, bool is_output, const TensorView& view, OrtValue** out) {
  Failure f;
  if (OrtStatus* st = g_ort->CreateTensorWithDataAsOrtValue(CpuMemoryInfo(), view.data, view.bytes, view.dims,
                                                            view.rank, io.elem, out)) {
    f = FromOrtStatus(st, TensorName(io, is_output));
  }
  return f;
}

Napi::Value OrtValueToJs(Napi::Env env, const IoInfo& io, OrtValue* value, size_t* copied_bytes, Failure* f) {
  *copied_bytes = 0;
  const std::string what = TensorName(io, true);
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
  if (et == nullptr || onnx != io.elem) {
    f->Set(code::kUnsupported, what + " has element type " + OnnxTypeName(onnx) + ", expected " + io.type_name);
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
  Napi::Array js_dims = Napi::Array::New(env, rank);
  for (size_t i = 0; i < rank; ++i) js_dims.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(dims[i])));
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, data);
  pair.Set(1u, js_dims);
  return pair;
}

}  // namespace nimify
