#include "async_job.h"

#include "errors.h"

namespace nimify {

Napi::Value AsyncJob::Queue(Napi::Env env, AsyncJob* job, const char* resource_name) {
  if (!job->borrowed_.ok()) {
    // A reference to memory the work reads could not be created: running it would read
    // unpinned JS memory.
    job->borrowed_.Release(env);
    delete job;
    MakeError(env, code::kInternal, "could not reference the JS memory the native work reads")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
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
  return promise;
}

void AsyncJob::ExecuteCallback(napi_env /*env*/, void* data) { static_cast<AsyncJob*>(data)->Execute(); }

void AsyncJob::CompleteCallback(napi_env raw_env, napi_status status, void* data) {
  AsyncJob* job = static_cast<AsyncJob*>(data);
  std::shared_ptr<EnvState> state = job->state_;
  if (!state->shutting_down && status != napi_cancelled) {
    Napi::Env env(raw_env);
    Napi::HandleScope scope(env);
    if (job->borrowed_.FirstDetached(raw_env) != Borrowed::kNone) {
      // The bytes were transferred away (or freed) while the work read them: whatever it built
      // from them is not trusted. Complete() is skipped; the job's destructor frees its results.
      job->deferred_->Reject(MakeError(env, code::kBufferDetached,
                                       "the model bytes' buffer was transferred or detached while the model was "
                                       "loading; the load was discarded. Do not transfer a buffer passed to "
                                       "loadModel() until it settles")
                                 .Value());
    } else {
      job->Complete(env, *job->deferred_);
    }
    job->borrowed_.Release(raw_env);
    napi_delete_async_work(raw_env, job->work_);
  } else {
    job->borrowed_.Forget();
  }
  delete job;
}

}  // namespace nimify
