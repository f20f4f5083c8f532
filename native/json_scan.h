// The numeric `data` arrays of a KServe v2 JSON inference request, parsed without V8.
//
// JSON.parse spends most of a small request's parse on its numbers (6.6 µs of a 1 KiB body of
// 64 17-digit doubles, measured on the 2-core VM), and the codec then walks the array it built
// once more to fill a typed array. ScanInferJson reads the body once: every array of
// numbers (flat, or nested as the protocol's row-major lists) at `inputs[i].data` is parsed here
// into `nums` (std::from_chars: correctly rounded, the double JSON.parse gives), and the body is
// copied to `out` with each such array replaced by a placeholder string ("\u0000" + its index),
// which JSON.parse then reads in no time. The caller (src/protocol/infer-json.ts) parses the
// reduced text as it would the body and puts the numbers in place of the placeholders.
//
// A tokenizer, not a validator: it only needs to find the arrays; JSON.parse still checks the
// rest. Whatever it does not handle exactly — a syntax error, nesting deeper than kMaxDepth, a
// number JSON.parse reads as ±Infinity or 0 (out of double range), a string where an array could
// be taken (so a client cannot forge a placeholder), a byte-order mark, more arrays than `spans`
// holds — returns kJsonScanFallback: the caller parses the body as it is (and a malformed body
// gets JSON.parse's message). More numbers than `nums` holds: kJsonScanNeedsRoom.
// Pure: no allocation, no lock, any thread.
#ifndef NIMIFY_JSON_SCAN_H_
#define NIMIFY_JSON_SCAN_H_

#include <cstddef>
#include <cstdint>

namespace nimify {

struct JsonScanResult {
  // kJsonScanFallback, kJsonScanNeedsRoom, or the number of arrays extracted (0: none; the caller
  // parses the body as it is).
  int64_t arrays = 0;
  size_t out_len = 0;  // bytes of reduced text written to `out`
  size_t nums_len = 0;  // numbers written to `nums`
};

constexpr int64_t kJsonScanFallback = -1;
// `nums` was too small for the body's numbers; nothing else went wrong so far.
constexpr int64_t kJsonScanNeedsRoom = -2;
// Arrays shorter than this (in bytes, brackets included) stay in the text, not worth a
// placeholder; nor is one ever longer than its array (the reduced text fits in n bytes).
constexpr size_t kMinExtractBytes = 16;

// Scans body[0, n). `nums` receives the extracted numbers, array after array (leaves in order);
// `spans` receives, per extracted array, its first index in `nums`, its leaf count and its nesting
// depth (1: flat) — 3 entries each, from spans[1]. `out` must hold n bytes.
JsonScanResult ScanInferJson(const uint8_t* body, size_t n, double* nums, size_t nums_cap, uint8_t* out,
                             uint32_t* spans, size_t spans_cap);

}  // namespace nimify

#endif  // NIMIFY_JSON_SCAN_H_
