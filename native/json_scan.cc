#include "json_scan.h"

#include <charconv>
#include <cstring>
#include <system_error>

namespace nimify {
namespace {

// Deeper bodies are left to JSON.parse (recursion here is bounded by it).
constexpr int kMaxDepth = 64;

// Where a value sits, as far as extraction cares: only root.inputs[i].data arrays are taken.
enum class Slot : uint8_t { kOther, kRoot, kInputs, kInputElem, kData };

class Scanner {
 public:
  Scanner(const uint8_t* body, size_t n, double* nums, size_t nums_cap, uint8_t* out, uint32_t* spans,
          size_t spans_cap)
      : p_(body), end_(body + n), nums_(nums), nums_cap_(nums_cap), out_(out), spans_(spans),
        spans_cap_(spans_cap), copied_(body) {}

  JsonScanResult Run() {
    JsonScanResult r;
    r.arrays = kJsonScanFallback;
    if (end_ - p_ >= 3 && p_[0] == 0xEF && p_[1] == 0xBB && p_[2] == 0xBF) return r;  // BOM
    SkipWs();
    if (Peek() != '{' || !Object(Slot::kRoot, 1)) {
      if (out_of_room_) r.arrays = kJsonScanNeedsRoom;
      return r;
    }
    SkipWs();
    if (p_ != end_) return r;
    r.arrays = static_cast<int64_t>(arrays_);
    r.nums_len = nums_len_;
    if (arrays_ > 0) {
      const size_t tail = static_cast<size_t>(end_ - copied_);
      std::memmove(out_ + out_len_, copied_, tail);  // `out` may be the body itself
      out_len_ += tail;
    }
    r.out_len = out_len_;
    return r;
  }

 private:
  // 0 at the end: no JSON token starts with a NUL byte, so the end reads as a syntax error.
  uint8_t Peek() const { return p_ < end_ ? *p_ : 0; }
  void SkipWs() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r')) ++p_;
  }
  static bool IsDigit(uint8_t c) { return c >= '0' && c <= '9'; }

  bool Value(Slot slot, int depth) {
    switch (Peek()) {
      case '{':
        return depth < kMaxDepth && Object(slot, depth + 1);
      case '[':
        return depth < kMaxDepth && Array(slot, depth + 1);
      case '"': {
        // A string where an extracted array may sit could spell a placeholder: leave the body
        // to JSON.parse (such a request is refused by the codec anyway).
        if (slot == Slot::kData) return false;
        const uint8_t* s;
        size_t len;
        return String(&s, &len);
      }
      case 't':
        return Literal("true", 4);
      case 'f':
        return Literal("false", 5);
      case 'n':
        return Literal("null", 4);
      default:
        return Number(nullptr);
    }
  }

  bool Literal(const char* word, size_t len) {
    if (static_cast<size_t>(end_ - p_) < len || std::memcmp(p_, word, len) != 0) return false;
    p_ += len;
    return true;
  }

  // At '"': skips the string, escapes included (JSON.parse checks them later); its raw content
  // is [*s, *s + *len).
  bool String(const uint8_t** s, size_t* len) {
    ++p_;
    *s = p_;
    while (p_ < end_) {
      const uint8_t c = *p_;
      if (c == '"') {
        *len = static_cast<size_t>(p_ - *s);
        ++p_;
        return true;
      }
      if (c == '\\') {
        if (end_ - p_ < 2) return false;
        p_ += 2;
      } else {
        ++p_;
      }
    }
    return false;
  }

  // JSON's number grammar exactly (no '+', no leading zeros, no bare '.', no inf/nan), then the
  // correctly rounded double. `value` null: validate and skip only.
  bool Number(double* value) {
    if (value != nullptr) return NumberValue(value);
    if (Peek() == '-') ++p_;
    if (Peek() == '0') {
      ++p_;
    } else if (IsDigit(Peek())) {
      while (IsDigit(Peek())) ++p_;
    } else {
      return false;
    }
    if (Peek() == '.') {
      ++p_;
      if (!IsDigit(Peek())) return false;
      while (IsDigit(Peek())) ++p_;
    }
    if (Peek() == 'e' || Peek() == 'E') {
      ++p_;
      if (Peek() == '+' || Peek() == '-') ++p_;
      if (!IsDigit(Peek())) return false;
      while (IsDigit(Peek())) ++p_;
    }
    return true;
  }

  // Number() for a value: from_chars reads it and finds where it ends (one pass over its digits;
  // walking them first for the grammar cost as much again, ~0.5 us of a 64-number body). What
  // from_chars reads beyond JSON's grammar is refused here: a sign not followed by a digit (it
  // reads "-inf" and "-nan"), a leading zero followed by a digit ("01": it reads the 1 too) and
  // a '.' not followed by a digit ("1." and "1.e5"). The rest of its syntax is JSON's, and what
  // it leaves unread ("1e", "1e+", "0x1") is the next token, a syntax error to the caller.
  bool NumberValue(double* value) {
    const uint8_t* start = p_;
    const uint8_t* digits = Peek() == '-' ? p_ + 1 : p_;
    if (digits >= end_ || !IsDigit(*digits)) return false;
    if (*digits == '0' && digits + 1 < end_ && IsDigit(digits[1])) return false;
    const char* first = reinterpret_cast<const char*>(start);
    const std::from_chars_result r = std::from_chars(first, reinterpret_cast<const char*>(end_), *value);
    // Out of range: JSON.parse gives ±Infinity or ±0, from_chars leaves the value unset.
    if (r.ec != std::errc()) return false;
    const uint8_t* last = reinterpret_cast<const uint8_t*>(r.ptr);
    const void* dot = std::memchr(digits, '.', static_cast<size_t>(last - digits));
    if (dot != nullptr) {
      const uint8_t* after = static_cast<const uint8_t*>(dot) + 1;
      if (after >= last || !IsDigit(*after)) return false;
    }
    p_ = last;
    return true;
  }

  // At a container's opening bracket: skips it and the whitespace after it; true when the
  // container is empty (its `close` skipped too).
  bool Open(uint8_t close) {
    ++p_;
    SkipWs();
    if (Peek() != close) return false;
    ++p_;
    return true;
  }

  bool Object(Slot slot, int depth) {
    if (Open('}')) return true;
    for (;;) {
      if (Peek() != '"') return false;
      const uint8_t* key;
      size_t len;
      if (!String(&key, &len)) return false;
      // A key with an escape may spell `inputs` or `data` to JSON.parse without matching here,
      // and its value would then escape the checks of a data slot: leave such bodies to it.
      if ((slot == Slot::kRoot || slot == Slot::kInputElem) && std::memchr(key, '\\', len) != nullptr) return false;
      Slot value_slot = Slot::kOther;
      if (slot == Slot::kRoot && len == 6 && std::memcmp(key, "inputs", 6) == 0) value_slot = Slot::kInputs;
      if (slot == Slot::kInputElem && len == 4 && std::memcmp(key, "data", 4) == 0) value_slot = Slot::kData;
      SkipWs();
      if (Peek() != ':') return false;
      ++p_;
      SkipWs();
      if (!Value(value_slot, depth)) return false;
      bool more;
      if (!Next('}', &more)) return false;
      if (!more) return true;
    }
  }

  // After a member or an element: a ',' (skipped, with the whitespace after it: *more) or the
  // container's `close` (skipped); anything else is a syntax error (false).
  bool Next(uint8_t close, bool* more) {
    SkipWs();
    *more = Peek() == ',';
    if (!*more && Peek() != close) return false;
    ++p_;
    if (*more) SkipWs();
    return true;
  }

  bool Array(Slot slot, int depth) {
    if (slot == Slot::kData) {
      switch (NumericArray(depth)) {
        case Taken::kYes:
          return true;
        case Taken::kFailed:
          return false;
        case Taken::kNo:
          break;  // not an array of numbers: walk it as any array
      }
    }
    const Slot element = slot == Slot::kInputs ? Slot::kInputElem : Slot::kOther;
    if (Open(']')) return true;
    for (;;) {
      if (!Value(element, depth)) return false;
      bool more;
      if (!Next(']', &more)) return false;
      if (!more) return true;
    }
  }

  enum class Taken { kYes, kNo, kFailed };

  // At '[' in a data slot: parses an array whose leaves are all numbers (flat, or nested in
  // arrays to any depth up to kMaxDepth, as the protocol allows row-major nesting) into nums_, in
  // order, and puts a placeholder in its place; its span records the leaf count and the nesting
  // depth (the codec checks both as it would the array). kNo (position and nums_ restored): it
  // holds something else, or it is empty. Too short to be worth a placeholder: left as it is.
  Taken NumericArray(int depth) {
    const uint8_t* open = p_;
    const size_t mark = nums_len_;
    auto give_back = [&] {
      nums_len_ = mark;
      p_ = open;
      return Taken::kNo;
    };
    ++p_;
    SkipWs();
    if (Peek() == ']') return give_back();
    int level = 1;  // arrays open, this one included
    int deepest = 1;
    for (;;) {
      // One element: an array opening (perhaps empty) or a number.
      const uint8_t c = Peek();
      if (c == '[') {
        if (depth + level >= kMaxDepth) return Taken::kFailed;
        ++p_;
        ++level;
        if (level > deepest) deepest = level;
        SkipWs();
        if (Peek() != ']') continue;
      } else if (c == '-' || IsDigit(c)) {
        if (nums_len_ == nums_cap_) {
          out_of_room_ = true;
          return Taken::kFailed;
        }
        if (!Number(&nums_[nums_len_])) return Taken::kFailed;
        ++nums_len_;
        SkipWs();
      } else {
        return give_back();
      }
      // After an element: close arrays, then a separator or the end of the outer one.
      while (Peek() == ']') {
        ++p_;
        if (--level == 0) break;
        SkipWs();
      }
      if (level == 0) break;
      if (Peek() != ',') return Taken::kFailed;
      ++p_;
      SkipWs();
    }
    char placeholder[24] = "\"\\u0000";  // "\u0000<index>"
    const std::to_chars_result d = std::to_chars(placeholder + 7, placeholder + sizeof(placeholder) - 1, arrays_);
    *d.ptr = '"';
    const size_t placeholder_len = static_cast<size_t>(d.ptr + 1 - placeholder);
    const size_t span = static_cast<size_t>(p_ - open);
    if (span < kMinExtractBytes || span < placeholder_len) {
      nums_len_ = mark;
      return Taken::kYes;  // valid, and copied as it is
    }
    if (1 + 3 * (arrays_ + 1) > spans_cap_) return Taken::kFailed;
    const size_t before = static_cast<size_t>(open - copied_);
    std::memmove(out_ + out_len_, copied_, before);
    out_len_ += before;
    std::memcpy(out_ + out_len_, placeholder, placeholder_len);
    out_len_ += placeholder_len;
    copied_ = p_;
    uint32_t* span_out = spans_ + 1 + 3 * arrays_;
    span_out[0] = static_cast<uint32_t>(mark);
    span_out[1] = static_cast<uint32_t>(nums_len_ - mark);
    span_out[2] = static_cast<uint32_t>(deepest);
    ++arrays_;
    return Taken::kYes;
  }

  const uint8_t* p_;
  const uint8_t* const end_;
  double* const nums_;
  const size_t nums_cap_;
  size_t nums_len_ = 0;
  uint8_t* const out_;
  size_t out_len_ = 0;
  uint32_t* const spans_;
  const size_t spans_cap_;
  size_t arrays_ = 0;
  bool out_of_room_ = false;  // nums_ filled up: the caller may retry with more
  const uint8_t* copied_;  // body bytes before this are in out_ (or replaced by a placeholder)
};

}  // namespace

JsonScanResult ScanInferJson(const uint8_t* body, size_t n, double* nums, size_t nums_cap, uint8_t* out,
                             uint32_t* spans, size_t spans_cap) {
  return Scanner(body, n, nums, nums_cap, out, spans, spans_cap).Run();
}

}  // namespace nimify
