// The check macros of the native unit tests (test/native/*_test.cc): each failed check prints
// where and what, and Finish() reports the count the runners (test/native/*.test.ts) match
// ("ok: N checks") and the exit status. One test program per process; header-only.
#ifndef NIMIFY_TEST_NATIVE_CHECK_H_
#define NIMIFY_TEST_NATIVE_CHECK_H_

#include <cstdio>
#include <string>

namespace nimify_test {

inline int failures = 0;
inline int checks = 0;

inline std::string Str(const std::string& s) { return "\"" + s + "\""; }
template <class T>
std::string Str(const T& v) {
  return std::to_string(v);
}

// main()'s return value: 0 when every check passed.
inline int Finish() {
  if (failures > 0) {
    std::printf("%d of %d checks failed\n", failures, checks);
    return 1;
  }
  std::printf("ok: %d checks\n", checks);
  return 0;
}

}  // namespace nimify_test

#define CHECK(cond)                                                \
  do {                                                             \
    ++nimify_test::checks;                                         \
    if (!(cond)) {                                                 \
      ++nimify_test::failures;                                     \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
    }                                                              \
  } while (0)
#define CHECK_EQ(a, b)                                                                                       \
  do {                                                                                                       \
    ++nimify_test::checks;                                                                                   \
    const auto va = (a);                                                                                     \
    const auto vb = (b);                                                                                     \
    if (!(va == vb)) {                                                                                       \
      ++nimify_test::failures;                                                                               \
      std::printf("FAIL %s:%d: %s == %s (%s vs %s)\n", __FILE__, __LINE__, #a, #b,                          \
                  nimify_test::Str(va).c_str(), nimify_test::Str(vb).c_str());                               \
    }                                                                                                        \
  } while (0)

#endif  // NIMIFY_TEST_NATIVE_CHECK_H_
