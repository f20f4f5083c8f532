#include "instance.h"

#include <chrono>

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
  if (batch.jobs.size() == 1 && batch.padded_rows <= batch.rows) {
    // One job: it runs on OrtValues over the caller's own memory (no gather/scatter). (A padded
    // one goes through gather like any batch: the model must see the padded shape.)
    RunJob* job = batch.jobs[0];
    if (Failure f = job->Materialize()) {
      job->Fail(f);
      return;
    }
    job->ExecuteOn(*core_, batch.run_options);
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
  const std::vector<uint32_t>& index = batch.jobs[0]->output_index();
  std::vector<const char*> names(index.size());
  for (size_t i = 0; i < index.size(); ++i) names[i] = core_->output_names()[index[i]];
  std::vector<OrtValue*> outputs(index.size(), nullptr);
  const Clock::time_point t1 = Clock::now();
  OrtStatus* st = g_ort->Run(core_->session(), batch.run_options, core_->input_names(), inputs.data(),
                             inputs.size(), names.data(), names.size(), outputs.data());
  timing->ran = timing->end = Clock::now();
  timing->infer_us = Micros(t1, timing->ran);
  stats.stats.runs++;
  for (OrtValue* v : inputs) g_ort->ReleaseValue(v);
  if (st != nullptr) {
    stats.stats.failures++;
    fail_all(FromOrtStatus(st, "running a batch of " + std::to_string(batch.jobs.size()) + " requests"));
  } else {
    const Clock::time_point t2 = Clock::now();
    f = BatchIo::Scatter(stats, batch, outputs, counts);
    timing->end = Clock::now();
    timing->output_us = Micros(t2, timing->end);
    if (f) fail_all(f);
  }
  for (OrtValue* v : outputs) {
    if (v != nullptr) g_ort->ReleaseValue(v);
  }
}

}  // namespace nimify
