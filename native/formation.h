// Batch formation as a pure function, and the estimates it and queue admission read.
//
// Formation (formation::Form) decides, from the two priority queues, the time `now`, the
// batching policy and the delay estimator's state: the next batch to run, the jobs past their
// deadline, or until when to wait for company. It reads no clock, takes no lock, calls no ORT and
// allocates nothing beyond the caller's reusable scratch vectors; it does not touch the queues
// either (the caller takes the jobs it names out of them). The Scheduler calls it under its mutex
// (scheduler.cc Scheduler::Form); test/native/formation_test.cc calls it with plain structs and a
// fake clock. The rules (FIFO within a priority, the head's BatchKey, never split a job, max rows,
// preferred sizes, the fixed or adaptive delay, expiry) are described in scheduler.h and encoded
// only here.
//
// Estimator: the adaptive delay's and the admission's measurements (arrival gaps, compute time
// per batch). The Scheduler owns one, updates it under its mutex on every arrival (OnArrival,
// JS thread) and every finished batch (OnBatch, instance or JS thread), and reads it there.
//
// No napi, no ORT, no scheduler types in this header: the unit test compiles formation.cc alone.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace nimify {

using SteadyTime = std::chrono::steady_clock::time_point;

// The batching policy of one model (options.batching, parsed in session.cc ParseScheduling).
struct BatchingConfig {
  bool batching = false;          // false: every job runs alone (queue, priorities, instances only)
  int64_t max_batch_size = 1;
  int64_t max_queue_delay_us = 0;
  std::vector<int64_t> preferred;  // ascending, each <= max_batch_size
  size_t max_queue_size = SIZE_MAX;
  bool adaptive = false;
  int batch_dim = -1;  // -1: detect from the model; 1: dim 0 is the batch dim; 0: no batch dim
  // An idle instance thread polls for the next arrival for a few µs before sleeping (saves the
  // futex wake in a closed loop; costs a core the JS thread may need: off when allowSpinning is false).
  bool spin = true;
  // options.inlineBelowMicros (a model-level option, carried here for the scheduler): run a
  // batch on the JS thread itself, at the end of the loop turn that queued it, when its
  // predicted compute time is at most this (µs; 0 = never). For models whose run is shorter than
  // the two thread hops it saves (wake an instance thread, wake the JS thread with the results).
  double inline_below_us = 0;
  // Pad every batch with zero rows up to the smallest preferred size (or max_batch_size) that
  // holds it, so the model only ever sees those shapes: CUDA graphs and TensorRT profiles are
  // built for them once and reused. Padding rows are computed and dropped, never scattered.
  bool pad_to_preferred = false;
};

// What the adaptive delay and queue admission know about the model's traffic and cost (see the
// top of scheduler.h for what each estimate means).
struct Estimator {
  SteadyTime last_arrival{};
  double burst_share = 0;     // p: share of recent arrivals less than `a` after the previous one
  double fixed_cost_us = -1;  // a: fixed cost of one run; -1 until the first batch is measured
  double slope_us = -1;       // b: compute per row from the same fit; -1 while batch sizes do not vary
  double row_cost_us = -1;    // recent compute per row (EWMA); -1 until a batch ran
  double typical_rows = 0;    // EWMA of recent batch sizes (rows)
  double typical_jobs = 0;    // EWMA of recent requests per batch (the inline path's lone-request rule)
  double max_rows = 0;        // decayed maximum of recently computed rows (PredictComputeUs)
  double burst_gap_us = 0;    // EWMA of the gaps between arrivals inside bursts (< a)
  double s0 = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;  // decayed regression sums (compute vs rows)

  // A request arrived at `now`.
  void OnArrival(SteadyTime now, const BatchingConfig& config);
  // A batch of `rows` rows (1 for a job that ran alone) from `jobs` requests took `compute_us`
  // (gather + run + scatter), computing `computed_rows` rows (more than `rows` when padded; -1:
  // `rows`). Batch sizes (typical_rows, typical_jobs) follow the requests; the cost estimates
  // follow the computed rows.
  void OnBatch(int64_t rows, size_t jobs, double compute_us, bool batchable, int64_t computed_rows = -1);
  // The pause that ends a burst (µs), for a batch that already has its typical size.
  double BurstPauseUs(const BatchingConfig& config) const;
  // The queue delay in effect now (µs): the configured one, or adaptive's current estimate (0
  // while arrivals are sparse). For stats.
  double DelayUs(const BatchingConfig& config) const;
  // Predicted compute (µs) of one run of `rows` rows, for the inline decision: a + b × rows from
  // the fit while recent batch sizes vary, else recent compute per row × rows. Beyond the largest
  // recent batch (max_rows) the fit's slope is not trusted to stay small: never less than that
  // batch's prediction scaled by rows / max_rows. -1 while no batch has been measured.
  double PredictComputeUs(int64_t rows) const;
  // Predicted queue wait (µs) of a request with `rows_ahead` rows queued before it, on
  // `instances` instances: rows_ahead × row_cost_us / instances (see scheduler.h, "Admission").
  // -1 while no batch has been measured.
  double PredictWaitUs(int64_t rows_ahead, size_t instances) const;
};

namespace formation {

// What formation reads of a queued job.
struct JobView {
  // Rows on the batch dim, or -1: the job cannot share a run and runs alone.
  int64_t rows = -1;
  // Non-batch dims and fetched outputs: jobs share a run only when these are equal.
  const std::vector<int64_t>* key = nullptr;
  SteadyTime enqueued{};
  SteadyTime deadline = SteadyTime::max();  // max(): none
};

enum class Outcome {
  kIdle,  // nothing (live) is queued: sleep until a request arrives
  kWait,  // a batch is forming: sleep until `wake` (or until a request arrives)
  kRun,   // run the first `count` jobs of `scratch` now
};

struct Decision {
  Outcome outcome = Outcome::kIdle;
  SteadyTime wake = SteadyTime::max();  // kWait
  size_t count = 0;                      // kRun: jobs to take, from the start of `scratch`
  int64_t rows = 0;                      // kRun: their rows (0 for a job that runs alone)
};

// True when the adaptive policy runs a batch of `rows` rows whose head arrived at `head_enqueued`
// now; else false with `*wake` set to when it will (unless another request arrives first).
bool AdaptiveReady(const BatchingConfig& config, const Estimator& est, SteadyTime now, SteadyTime head_enqueued,
                   int64_t rows, SteadyTime* wake);

// The next formation step. `queues[0]` holds normal, `queues[1]` high-priority jobs, oldest
// first (any container of Job iterable in order); `view(job)` gives a job's JobView.
// `batchable`: the model has a batch dim (else every job runs alone). `check_deadlines`: some
// queued job has a deadline (when false, expiry is not looked for). `now_only`: run what the
// queue holds now, never wait for company (the inline path at the end of a loop turn).
// Appends the jobs whose deadline is <= now to `expired` (whatever the outcome; they are skipped
// by the rest of formation), and overwrites `scratch` (kRun: the batch is its first `count` jobs,
// in run order). With deadlines, kWait's wake is never later than the earliest live deadline, so
// a waiting instance drops an expired job on time.
template <class Job, class Queue, class View>
Decision Form(const Queue (&queues)[2], const View& view, SteadyTime now, const BatchingConfig& config, bool batchable,
              const Estimator& est, bool check_deadlines, bool now_only, std::vector<Job>* scratch,
              std::vector<Job>* expired) {
  Decision d;
  scratch->clear();
  SteadyTime next_deadline = SteadyTime::max();
  if (check_deadlines) {
    for (const Queue& q : queues) {
      for (const Job& job : q) {
        const SteadyTime deadline = view(job).deadline;
        if (deadline <= now) {
          expired->push_back(job);
        } else if (deadline < next_deadline) {
          next_deadline = deadline;
        }
      }
    }
  }
  auto live = [&](const JobView& v) { return !check_deadlines || v.deadline > now; };
  // The head: the oldest live high-priority job, else the oldest live normal one.
  const Job* head = nullptr;
  JobView hv;
  for (int level = 1; level >= 0 && head == nullptr; --level) {
    for (const Job& job : queues[level]) {
      const JobView v = view(job);
      if (!live(v)) continue;
      head = &job;
      hv = v;
      break;
    }
  }
  if (head == nullptr) return d;
  if (!batchable || hv.rows < 0) {
    scratch->push_back(*head);
    d.outcome = Outcome::kRun;
    d.count = 1;
    return d;
  }
  // Candidates: live jobs with the head's key, high priority first, FIFO within a level, while
  // they fit (a job is never split, and the first that does not fit ends the scan: no later,
  // smaller job overtakes it).
  const int64_t max = config.max_batch_size;
  int64_t rows = 0;
  bool saturated = false;
  for (int level = 1; level >= 0 && !saturated; --level) {
    for (const Job& job : queues[level]) {
      const JobView v = view(job);
      if (v.rows < 0 || !live(v) || *v.key != *hv.key) continue;
      if (rows + v.rows > max) {
        saturated = true;
        break;
      }
      rows += v.rows;
      scratch->push_back(job);
    }
  }
  if (scratch->empty()) {
    // The head alone exceeds max_batch_size (Scheduler::Submit refuses such jobs): it runs alone
    // rather than never.
    scratch->push_back(*head);
    d.outcome = Outcome::kRun;
    d.count = 1;
    d.rows = hv.rows;
    return d;
  }
  int64_t limit = max;
  const bool full = saturated || rows >= max || (!config.preferred.empty() && rows == config.preferred.back());
  if (!full) {
    bool ready = true;
    SteadyTime wake = SteadyTime::max();
    if (now_only) {
      // The caller runs what is here now.
    } else if (config.adaptive) {
      ready = AdaptiveReady(config, est, now, hv.enqueued, rows, &wake);
    } else {
      wake = hv.enqueued + std::chrono::duration_cast<SteadyTime::duration>(
                               std::chrono::duration<double, std::micro>(static_cast<double>(config.max_queue_delay_us)));
      ready = now >= wake;
    }
    if (!ready) {
      scratch->clear();
      d.outcome = Outcome::kWait;
      d.wake = wake < next_deadline ? wake : next_deadline;
      return d;
    }
    // The delay is over: run the largest preferred size this batch fills, if any. A preferred
    // size smaller than the first job does not count (the job is never split): with none left,
    // everything gathered runs.
    const int64_t first = view(scratch->front()).rows;
    for (auto p = config.preferred.rbegin(); p != config.preferred.rend(); ++p) {
      if (*p <= rows && *p >= first) {
        limit = *p;
        break;
      }
    }
  }
  int64_t taken = 0;
  size_t count = 0;
  for (const Job& job : *scratch) {
    const int64_t r = view(job).rows;
    if (taken + r > limit) break;
    taken += r;
    count++;
  }
  d.outcome = Outcome::kRun;
  d.count = count;
  d.rows = taken;
  return d;
}

}  // namespace formation
}  // namespace nimify
