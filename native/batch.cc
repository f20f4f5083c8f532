#include "batch.h"

#include <cstring>

#include "element_type.h"
#include "ort_api.h"
#include "run_job.h"
#include "tensor_io.h"

namespace nimify {

uint8_t* HostStaging::Buffer(size_t input, size_t bytes) {
  if (buffers_.size() <= input) buffers_.resize(input + 1);
  std::vector<uint8_t>& b = buffers_[input];
  // Grows only; at least one byte so the pointer is never null.
  if (b.size() < bytes || b.empty()) b.resize(bytes > 0 ? bytes : 1);
  return b.data();
}

const OrtMemoryInfo* HostStaging::memory_info() const { return CpuMemoryInfo(); }

Batch::~Batch() {
  if (run_options != nullptr) g_ort->ReleaseRunOptions(run_options);
}

namespace {

size_t ElementSize(ONNXTensorElementDataType t) {
  const ElementType* e = ElementTypeByOnnx(t);
  return e == nullptr ? 0 : e->size;
}

// Reads an OrtValue's dims; false on an ORT error.
bool ValueDims(const OrtValue* v, std::vector<int64_t>* dims) {
  OrtTensorTypeAndShapeInfo* info = nullptr;
  if (OrtStatus* st = g_ort->GetTensorTypeAndShape(v, &info)) {
    g_ort->ReleaseStatus(st);
    return false;
  }
  size_t rank = 0;
  OrtStatus* st = g_ort->GetDimensionsCount(info, &rank);
  if (st == nullptr) {
    dims->resize(rank);
    st = g_ort->GetDimensions(info, dims->data(), rank);
  }
  g_ort->ReleaseTensorTypeAndShapeInfo(info);
  if (st != nullptr) {
    g_ort->ReleaseStatus(st);
    return false;
  }
  return true;
}

uint8_t* ValueData(OrtValue* v) {
  void* p = nullptr;
  if (OrtStatus* st = g_ort->GetTensorMutableData(v, &p)) {
    g_ort->ReleaseStatus(st);
    return nullptr;
  }
  return static_cast<uint8_t*>(p);
}

}  // namespace

Failure BatchIo::Gather(const SessionCore& core, const Batch& batch, Staging& staging,
                        std::vector<OrtValue*>* inputs, CopyCounts* counts) {
  Failure f;
  const auto& ios = core.inputs();
  const std::vector<int64_t>& key = batch.jobs[0]->batch_.key;
  inputs->assign(ios.size(), nullptr);
  size_t k = 0;  // position in the key: rank, dims[1..] per input
  std::vector<int64_t> dims;
  for (size_t i = 0; i < ios.size(); ++i) {
    const size_t rank = static_cast<size_t>(key[k++]);
    dims.assign(1, batch.rows);
    int64_t row_elems = 1;
    for (size_t d = 1; d < rank; ++d) {
      dims.push_back(key[k]);
      row_elems *= key[k++];
    }
    const size_t row_bytes = static_cast<size_t>(row_elems) * ElementSize(ios[i].elem);
    uint8_t* dst = staging.Buffer(i, row_bytes * static_cast<size_t>(batch.rows));
    size_t offset = 0;
    for (RunJob* job : batch.jobs) {
      const size_t n = row_bytes * static_cast<size_t>(job->batch_.rows);
      // Deferred jobs hold a view of the caller's memory; others an OrtValue over it.
      const uint8_t* src = job->inputs_[i] != nullptr ? ValueData(job->inputs_[i]) : job->views_[i].data;
      if (src == nullptr) {
        f.Set(code::kInternal, "gather: could not read " + TensorName(ios[i], false));
        break;
      }
      std::memcpy(dst + offset, src, n);
      offset += n;
    }
    if (!f) {
      counts->gathered += offset;
      f = FromOrtStatus(g_ort->CreateTensorWithDataAsOrtValue(staging.memory_info(), dst, offset, dims.data(),
                                                              dims.size(), ios[i].elem, &(*inputs)[i]),
                        "building the batch tensor for " + TensorName(ios[i], false));
    }
    if (f) {
      for (OrtValue*& v : *inputs) {
        if (v != nullptr) g_ort->ReleaseValue(v);
        v = nullptr;
      }
      return f;
    }
  }
  return f;
}

Failure BatchIo::Scatter(SessionCore& core, const Batch& batch, const std::vector<OrtValue*>& outputs,
                         CopyCounts* counts) {
  Failure f;
  RunJob* first = batch.jobs[0];
  std::vector<int64_t> dims, job_dims, own;
  for (size_t o = 0; o < outputs.size(); ++o) {
    const IoInfo& io = core.outputs()[first->output_index_[o]];
    if (!ValueDims(outputs[o], &dims)) {
      f.Set(code::kInternal, "scatter: could not read the shape of " + TensorName(io, true));
      return f;
    }
    if (dims.empty() || dims[0] != batch.rows) {
      f.Set(code::kRuntimeError, TensorName(io, true) + " came back with " +
                                     (dims.empty() ? std::string("no dims") : "first dim " + std::to_string(dims[0])) +
                                     " for a batch of " + std::to_string(batch.rows) +
                                     " rows: its first dim is not a batch dim. Load the model with "
                                     "batching.batchDim: false");
      return f;
    }
    int64_t row_elems = 1;
    for (size_t d = 1; d < dims.size(); ++d) row_elems *= dims[d];
    const size_t row_bytes = static_cast<size_t>(row_elems) * ElementSize(io.elem);
    const uint8_t* src = ValueData(outputs[o]);
    if (src == nullptr) {
      f.Set(code::kInternal, "scatter: could not read " + TensorName(io, true));
      return f;
    }
    for (RunJob* job : batch.jobs) {
      const int64_t rows = job->batch_.rows;
      const size_t n = row_bytes * static_cast<size_t>(rows);
      job->scattered_ = true;
      OrtValue*& dst_value = job->outputs_[o];
      TensorView* view = job->views_.empty() ? nullptr : &job->views_[job->inputs_.size() + o];
      if (dst_value == nullptr && view != nullptr && view->data != nullptr) {
        // The job brought a buffer (deferred form): same rule as below, on the view's dims.
        bool fits = view->rank == dims.size() && view->dims[0] == rows;
        for (size_t d = 1; fits && d < dims.size(); ++d) fits = view->dims[d] == dims[d];
        if (fits) {
          if (n > 0) std::memcpy(view->data, src, n);
        } else if (job->kind_[o] == RunJob::OutputKind::kPredicted) {
          view->data = nullptr;
          job->kind_[o] = RunJob::OutputKind::kOrt;
          core.stats.shape_fallbacks++;
        } else {
          Failure own_f;
          own_f.Set(code::kInvalidArgument, TensorName(io, true) + ": the supplied buffer does not match the result's shape");
          job->Fail(own_f);
        }
      } else if (dst_value != nullptr) {
        // The job brought a buffer: TypeScript's predicted allocation, or the caller's own.
        bool fits = ValueDims(dst_value, &own) && own.size() == dims.size() && !own.empty() && own[0] == rows;
        for (size_t d = 1; fits && d < dims.size(); ++d) fits = own[d] == dims[d];
        if (fits) {
          uint8_t* dst = n > 0 ? ValueData(dst_value) : nullptr;
          if (dst != nullptr) {
            std::memcpy(dst, src, n);
          } else if (n > 0) {
            Failure own_f;
            own_f.Set(code::kInternal, "scatter: could not write " + TensorName(io, true));
            job->Fail(own_f);
          }
        } else if (job->kind_[o] == RunJob::OutputKind::kPredicted) {
          // The model declared a shape it does not produce: fall back to the copy path.
          g_ort->ReleaseValue(dst_value);
          dst_value = nullptr;
          job->kind_[o] = RunJob::OutputKind::kOrt;
          core.stats.shape_fallbacks++;
        } else {
          Failure own_f;
          own_f.Set(code::kInvalidArgument, TensorName(io, true) + ": the supplied buffer does not match the result's shape");
          job->Fail(own_f);
        }
      }
      if (dst_value == nullptr && job->kind_[o] == RunJob::OutputKind::kOrt) {
        job_dims = dims;
        job_dims[0] = rows;
        Failure nf = FromOrtStatus(g_ort->CreateTensorAsOrtValue(DefaultAllocator(), job_dims.data(), job_dims.size(),
                                                                 io.elem, &dst_value),
                                   "allocating " + TensorName(io, true));
        uint8_t* dst = nf || n == 0 ? nullptr : ValueData(dst_value);
        if (nf) {
          job->Fail(nf);
        } else if (n > 0 && dst == nullptr) {
          nf.Set(code::kInternal, "scatter: could not write " + TensorName(io, true));
          job->Fail(nf);
        } else if (n > 0) {
          std::memcpy(dst, src, n);
        }
      }
      counts->scattered += n;
      src += n;
    }
  }
  return f;
}

}  // namespace nimify
