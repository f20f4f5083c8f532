#include "instance.h"

#include <algorithm>
#include <chrono>

#include "device_memory.h"
#include "ort_api.h"
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
  // asynchronous upload) unless it cannot be (rows < 0: strings, device-resident inputs).
  const bool device_out = first->outputs_on_device();
  const bool bound = core_->io_binding() || device_out;
  const bool alone = batch.jobs.size() == 1 && batch.padded_rows <= batch.rows;
  if (core_->fixed_buffers() && first->batch_key().rows < 0) {
    // Fixed buffers exist per batch shape; a job that cannot be gathered has none.
    Failure f;
    f.Set(code::kUnsupported, std::string("this model runs every batch on fixed buffers") +
                                  (core_->cuda_graph() ? " (CUDA graphs)" : "") +
                                  ": requests must be batchable — numeric Tensors (not DeviceTensors) whose inputs agree on the batch dim");
    first->Fail(f);
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

Instance::Fixed* Instance::FixedFor(const Batch& batch, Failure* f) {
  const int64_t rows = std::max(batch.padded_rows, batch.rows);
  for (auto& [size, fixed] : fixed_) {
    if (size == rows) return fixed.get();
  }
  auto fixed = std::make_unique<Fixed>();
  fixed->graph_id = static_cast<int>(fixed_.size()) + 1;  // 0 is ORT's own
  const DeviceMemory& mem = core_->memory();
  std::vector<int64_t> dims;
  auto make = [&](const IoInfo& io, OrtAllocator* allocator, std::vector<OrtValue*>* list) {
    dims.assign(io.shape.begin(), io.shape.end());  // fixed but dim 0 (FixedShapeProblem, checked at load)
    dims[0] = rows;
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
  fixed_.emplace_back(rows, std::move(fixed));
  return fixed_.back().second.get();
}

Failure Instance::ExecuteFixed(Batch& batch, SessionCore& stats, const std::vector<OrtValue*>& inputs, Timing* timing,
                               CopyCounts* counts) {
  Failure f;
  Fixed* fixed = FixedFor(batch, &f);
  if (f) return f;
  // Upload: the gathered batch (pinned staging) into the size's input buffers.
  for (size_t i = 0; i < inputs.size() && !f; ++i) f = CopyValue(inputs[i], fixed->inputs[i], "uploading " + core_->inputs()[i].name);
  if (f) return f;
  if (core_->cuda_graph()) {
    f = FromOrtStatus(g_ort->AddRunConfigEntry(batch.run_options, "gpu_graph_id", std::to_string(fixed->graph_id).c_str()),
                      "selecting the CUDA graph");
    if (f) return f;
  }
  // Every output is bound (a captured graph writes all of them); the batch's requests get theirs.
  const size_t n_out = core_->outputs().size();
  const Clock::time_point t1 = Clock::now();
  f = bound_.RunInto(*core_, batch.run_options, fixed->inputs.data(), core_->output_names(), n_out, fixed->outputs.data());
  timing->ran = timing->end = Clock::now();
  timing->infer_us = Micros(t1, timing->ran);
  stats.stats.runs++;
  if (f) {
    stats.stats.failures++;
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
      if (!f) f = CopyValue(src, results[o], "copying a device-resident result");
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
        f = CopyValue(fixed->outputs[index[o]], results[o], "downloading " + core_->outputs()[index[o]].name);
      }
    }
    if (!f) f = BatchIo::Scatter(stats, batch, results, counts);
  }
  timing->end = Clock::now();
  timing->output_us = Micros(t2, timing->end);
  return f;
}

}  // namespace nimify
