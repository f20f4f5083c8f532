// The element types nimify carries and how each maps to ONNX and to a JS typed array.
// Pure data; safe from any thread.
#pragma once

#include <napi.h>
#include <onnxruntime_c_api.h>

#include <cstddef>
#include <string>

namespace nimify {

struct ElementType {
  const char* name;                   // nimify/onnxruntime-node name: "float32", "int64", ...
  ONNXTensorElementDataType onnx;
  size_t size;                        // bytes per element; 0 for string
  napi_typedarray_type js;            // the typed array that carries it (string: unused)
};

// nullptr when unknown.
const ElementType* ElementTypeByOnnx(ONNXTensorElementDataType onnx);
// A readable name even for types nimify cannot carry ("complex64", "int4", ...).
std::string OnnxTypeName(ONNXTensorElementDataType onnx);
const char* TypedArrayName(napi_typedarray_type t);

}  // namespace nimify
