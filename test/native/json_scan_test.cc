// Unit and fuzz tests of the JSON number scanner (native/json_scan.h): exact results on chosen
// bodies, then mutated bodies in buffers of exactly the size the contract allows, so that the
// sanitizers test/native/json-scan.test.ts builds with (AddressSanitizer, UBSan where the compiler
// has them) catch any read or write past them. No napi, no ORT. Exits non-zero on any failure.
#include "../../native/json_scan.h"
#include "check.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using nimify::JsonScanResult;
using nimify::ScanInferJson;

namespace {

struct Scan {
  JsonScanResult r;
  std::string out;
  std::vector<double> nums;
  std::vector<uint32_t> spans;
};

// Buffers of exactly the sizes given (heap, so the sanitizer sees their ends).
Scan Run(const std::string& body, size_t nums_cap, size_t spans_cap) {
  std::vector<uint8_t> in(body.begin(), body.end());
  std::vector<double> nums(nums_cap);
  std::vector<uint8_t> out(body.size());
  std::vector<uint32_t> spans(spans_cap);
  Scan s;
  s.r = ScanInferJson(in.data(), in.size(), nums.data(), nums.size(), out.data(), spans.data(), spans.size());
  if (s.r.arrays > 0) s.out.assign(out.begin(), out.begin() + static_cast<long>(s.r.out_len));
  s.nums.assign(nums.begin(), nums.begin() + static_cast<long>(s.r.arrays > 0 ? s.r.nums_len : 0));
  s.spans = spans;
  return s;
}

Scan Run(const std::string& body) { return Run(body, body.size() / 2 + 1, 1 + 3 * 1024); }

std::string Body(const std::string& data) { return "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[8],\"data\":" + data + "}]}"; }

void Exact() {
  Scan s = Run(Body("[1.5, -2.25,3e2 ,-0, 0.1,1E-2,7,8]"));
  CHECK(s.r.arrays == 1);
  CHECK(s.out == Body("\"\\u00000\""));
  CHECK(s.nums.size() == 8 && s.nums[0] == 1.5 && s.nums[1] == -2.25 && s.nums[2] == 300 && s.nums[3] == 0 &&
        std::signbit(s.nums[3]) && s.nums[4] == 0.1 && s.nums[5] == 0.01 && s.nums[7] == 8);
  CHECK(s.spans[1] == 0 && s.spans[2] == 8 && s.spans[3] == 1);

  s = Run(Body("[[1.5,2.5],[],[[3.5]],[4.5,5.5,6.5]]"));
  CHECK(s.r.arrays == 1 && s.nums.size() == 6 && s.spans[2] == 6 && s.spans[3] == 3);

  // Two inputs: numbered in order, the text between them kept.
  s = Run("{\"inputs\":[{\"data\":[1.25,2.25,3.25,4.25]},{\"name\":\"b\",\"data\":[5.25,6.25,7.25,8.25]}],\"id\":\"q\"}");
  CHECK(s.r.arrays == 2);
  CHECK(s.out == "{\"inputs\":[{\"data\":\"\\u00000\"},{\"name\":\"b\",\"data\":\"\\u00001\"}],\"id\":\"q\"}");
  CHECK(s.spans[4] == 4 && s.spans[5] == 4 && s.nums[4] == 5.25);

  // Nothing to take: 0, text not written.
  CHECK(Run(Body("[1,2]")).r.arrays == 0);  // too short to be worth it
  CHECK(Run(Body("[]")).r.arrays == 0);
  CHECK(Run(Body("[true,false,true,false,true]")).r.arrays == 0);
  CHECK(Run(Body("[1.5,\"2.5\",3.5,4.5,5.5,6.5]")).r.arrays == 0);
  CHECK(Run("{\"parameters\":{\"data\":[1,2,3,4,5,6,7,8,9,10]},\"inputs\":[]}").r.arrays == 0);
  CHECK(Run("{\"outputs\":[{\"data\":[1,2,3,4,5,6,7,8,9,10]}]}").r.arrays == 0);

  // Fallback: the caller parses the body itself.
  const char* fallbacks[] = {
      "\xEF\xBB\xBF{\"inputs\":[]}", "[1,2,3]", "{\"inputs\":[]} x", "{\"inputs\":[]", "{\"inputs\":[{\"data\":\"\\u00000\"}]}",
      "{\"inputs\":[{\"data\":[1e400,1,2,3,4,5,6]}]}", "{\"inputs\":[{\"data\":[1e-400,1,2,3,4,5,6]}]}",
      "{\"inputs\":[{\"data\":[01,1,2,3,4,5,6]}]}", "{\"inputs\":[{\"data\":[1.,1,2,3,4,5,6]}]}",
      "{\"inputs\":[{\"data\":[+1,1,2,3,4,5,6]}]}", "{\"inputs\":[{\"data\":[1,1,2,3,4,5,6,]}]}",
      "{\"inputs\":[{\"data\":[1 1,2,3,4,5,6]}]}", "{\"a\":tru}", "{\"a\" 1}", "{\"a\":1,}", "",
      // what from_chars reads beyond JSON's number grammar, and what it leaves unread
      "{\"inputs\":[{\"data\":[1.e5,1,2,3,4,5,6]}]}", "{\"inputs\":[{\"data\":[-inf,1,2,3,4,5,6]}]}",
      "{\"inputs\":[{\"data\":[-nan,1,2,3,4,5,6]}]}", "{\"inputs\":[{\"data\":[-Infinity,1,2,3,4,5,6]}]}",
      "{\"inputs\":[{\"data\":[-01,1,2,3,4,5,6]}]}", "{\"inputs\":[{\"data\":[00,1,2,3,4,5,6]}]}",
      "{\"inputs\":[{\"data\":[1,2,3,4,5,6,7.]}]}", "{\"inputs\":[{\"data\":[1e,1,2,3,4,5,6]}]}",
      "{\"inputs\":[{\"data\":[1e+,1,2,3,4,5,6]}]}", "{\"inputs\":[{\"data\":[0x1,1,2,3,4,5,6]}]}",
      "{\"inputs\":[{\"data\":[1.5.5,1,2,3,4,5,6]}]}", "{\"inputs\":[{\"data\":[-,1,2,3,4,5,6]}]}",
      "{\"inputs\":[{\"data\":[.5,1,2,3,4,5,6]}]}", "{\"inputs\":[{\"data\":[1,2,3,4,5,6,-]}]}",
      "{\"inputs\":[{\"data\":[1,2,3,4,5,6,7e]}]}", "{\"inputs\":[{\"data\":[1,2,3,4,5,6,0",
      // escaped keys where `inputs` or `data` may be spelled; a backslash ending the body
      "{\"inp\\u0075ts\":[{\"data\":[1,2,3,4,5,6,7,8]}]}", "{\"inputs\":[{\"d\\u0061ta\":\"\\u00000\"}]}",
      "{\"inputs\":[{\"\\\"\":1}]}", "{\"a\":\"\\",
  };
  for (const char* f : fallbacks) CHECK(Run(f).r.arrays == nimify::kJsonScanFallback);
  std::string deep = "{\"a\":" + std::string(70, '[') + std::string(70, ']') + "}";
  CHECK(Run(deep).r.arrays == nimify::kJsonScanFallback);
  std::string deep_data = Body(std::string(70, '[') + "1" + std::string(70, ']'));
  CHECK(Run(deep_data).r.arrays == nimify::kJsonScanFallback);

  // Room: exactly enough numbers, one too few; spans for one array, for none.
  const std::string eight = Body("[1.5,2.5,3.5,4.5,5.5,6.5,7.5,8.5]");
  CHECK(Run(eight, 8, 4).r.arrays == 1);
  CHECK(Run(eight, 7, 4).r.arrays == nimify::kJsonScanNeedsRoom);
  CHECK(Run(eight, 8, 3).r.arrays == nimify::kJsonScanFallback);
  CHECK(Run(eight, 0, 4).r.arrays == nimify::kJsonScanNeedsRoom);
}

// Mutated bodies: any result is allowed, no access outside the buffers is, and a taken body's
// result must be consistent.
void Fuzz() {
  std::mt19937 rng(20261207);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  static const char alphabet[] = "[]{},:\" \\-+.eE0123456789tfnulrsa\x00\xEF\xBB\xBF\t\n";
  const size_t alphabet_len = sizeof(alphabet) - 1;
  const std::vector<std::string> seeds = {
      Body("[1.5,2.5,3.5,4.5,5.5,6.5,7.5,8.5]"),
      Body("[[1.5,2.5],[],[[3.5]],[4.5,5.5,6.5]]"),
      "{\"inputs\":[{\"data\":[1.25,2.25,3.25,4.25]},{\"name\":\"b\",\"data\":[5.25,-6.25e-3,7.25,8.25]}],\"id\":\"q\\\"\"}",
      "{\"inputs\":[{\"data\":[true,1,2,3,4,5]},{\"data\":\"s\"},{\"data\":{\"a\":[1,2,3,4,5,6,7,8]}}]}",
  };
  for (int i = 0; i < 200000; i++) {
    std::string b = seeds[pick(seeds.size())];
    const int edits = 1 + static_cast<int>(pick(4));
    for (int e = 0; e < edits && !b.empty(); e++) {
      const size_t at = pick(b.size());
      switch (pick(4)) {
        case 0: b[at] = alphabet[pick(alphabet_len)]; break;
        case 1: b.erase(at, 1 + pick(3)); break;
        case 2: b.insert(at, 1, alphabet[pick(alphabet_len)]); break;
        default: b.resize(at); break;
      }
    }
    const size_t nums_cap = pick(3) == 0 ? pick(12) : b.size() / 2 + 1;
    const size_t spans_cap = pick(3) == 0 ? pick(8) : 1 + 3 * 16;
    Scan s = Run(b, nums_cap, spans_cap);
    if (s.r.arrays < 0) {
      CHECK(s.r.arrays == nimify::kJsonScanFallback || s.r.arrays == nimify::kJsonScanNeedsRoom);
      continue;
    }
    if (s.r.arrays == 0) continue;
    CHECK(s.r.out_len <= b.size());
    CHECK(s.r.nums_len <= nums_cap);
    size_t expect_start = 0;
    for (int64_t k = 0; k < s.r.arrays; k++) {
      CHECK(s.spans[1 + 3 * k] == expect_start);
      CHECK(s.spans[3 + 3 * k] >= 1);
      expect_start += s.spans[2 + 3 * k];
      const std::string placeholder = "\"\\u0000" + std::to_string(k) + "\"";
      CHECK(s.out.find(placeholder) != std::string::npos);
    }
    CHECK(expect_start == s.r.nums_len);
    for (double v : s.nums) CHECK(std::isfinite(v));
  }
}

// The scanner's numbers are bit for bit what strtod gives for each number's own text (the
// correctly rounded doubles JSON.parse gives; from_chars decides which are in range), whatever
// surrounds them in the array: random numbers of every
// shape — 1-25 digits split between the integer and the fraction, leading and trailing zeros,
// exponents, mantissas around 2^53, powers of ten around 1e22, doubles and floats printed
// shortest (what JSON.stringify and Python's repr send). A faster number parser must pass it.
void Numbers() {
  std::mt19937_64 rng(7122026);
  auto pick = [&](uint64_t n) { return rng() % n; };
  std::vector<std::string> texts = {"0", "-0", "0.0", "-0.0e5", "9007199254740992", "9007199254740993", "-9007199254740991",
                                    "9007199254740992e22", "9007199254740992e-22", "1e22", "1e23", "1e-22", "1e-23",
                                    "4.9406564584124654e-324", "2.2250738585072014e-308", "1.7976931348623157e308",
                                    "0.1", "0.30000000000000004", "123456789012345678901234567890", "1E+2", "1e-0"};
  for (int i = 0; i < 300000; i++) {
    std::string t = pick(2) ? "-" : "";
    switch (pick(3)) {
      case 0: {  // digits
        const int whole = static_cast<int>(pick(12));
        const int frac = static_cast<int>(pick(20));
        if (whole == 0) {
          t += "0";
        } else {
          t += static_cast<char>('1' + pick(9));
          for (int d = 1; d < whole; d++) t += static_cast<char>('0' + (pick(4) == 0 ? 0 : pick(10)));
        }
        if (frac > 0 || whole == 0) {
          t += ".";
          for (int d = 0; d < std::max(frac, 1); d++) t += static_cast<char>('0' + (pick(4) == 0 ? 0 : pick(10)));
        }
        if (pick(3) == 0) t += std::string(pick(2) ? "e" : "E") + (pick(3) == 0 ? "+" : pick(2) ? "-" : "") + std::to_string(pick(40));
        break;
      }
      case 1: {  // a double or a float printed shortest
        double v;
        do {
          uint64_t bits = rng();
          std::memcpy(&v, &bits, sizeof v);
        } while (!std::isfinite(v));
        if (pick(2)) v = static_cast<float>(std::fmod(v, 1e6) == 0 ? 0.5 : std::fmod(v, 1e6));
        if (pick(2)) v = std::ldexp(static_cast<double>(pick(uint64_t{1} << 24)), -static_cast<int>(pick(30)));
        char buf[64];
        const std::to_chars_result r = std::to_chars(buf, buf + sizeof buf, std::fabs(v));
        t += std::string(buf, r.ptr);
        break;
      }
      default: {  // around 2^53, scaled by powers of ten
        const uint64_t m = (uint64_t{1} << 53) - 3 + pick(7);
        t += std::to_string(m) + "e" + std::to_string(static_cast<int>(pick(60)) - 30);
        break;
      }
    }
    texts.push_back(t);
  }
  size_t checked = 0;
  for (size_t at = 0; at < texts.size(); at += 64) {
    std::string data = "[";
    const size_t n = std::min<size_t>(64, texts.size() - at);
    for (size_t k = 0; k < n; k++) data += (k ? "," : "") + texts[at + k];
    data += ",1,2,3,4]";
    Scan s = Run(Body(data));
    for (size_t k = 0; k < n; k++) {
      const std::string& t = texts[at + k];
      double want = 0;
      const std::from_chars_result r = std::from_chars(t.data(), t.data() + t.size(), want);
      if (r.ec != std::errc()) {
        // Out of range: the scanner leaves the body to JSON.parse.
        CHECK(s.r.arrays == nimify::kJsonScanFallback);
        break;
      }
      CHECK(s.r.arrays == 1);
      if (s.r.arrays != 1) break;
      // The value from an independent parser: strtod (the "C" locale: this program never sets one).
      const double oracle = std::strtod(t.c_str(), nullptr);
      uint64_t a, b;
      std::memcpy(&a, &s.nums[k], sizeof a);
      std::memcpy(&b, &oracle, sizeof b);
      if (a != b) std::fprintf(stderr, "number %s: scanner %.17g, strtod %.17g\n", t.c_str(), s.nums[k], oracle);
      CHECK(a == b);
      ++checked;
    }
  }
  CHECK(checked > 250000);
}

}  // namespace

int main() {
  Exact();
  Numbers();
  Fuzz();
  return nimify_test::Finish();
}
