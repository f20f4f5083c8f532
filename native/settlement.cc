#include "settlement.h"

#include "env_state.h"
#include "errors.h"

namespace nimify {

namespace {

constexpr size_t kEntryInts = 3 * Settlement::kCapacity;

// A fresh set of arrays: the entries (an Int32Array of 3 × kCapacity), the values (an empty
// array) and the data (an ArrayBuffer of kDataBytes).
bool NewArrays(napi_env env, napi_value* entries, napi_value* values, napi_value* data) {
  napi_value buffer = nullptr;
  void* memory = nullptr;
  return napi_create_arraybuffer(env, kEntryInts * sizeof(int32_t), &memory, &buffer) == napi_ok &&
         napi_create_typedarray(env, napi_int32_array, kEntryInts, buffer, 0, entries) == napi_ok &&
         napi_create_array(env, values) == napi_ok &&
         napi_create_arraybuffer(env, Settlement::kDataBytes, &memory, data) == napi_ok;
}

// The arrays' memory, or false when either is unusable (a detached buffer reads as empty).
bool MemoryOf(napi_env env, napi_value entries, napi_value data, int32_t** triples, uint8_t** bytes) {
  napi_typedarray_type type = napi_int8_array;
  size_t length = 0, data_length = 0;
  void* p = nullptr;
  void* q = nullptr;
  if (napi_get_typedarray_info(env, entries, &type, &length, &p, nullptr, nullptr) != napi_ok ||
      type != napi_int32_array || length < kEntryInts ||
      napi_get_arraybuffer_info(env, data, &q, &data_length) != napi_ok || data_length < Settlement::kDataBytes) {
    return false;
  }
  *triples = static_cast<int32_t*>(p);
  *bytes = static_cast<uint8_t*>(q);
  return true;
}

}  // namespace

Settlement::Settlement(napi_env env)
    : env_(env), addon_(GetAddonData(Napi::Env(env))), nested_(addon_->settling) {
  addon_->settling = true;
  bool ok = false;
  if (!nested_ && !addon_->settle_entries.IsEmpty()) {
    entries_ = addon_->settle_entries.Value();
    values_ = addon_->settle_values.Value();
    data_buffer_ = addon_->settle_data.Value();
    ok = MemoryOf(env_, entries_, data_buffer_, &triples_, &data_);
  }
  if (!ok) Renew();
}

void Settlement::Renew() {
  // Nested, first use, or the arrays became unusable: new ones (the env's unless nested).
  if (!NewArrays(env_, &entries_, &values_, &data_buffer_) || !MemoryOf(env_, entries_, data_buffer_, &triples_, &data_)) {
    triples_ = nullptr;
    data_ = nullptr;
    return;
  }
  if (!nested_) {
    addon_->settle_entries = Napi::Persistent(Napi::Object(env_, entries_));
    addon_->settle_values = Napi::Persistent(Napi::Object(env_, values_));
    addon_->settle_data = Napi::Persistent(Napi::Object(env_, data_buffer_));
  }
}

Settlement::~Settlement() {
  Flush();
  if (!nested_) addon_->settling = false;
}

uint8_t* Settlement::Reserve(size_t bytes, int32_t* offset) {
  if (data_ == nullptr || bytes > kDataBytes) return nullptr;
  // Room for the bytes and for the entry Add records next: a flush between the two would settle
  // the bytes' owner in the next call, after later Reserves had reused its bytes' place.
  if (n_ == kCapacity || data_used_ + bytes > kDataBytes) Flush();
  *offset = static_cast<int32_t>(data_used_);
  uint8_t* p = data_ + data_used_;
  data_used_ += Align8(bytes);
  return p;
}

void Settlement::Add(int32_t ticket, Kind kind, napi_value value, int32_t offset) {
  if (triples_ == nullptr) return;  // could not make arrays (out of memory): nothing can settle
  if (n_ == kCapacity) Flush();
  int32_t* t = triples_ + 3 * n_;
  t[0] = ticket;
  t[1] = static_cast<int32_t>(kind);
  t[2] = offset;
  if (kind != Kind::kNull) napi_set_element(env_, values_, static_cast<uint32_t>(n_), value);
  n_++;
}

void Settlement::Flush() {
  if (n_ == 0 || addon_->settler.IsEmpty()) return;
  napi_value argv[4] = {nullptr, entries_, values_, data_buffer_};
  napi_value recv = nullptr;
  napi_create_uint32(env_, static_cast<uint32_t>(n_), &argv[0]);
  napi_get_undefined(env_, &recv);
  n_ = 0;
  data_used_ = 0;
  if (napi_call_function(env_, recv, addon_->settler.Value(), 4, argv, nullptr) == napi_pending_exception) {
    napi_value err = nullptr;
    if (napi_get_and_clear_last_exception(env_, &err) == napi_ok) napi_fatal_exception(env_, err);
  }
  // JS ran with the arrays in hand: never write through a pointer to memory it may have detached.
  if (!MemoryOf(env_, entries_, data_buffer_, &triples_, &data_)) Renew();
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
