// Unit tests of the inline decision's estimate for models without a scheduler
// (native/run_cost.h). Built and run by test/native/formation.test.ts; exits non-zero on any
// failure.
#include "../../native/run_cost.h"
#include "check.h"

#include <cmath>

using nimify::RunCost;

namespace {
bool Near(double a, double b) { return std::fabs(a - b) <= 1e-9 * std::fabs(b); }
}  // namespace

int main() {
  {
    RunCost c;
    CHECK(c.Predict(64) == -1);  // nothing measured: never inline
    CHECK(!c.Fits(64, 1e9));
    c.Record(64, 1000);  // a cold first run
    CHECK(c.Predict(64) == 1000);
    c.Record(64, 10);  // the second, faster: replaces it
    CHECK(c.Predict(64) == 10);
    c.Record(64, 20);  // from the third on: a moving average
    CHECK(c.Predict(64) == 0.8 * 10 + 0.2 * 20);
    const double t = c.Predict(64);
    CHECK(c.Predict(16) == t);                // a smaller input is not scaled down
    CHECK(Near(c.Predict(96), t * 96 / 64));   // a larger one is scaled up...
    CHECK(Near(c.Predict(112), t * 112 / 64)); // ...up to 1.5 x the recent elements (+16)
    CHECK(c.Predict(113) == -1);              // beyond that: not extrapolated
    CHECK(c.Fits(64, t));
    CHECK(!c.Fits(64, t - 0.001));
    CHECK(!c.Fits(113, 1e9));
  }
  {
    RunCost c;  // a second run slower than the first is averaged, not taken
    c.Record(64, 10);
    c.Record(64, 30);
    CHECK(c.Predict(64) == 0.8 * 10 + 0.2 * 30);
    c.Record(64, 5);  // and later ones never replace
    CHECK(c.Predict(64) == 0.8 * (0.8 * 10 + 0.2 * 30) + 0.2 * 5);
  }
  {
    RunCost c;  // the elements follow the inputs measured
    c.Record(100, 10);
    c.Record(100, 10);
    c.Record(600, 50);
    CHECK(Near(c.elements.load(), 200));
    CHECK(c.Predict(190) == c.us.load());
    CHECK(Near(c.Predict(300), c.us.load() * 300 / 200));
  }
  {
    RunCost c;  // inputs with no elements (empty tensors, scalars' neighbours): no division by zero
    c.Record(0, 5);
    CHECK(c.Predict(0) == 5);
    CHECK(c.Predict(16) == 5);
    CHECK(c.Predict(17) == -1);
  }
  return nimify_test::Finish();
}
