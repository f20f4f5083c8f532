// Moving tensors between JS values and OrtValues. Main thread only (touches napi values).
//
// JS tensors arrive as objects with `type` (string), `data` (typed array, or string[] for
// "string") and `dims` (number[]). Numeric inputs are wrapped, not copied: the OrtValue points
// into the typed array's memory and the caller must keep a reference to it until ORT is done.
//
// Outputs take one of three paths, in order of preference:
//  1. caller-supplied buffer: ORT writes into it in place;
//  2. predicted shape (every dim fixed, or a symbolic dim bound by an input of this call): the
//     addon allocates an uninitialized JS buffer up front and ORT writes into it (zero-copy);
//  3. otherwise (data-dependent shapes): ORT allocates, and the "output copy" path copies the
//     result into a new JS buffer and frees ORT's memory at once (counted in stats).
// Why not hand ORT's memory to JS as an external ArrayBuffer: measured 2–15x slower than a copy
// at every size from 16 B to 16 MB (bench notes in README), because memory held until GC keeps
// ORT's arena from reusing its blocks, so every run faults in fresh pages.
#pragma once

#include <napi.h>
#include <onnxruntime_c_api.h>

#include <vector>

#include "errors.h"
#include "session_core.h"

namespace nimify {

// Builds the OrtValue for one feed (or a caller-supplied output buffer when `is_output`),
// checking it against the model's declaration `io`. `what` names the tensor in messages
// ("input 'x'"). On success `*borrowed` is the JS value whose memory the OrtValue borrows
// (empty for strings, which are copied into ORT-owned memory).
// `dims` (optional) receives the tensor's dims.
bool TensorToOrtValue(Napi::Env env, const IoInfo& io, const std::string& what, Napi::Object tensor, OrtValue** out,
                      Napi::Value* borrowed, Failure* failure, std::vector<int64_t>* dims = nullptr);

// Path 2: allocates an uninitialized JS typed array for `dims` and an OrtValue over it.
// Returns the typed array (empty value and `failure` set on error).
Napi::Value AllocateOutput(Napi::Env env, const IoInfo& io, const std::vector<int64_t>& dims, OrtValue** out,
                           Failure* failure);

// Path 3: returns [type, data, dims] for an ORT-allocated output, copying numeric data into a new
// JS buffer; releases `value`. `*copied_bytes` receives the bytes copied.
Napi::Value OrtValueToJs(Napi::Env env, OrtValue* value, const std::string& what, Failure* failure,
                         size_t* copied_bytes);

// [type, data, dims] for an output ORT wrote into a buffer we supplied (paths 1 and 2).
Napi::Value OutputTriple(Napi::Env env, const IoInfo& io, Napi::Value data, const std::vector<int64_t>& dims);

}  // namespace nimify
