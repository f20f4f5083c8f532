#include "scheduler.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <system_error>

#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "deferred_wake.h"
#include "ort_api.h"
#include "tensor_io.h"

namespace nimify {

namespace {

using Clock = std::chrono::steady_clock;
using Micros = std::chrono::duration<double, std::micro>;

// Why a model input/output cannot carry a batch dim, or "" when it can.
std::string NoBatchDim(const IoInfo& io, bool is_output) {
  if (!io.is_tensor) return TensorName(io, is_output) + " is not a tensor";
  if (io.elem == ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING) return TensorName(io, is_output) + " holds strings";
  if (!io.has_shape || io.shape.empty()) return TensorName(io, is_output) + " has no first dim";
  if (io.shape[0] >= 0) {
    return TensorName(io, is_output) + " has a fixed first dim (" + std::to_string(io.shape[0]) + ")";
  }
  return "";
}

// How long an idle instance thread polls for work before sleeping.
constexpr int kSpinMicros = 50;

inline void Pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

Clock::duration FromMicros(double us) {
  return std::chrono::duration_cast<Clock::duration>(Micros(us));
}

// "12.5 ms": a duration in µs, for messages.
std::string FormatMs(double us) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f ms", us / 1000);
  return buf;
}

}  // namespace

Scheduler::Scheduler(std::shared_ptr<EnvState> state, const BatchingConfig& config)
    : state_(std::move(state)), config_(config) {}

std::string Scheduler::BatchDimProblem(const SessionCore& core) {
  for (const IoInfo& io : core.inputs()) {
    std::string why = NoBatchDim(io, false);
    if (!why.empty()) return why;
  }
  for (const IoInfo& io : core.outputs()) {
    std::string why = NoBatchDim(io, true);
    if (!why.empty()) return why;
  }
  return "";
}

std::shared_ptr<Scheduler> Scheduler::Create(Napi::Env env, std::vector<std::shared_ptr<SessionCore>> instances,
                                             const BatchingConfig& config, Failure* failure) {
  std::shared_ptr<Scheduler> s(new Scheduler(GetAddonData(env)->state, config));
  s->primary_ = instances[0];
  if (config.batching && config.batch_dim != 0) {
    const std::string why = BatchDimProblem(*s->primary_);
    if (!why.empty() && config.batch_dim == 1) {
      failure->Set(code::kInvalidArgument, "options.batching.batchDim is true but " + why);
      return nullptr;
    }
    s->batchable_ = why.empty();
  }
  s->batch_sizes_.assign(static_cast<size_t>(s->batchable_ ? config.max_batch_size : 1) + 1, 0);
  for (auto& core : instances) s->instances_.push_back(std::make_unique<Instance>(core, MakeStaging(*core)));
  if (config.inline_below_us > 0) {
    const std::shared_ptr<SessionCore>& core = s->primary_->inline_session(s->primary_);
    s->inline_ = std::make_unique<Instance>(core, MakeStaging(*core));
  }
  s->state_->schedulers.insert(s.get());
  // Threads start here, not on a request's path: a thread limit (EAGAIN) fails the load cleanly
  // (returning null destroys `s`, whose Shutdown joins what did start).
  try {
    for (size_t i = 0; i < s->instances_.size(); ++i) s->threads_.emplace_back([raw = s.get(), i] { raw->Loop(i); });
    s->watchdog_ = std::thread([raw = s.get()] { raw->Watchdog(); });
  } catch (const std::system_error& e) {
    failure->Set(code::kInternal, std::string("could not start the model's scheduler threads: ") + e.what());
    return nullptr;
  }
  return s;
}

Scheduler::~Scheduler() {
  Shutdown(code::kDisposed);
  state_->schedulers.erase(this);
}

bool Scheduler::Submit(Napi::Env env, RunJob::Ptr job, int32_t ticket, double cancel_id, int priority,
                       double timeout_us) {
  // `retry_ms` >= 0: the predicted wait, attached as `retryAfterMs` for the server's Retry-After.
  auto reject = [&](const char* c, const std::string& msg, double retry_ms = -1) {
    job->ReleaseRefs(env);
    Napi::Error e = MakeError(env, c, msg);
    if (retry_ms >= 0) e.Set("retryAfterMs", Napi::Number::New(env, retry_ms));
    e.ThrowAsJavaScriptException();
    return false;
  };
  const int level = priority > 0 ? 1 : 0;
  if (batchable_ && job->batch_key().rows > config_.max_batch_size) {
    return reject(code::kInvalidArgument, "feeds: the batch dim holds " + std::to_string(job->batch_key().rows) +
                                              " rows; batching.maxBatchSize is " +
                                              std::to_string(config_.max_batch_size));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return reject(code::kDisposed, "model has been disposed");
    // Admission (see scheduler.h): the depth bound, then the predicted wait against the deadline.
    const bool full = queued() >= config_.max_queue_size;
    const int64_t ahead = level == 1 ? queued_rows_high_ : queued_rows_;
    const double wait_us = full || timeout_us > 0 ? est_.PredictWaitUs(ahead, instances_.size()) : -1;
    const double retry_ms = wait_us < 0 ? -1 : std::ceil(wait_us / 1000);
    if (full) {
      primary_->stats.requests.rejected++;
      return reject(code::kQueueFull,
                    "queue full: " + std::to_string(queued()) +
                        " requests are waiting (batching.maxQueueSize); retry later",
                    retry_ms);
    }
    if (timeout_us > 0 && wait_us > timeout_us) {
      primary_->stats.requests.rejected++;
      return reject(code::kQueueFull,
                    "queue full: the predicted queue wait (" + FormatMs(wait_us) + " for " + std::to_string(ahead) +
                        " rows ahead) exceeds the request's timeoutMs (" + FormatMs(timeout_us) +
                        "); retry later",
                    retry_ms);
    }
  }
  // Only this (JS) thread adds to the queue, so the size checked above still holds below.
  primary_->stats.requests.admitted++;
  job->Attach(env, ticket, cancel_id);
  RunJob* raw = job.release();
  RunJob::Queueing& qs = raw->queueing();
  qs.scheduler = shared_from_this();
  qs.priority = level;
  const Clock::time_point now = Clock::now();
  qs.enqueued = now;
  if (timeout_us > 0) qs.deadline = now + FromMicros(timeout_us);
  const int64_t rows = std::max<int64_t>(raw->batch_key().rows, 1);
  bool notify = false;
  bool alone = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    est_.OnArrival(now, config_);
    std::list<RunJob*>& q = queues_[qs.priority];
    if (spare_nodes_.empty()) {
      qs.pos = q.insert(q.end(), raw);
    } else {
      q.splice(q.end(), spare_nodes_, spare_nodes_.begin());
      qs.pos = std::prev(q.end());
      *qs.pos = raw;
    }
    qs.queued = true;
    arrivals_.fetch_add(1, std::memory_order_release);
    queued_rows_ += rows;
    if (level == 1) queued_rows_high_ += rows;
    if (qs.deadline != Clock::time_point::max()) {
      deadlines_++;
      WatchUntil(qs.deadline);
    }
    notify = NeedsWake();
    // Requests that come in groups (recent batches hold several requests: a closed loop of C
    // clients sends its C requests back together) are not alone even when first: the group
    // follows.
    alone = queued() == 1 && in_flight_ == 0 && !(batchable_ && est_.typical_jobs >= 1.5);
  }
  if (!notify) return true;
  // Deferred to the end of this loop turn (deferred_wake.h) so that the requests a turn
  // delivers cost one wake together; the wake happens before the loop can block.
  if (DeferredWakes* wakes = state_->wakes) {
    const bool first_of_turn = !wake_deferred_;
    if (first_of_turn) {
      wake_deferred_ = true;
      wakes->Add(shared_from_this());
    }
    // The env's turn: from its first Submit to the next DeferredWakes message (every model's).
    wakes->OpenTurn(state_.get(), now);
    // A lone request, cheap enough, runs inline now rather than at the end of the turn (a lone
    // client gets its answer in this same callback): the first of its turn, or a sequential
    // client's next request, submitted as the previous lone result reached it
    // (DeferredWakes::MarkLoneRun) — for at most inline_below_us since the env's turn began
    // (whatever models the client alternates between), after which it waits for the end of the
    // turn and the loop moves on. Never the rest of a burst one loop is submitting after a lone
    // run (lone_awaiting), nor the other requests of the turn (other callbacks): they are
    // batched at the end of the turn.
    bool ran = false;
    if (alone && inline_ != nullptr && DeferredWakes::MayRunLone(*state_, first_of_turn, now, config_.inline_below_us)) {
      RunInline(env, true, &ran);
      if (ran) DeferredWakes::MarkLoneRun(env);
    }
    return true;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    wakes_++;
  }
  cv_.notify_one();
  return true;
}

bool Scheduler::NeedsWake() const {
  // Sleeping instances: one with nothing to do must look now; one waiting out a delay needs
  // waking only once a batch could be full (its own deadline covers the rest).
  const int64_t trigger = config_.preferred.empty() ? config_.max_batch_size
                                                    : std::min(config_.max_batch_size, config_.preferred.back());
  if (queued() == 0) return false;
  return untimed_waiters_ > 0 || (timed_waiters_ > 0 && queued_rows_ >= trigger);
}

void Scheduler::WakeDeferred(napi_env env) {
  wake_deferred_ = false;
  if (env != nullptr && inline_ != nullptr) {
    // At most about inline_below_us of inline batches per wake (one more than fits): what the
    // queue still holds then goes to the instance threads (NeedsWake below), so a deep queue
    // does not hold the loop for long.
    const Clock::time_point start = Clock::now();
    while (Micros(Clock::now() - start).count() < config_.inline_below_us && RunInline(env, false)) {
    }
  }
  bool notify;
  {
    std::lock_guard<std::mutex> lock(mu_);
    notify = NeedsWake();
    if (notify) wakes_++;
  }
  if (notify) cv_.notify_one();
}

void Scheduler::Take(RunJob* job) {
  RunJob::Queueing& qs = job->queueing();
  spare_nodes_.splice(spare_nodes_.end(), queues_[qs.priority], qs.pos);
  qs.queued = false;
  const int64_t rows = std::max<int64_t>(job->batch_key().rows, 1);
  queued_rows_ -= rows;
  if (qs.priority == 1) queued_rows_high_ -= rows;
  if (qs.deadline != Clock::time_point::max()) deadlines_--;
}

void Scheduler::Cancel(RunJob* job, const char* c) {
  bool settle = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (Batch* b = job->queueing().running_in) {
      CancelRunning(job, b, c);
    } else if (job->Cancel(c) && job->queueing().queued) {
      Take(job);
      settle = true;
    }
  }
  if (settle) RunJob::PostCompleted(&job, 1);
}

void Scheduler::DropExpired(RunJob* job) {
  job->Cancel(code::kTimeout);
  Take(job);
}

void Scheduler::CancelRunning(RunJob* job, Batch* batch, const char* c) {
  // Its rows are computed anyway unless every job of the batch is cancelled.
  if (job->Cancel(c) && ++batch->cancelled == batch->jobs.size() && batch->run_options != nullptr) {
    if (OrtStatus* st = g_ort->RunOptionsSetTerminate(batch->run_options)) g_ort->ReleaseStatus(st);
  }
}

void Scheduler::WatchDeadlines(const Batch& batch) {
  Clock::time_point earliest = Clock::time_point::max();
  for (RunJob* job : batch.jobs) earliest = std::min(earliest, job->queueing().deadline);
  if (earliest != Clock::time_point::max()) WatchUntil(earliest);
}

void Scheduler::WatchUntil(Clock::time_point when) {
  // A little late, so that deadlines close together (a backlog timing out under overload) cost
  // one scan of the queue, not one each: at most ~1,000 scans a second.
  when += kWatchdogSlack;
  if (when >= watchdog_wake_) return;
  watchdog_wake_ = when;
  watchdog_cv_.notify_one();
}

void Scheduler::ExpireLate(const Batch& batch, Clock::time_point now) {
  for (RunJob* job : batch.jobs) {
    if (job->queueing().deadline <= now) job->Cancel(code::kTimeout);
  }
}

void Scheduler::Watchdog() {
  std::unique_lock<std::mutex> lock(mu_);
  std::vector<RunJob*> expired;
  while (!stopping_) {
    if (watchdog_wake_ == Clock::time_point::max()) {
      watchdog_cv_.wait(lock);
    } else {
      watchdog_cv_.wait_until(lock, watchdog_wake_);
    }
    if (stopping_) break;
    const Clock::time_point now = Clock::now();
    if (now < watchdog_wake_) continue;  // woken early (an earlier deadline, or spuriously)
    Clock::time_point next = Clock::time_point::max();
    for (Batch* b : running_) {
      for (RunJob* job : b->jobs) {
        const Clock::time_point d = job->queueing().deadline;
        if (d <= now) {
          CancelRunning(job, b, code::kTimeout);
        } else if (d < next) {
          next = d;
        }
      }
    }
    // Queued jobs past their deadline, for when every instance thread is busy running (an idle
    // one drops them in Form on time by itself).
    for (auto& q : queues_) {
      if (deadlines_ == 0) break;
      for (auto it = q.begin(); it != q.end();) {
        RunJob* job = *it++;
        const Clock::time_point d = job->queueing().deadline;
        if (d <= now) {
          DropExpired(job);
          expired.push_back(job);
        } else if (d < next) {
          next = d;
        }
      }
    }
    watchdog_wake_ = next == Clock::time_point::max() ? next : next + kWatchdogSlack;
    if (!expired.empty()) {
      lock.unlock();
      RunJob::PostCompleted(expired.data(), expired.size());
      expired.clear();
      lock.lock();
    }
  }
}

void Scheduler::RejectQueued(const char* c) {
  std::vector<RunJob*> jobs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& q : queues_) {
      while (!q.empty()) {
        RunJob* job = q.front();
        Take(job);
        job->Cancel(c);
        jobs.push_back(job);
      }
    }
  }
  RunJob::PostCompleted(jobs.data(), jobs.size());
}

void Scheduler::Shutdown(const char* c) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (Batch* b : running_) {
      for (RunJob* job : b->jobs) job->Cancel(c);
      if (b->run_options != nullptr) {
        if (OrtStatus* st = g_ort->RunOptionsSetTerminate(b->run_options)) g_ort->ReleaseStatus(st);
      }
    }
  }
  RejectQueued(c);
  cv_.notify_all();
  watchdog_cv_.notify_all();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  if (watchdog_.joinable()) watchdog_.join();
}

bool Scheduler::RunInline(napi_env env, bool settle_here, bool* ran) {
  if (ran != nullptr) *ran = false;
  Batch batch;
  std::vector<RunJob*> dropped;
  bool go = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || queued() == 0) return false;
    // Predicted compute of what the queue holds (Estimator::PredictComputeUs), for the rows the
    // run would compute: padded as PrepareRun will pad them.
    const int64_t rows = PaddedRows(std::min<int64_t>(std::max<int64_t>(queued_rows_, 1), config_.max_batch_size));
    const double predicted_us = est_.PredictComputeUs(rows);
    if (predicted_us < 0 || predicted_us > config_.inline_below_us) return false;  // (< 0: nothing measured yet)
    Clock::time_point wake = Clock::time_point::max();
    go = Form(Clock::now(), &batch, &dropped, &wake, true);
    if (go) {
      PrepareRun(&batch);
      running_.insert(&batch);
      in_flight_ += batch.jobs.size();
      for (RunJob* job : batch.jobs) job->queueing().running_in = &batch;
      WatchDeadlines(batch);
    }
  }
  auto settle = [&](std::vector<RunJob*>& jobs) {
    if (settle_here) RunJob::CompleteOnJsThread(env, jobs.data(), jobs.size());
    else RunJob::PostCompleted(jobs.data(), jobs.size());
  };
  settle(dropped);
  if (!go) return !dropped.empty();
  Instance::Timing timing;
  CopyCounts counts;
  inline_->Execute(batch, *primary_, &timing, &counts);
  TraceBatch(batch, timing, -1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    running_.erase(&batch);
    in_flight_ -= batch.jobs.size();
    for (RunJob* job : batch.jobs) job->queueing().running_in = nullptr;
    ExpireLate(batch, Clock::now());
    Record(batch, timing, counts);
    inline_batches_++;
  }
  settle(batch.jobs);
  if (ran != nullptr) *ran = true;
  return true;
}

bool Scheduler::Form(Clock::time_point now, Batch* batch, std::vector<RunJob*>* dropped, Clock::time_point* wake,
                     bool now_only) {
  // A job's BatchKey and queue times: all formation sees of it.
  auto view = [](RunJob* job) {
    const RunJob::Queueing& qs = job->queueing();
    return formation::JobView{job->batch_key().rows, &job->batch_key().key, qs.enqueued, qs.deadline};
  };
  const size_t first_expired = dropped->size();
  const formation::Decision d = formation::Form(queues_, view, now, config_, batchable_, est_, deadlines_ > 0,
                                                now_only, &candidates_, dropped);
  for (size_t i = first_expired; i < dropped->size(); ++i) DropExpired((*dropped)[i]);
  if (d.outcome != formation::Outcome::kRun) {
    if (d.outcome == formation::Outcome::kWait) *wake = d.wake;
    return false;
  }
  batch->jobs.reserve(d.count);
  for (size_t i = 0; i < d.count; ++i) {
    RunJob* job = candidates_[i];
    Take(job);
    queue_us_.Add(Micros(now - job->queueing().enqueued).count());
    batch->jobs.push_back(job);
  }
  batch->rows = d.rows;
  return true;
}

int64_t Scheduler::PaddedRows(int64_t rows) const {
  if (!config_.pad_to_preferred || !batchable_) return rows;
  int64_t target = config_.max_batch_size;
  for (int64_t p : config_.preferred) {
    if (p >= rows) {
      target = p;
      break;
    }
  }
  return std::max(target, rows);
}

bool Scheduler::PrepareRun(Batch* batch) {
  // Padding (BatchingConfig::pad_to_preferred): the smallest preferred size, else
  // max_batch_size, that holds the batch's rows. Jobs that cannot share a run are never padded.
  batch->padded_rows = batch->rows > 0 ? PaddedRows(batch->rows) : 0;
  // The batch's own run options: a terminate must stop this run and no other.
  Failure f = FromOrtStatus(g_ort->CreateRunOptions(&batch->run_options), "creating run options");
  if (!f) {
    f = FromOrtStatus(g_ort->RunOptionsSetRunLogSeverityLevel(batch->run_options, primary_->run_log_severity()),
                      "creating run options");
  }
  if (f) {
    for (RunJob* job : batch->jobs) job->Fail(f);
    return false;
  }
  return true;
}

void Scheduler::Record(const Batch& batch, const Instance::Timing& t, const CopyCounts& counts) {
  batches_++;
  const size_t size = batch.rows > 0 ? static_cast<size_t>(batch.rows) : 1;
  if (size >= batch_sizes_.size()) batch_sizes_.resize(size + 1, 0);
  batch_sizes_[size]++;
  const double compute_us = t.input_us + t.infer_us + t.output_us;
  compute_us_.Add(compute_us);
  input_us_ += t.input_us;
  infer_us_ += t.infer_us;
  output_us_ += t.output_us;
  copies_.gathered += counts.gathered;
  copies_.scattered += counts.scattered;
  padding_rows_ += static_cast<uint64_t>(std::max<int64_t>(batch.padded_rows - batch.rows, 0));
  // The estimates model compute, which the padded shape decides.
  const int64_t computed = std::max<int64_t>(batch.padded_rows, static_cast<int64_t>(size));
  est_.OnBatch(static_cast<int64_t>(size), batch.jobs.size(), compute_us, batchable_, computed);
}

void Scheduler::TraceBatch(const Batch& batch, const Instance::Timing& t, int instance) {
  // One flag check per job when nothing is traced.
  const int64_t rows = batch.rows > 0 ? batch.rows : 1;
  const int64_t requests = static_cast<int64_t>(batch.jobs.size());
  for (RunJob* job : batch.jobs) {
    if (job->traced()) job->RecordRun(t.start, t.gathered, t.ran, t.end, rows, requests, instance);
  }
}

void Scheduler::Loop(size_t index) {
#ifdef __linux__
  // Batch delays are tens of microseconds: without this the kernel may round every timed
  // wait up by its default 50 µs slack.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
#endif
  Instance& instance = *instances_[index];
  std::vector<RunJob*> dropped;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    Batch batch;
    Clock::time_point wake = Clock::time_point::max();
    const bool go = Form(Clock::now(), &batch, &dropped, &wake);
    if (!go && dropped.empty()) {
      if (wake == Clock::time_point::max() && config_.spin && !spinning_) {
        // Nothing queued. One idle thread polls for the next arrival for a short while before
        // sleeping: a caller that submits right after its previous result (a closed loop) then
        // pays no futex wake-up (several µs on a VM), and Submit needs no notify.
        spinning_ = true;
        const uint64_t seen = arrivals_.load(std::memory_order_acquire);
        lock.unlock();
        const Clock::time_point until = Clock::now() + std::chrono::microseconds(kSpinMicros);
        bool arrived = false;
        for (int i = 0; !arrived; ++i) {
          arrived = arrivals_.load(std::memory_order_acquire) != seen;
          if ((i & 63) == 63 && Clock::now() >= until) break;
          Pause();
        }
        lock.lock();
        spinning_ = false;
        // Re-checked under the lock: Submit increments under it, so nothing slips in between
        // this check and the wait below without a notify. Shutdown's notify may have come while
        // this thread was spinning unlocked: stopping_ must be re-read too, or the join hangs.
        if (stopping_ || arrived || arrivals_.load(std::memory_order_relaxed) != seen) continue;
      }
      if (wake == Clock::time_point::max()) {
        untimed_waiters_++;
        cv_.wait(lock);
        untimed_waiters_--;
      } else {
        timed_waiters_++;
        cv_.wait_until(lock, wake);
        timed_waiters_--;
      }
      continue;
    }
    if (go) {
      PrepareRun(&batch);
      running_.insert(&batch);
      in_flight_ += batch.jobs.size();
      for (RunJob* job : batch.jobs) job->queueing().running_in = &batch;
      WatchDeadlines(batch);
    }
    lock.unlock();
    RunJob::PostCompleted(dropped.data(), dropped.size());
    dropped.clear();
    if (go) {
      Instance::Timing timing;
      CopyCounts counts;
      instance.Execute(batch, *primary_, &timing, &counts);
      TraceBatch(batch, timing, static_cast<int>(index));
      lock.lock();
      running_.erase(&batch);
      in_flight_ -= batch.jobs.size();
      for (RunJob* job : batch.jobs) job->queueing().running_in = nullptr;
      ExpireLate(batch, Clock::now());
      Record(batch, timing, counts);
      lock.unlock();
      // After this the JS thread may delete the jobs (and with the last one, this scheduler:
      // its destructor then waits in join() for this thread to leave the loop).
      RunJob::PostCompleted(batch.jobs.data(), batch.jobs.size());
    }
    lock.lock();
  }
}

Napi::Object Scheduler::Stats(Napi::Env env) {
  std::lock_guard<std::mutex> lock(mu_);
  Napi::Object o = Napi::Object::New(env);
  auto num = [&](const char* k, double v) { o.Set(k, Napi::Number::New(env, v)); };
  num("queueDepth", static_cast<double>(queued()));
  num("inFlight", static_cast<double>(in_flight_));
  num("batches", static_cast<double>(batches_));
  num("inlineBatches", static_cast<double>(inline_batches_));
  num("wakes", static_cast<double>(wakes_));
  num("instances", static_cast<double>(instances_.size()));
  Napi::Object hist = Napi::Object::New(env);
  for (size_t i = 0; i < batch_sizes_.size(); ++i) {
    if (batch_sizes_[i] > 0) hist.Set(std::to_string(i), Napi::Number::New(env, static_cast<double>(batch_sizes_[i])));
  }
  o.Set("batchSizeHistogram", hist);
  auto pct = [&](const LogHistogram& h) {
    Napi::Object p = Napi::Object::New(env);
    p.Set("p50", Napi::Number::New(env, h.Quantile(0.5)));
    p.Set("p99", Napi::Number::New(env, h.Quantile(0.99)));
    p.Set("count", Napi::Number::New(env, static_cast<double>(h.count())));
    p.Set("sum", Napi::Number::New(env, h.sum()));
    return p;
  };
  o.Set("queueTimeUs", pct(queue_us_));
  o.Set("computeTimeUs", pct(compute_us_));
  num("computeInputUs", input_us_);
  num("computeInferUs", infer_us_);
  num("computeOutputUs", output_us_);
  num("bytesGathered", static_cast<double>(copies_.gathered));
  num("bytesScattered", static_cast<double>(copies_.scattered));
  num("paddingRows", static_cast<double>(padding_rows_));
  // Fixed: the configured delay. Adaptive: 0 while traffic is sparse, else the pause that now
  // ends a burst once a batch has its typical size.
  const double delay = est_.DelayUs(config_);
  num("delayUs", delay);
  return o;
}

void Scheduler::ResetStats() {
  std::lock_guard<std::mutex> lock(mu_);
  batches_ = 0;
  inline_batches_ = 0;
  padding_rows_ = 0;
  wakes_ = 0;
  std::fill(batch_sizes_.begin(), batch_sizes_.end(), 0);
  queue_us_.Reset();
  compute_us_.Reset();
  input_us_ = infer_us_ = output_us_ = 0;
  copies_ = CopyCounts();
}

}  // namespace nimify
