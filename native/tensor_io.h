// Moving tensors between JS values and OrtValues. Main thread only (touches napi values).
//
// A tensor crosses as its data (a typed array, or string[] for "string") plus dims read from the
// call's spec (see RunJob::Prepare); its element type is the model's, which the TypeScript layer
// has checked.
// Numeric data is wrapped, not copied, unless the caller gives memory to copy it into (async
// runs own small inputs, see RunJob::Prepare): the OrtValue points into the typed array's
// memory and the caller must keep a reference to it until ORT is done. This file re-checks everything that
// matters for memory safety (typed array kind vs the model's element type, element count vs
// dims), so a direct call into the addon cannot make ORT read or write out of bounds.
//
// Outputs take one of two paths:
//  - a JS buffer supplied with the call (the caller's own, or one the TypeScript layer
//    allocated from the output's predicted shape): ORT writes into it in place, no copy;
//  - otherwise (data-dependent shapes, strings): ORT allocates, and the "output copy" path
//    copies the result into a new JS buffer and frees ORT's memory at once (counted in stats).
// Why not hand ORT's memory to JS as an external ArrayBuffer: measured 2–15x slower than a copy
// at every size from 16 B to 16 MB, because memory held until GC keeps ORT's arena from reusing
// its blocks, so every run faults in fresh pages.
#pragma once

#include <napi.h>
#include <onnxruntime_c_api.h>

#include <string>
#include <vector>

#include "errors.h"
#include "session_core.h"

namespace nimify {

// Any thread: an OrtValue tensor's memory (null on an ORT error) and dims (false on one).
// (Defined in run_job.cc.)
uint8_t* TensorData(OrtValue* value);
bool TensorDims(const OrtValue* value, std::vector<int64_t>* dims);

struct ElementType;
// An uninitialized JS buffer (napi_create_buffer does not zero-fill) viewed as `et`'s typed
// array of `count` elements; `*data` its memory. Empty on failure.
Napi::Value NewTypedArray(Napi::Env env, const ElementType* et, size_t count, void** data);

// "[2, 3]" and a declared shape "[batch, 3]" ("?" for an unnamed dynamic dim), for messages.
std::string ShapeString(const std::vector<int64_t>& dims);
std::string DeclaredShape(const IoInfo& io);

// "input 'x'" / "output 'y'", for messages (built only on failure).
std::string TensorName(const IoInfo& io, bool is_output);

// A numeric tensor's memory (borrowed from a JS typed array) and dims, checked, with no OrtValue
// built yet: scheduled requests keep this form until an instance runs them (most are gathered
// into a batch and never need their own OrtValue).
constexpr size_t kMaxViewRank = 8;
struct TensorView {
  uint8_t* data = nullptr;  // null: no buffer (an output ORT allocates)
  size_t bytes = 0;
  uint32_t rank = 0;
  int64_t dims[kMaxViewRank] = {};
};

// Builds the OrtValue for one feed, or for an output buffer supplied with the call, checking it
// against the model's declaration `io`. On success `*borrowed` tells whether the OrtValue
// borrows `data`'s memory (false for strings, which are copied into ORT-owned memory, and for
// copies). With `view` given, a numeric tensor of rank <= kMaxViewRank is only checked and
// described in `*view` (`*out` stays null; build it later with ViewToOrtValue, on any thread).
// With `copy_to` given (at least count × element size bytes, owned by the caller for as long as
// the OrtValue or view is used), a numeric tensor's data is copied there once checked, and the
// OrtValue or view points at the copy.
bool TensorToOrtValue(const IoInfo& io, bool is_output, Napi::Value data, const std::vector<int64_t>& dims,
                      OrtValue** out, bool* borrowed, Failure* failure, TensorView* view = nullptr,
                      uint8_t* copy_to = nullptr);
// An output buffer in memory the job owns (`memory`, `capacity` bytes), for an output copied to
// JS when its request settles (RunJob, settlement.h): checked against the model like a supplied
// buffer, numeric and at most `capacity` bytes (`*bytes`: its size). Described in `*view`, or an
// OrtValue over the memory in `*out`, as TensorToOrtValue.
bool OwnedOutput(const IoInfo& io, uint8_t* memory, size_t capacity, const std::vector<int64_t>& dims, size_t* bytes,
                 OrtValue** out, Failure* failure, TensorView* view = nullptr);
// Any thread: an OrtValue over a view's memory.
Failure ViewToOrtValue(const IoInfo& io, bool is_output, const TensorView& view, OrtValue** out);

// The output copy path: returns [data, dims] for an ORT-allocated output and releases `value`.
// `*copied_bytes` receives the bytes copied.
Napi::Value OrtValueToJs(Napi::Env env, const IoInfo& io, OrtValue* value, size_t* copied_bytes, Failure* failure);

}  // namespace nimify
