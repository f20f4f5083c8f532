// Unit tests of the scheduler's batch formation (native/formation.h) and its estimator: plain
// structs and a fake clock, no ORT, no napi, no threads, no sleeps. Built and run by
// test/native/formation.test.ts with the system C++ compiler; exits non-zero on any failure.
#include "../../native/formation.h"
#include "check.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <list>
#include <string>
#include <vector>

using nimify::BatchingConfig;
using nimify::Estimator;
using nimify::SteadyTime;
namespace formation = nimify::formation;

namespace {

// The fake clock: T(us) is `us` microseconds after an arbitrary epoch.
const SteadyTime kEpoch = SteadyTime() + std::chrono::hours(1);
SteadyTime T(double us) {
  return kEpoch + std::chrono::duration_cast<SteadyTime::duration>(std::chrono::duration<double, std::micro>(us));
}

const std::vector<int64_t> kKeyA{2, 64, 1, 0};
const std::vector<int64_t> kKeyB{2, 32, 1, 0};

struct Job {
  std::string name;
  int64_t rows = 1;
  const std::vector<int64_t>* key = &kKeyA;
  SteadyTime enqueued = T(0);
  SteadyTime deadline = SteadyTime::max();
};

using Queue = std::list<Job*>;

struct Fixture {
  std::list<Job> jobs;  // stable addresses
  Queue queues[2];
  BatchingConfig config;
  Estimator est;
  bool batchable = true;
  std::vector<Job*> scratch, expired;

  Fixture() {
    config.batching = true;
    config.max_batch_size = 8;
    config.max_queue_delay_us = 1000;
  }
  Job& Add(const std::string& name, int64_t rows = 1, int priority = 0, double enqueued_us = 0) {
    jobs.push_back(Job{name, rows, &kKeyA, T(enqueued_us)});
    queues[priority].push_back(&jobs.back());
    return jobs.back();
  }
  formation::Decision Form(double now_us, bool now_only = false) {
    bool deadlines = false;
    for (const Queue& q : queues) {
      for (const Job* j : q) deadlines |= j->deadline != SteadyTime::max();
    }
    auto view = [](const Job* j) { return formation::JobView{j->rows, j->key, j->enqueued, j->deadline}; };
    return formation::Form(queues, view, T(now_us), config, batchable, est, deadlines, now_only, &scratch, &expired);
  }
  // The names of the batch a kRun decision takes, in run order ("" otherwise).
  std::string Batch(const formation::Decision& d) const {
    if (d.outcome != formation::Outcome::kRun) return "";
    std::string s;
    for (size_t i = 0; i < d.count; ++i) s += (i ? "," : "") + scratch[i]->name;
    return s;
  }
  std::string Expired() const {
    std::string s;
    for (const Job* j : expired) s += (s.empty() ? "" : ",") + j->name;
    return s;
  }
};

bool IsWait(const formation::Decision& d, double wake_us) {
  return d.outcome == formation::Outcome::kWait && d.wake == T(wake_us);
}

void EmptyQueueIsIdle() {
  Fixture f;
  const auto d = f.Form(0);
  CHECK(d.outcome == formation::Outcome::kIdle);
  CHECK(f.scratch.empty());
}

void HighPriorityFirstFifoWithinLevel() {
  Fixture f;
  f.Add("a", 1, 0, 0);
  f.Add("b", 1, 0, 1);
  f.Add("c", 1, 1, 2);
  f.Add("d", 1, 1, 3);
  f.Add("e", 1, 0, 4);
  // Not batchable: each job alone, the head first: the oldest high-priority job.
  f.batchable = false;
  auto d = f.Form(0);
  CHECK_EQ(f.Batch(d), std::string("c"));
  CHECK_EQ(d.rows, int64_t{0});
  // Batchable, once the delay is over: one batch in priority order, FIFO within a level.
  f.batchable = true;
  d = f.Form(2000);
  CHECK_EQ(f.Batch(d), std::string("c,d,a,b,e"));
  CHECK_EQ(d.rows, int64_t{5});
}

void HeadKeyOnly() {
  Fixture f;
  f.Add("a1", 1, 0, 0);
  f.Add("b1", 1, 0, 1).key = &kKeyB;
  f.Add("a2", 2, 0, 2);
  f.Add("b2", 1, 1, 3).key = &kKeyB;  // high priority: it is the head, so key B forms the batch
  auto d = f.Form(5000);
  CHECK_EQ(f.Batch(d), std::string("b2,b1"));
  f.queues[1].clear();
  f.queues[0].remove_if([](const Job* j) { return j->key == &kKeyB; });
  d = f.Form(5000);
  CHECK_EQ(f.Batch(d), std::string("a1,a2"));
  CHECK_EQ(d.rows, int64_t{3});
}

void NeverSplitAJobAndNoOvertaking() {
  Fixture f;
  f.config.max_batch_size = 4;
  f.Add("x", 3);
  f.Add("y", 2);  // does not fit beside x: the batch is full, runs now without the delay
  f.Add("z", 1);  // would fit, but never overtakes y
  const auto d = f.Form(0);
  CHECK_EQ(f.Batch(d), std::string("x"));
  CHECK_EQ(d.rows, int64_t{3});
}

void MaxRowsRunsAtOnce() {
  Fixture f;
  for (int i = 0; i < 10; ++i) f.Add("j" + std::to_string(i), 1, 0, i);
  const auto d = f.Form(10);  // long before the delay: full batches do not wait
  CHECK(d.outcome == formation::Outcome::kRun);
  CHECK_EQ(d.count, size_t{8});
  CHECK_EQ(d.rows, int64_t{8});
  CHECK_EQ(f.Batch(d), std::string("j0,j1,j2,j3,j4,j5,j6,j7"));
}

void PreferredSizes() {
  {
    // Reaching the largest preferred size runs at once.
    Fixture f;
    f.config.preferred = {2, 4};
    for (int i = 0; i < 4; ++i) f.Add("j" + std::to_string(i));
    const auto d = f.Form(1);
    CHECK_EQ(d.count, size_t{4});
  }
  {
    // 6 rows: not full; waits out the delay, then runs the largest preferred size it fills.
    Fixture f;
    f.config.preferred = {2, 4};
    for (int i = 0; i < 6; ++i) f.Add("j" + std::to_string(i));
    CHECK(IsWait(f.Form(999), 1000));
    const auto d = f.Form(1000);
    CHECK_EQ(f.Batch(d), std::string("j0,j1,j2,j3"));
    CHECK_EQ(d.rows, int64_t{4});
  }
  {
    // No preferred size fits: everything gathered runs.
    Fixture f;
    f.config.preferred = {4};
    f.Add("a");
    f.Add("b");
    f.Add("c");
    const auto d = f.Form(1000);
    CHECK_EQ(f.Batch(d), std::string("a,b,c"));
  }
  {
    // A preferred size smaller than the first job: the job runs (never an empty batch, never split).
    Fixture f;
    f.config.preferred = {2};
    f.Add("big", 3);
    const auto d = f.Form(1000);
    CHECK_EQ(f.Batch(d), std::string("big"));
    CHECK_EQ(d.rows, int64_t{3});
  }
  {
    // Rows 1+3 with preferred 2: the prefix that fits 2 is the first job only.
    Fixture f;
    f.config.preferred = {2};
    f.Add("one", 1);
    f.Add("three", 3);
    const auto d = f.Form(1000);
    CHECK_EQ(f.Batch(d), std::string("one"));
  }
}

void FixedDelayFromHeadArrival() {
  Fixture f;
  f.config.max_queue_delay_us = 1000;
  f.Add("a", 1, 0, 100);
  CHECK(IsWait(f.Form(100), 1100));
  f.Add("b", 1, 0, 900);  // a later arrival does not extend the head's delay
  CHECK(IsWait(f.Form(1099), 1100));
  CHECK(f.scratch.empty());
  const auto d = f.Form(1100);
  CHECK_EQ(f.Batch(d), std::string("a,b"));
  // now_only (the inline path): runs what is queued without waiting.
  Fixture g;
  g.Add("x", 1, 0, 0);
  CHECK_EQ(g.Batch(g.Form(1, /*now_only=*/true)), std::string("x"));
  // Zero delay: runs at once.
  Fixture z;
  z.config.max_queue_delay_us = 0;
  z.Add("x");
  CHECK_EQ(z.Batch(z.Form(0)), std::string("x"));
}

void AdaptiveReadiness() {
  BatchingConfig config;
  config.batching = true;
  config.adaptive = true;
  config.max_batch_size = 64;
  config.max_queue_delay_us = 8000;  // the cap
  SteadyTime wake;
  {
    // Sparse arrivals (p < 1/2): a lone request runs immediately.
    Estimator est;
    est.burst_share = 0.4;
    est.last_arrival = T(0);
    CHECK(formation::AdaptiveReady(config, est, T(0), T(0), 1, &wake));
    CHECK_EQ(est.DelayUs(config), 0.0);
  }
  {
    // No cap configured: never waits.
    BatchingConfig c = config;
    c.max_queue_delay_us = 0;
    Estimator est;
    est.burst_share = 1;
    CHECK(formation::AdaptiveReady(c, est, T(0), T(0), 1, &wake));
  }
  Estimator est;
  est.burst_share = 0.9;
  est.fixed_cost_us = 500;  // a
  est.burst_gap_us = 10;    // burst pause = min(a, max(8 × 10, 20)) = 80 µs
  est.typical_rows = 4;
  est.last_arrival = T(1000);
  CHECK_EQ(est.BurstPauseUs(config), 80.0);
  CHECK_EQ(est.DelayUs(config), 80.0);
  // A batch of its typical size runs once no request came for the burst pause.
  CHECK(!formation::AdaptiveReady(config, est, T(1079), T(900), 4, &wake));
  CHECK(wake == T(1080));
  CHECK(formation::AdaptiveReady(config, est, T(1080), T(900), 4, &wake));
  // Below the typical size the pause is at least cap / 8 (1000 µs).
  CHECK(!formation::AdaptiveReady(config, est, T(1999), T(900), 2, &wake));
  CHECK(wake == T(2000));
  CHECK(formation::AdaptiveReady(config, est, T(2000), T(900), 2, &wake));
  // The cap since the head arrived ends any wait, even while requests keep coming.
  est.last_arrival = T(8899);
  CHECK(!formation::AdaptiveReady(config, est, T(8899), T(900), 2, &wake));
  CHECK(wake == T(8900));
  CHECK(formation::AdaptiveReady(config, est, T(8900), T(900), 2, &wake));
  // The pause never exceeds a: a slow stream inside a burst.
  est.burst_gap_us = 1000;
  CHECK_EQ(est.BurstPauseUs(config), 500.0);
  // Through Form: the adaptive rule decides, full batches never wait.
  Fixture f;
  f.config = config;
  f.est = est;
  f.est.burst_gap_us = 10;
  f.est.last_arrival = T(1000);
  for (int i = 0; i < 4; ++i) f.Add("j" + std::to_string(i), 1, 0, 900);
  CHECK(IsWait(f.Form(1050), 1080));
  CHECK_EQ(f.Form(1080).count, size_t{4});
  f.config.max_batch_size = 4;
  CHECK_EQ(f.Form(1001).count, size_t{4});
}

void EstimatorUpdates() {
  BatchingConfig config;
  config.adaptive = true;
  config.max_queue_delay_us = 2000;
  Estimator est;
  CHECK_EQ(est.PredictWaitUs(10, 1), -1.0);  // nothing measured yet: no prediction
  // Arrivals 100 µs apart (< a = the cap while nothing is measured): a burst.
  for (int i = 0; i < 100; ++i) est.OnArrival(T(100.0 * i), config);
  CHECK(est.burst_share > 0.9);
  CHECK(std::fabs(est.burst_gap_us - 100) < 1);
  CHECK(std::fabs(est.DelayUs(config) - 800) < 10);  // min(a = the cap, 8 × the gap)
  // Then arrivals 1 s apart: sparse again, and the delay in effect drops to 0.
  for (int i = 0; i < 40; ++i) est.OnArrival(T(1e5 + 1e6 * i), config);
  CHECK(est.burst_share < 0.1);
  CHECK_EQ(est.DelayUs(config), 0.0);
  // Batches costing 100 µs + 10 µs per row: the fit's intercept is the fixed cost.
  for (int round = 0; round < 10; ++round) {
    for (int rows = 1; rows <= 8; ++rows) est.OnBatch(rows, static_cast<size_t>(rows), 100 + 10.0 * rows, true);
  }
  CHECK(std::fabs(est.fixed_cost_us - 100) < 1);
  // Compute per row: an EWMA over recent batches (the last one was 8 rows for 180 µs).
  CHECK(est.row_cost_us > 180.0 / 8 && est.row_cost_us < 110);
  // Admission's prediction: rows ahead × cost per row / instances.
  est.row_cost_us = 250;
  CHECK_EQ(est.PredictWaitUs(12, 1), 3000.0);
  CHECK_EQ(est.PredictWaitUs(12, 3), 1000.0);
  CHECK_EQ(est.PredictWaitUs(0, 2), 0.0);
  // Fixed delay: the configured one.
  BatchingConfig fixed;
  fixed.max_queue_delay_us = 1234;
  CHECK_EQ(Estimator().DelayUs(fixed), 1234.0);
}

void ComputePrediction() {
  // The inline decision's prediction (the same with or without the adaptive delay: batches
  // update the estimates either way).
  Estimator est;
  CHECK_EQ(est.PredictComputeUs(64), -1.0);  // nothing measured yet
  // One size only (a closed loop of 64): the slope is unknown; per row × rows.
  for (int i = 0; i < 20; ++i) est.OnBatch(64, 64, 64 * 2.0, true);
  CHECK_EQ(est.slope_us, -1.0);
  CHECK(std::fabs(est.PredictComputeUs(64) - 128) < 1e-9);
  CHECK(std::fabs(est.PredictComputeUs(32) - 64) < 1e-9);
  CHECK(est.typical_rows > 63);
  // Lone requests between full batches (a run costs 5 µs + 0.7 µs per row): the fit predicts
  // the full batch (49.8 µs) where the average per row, dragged up by the lone runs' fixed
  // cost, would predict several times that.
  for (int i = 0; i < 60; ++i) {
    est.OnBatch(1, 1, 5.7, true);
    est.OnBatch(64, 64, 5 + 0.7 * 64, true);
  }
  CHECK(std::fabs(est.PredictComputeUs(64) - 49.8) < 0.5);
  CHECK(std::fabs(est.PredictComputeUs(1) - 5.7) < 0.5);
  est.OnBatch(1, 1, 5.7, true);
  CHECK(est.row_cost_us * 64 > 150);  // what the per-row average alone would have said
  CHECK(std::fabs(est.PredictComputeUs(64) - 49.8) < 0.5);
  // Jobs that cannot share a run leave typical_rows and typical_jobs alone.
  const double typical = est.typical_rows, jobs = est.typical_jobs;
  est.OnBatch(1, 1, 5.7, false);
  CHECK_EQ(est.typical_rows, typical);
  CHECK_EQ(est.typical_jobs, jobs);
  // Requests per batch, apart from rows: one client sending 2-row requests alone.
  Estimator two;
  for (int i = 0; i < 20; ++i) two.OnBatch(2, 1, 6, true);
  CHECK(two.typical_rows > 1.9 && two.typical_jobs < 1.01);
  // Runs of 1–4 rows whose cost barely grows (fixed cost plus jitter): the fitted slope is tiny,
  // yet a batch of 64 is not predicted at ~10 µs: past the largest recent batch (4 rows) growth
  // is taken as at least proportional (10.04 µs × 64 / 4).
  Estimator flat;
  for (int round = 0; round < 10; ++round) {
    for (int rows = 1; rows <= 4; ++rows) flat.OnBatch(rows, static_cast<size_t>(rows), 10 + 0.01 * rows, true);
  }
  CHECK(flat.slope_us > 0 && flat.slope_us < 0.02);
  CHECK(std::fabs(flat.PredictComputeUs(4) - 10.04) < 0.01);
  CHECK(std::fabs(flat.PredictComputeUs(64) - 10.04 * 16) < 0.5);
}

void ExpiryDrop() {
  Fixture f;
  f.Add("old", 1, 0, 0).deadline = T(500);
  f.Add("live", 1, 0, 10).deadline = T(3000);
  f.Add("late", 1, 0, 20).deadline = T(700);
  f.Add("hi", 1, 1, 30).deadline = T(400);
  // At 600: old and hi expired (whatever the outcome); the head is `live`, waiting its delay
  // (until 1010), but the wait ends at the earliest live deadline (late, 700).
  auto d = f.Form(600);
  CHECK_EQ(f.Expired(), std::string("old,hi"));
  CHECK(IsWait(d, 700));
  // The caller took the expired jobs out; at 700 `late` expires too, and the delay since `live`
  // arrived (1010) is the next wake.
  f.queues[0].remove_if([](const Job* j) { return j->name == "old"; });
  f.queues[1].clear();
  f.expired.clear();
  d = f.Form(700);
  CHECK_EQ(f.Expired(), std::string("late"));
  CHECK(IsWait(d, 1010));
  f.queues[0].remove_if([](const Job* j) { return j->name == "late"; });
  f.expired.clear();
  d = f.Form(1010);
  CHECK_EQ(f.Batch(d), std::string("live"));
  CHECK(f.expired.empty());
  // Expired jobs never join a batch formed in the same step.
  Fixture g;
  g.Add("a", 1, 0, 0);
  g.Add("gone", 1, 0, 0).deadline = T(5);
  g.Add("b", 1, 0, 0);
  d = g.Form(2000);
  CHECK_EQ(g.Batch(d), std::string("a,b"));
  CHECK_EQ(g.Expired(), std::string("gone"));
  // Everything expired: idle.
  Fixture h;
  h.Add("x").deadline = T(1);
  CHECK(h.Form(1).outcome == formation::Outcome::kIdle);
  CHECK_EQ(h.Expired(), std::string("x"));
}

void JobsThatRunAlone() {
  Fixture f;
  f.Add("solo", -1, 0, 0);  // cannot share a run (strings, mismatched dim 0, ...)
  f.Add("a", 1, 0, 1);
  f.Add("b", 1, 0, 2);
  auto d = f.Form(0);  // runs at once, alone: nothing to wait for
  CHECK_EQ(f.Batch(d), std::string("solo"));
  CHECK_EQ(d.rows, int64_t{0});
  // Behind a batchable head, a job that runs alone is skipped, not taken into the batch.
  Fixture g;
  g.Add("a", 1, 0, 0);
  g.Add("solo", -1, 0, 1);
  g.Add("b", 1, 0, 2);
  CHECK_EQ(g.Batch(g.Form(1000)), std::string("a,b"));
}

void ScratchIsReused() {
  Fixture f;
  f.scratch.reserve(16);
  const Job* const* data = f.scratch.data();
  for (int i = 0; i < 5; ++i) f.Add("j" + std::to_string(i));
  for (int step = 0; step < 5; ++step) {
    f.Form(10);  // waits: the scratch is cleared, not freed
    f.Form(5000);
  }
  CHECK(f.scratch.data() == data);
}

}  // namespace

int main() {
  EmptyQueueIsIdle();
  HighPriorityFirstFifoWithinLevel();
  HeadKeyOnly();
  NeverSplitAJobAndNoOvertaking();
  MaxRowsRunsAtOnce();
  PreferredSizes();
  FixedDelayFromHeadArrival();
  AdaptiveReadiness();
  EstimatorUpdates();
  ComputePrediction();
  ExpiryDrop();
  JobsThatRunAlone();
  ScratchIsReused();
  return nimify_test::Finish();
}
