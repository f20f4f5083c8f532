#include "deferred_wake.h"

#include "env_state.h"
#include "run_job.h"
#include "scheduler.h"

namespace nimify {

namespace {

bool QueueMicrotask(napi_env raw_env, const Napi::FunctionReference& fn) {
  AddonData* data = GetAddonData(Napi::Env(raw_env));
  if (data->queue_microtask.IsEmpty() || fn.IsEmpty()) return false;
  napi_value global = nullptr;
  napi_value arg = fn.Value();
  if (napi_get_global(raw_env, &global) == napi_ok &&
      napi_call_function(raw_env, global, data->queue_microtask.Value(), 1, &arg, nullptr) == napi_ok) {
    return true;
  }
  // (A pending exception would surface in the caller's JS: drop it.)
  napi_value ignored = nullptr;
  napi_get_and_clear_last_exception(raw_env, &ignored);
  return false;
}

EnvState* StateOf(napi_env env, napi_callback_info info) {
  void* data = nullptr;
  return napi_get_cb_info(env, info, nullptr, nullptr, nullptr, &data) == napi_ok ? static_cast<EnvState*>(data) : nullptr;
}

// Queued by MarkLoneRun. The lone run settled infer()'s promise (settlement.h) before infer()
// returned it, so the caller's reaction to it (its `await` continuation, attached after the
// return) is queued right after this.
napi_value OnLoneDelivered(napi_env env, napi_callback_info info) {
  EnvState* state = StateOf(env, info);
  if (state == nullptr) return nullptr;
  if (state->lone_awaiting > 0) state->lone_awaiting--;
  state->lone_delivered = true;
  if (QueueMicrotask(env, GetAddonData(Napi::Env(env))->lone_trailing)) state->lone_trailing++;
  return nullptr;
}

// Queued by OnLoneDelivered: after the continuations that result's delivery ran.
napi_value OnLoneTrailing(napi_env env, napi_callback_info info) {
  EnvState* state = StateOf(env, info);
  if (state == nullptr) return nullptr;
  if (state->lone_trailing > 0) state->lone_trailing--;
  if (state->lone_awaiting == 0 && state->lone_trailing == 0) state->lone_delivered = false;
  return nullptr;
}

}  // namespace

void DeferredWakes::MarkLoneRun(napi_env env) {
  EnvState* state = GetAddonData(Napi::Env(env))->state.get();
  state->lone_awaiting++;
  QueueMicrotask(env, GetAddonData(Napi::Env(env))->lone_delivered);
}

bool DeferredWakes::OpenTurn(EnvState* state, std::chrono::steady_clock::time_point now) {
  if (state->turn_open) return false;
  state->turn_open = true;
  state->turn_started = now;
  // (A message that cannot be posted leaves the turn open: no more lone runs after its budget.)
  if (!posted_ && napi_call_threadsafe_function(tsfn_, nullptr, napi_tsfn_nonblocking) == napi_ok) posted_ = true;
  return true;
}

bool DeferredWakes::MayRunLone(const EnvState& state, bool first, std::chrono::steady_clock::time_point now,
                               double budget_us) {
  return state.lone_awaiting == 0 && (first || state.lone_delivered) &&
         std::chrono::duration<double, std::micro>(now - state.turn_started).count() <= budget_us;
}

void DeferredWakes::Create(napi_env env, const std::shared_ptr<EnvState>& state) {
  // MarkLoneRun's functions (optional: without them nothing runs inline after the first lone
  // request of a turn).
  {
    Napi::Env e(env);
    AddonData* data = GetAddonData(e);
    Napi::Value qm = e.Global().Get("queueMicrotask");
    napi_value delivered = nullptr, trailing = nullptr;
    if (!e.IsExceptionPending() && qm.IsFunction() &&
        napi_create_function(env, "nimify:loneDelivered", NAPI_AUTO_LENGTH, OnLoneDelivered, state.get(), &delivered) ==
            napi_ok &&
        napi_create_function(env, "nimify:loneTrailing", NAPI_AUTO_LENGTH, OnLoneTrailing, state.get(), &trailing) ==
            napi_ok) {
      data->queue_microtask = Napi::Persistent(qm.As<Napi::Function>());
      data->lone_delivered = Napi::Persistent(Napi::Function(env, delivered));
      data->lone_trailing = Napi::Persistent(Napi::Function(env, trailing));
    }
    if (e.IsExceptionPending()) e.GetAndClearPendingException();
  }
  auto* w = new DeferredWakes();
  napi_value name = nullptr;
  if (napi_create_string_utf8(env, "nimify:wake", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, w, OnFinalize, w, OnMessage, &w->tsfn_) !=
          napi_ok) {
    delete w;
    return;
  }
  napi_unref_threadsafe_function(env, w->tsfn_);
  w->state_ = state;
  state->wakes = w;
}

void DeferredWakes::Add(std::shared_ptr<Scheduler> s) {
  pending_.push_back(std::move(s));
  if (posted_) return;
  if (napi_call_threadsafe_function(tsfn_, nullptr, napi_tsfn_nonblocking) == napi_ok) {
    posted_ = true;
    return;
  }
  // The channel is closing (env teardown): wake now rather than never.
  std::vector<std::shared_ptr<Scheduler>> now;
  now.swap(pending_);
  for (const auto& p : now) p->WakeDeferred(nullptr);
}

// JS thread. env == nullptr: Node is closing the channel at teardown and calls this for each
// message still queued after OnFinalize has freed `context`: touch nothing (the finalizer
// dropped the pending wakes; the schedulers are being shut down).
void DeferredWakes::OnMessage(napi_env env, napi_value, void* context, void*) {
  if (env == nullptr) return;
  auto* w = static_cast<DeferredWakes*>(context);
  w->posted_ = false;
  // A loop callback: every microtask of earlier callbacks has run.
  if (w->state_) {
    w->state_->lone_awaiting = w->state_->lone_trailing = 0;
    w->state_->lone_delivered = false;
    w->state_->turn_open = false;
  }
  std::vector<std::shared_ptr<Scheduler>> now;
  now.swap(w->pending_);
  for (const auto& s : now) s->WakeDeferred(env);
  if (w->state_) RunJob::RunDeferred(w->state_.get());
  // `now` is released here, on the JS thread: a scheduler whose model was dropped meanwhile is
  // destroyed (its threads joined) where its destructor expects to run.
}

// JS thread, env teardown: runs before OnMessage's null-env calls for queued messages (above).
void DeferredWakes::OnFinalize(napi_env, void* data, void*) {
  auto* w = static_cast<DeferredWakes*>(data);
  if (w->state_) w->state_->wakes = nullptr;
  delete w;
}

}  // namespace nimify
