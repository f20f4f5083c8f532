// Unit and fuzz tests of the JSON number scanner (native/json_scan.h): exact results on chosen
// bodies, then mutated bodies in buffers of exactly the size the contract allows, so that the
// sanitizers test/native/json-scan.test.ts builds with (AddressSanitizer, UBSan where the compiler
// has them) catch any read or write past them. No napi, no ORT. Exits non-zero on any failure.
#include "../../native/json_scan.h"
#include "check.h"

#include <cmath>
#include <cstdio>
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

}  // namespace

int main() {
  Exact();
  Fuzz();
  return nimify_test::Finish();
}
