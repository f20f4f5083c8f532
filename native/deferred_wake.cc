#include "deferred_wake.h"

#include "env_state.h"
#include "scheduler.h"

namespace nimify {

namespace {

napi_value ClearMicrotaskMark(napi_env env, napi_callback_info info) {
  void* data = nullptr;
  if (napi_get_cb_info(env, info, nullptr, nullptr, nullptr, &data) == napi_ok && data != nullptr) {
    static_cast<EnvState*>(data)->microtask_mark = false;
  }
  return nullptr;
}

}  // namespace

void DeferredWakes::MarkUntilMicrotasks(napi_env raw_env) {
  Napi::Env env(raw_env);
  AddonData* data = GetAddonData(env);
  data->state->microtask_mark = true;
  if (data->queue_microtask.IsEmpty() || data->clear_microtask_mark.IsEmpty()) return;
  napi_value global = nullptr;
  napi_value fn = data->clear_microtask_mark.Value();
  if (napi_get_global(raw_env, &global) != napi_ok ||
      napi_call_function(raw_env, global, data->queue_microtask.Value(), 1, &fn, nullptr) != napi_ok) {
    // (A pending exception would surface in the caller's JS: drop it; the mark just stays set.)
    napi_value ignored = nullptr;
    napi_get_and_clear_last_exception(raw_env, &ignored);
  }
}

void DeferredWakes::Create(napi_env env, const std::shared_ptr<EnvState>& state) {
  // The microtask mark's two functions (optional: without them the mark clears at the next
  // message instead).
  {
    Napi::Env e(env);
    AddonData* data = GetAddonData(e);
    Napi::Value qm = e.Global().Get("queueMicrotask");
    napi_value clear = nullptr;
    if (!e.IsExceptionPending() && qm.IsFunction() &&
        napi_create_function(env, "nimify:clearMicrotaskMark", NAPI_AUTO_LENGTH, ClearMicrotaskMark, state.get(),
                             &clear) == napi_ok) {
      data->queue_microtask = Napi::Persistent(qm.As<Napi::Function>());
      data->clear_microtask_mark = Napi::Persistent(Napi::Function(env, clear));
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
  if (w->state_) w->state_->microtask_mark = false;
  std::vector<std::shared_ptr<Scheduler>> now;
  now.swap(w->pending_);
  for (const auto& s : now) s->WakeDeferred(env);
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
