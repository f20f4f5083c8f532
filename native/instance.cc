#include "instance.h"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <shared_mutex>

#include "device_memory.h"
#include "device_tensor.h"
#include "ort_api.h"
#include "tensor_io.h"
#include "run_job.h"

namespace nimify {

namespace {
using Clock = std::chrono::steady_clock;
double Micros(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::micro>(to - from).count();
}
}  // namespace

void Instance::Execute(Batch& batch, SessionCore& stats, Timing* timing, CopyCounts* counts) {
  const Clock::time_point t0 = Clock::now();
  timing->start = timing->gathered = timing->ran = timing->end = t0;
  RunJob* first = batch.jobs[0];
  // Bound runs (io_binding.h): every batch of a device session, and any batch whose results stay
  // on the device. A lone job of a device session is gathered too (into pinned staging, for one
  // upload from page-locked memory) unless it cannot be (rows < 0: strings, device-resident inputs).
  const bool device_out = first->outputs_on_device();
  const bool bound = core_->io_binding() || device_out;
  const bool alone = batch.jobs.size() == 1 && batch.padded_rows <= batch.rows;
  if (core_->fixed_buffers() && first->batch_key().rows < 0) {
    // A job that is not gathered (a model without a batch dim, a DeviceTensor feed) runs alone
    // on the fixed buffers of its own size.
    if (Failure f = ExecuteFixedAlone(first, batch.run_options, stats, timing)) first->Fail(f);
    return;
  }
  if (alone && (!core_->io_binding() || first->batch_key().rows < 0)) {
    // One job: it runs on OrtValues over the caller's own memory (no gather/scatter). (A padded
    // one goes through gather like any batch: the model must see the padded shape.)
    if (Failure f = first->Materialize()) {
      first->Fail(f);
      return;
    }
    first->ExecuteOn(core_, batch.run_options);
    timing->ran = timing->end = Clock::now();
    timing->infer_us = Micros(t0, timing->ran);
    return;
  }
  auto fail_all = [&](const Failure& f) {
    for (RunJob* job : batch.jobs) job->Fail(f);
  };
  std::vector<OrtValue*> inputs;
  Failure f = BatchIo::Gather(*core_, batch, *staging_, &inputs, counts);
  timing->gathered = timing->ran = timing->end = Clock::now();
  timing->input_us = Micros(t0, timing->gathered);
  if (f) {
    fail_all(f);
    return;
  }
  if (core_->fixed_buffers()) {
    if ((f = ExecuteFixed(batch, stats, inputs, timing, counts))) fail_all(f);
    for (OrtValue* v : inputs) g_ort->ReleaseValue(v);
    return;
  }
  const std::vector<uint32_t>& index = first->output_index();
  std::vector<const char*> names(index.size());
  for (size_t i = 0; i < index.size(); ++i) names[i] = core_->output_names()[index[i]];
  std::vector<OrtValue*> outputs(index.size(), nullptr);
  const Clock::time_point t1 = Clock::now();
  std::shared_lock<std::shared_mutex> device_calls = SharedDeviceCalls(core_->on_device());
  if (bound) {
    // Host results come back into the session's host memory (pinned on a GPU) and are scattered
    // from there; device results stay where the run left them.
    f = bound_.Run(*core_, batch.run_options, inputs.data(), names.data(), names.size(),
                   device_out ? core_->memory().device() : core_->memory().host(), outputs.data());
  } else {
    f = FromOrtStatus(g_ort->Run(core_->session(), batch.run_options, core_->input_names(), inputs.data(),
                                 inputs.size(), names.data(), names.size(), outputs.data()),
                      "running a batch of " + std::to_string(batch.jobs.size()) + " requests");
  }
  if (device_calls.owns_lock()) device_calls.unlock();
  timing->ran = timing->end = Clock::now();
  timing->infer_us = Micros(t1, timing->ran);
  stats.stats.runs++;
  for (OrtValue* v : inputs) g_ort->ReleaseValue(v);
  if (f) {
    stats.stats.failures++;
    if (bound) f.message = "running a batch of " + std::to_string(batch.jobs.size()) + " requests: " + f.message;
    fail_all(f);
  } else {
    const Clock::time_point t2 = Clock::now();
    f = device_out ? BatchIo::ScatterViews(core_, batch, &outputs) : BatchIo::Scatter(stats, batch, outputs, counts);
    timing->end = Clock::now();
    timing->output_us = Micros(t2, timing->end);
    if (f) fail_all(f);
  }
  for (OrtValue* v : outputs) {
    if (v != nullptr) g_ort->ReleaseValue(v);
  }
}

Instance::Fixed::~Fixed() {
  for (auto* list : {&inputs, &outputs, &host_outputs}) {
    for (OrtValue* v : *list) {
      if (v != nullptr) g_ort->ReleaseValue(v);
    }
  }
}

Instance::Fixed* Instance::FixedFor(int64_t rows, bool gathered, Failure* f) {
  for (auto& [key, fixed] : fixed_) {
    if (key.first == rows && key.second == gathered) return fixed.get();
  }
  // Each size holds buffers (and, on CUDA, a captured graph) for the instance's life: bounded.
  if (fixed_.size() >= kMaxFixedSizes) {
    std::string sizes;
    for (auto& [key, fixed] : fixed_) sizes += (sizes.empty() ? "" : ", ") + std::to_string(key.first);
    f->Set(code::kUnsupported, "this model runs on fixed buffers" + std::string(core_->cuda_graph() ? " (CUDA graphs)" : "") +
                                   ", made for at most " + std::to_string(kMaxFixedSizes) + " sizes (" + sizes +
                                   "); a request of " + std::to_string(rows) +
                                   " rows would be another: send those sizes, or pad batches to preferredBatchSizes (batching.padToPreferred)");
    return nullptr;
  }
  auto fixed = std::make_unique<Fixed>();
  fixed->graph_id = static_cast<int>(fixed_.size()) + 1;  // 0 is ORT's own
  const DeviceMemory& mem = core_->memory();
  std::vector<int64_t> dims;
  auto make = [&](const IoInfo& io, OrtAllocator* allocator, std::vector<OrtValue*>* list) {
    // Fixed but dim 0 (FixedShapeProblem, checked at load), which is the batch's rows — for a
    // lone job, only where the model leaves it dynamic (a model that does not batch declares it).
    dims.assign(io.shape.begin(), io.shape.end());
    if (gathered || dims[0] < 0) dims[0] = rows;
    OrtValue* v = nullptr;
    if (!*f) *f = FromOrtStatus(g_ort->CreateTensorAsOrtValue(allocator, dims.data(), dims.size(), io.elem, &v),
                                "allocating fixed buffers for batches of " + std::to_string(rows) + " (" + io.name + ")");
    list->push_back(v);
  };
  for (const IoInfo& io : core_->inputs()) make(io, mem.device_allocator(), &fixed->inputs);
  for (const IoInfo& io : core_->outputs()) make(io, mem.device_allocator(), &fixed->outputs);
  // Results are downloaded from device memory into pinned memory; from host memory they are
  // scattered straight away.
  if (!IsHostMemory(mem.device())) {
    OrtAllocator* host = mem.pinned() ? mem.pinned_allocator() : DefaultAllocator();
    for (const IoInfo& io : core_->outputs()) make(io, host, &fixed->host_outputs);
  }
  if (*f) return nullptr;
  fixed_.emplace_back(std::make_pair(rows, gathered), std::move(fixed));
  return fixed_.back().second.get();
}

Failure Instance::ExecuteFixed(Batch& batch, SessionCore& stats, const std::vector<OrtValue*>& inputs, Timing* timing,
                               CopyCounts* counts) {
  Failure f;
  Fixed* fixed = FixedFor(std::max(batch.padded_rows, batch.rows), true, &f);
  if (f) return f;
  // Upload: the gathered batch (pinned staging) into the size's input buffers.
  for (size_t i = 0; i < inputs.size() && !f; ++i) f = core_->memory().Copy(inputs[i], fixed->inputs[i], "uploading " + core_->inputs()[i].name);
  if (f) return f;
  if ((f = RunFixed(fixed, batch.run_options, stats, timing))) {
    f.message = "running a batch of " + std::to_string(batch.jobs.size()) + " requests: " + f.message;
    return f;
  }
  const Clock::time_point t2 = Clock::now();
  const std::vector<uint32_t>& index = batch.jobs[0]->output_index();
  std::vector<OrtValue*> results(index.size(), nullptr);
  if (batch.jobs[0]->outputs_on_device()) {
    // Device-resident results must outlive this size's next batch: copied out of the fixed
    // buffers into memory of their own (on the device), then viewed per request.
    std::vector<int64_t> dims;
    for (size_t o = 0; o < index.size() && !f; ++o) {
      OrtValue* src = fixed->outputs[index[o]];
      if (!TensorDims(src, &dims)) {
        f.Set(code::kInternal, "reading a fixed buffer's shape");
        break;
      }
      f = FromOrtStatus(g_ort->CreateTensorAsOrtValue(core_->memory().device_allocator(), dims.data(), dims.size(),
                                                      core_->outputs()[index[o]].elem, &results[o]),
                        "allocating a device-resident result");
      if (!f) f = core_->memory().Copy(src, results[o], "copying a device-resident result");
    }
    if (!f) f = BatchIo::ScatterViews(core_, batch, &results);
    for (OrtValue* v : results) {
      if (v != nullptr) g_ort->ReleaseValue(v);
    }
  } else {
    // Host results: downloaded into pinned memory (from a device), then scattered; the fixed
    // buffers stay the instance's.
    for (size_t o = 0; o < index.size() && !f; ++o) {
      if (fixed->host_outputs.empty()) {
        results[o] = fixed->outputs[index[o]];
      } else {
        results[o] = fixed->host_outputs[index[o]];
        f = core_->memory().Copy(fixed->outputs[index[o]], results[o], "downloading " + core_->outputs()[index[o]].name);
      }
    }
    if (!f) f = BatchIo::Scatter(stats, batch, results, counts);
  }
  timing->end = Clock::now();
  timing->output_us = Micros(t2, timing->end);
  return f;
}

Failure Instance::RunFixed(Fixed* fixed, OrtRunOptions* run_options, SessionCore& stats, Timing* timing) {
  Failure f;
  if (core_->cuda_graph()) {
    f = FromOrtStatus(g_ort->AddRunConfigEntry(run_options, "gpu_graph_id", std::to_string(fixed->graph_id).c_str()),
                      "selecting the CUDA graph");
    if (f) return f;
  }
  // Every output is bound (a captured graph writes all of them); the requests get theirs.
  // ORT captures a size's graph within its first runs (after warm-up runs): those hold the
  // capture lock alone; later runs replay and share it with other device work.
  const bool may_capture = core_->cuda_graph() && fixed->runs < kCaptureRuns;
  std::unique_lock<std::shared_mutex> alone(CaptureLock(), std::defer_lock);
  if (may_capture) alone.lock();
  std::shared_lock<std::shared_mutex> shared = SharedDeviceCalls(!may_capture && core_->on_device());
  fixed->runs++;
  const Clock::time_point t1 = Clock::now();
  f = bound_.RunInto(*core_, run_options, fixed->inputs.data(), core_->output_names(), core_->outputs().size(),
                     fixed->outputs.data());
  timing->ran = timing->end = Clock::now();
  timing->infer_us = Micros(t1, timing->ran);
  stats.stats.runs++;
  if (f) stats.stats.failures++;
  return f;
}

Failure Instance::ExecuteFixedAlone(RunJob* job, OrtRunOptions* run_options, SessionCore& stats, Timing* timing) {
  Failure f;
  if (job->cancel_code() != nullptr) return f;  // cancelled while queued: no run
  if ((f = job->Materialize())) return f;
  // Its size: dim 0 of the inputs whose first dim the model leaves dynamic, which must agree
  // (0 when every first dim is declared: one set of buffers). Every other dim is the declared
  // one (TypeScript and Prepare checked them).
  std::vector<int64_t> dims;
  int64_t rows = -1;
  for (size_t i = 0; i < core_->inputs().size(); ++i) {
    const IoInfo& io = core_->inputs()[i];
    if (!TensorDims(job->input(i).value(), &dims) || dims.empty()) {
      f.Set(code::kInternal, "reading the shape of " + TensorName(io, false));
      return f;
    }
    if (io.shape[0] >= 0) continue;
    if ((rows >= 0 && dims[0] != rows) || dims[0] == 0) {
      f.Set(code::kUnsupported, std::string("this model runs on fixed buffers") + (core_->cuda_graph() ? " (CUDA graphs)" : "") +
                                    ": the inputs' dynamic first dims must agree and not be 0, but " + TensorName(io, false) +
                                    " is " + ShapeString(dims));
      return f;
    }
    rows = dims[0];
  }
  if (rows < 0) rows = 0;
  Fixed* fixed = FixedFor(rows, false, &f);
  if (f) return f;
  for (size_t i = 0; i < core_->inputs().size() && !f; ++i) {
    f = core_->memory().Copy(job->input(i).value(), fixed->inputs[i], "uploading " + TensorName(core_->inputs()[i], false));
  }
  if (!f) f = RunFixed(fixed, run_options, stats, timing);
  if (f) return f;
  const Clock::time_point t2 = Clock::now();
  // Results in memory of their own: the job's buffer where it brought one that fits, else new
  // (host memory, or the device's for device-resident results).
  std::vector<int64_t> own;
  for (size_t o = 0; o < job->output_index().size() && !f; ++o) {
    const uint32_t idx = job->output_index()[o];
    const IoInfo& io = core_->outputs()[idx];
    OrtValue* src = fixed->outputs[idx];
    if (!TensorDims(src, &dims)) {
      f.Set(code::kInternal, "reading a fixed buffer's shape");
      break;
    }
    IoSlot& dst = job->output(o);
    if (!job->outputs_on_device() && dst.form() == IoSlot::Form::kValue && !dst.HasShape(dims[0], dims, &own) &&
        !job->DropPredicted(o)) {
      Failure own_f;
      own_f.Set(code::kInvalidArgument, TensorName(io, true) + ": the supplied buffer does not match the result's shape");
      return own_f;
    }
    if (dst.form() == IoSlot::Form::kValue) {
      f = core_->memory().Copy(src, dst.value(), "downloading " + TensorName(io, true));
      continue;
    }
    OrtAllocator* allocator = job->outputs_on_device() ? core_->memory().device_allocator() : DefaultAllocator();
    OrtValue* v = nullptr;
    f = FromOrtStatus(g_ort->CreateTensorAsOrtValue(allocator, dims.data(), dims.size(), io.elem, &v),
                      "allocating " + TensorName(io, true));
    if (!f) f = core_->memory().Copy(src, v, "copying " + TensorName(io, true));
    if (f) {
      if (v != nullptr) g_ort->ReleaseValue(v);
      break;
    }
    if (job->outputs_on_device()) {
      auto whole = std::make_shared<DeviceValue>();
      whole->core = core_;
      whole->value = v;
      if (!(f = whole->Describe())) job->SetOutputParent(o, std::move(whole));
    } else {
      dst.SetValue(v);
    }
  }
  timing->end = Clock::now();
  timing->output_us = Micros(t2, timing->end);
  return f;
}

}  // namespace nimify
