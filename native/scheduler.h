// Scheduler: nimify's dynamic batcher. Requests (RunJobs) wait in a bounded two-level priority
// queue; each instance has a thread that forms a batch from compatible jobs, runs it on its
// session (gather → Run → scatter, see batch.h / instance.h) and hands the whole batch back to
// the JS thread with one wake-up. The JS thread only validates, enqueues (Submit) and settles
// promises.
//
// Wakes are deferred to the end of the loop turn (deferred_wake.h): the requests one turn
// delivers cost one wake together. At that point, with `inline_below_us` set, a batch whose
// predicted compute (Estimator::PredictComputeUs: the fit's a + b × rows while recent batch
// sizes vary, else recent cost per row × rows) is that cheap runs on the JS thread itself, on
// its own Instance over the model's inline session (SessionCore::inline_session: a
// single-threaded copy of the model, else the primary session): no thread hop either way. A lone request (nothing
// queued or running) runs inline at once, inside Submit, and its promise settles there — the
// first of its turn, or a sequential client's next one (Submit and DeferredWakes::MarkLoneRun
// say how that is told apart, and how long it may go on) — unless recent batches held several
// requests (typical_jobs ≥ 1.5): then the rest of its group is coming in the same turn and it
// waits for them. An end-of-turn batch's promises settle through the completion channel, in a
// later dispatch of the same loop (RunInline says why), and one wake runs at most about
// inline_below_us of them. Models too slow for that keep the instance threads.
//
// Batch formation (one instance thread at a time looks at the queue, under `mu_`; the rules are
// encoded once, in the pure function formation::Form of formation.h, unit-tested with a fake
// clock in test/native/formation_test.cc):
//  - the head is the oldest high-priority job, else the oldest normal one; the batch takes
//    jobs with the head's BatchKey, high priority first, FIFO within a level, up to
//    max_batch_size rows (a job is never split);
//  - it runs at once when full (max rows, or the next compatible job would not fit) or when it
//    reaches the largest preferred batch size; otherwise it waits for company until the delay
//    has passed since the head arrived, then runs the largest preferred size it can fill (or
//    everything it has when no preferred size fits);
//  - jobs that cannot share a run (no batch dim, strings, ...) run alone through the same queue;
//  - jobs past their deadline are dropped with TIMEOUT before they are run, never computed (an
//    instance waiting out a delay wakes at the earliest queued deadline to do so).
//
// Adaptive delay (`adaptive: true`). Waiting is worth it only if another request is likely to
// arrive before the run that waiting would save is over. The scheduler keeps:
//   a  — the fixed cost of one run: the intercept of a decayed least-squares fit of compute
//        time against batch rows over recent batches;
//   p  — the share of recent arrivals that came less than `a` after the previous one (EWMA).
// When p < 1/2, arrivals are sparse: a lone request runs immediately (no needless delay).
// Otherwise the instance keeps waiting while the stream keeps coming, and runs when the burst
// is over: no request for min(a, 8 × the usual in-burst gap) once the batch holds as many rows
// as recent batches did (an EWMA: a closed loop of C clients sends its C requests back
// together), and for at least cap/8 before that (the floor keeps a briefly descheduled JS
// thread from splitting a burst). It also runs when full, or when the configured max_queue_delay (the cap) has passed
// since the head arrived. So a closed loop of C clients fills batches of about C without
// waiting long for stragglers, and sparse traffic sees no added latency, without tuning.
//
// Admission (Submit, JS thread). A request is refused at once with QUEUE_FULL (HTTP 503) when
// the queue holds max_queue_size requests, or when it has a deadline (timeout_us > 0) that its
// predicted queue wait already exceeds — waiting would only end in TIMEOUT, after holding a
// queue slot and the client. The prediction (Estimator::PredictWaitUs) is
//   W = R × c / I
// R — rows queued ahead of it: every queued row for a normal request, the high-priority rows
//     for a high one (each job counts max(rows, 1), as `queued_rows_`);
// c — recent compute time per row: the EWMA over recent batches of (gather + run + scatter) /
//     rows (the inline path falls back to it too); with no batch measured yet nothing is predicted
//     and only the depth bound applies;
// I — instances, which drain the queue in parallel.
// Batches running now are not counted (their remaining time is unknown), so W leans low while
// the queue is short; c measured on small batches leans high when a backlog would form larger
// ones. The error carries `retryAfterMs` = ceil(W / 1000) (also on a depth-bound refusal once c
// is known) for the server's Retry-After. Refusals count in RequestCounts::rejected.
//
// Ownership: Session holds a shared_ptr; every queued or running job holds another (so a
// model dropped by JS mid-flight keeps its scheduler until the last job is delivered). The
// destructor stops and joins the instance threads and the deadline watchdog; it runs on the JS
// thread (jobs are deleted there), never on one of those threads, which hold no owning
// reference. Env teardown calls Shutdown through EnvState::schedulers.
#pragma once

#include <napi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "env_state.h"
#include "errors.h"
#include "formation.h"
#include "histogram.h"
#include "instance.h"
#include "run_job.h"

namespace nimify {

class Scheduler : public std::enable_shared_from_this<Scheduler> {
 public:
  using Clock = std::chrono::steady_clock;

  // Why dim 0 of `core`'s inputs and outputs cannot be a batch dim (the first input or output
  // that is not a numeric tensor with a dynamic first dim), or "" when it can. The one rule:
  // Create applies it, and describe() reports it so that TypeScript never restates it.
  static std::string BatchDimProblem(const SessionCore& core);

  // JS thread. `instances[0]` is the model's primary session. Fails (INVALID_ARGUMENT) when
  // batch_dim forces batching on a model whose inputs/outputs have no dynamic first dim.
  static std::shared_ptr<Scheduler> Create(Napi::Env env, std::vector<std::shared_ptr<SessionCore>> instances,
                                           const BatchingConfig& config, Failure* failure);
  ~Scheduler();

  // Whether jobs should be prepared with a BatchKey.
  bool batches() const { return batchable_; }
  // JS thread: queues the job, whose promise is `ticket`'s (settlement.h), and returns true; or
  // returns false with QUEUE_FULL / INVALID_ARGUMENT / DISPOSED thrown. `timeout_us` > 0 sets a
  // deadline after which the job is dropped before running, and refuses it at once when its
  // predicted wait exceeds that (see "Admission" above).
  bool Submit(Napi::Env env, RunJob::Ptr job, int32_t ticket, double cancel_id, int priority, double timeout_us);
  // JS thread, from DeferredWakes at the end of the loop turn in which Submit deferred a wake
  // (`env` null: the env is closing). Runs a cheap batch right here when inline_below_us allows,
  // else wakes an instance thread.
  void WakeDeferred(napi_env env);
  // Deadlines (a job's deadline is its timeout_us from Submit): a queued job is dropped at its
  // deadline (by an idle instance thread in Form, else by the watchdog thread, up to
  // kWatchdogSlack late); a running job is cancelled with TIMEOUT at its deadline by the
  // watchdog, as Cancel does (its batch is terminated once every job in it is cancelled), and a
  // job whose batch completes after its deadline settles with TIMEOUT. No JS timer is needed for
  // a scheduled request's timeout.
  static constexpr std::chrono::milliseconds kWatchdogSlack{1};

  // JS thread: abort/timeout. A queued job leaves the queue and is settled at once; a running
  // one is marked (its batch is terminated when every job in it is cancelled).
  void Cancel(RunJob* job, const char* code);
  // JS thread (dispose): every queued job is settled with `code`; running batches finish.
  void RejectQueued(const char* code);
  // JS thread: stops accepting, settles queued jobs with `code`, terminates running batches and
  // joins the instance threads. Idempotent.
  void Shutdown(const char* code);
  // JS thread: the queue, batch and timing figures (request outcomes are SessionStats::requests).
  Napi::Object Stats(Napi::Env env);
  // JS thread: zeroes the cumulative figures of Stats (counters, batch sizes, histograms, copy
  // and time sums); current figures (queue depth, in flight) and the estimates stay.
  void ResetStats();

 private:
  Scheduler(std::shared_ptr<EnvState> state, const BatchingConfig& config);
  void Loop(size_t instance);
  // Under mu_: the adapter over formation::Form. Takes the batch it picks out of the queue (true),
  // or says until when to sleep (false). Expired jobs are cancelled with TIMEOUT, taken out and
  // appended to `dropped`. `now_only`: take the batch the queue holds now, without waiting for
  // company. Creates no run options (the caller's PrepareRun does, still under mu_).
  bool Form(Clock::time_point now, Batch* batch, std::vector<RunJob*>* dropped, Clock::time_point* wake,
            bool now_only = false);
  // JS thread: runs one batch on inline_ when its predicted compute time allows. Returns whether
  // it ran (or dropped) anything. `settle_here`: settle its promises now, inside this call (a
  // lone request, from Submit); otherwise they go through the env's completion channel
  // (RunJob::PostCompleted), as an instance's batches do. That is what WakeDeferred needs: it
  // runs inside the DeferredWakes threadsafe function's callback, and Node keeps dispatching
  // that function's queue (up to 1,000 messages in one loop phase) while messages keep coming.
  // Settled right there, a closed loop of clients would answer every settlement with new
  // requests, whose deferred wake is the next message: inline batches chained back to back
  // without the loop ever reaching its timers (measured: event-loop delay p99 240 ms with 64
  // clients of a tiny model). Through the channel, each settlement waits for its own dispatch,
  // so the chain yields to the rest of the loop at least every other batch.
  // `ran` (optional): set to whether a batch ran (false when it only dropped expired jobs).
  bool RunInline(napi_env env, bool settle_here, bool* ran = nullptr);
  // The rows a batch of `rows` runs with (BatchingConfig::pad_to_preferred: the smallest preferred
  // size, else max_batch_size, that holds them; `rows` itself without padding). The one rule for
  // PrepareRun (what runs) and RunInline (what it is predicted to cost). Under mu_ or on the JS
  // thread (reads only the immutable config).
  int64_t PaddedRows(int64_t rows) const;
  void Take(RunJob* job);    // under mu_: unlink from its queue
  // Under mu_: a queued job past its deadline leaves its queue cancelled with TIMEOUT (the
  // caller posts it). Form's expiry and the watchdog's.
  void DropExpired(RunJob* job);
  // Under mu_: marks a running job of `batch` cancelled (once, whatever the reasons: an abort and
  // then its deadline count one) and terminates the batch's run when every job is.
  void CancelRunning(RunJob* job, Batch* batch, const char* code);
  // Under mu_, right after `batch` joined running_: makes the watchdog wake by the earliest
  // deadline among its jobs.
  void WatchDeadlines(const Batch& batch);
  // Under mu_: the watchdog wakes by `when` + kWatchdogSlack (a wake already earlier stays).
  void WatchUntil(Clock::time_point when);
  // Under mu_, after `batch` left running_: its jobs past their deadline settle with TIMEOUT.
  static void ExpireLate(const Batch& batch, Clock::time_point now);
  // The watchdog thread: sleeps until the earliest deadline of a running or queued job, then
  // cancels the running jobs past theirs and drops such queued ones (settled with TIMEOUT, as
  // Form drops them; this covers the time every instance thread is busy running). Started by
  // Create with the instance threads; joined by Shutdown.
  void Watchdog();
  bool NeedsWake() const;    // under mu_: a sleeping instance thread must look at the queue now
  // Creates the batch's run options; on failure every job of the batch fails (and the instance
  // skips the run, since the jobs already hold a failure). Always returns to the caller.
  bool PrepareRun(Batch* batch);
  void Record(const Batch& batch, const Instance::Timing& timing, const CopyCounts& counts);  // under mu_
  // The thread that ran the batch, before it posts the jobs back: gives each traced job (RunJob::
  // TraceInto) the batch's times and shape. `instance`: its index, -1 for the JS thread's inline_.
  static void TraceBatch(const Batch& batch, const Instance::Timing& timing, int instance);
  size_t queued() const { return queues_[0].size() + queues_[1].size(); }

  const std::shared_ptr<EnvState> state_;
  const BatchingConfig config_;
  bool batchable_ = false;
  std::shared_ptr<SessionCore> primary_;
  std::vector<std::unique_ptr<Instance>> instances_;
  // The JS thread's own instance (the primary session with its own staging): only when
  // inline_below_us > 0. Used only on the JS thread, so it needs no lock of its own.
  std::unique_ptr<Instance> inline_;
  std::vector<std::thread> threads_;
  std::thread watchdog_;  // started by Create, joined by Shutdown

  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::list<RunJob*> queues_[2];  // [0] normal, [1] high priority
  // List nodes taken out of the queues (Take), reused by Submit: a queued request allocates none.
  std::list<RunJob*> spare_nodes_;
  std::unordered_set<Batch*> running_;
  bool stopping_ = false;
  bool wake_deferred_ = false;  // JS thread only: a wake is pending in EnvState::wakes
  size_t untimed_waiters_ = 0;  // instance threads sleeping until notified
  bool spinning_ = false;       // one idle instance thread polls `arrivals_` before sleeping
  std::atomic<uint64_t> arrivals_{0};
  size_t timed_waiters_ = 0;    // instance threads sleeping until a delay expires
  int64_t queued_rows_ = 0;     // an upper bound on any batch the queue could form now
  int64_t queued_rows_high_ = 0;  // of those, the high-priority queue's (admission)
  size_t in_flight_ = 0;        // jobs in running batches
  size_t deadlines_ = 0;        // queued jobs with a deadline (skip the expiry scan when 0)
  std::condition_variable watchdog_cv_;
  Clock::time_point watchdog_wake_ = Clock::time_point::max();  // the watchdog's next look
  std::vector<RunJob*> candidates_;  // formation::Form's scratch list (reused: no allocation per formation)

  // The adaptive delay's, the inline path's and admission's estimates (see the top of this file).
  Estimator est_;

  // Stats (cumulative; ResetStats zeroes them).
  uint64_t batches_ = 0;
  uint64_t inline_batches_ = 0;  // batches run on the JS thread (inline_below_us)
  uint64_t padding_rows_ = 0;    // zero rows added by pad_to_preferred, summed over batches
  uint64_t wakes_ = 0;           // instance threads notified by the JS thread
  std::vector<uint64_t> batch_sizes_;  // index = rows (or 1 for a job that runs alone)
  LogHistogram queue_us_, compute_us_;
  double input_us_ = 0, infer_us_ = 0, output_us_ = 0;
  CopyCounts copies_;
};

}  // namespace nimify
