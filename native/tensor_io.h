// Moving tensors between JS values and OrtValues. Main thread only (touches napi values).
//
// JS tensors arrive as objects with `type` (string), `data` (typed array, or string[] for
// "string") and `dims` (number[]). Numeric inputs are wrapped, not copied: the OrtValue points
// into the typed array's memory and the caller must keep a reference to it until ORT is done.
// Outputs ORT allocated go back to JS as external ArrayBuffers over ORT's memory; the buffer's
// finalizer releases the OrtValue, so nothing is memcpy'd.
#pragma once

#include <napi.h>
#include <onnxruntime_c_api.h>

#include "errors.h"
#include "session_core.h"

namespace nimify {

// Builds the OrtValue for one feed (or a caller-supplied output buffer when `is_output`),
// checking it against the model's declaration `io`. `what` names the tensor in messages
// ("input 'x'"). On success `*borrowed` is the JS value whose memory the OrtValue borrows
// (empty for strings, which are copied into ORT-owned memory).
bool TensorToOrtValue(Napi::Env env, const IoInfo& io, const std::string& what, Napi::Object tensor, OrtValue** out,
                      Napi::Value* borrowed, Failure* failure);

// Returns [type, data, dims] for one output and takes ownership of `value` (released now for
// strings and empty tensors, else when the returned buffer is collected).
Napi::Value OrtValueToJs(Napi::Env env, OrtValue* value, const std::string& what, Failure* failure);

}  // namespace nimify
