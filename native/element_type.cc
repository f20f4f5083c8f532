#include "element_type.h"

namespace nimify {

namespace {
const ElementType kTypes[] = {
    {"float32", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, 4, napi_float32_array},
    {"float64", ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE, 8, napi_float64_array},
    {"float16", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, 2, napi_uint16_array},
    {"bfloat16", ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16, 2, napi_uint16_array},
    {"int8", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8, 1, napi_int8_array},
    {"uint8", ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8, 1, napi_uint8_array},
    {"int16", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16, 2, napi_int16_array},
    {"uint16", ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16, 2, napi_uint16_array},
    {"int32", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32, 4, napi_int32_array},
    {"uint32", ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32, 4, napi_uint32_array},
    {"int64", ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, 8, napi_bigint64_array},
    {"uint64", ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64, 8, napi_biguint64_array},
    {"bool", ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL, 1, napi_uint8_array},
    {"string", ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING, 0, napi_uint8_array},
};
}  // namespace

const ElementType* ElementTypeByOnnx(ONNXTensorElementDataType onnx) {
  for (const auto& t : kTypes) {
    if (onnx == t.onnx) return &t;
  }
  return nullptr;
}

std::string OnnxTypeName(ONNXTensorElementDataType onnx) {
  if (const ElementType* t = ElementTypeByOnnx(onnx)) return t->name;
  switch (onnx) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_COMPLEX64:
      return "complex64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_COMPLEX128:
      return "complex128";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT4:
      return "int4";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT4:
      return "uint4";
    default:
      return "onnx-type-" + std::to_string(static_cast<int>(onnx));
  }
}

const char* TypedArrayName(napi_typedarray_type t) {
  switch (t) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "TypedArray";
  }
}

}  // namespace nimify
