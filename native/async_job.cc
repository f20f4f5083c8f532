#include "async_job.h"

#include "errors.h"

namespace nimify {

void AsyncJob::Borrow(Napi::Env env, Napi::Value value) {
  napi_ref ref = nullptr;
  if (napi_create_reference(env, value, 1, &ref) == napi_ok) borrowed_.push_back(ref);
}

void AsyncJob::DropBorrowed(Napi::Env env) {
  for (napi_ref r : borrowed_) napi_delete_reference(env, r);
  borrowed_.clear();
}

Napi::Value AsyncJob::Queue(Napi::Env env, AsyncJob* job, const char* resource_name) {
  AddonData* data = GetAddonData(env);
  job->state_ = data->state;
  job->deferred_ = std::make_unique<Napi::Promise::Deferred>(env);
  Napi::Promise promise = job->deferred_->Promise();
  napi_value name = Napi::String::New(env, resource_name);
  if (napi_create_async_work(env, nullptr, name, ExecuteCallback, CompleteCallback, job, &job->work_) != napi_ok ||
      napi_queue_async_work(env, job->work_) != napi_ok) {
    for (napi_ref r : job->borrowed_) napi_delete_reference(env, r);
    if (job->work_ != nullptr) napi_delete_async_work(env, job->work_);
    if (job->cancel_id_ > 0) job->state_->cancellable.erase(job->cancel_id_);
    delete job;
    MakeError(env, code::kInternal, "could not queue native work").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  job->state_->active.insert(job);
  return promise;
}

void AsyncJob::ExecuteCallback(napi_env /*env*/, void* data) { static_cast<AsyncJob*>(data)->Execute(); }

void AsyncJob::CompleteCallback(napi_env raw_env, napi_status status, void* data) {
  AsyncJob* job = static_cast<AsyncJob*>(data);
  std::shared_ptr<EnvState> state = job->state_;
  state->active.erase(job);
  if (job->cancel_id_ > 0) state->cancellable.erase(job->cancel_id_);
  if (!state->shutting_down && status != napi_cancelled) {
    Napi::Env env(raw_env);
    Napi::HandleScope scope(env);
    job->Complete(env, *job->deferred_);
    for (napi_ref r : job->borrowed_) napi_delete_reference(raw_env, r);
    napi_delete_async_work(raw_env, job->work_);
  }
  // During teardown the env frees its own references and work handles; only native memory is ours.
  delete job;
}

}  // namespace nimify
