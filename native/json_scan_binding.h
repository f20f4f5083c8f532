// The JS face of native/json_scan.h (registered by addon.cc).
#ifndef NIMIFY_JSON_SCAN_BINDING_H_
#define NIMIFY_JSON_SCAN_BINDING_H_

#include <napi.h>

namespace nimify {

// JS: scanInferJson(body: Uint8Array, length, nums: Float64Array, out: Uint8Array, spans:
// Uint32Array) → number of arrays extracted, -1 (parse the body as it is) or -2 (nums too small).
// spans[0] = the reduced text's length, then (start, count, depth) per array from spans[1]. Any
// JS thread; reads and writes only its arguments' memory, and only before it returns.
Napi::Value ScanInferJsonJs(const Napi::CallbackInfo& info);

}  // namespace nimify

#endif  // NIMIFY_JSON_SCAN_BINDING_H_
