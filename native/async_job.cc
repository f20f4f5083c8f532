#include "async_job.h"

#include "errors.h"

namespace nimify {

Napi::Value AsyncJob::Queue(Napi::Env env, AsyncJob* job, const char* resource_name) {
  job->state_ = GetAddonData(env)->state;
  job->deferred_ = std::make_unique<Napi::Promise::Deferred>(env);
  Napi::Promise promise = job->deferred_->Promise();
  napi_value name = Napi::String::New(env, resource_name);
  if (napi_create_async_work(env, nullptr, name, ExecuteCallback, CompleteCallback, job, &job->work_) != napi_ok ||
      napi_queue_async_work(env, job->work_) != napi_ok) {
    job->borrowed_.Release(env);
    if (job->work_ != nullptr) napi_delete_async_work(env, job->work_);
    delete job;
    MakeError(env, code::kInternal, "could not queue native work").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  job->state_->loads.insert(job);
  return promise;
}

void AsyncJob::ExecuteCallback(napi_env /*env*/, void* data) { static_cast<AsyncJob*>(data)->Execute(); }

void AsyncJob::CompleteCallback(napi_env raw_env, napi_status status, void* data) {
  AsyncJob* job = static_cast<AsyncJob*>(data);
  std::shared_ptr<EnvState> state = job->state_;
  state->loads.erase(job);
  if (!state->shutting_down && status != napi_cancelled) {
    Napi::Env env(raw_env);
    Napi::HandleScope scope(env);
    job->Complete(env, *job->deferred_);
    job->borrowed_.Release(raw_env);
    napi_delete_async_work(raw_env, job->work_);
  } else {
    job->borrowed_.Forget();
  }
  delete job;
}

}  // namespace nimify
