#include "io_binding.h"

#include "ort_api.h"

namespace nimify {

BoundRun::~BoundRun() {
  if (binding_ != nullptr) g_ort->ReleaseIoBinding(binding_);
}

Failure BoundRun::BindAndRun(const SessionCore& core, OrtRunOptions* run_options, OrtValue* const* inputs,
                             const char* const* output_names, size_t n_out, const OrtMemoryInfo* output_memory,
                             OrtValue* const* preallocated) {
  Failure f;
  if (binding_ != nullptr && session_ != core.session()) {
    g_ort->ReleaseIoBinding(binding_);
    binding_ = nullptr;
  }
  if (binding_ == nullptr) {
    if ((f = FromOrtStatus(g_ort->CreateIoBinding(core.session(), &binding_), "binding the run's tensors"))) return f;
    session_ = core.session();
  }
  for (size_t i = 0; i < core.inputs().size() && !f; ++i) {
    f = FromOrtStatus(g_ort->BindInput(binding_, core.input_names()[i], inputs[i]), "binding " + core.inputs()[i].name);
  }
  for (size_t o = 0; o < n_out && !f; ++o) {
    f = FromOrtStatus(preallocated != nullptr ? g_ort->BindOutput(binding_, output_names[o], preallocated[o])
                                              : g_ort->BindOutputToDevice(binding_, output_names[o], output_memory),
                      std::string("binding output '") + output_names[o] + "'");
  }
  if (!f) f = FromOrtStatus(g_ort->RunWithBinding(core.session(), run_options, binding_), "running model");
  // Outputs in host memory are read by memcpy next: make sure every copy into them ended.
  if (!f) f = FromOrtStatus(g_ort->SynchronizeBoundOutputs(binding_), "running model");
  return f;
}

Failure BoundRun::Run(const SessionCore& core, OrtRunOptions* run_options, OrtValue* const* inputs,
                      const char* const* output_names, size_t n_out, const OrtMemoryInfo* output_memory,
                      OrtValue** outputs) {
  for (size_t o = 0; o < n_out; ++o) outputs[o] = nullptr;
  Failure f = BindAndRun(core, run_options, inputs, output_names, n_out, output_memory, nullptr);
  if (!f) {
    OrtValue** values = nullptr;
    size_t count = 0;
    f = FromOrtStatus(g_ort->GetBoundOutputValues(binding_, DefaultAllocator(), &values, &count), "fetching outputs");
    if (!f && count != n_out) {
      for (size_t o = 0; o < count; ++o) g_ort->ReleaseValue(values[o]);
      f.Set(code::kInternal, "ONNX Runtime returned " + std::to_string(count) + " bound outputs for " + std::to_string(n_out));
    } else if (!f) {
      for (size_t o = 0; o < n_out; ++o) outputs[o] = values[o];
    }
    if (values != nullptr) DefaultAllocator()->Free(DefaultAllocator(), values);
  }
  // The binding keeps references to what it was given (the staging tensors, the outputs) until
  // cleared: it holds nothing between runs.
  if (binding_ != nullptr) {
    g_ort->ClearBoundInputs(binding_);
    g_ort->ClearBoundOutputs(binding_);
  }
  return f;
}

Failure BoundRun::RunInto(const SessionCore& core, OrtRunOptions* run_options, OrtValue* const* inputs,
                          const char* const* output_names, size_t n_out, OrtValue* const* outputs) {
  Failure f = BindAndRun(core, run_options, inputs, output_names, n_out, nullptr, outputs);
  if (binding_ != nullptr) {
    g_ort->ClearBoundInputs(binding_);
    g_ort->ClearBoundOutputs(binding_);
  }
  return f;
}

}  // namespace nimify
