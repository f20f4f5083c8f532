#include "settlement.h"

#include "env_state.h"
#include "errors.h"

namespace nimify {

namespace {

// A fresh pair of arrays: an Int32Array of 2 × kCapacity and an empty array.
bool NewArrays(napi_env env, napi_value* entries, napi_value* values) {
  napi_value buffer = nullptr;
  void* data = nullptr;
  return napi_create_arraybuffer(env, Settlement::kCapacity * 2 * sizeof(int32_t), &data, &buffer) == napi_ok &&
         napi_create_typedarray(env, napi_int32_array, Settlement::kCapacity * 2, buffer, 0, entries) == napi_ok &&
         napi_create_array(env, values) == napi_ok;
}

int32_t* PairsOf(napi_env env, napi_value entries) {
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, entries, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_int32_array || length < Settlement::kCapacity * 2) {
    return nullptr;  // (a detached array reads as empty)
  }
  return static_cast<int32_t*>(data);
}

}  // namespace

Settlement::Settlement(napi_env env) : env_(env), data_(GetAddonData(Napi::Env(env))), nested_(data_->settling) {
  data_->settling = true;
  if (!nested_ && !data_->settle_entries.IsEmpty()) {
    entries_ = data_->settle_entries.Value();
    values_ = data_->settle_values.Value();
    pairs_ = PairsOf(env_, entries_);
  }
  if (pairs_ == nullptr) {
    // Nested, first use, or the env's arrays became unusable: new ones (kept unless nested).
    if (!NewArrays(env_, &entries_, &values_)) return;
    pairs_ = PairsOf(env_, entries_);
    if (!nested_) {
      data_->settle_entries = Napi::Persistent(Napi::Object(env_, entries_));
      data_->settle_values = Napi::Persistent(Napi::Object(env_, values_));
    }
  }
}

Settlement::~Settlement() {
  Flush();
  if (!nested_) data_->settling = false;
}

void Settlement::Add(int32_t ticket, Kind kind, napi_value value) {
  if (pairs_ == nullptr) return;  // could not make arrays (out of memory): nothing can settle
  if (n_ == kCapacity) Flush();
  pairs_[2 * n_] = ticket;
  pairs_[2 * n_ + 1] = static_cast<int32_t>(kind);
  if (kind != Kind::kNull) napi_set_element(env_, values_, static_cast<uint32_t>(n_), value);
  n_++;
}

void Settlement::Flush() {
  if (n_ == 0 || data_->settler.IsEmpty()) return;
  napi_value argv[3] = {nullptr, entries_, values_};
  napi_value recv = nullptr;
  napi_create_uint32(env_, static_cast<uint32_t>(n_), &argv[0]);
  napi_get_undefined(env_, &recv);
  n_ = 0;
  if (napi_call_function(env_, recv, data_->settler.Value(), 3, argv, nullptr) == napi_pending_exception) {
    napi_value err = nullptr;
    if (napi_get_and_clear_last_exception(env_, &err) == napi_ok) napi_fatal_exception(env_, err);
  }
}

Napi::Value Settlement::SetSettlerJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) {
    MakeError(env, code::kInvalidArgument, "setSettler(fn): expected a function").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  GetAddonData(env)->settler = Napi::Persistent(info[0].As<Napi::Function>());
  return env.Undefined();
}

bool Settlement::Ready(Napi::Env env) { return !GetAddonData(env)->settler.IsEmpty(); }

}  // namespace nimify
