#include "batch.h"

#include <algorithm>
#include <cstring>

#include "device_memory.h"
#include "device_tensor.h"
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

AllocatorStaging::~AllocatorStaging() {
  for (Block& b : blocks_) {
    if (b.p != nullptr) allocator_->Free(allocator_, b.p);
  }
}

uint8_t* AllocatorStaging::Buffer(size_t input, size_t bytes) {
  if (blocks_.size() <= input) blocks_.resize(input + 1);
  Block& b = blocks_[input];
  if (b.p == nullptr || b.bytes < bytes) {
    if (b.p != nullptr) allocator_->Free(allocator_, b.p);
    const size_t want = bytes > 0 ? bytes : 1;
    b.p = allocator_->Alloc(allocator_, want);
    b.bytes = b.p != nullptr ? want : 0;
  }
  return static_cast<uint8_t*>(b.p);
}

std::unique_ptr<Staging> MakeStaging(const SessionCore& core) {
  if (core.memory().pinned()) return std::make_unique<AllocatorStaging>(core.memory().pinned_allocator(), core.memory().host());
  return std::make_unique<HostStaging>();
}

Batch::~Batch() {
  if (run_options != nullptr) g_ort->ReleaseRunOptions(run_options);
}

namespace {

size_t ElementSize(ONNXTensorElementDataType t) {
  const ElementType* e = ElementTypeByOnnx(t);
  return e == nullptr ? 0 : e->size;
}

}  // namespace

Failure BatchIo::Gather(const SessionCore& core, const Batch& batch, Staging& staging,
                        std::vector<OrtValue*>* inputs, CopyCounts* counts) {
  Failure f;
  const auto& ios = core.inputs();
  const std::vector<int64_t>& key = batch.jobs[0]->batch_key().key;
  inputs->assign(ios.size(), nullptr);
  size_t k = 0;  // position in the key: rank, dims[1..] per input
  std::vector<int64_t> dims;
  for (size_t i = 0; i < ios.size(); ++i) {
    const size_t rank = static_cast<size_t>(key[k++]);
    const int64_t padded = std::max(batch.padded_rows, batch.rows);
    dims.assign(1, padded);
    int64_t row_elems = 1;
    for (size_t d = 1; d < rank; ++d) {
      dims.push_back(key[k]);
      row_elems *= key[k++];
    }
    const size_t row_bytes = static_cast<size_t>(row_elems) * ElementSize(ios[i].elem);
    uint8_t* dst = staging.Buffer(i, row_bytes * static_cast<size_t>(padded));
    if (dst == nullptr) {
      f.Set(code::kInternal, "gather: could not allocate " + std::to_string(row_bytes * static_cast<size_t>(padded)) +
                                 " bytes of staging memory for " + TensorName(ios[i], false));
      for (OrtValue*& v : *inputs) {
        if (v != nullptr) g_ort->ReleaseValue(v);
        v = nullptr;
      }
      return f;
    }
    size_t offset = 0;
    for (RunJob* job : batch.jobs) {
      const size_t n = row_bytes * static_cast<size_t>(job->batch_key().rows);
      // A view of the caller's memory (numeric tensors), or an OrtValue over it.
      const uint8_t* src = job->input(i).data();
      if (src == nullptr) {
        f.Set(code::kInternal, "gather: could not read " + TensorName(ios[i], false));
        break;
      }
      std::memcpy(dst + offset, src, n);
      offset += n;
    }
    if (!f) {
      counts->gathered += offset;
      // Padding rows are zeros: a model sees valid (if meaningless) input there, never stale rows
      // of an earlier batch (another request's data).
      const size_t total = row_bytes * static_cast<size_t>(padded);
      if (total > offset) std::memset(dst + offset, 0, total - offset);
      offset = total;
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
    const IoInfo& io = core.outputs()[first->output_index()[o]];
    if (!TensorDims(outputs[o], &dims)) {
      f.Set(code::kInternal, "scatter: could not read the shape of " + TensorName(io, true));
      return f;
    }
    const int64_t padded = std::max(batch.padded_rows, batch.rows);
    if (dims.empty() || dims[0] != padded) {
      f.Set(code::kRuntimeError, TensorName(io, true) + " came back with " +
                                     (dims.empty() ? std::string("no dims") : "first dim " + std::to_string(dims[0])) +
                                     " for a batch of " + std::to_string(padded) +
                                     " rows: its first dim is not a batch dim. Load the model with "
                                     "batching.batchDim: false");
      return f;
    }
    int64_t row_elems = 1;
    for (size_t d = 1; d < dims.size(); ++d) row_elems *= dims[d];
    const size_t row_bytes = static_cast<size_t>(row_elems) * ElementSize(io.elem);
    const uint8_t* src = TensorData(outputs[o]);
    if (src == nullptr) {
      f.Set(code::kInternal, "scatter: could not read " + TensorName(io, true));
      return f;
    }
    for (RunJob* job : batch.jobs) {
      const int64_t rows = job->batch_key().rows;
      const size_t n = row_bytes * static_cast<size_t>(rows);
      job->MarkScattered();
      IoSlot& dst = job->output(o);
      if (dst.form() != IoSlot::Form::kEmpty) {
        // The job brought a buffer (an OrtValue over it, or a view of it): TypeScript's
        // predicted allocation, or the caller's own.
        if (dst.HasShape(rows, dims, &own)) {
          uint8_t* p = n > 0 ? dst.data() : nullptr;
          if (p != nullptr) {
            std::memcpy(p, src, n);
          } else if (n > 0) {
            Failure own_f;
            own_f.Set(code::kInternal, "scatter: could not write " + TensorName(io, true));
            job->Fail(own_f);
          }
        } else if (job->DropPredicted(o)) {
          // The model declared a shape it does not produce: fall back to the copy path.
          core.stats.shape_fallbacks++;
        } else {
          Failure own_f;
          own_f.Set(code::kInvalidArgument, TensorName(io, true) + ": the supplied buffer does not match the result's shape");
          job->Fail(own_f);
        }
      }
      if (dst.form() == IoSlot::Form::kEmpty && job->output_kind(o) == RunJob::OutputKind::kOrt) {
        job_dims = dims;
        job_dims[0] = rows;
        OrtValue* v = nullptr;
        Failure nf = FromOrtStatus(g_ort->CreateTensorAsOrtValue(DefaultAllocator(), job_dims.data(), job_dims.size(),
                                                                 io.elem, &v),
                                   "allocating " + TensorName(io, true));
        dst.SetValue(v);
        uint8_t* p = nf || n == 0 ? nullptr : dst.data();
        if (nf) {
          job->Fail(nf);
        } else if (n > 0 && p == nullptr) {
          nf.Set(code::kInternal, "scatter: could not write " + TensorName(io, true));
          job->Fail(nf);
        } else if (n > 0) {
          std::memcpy(p, src, n);
        }
      }
      counts->scattered += n;
      src += n;
    }
  }
  return f;
}

Failure BatchIo::ScatterViews(const std::shared_ptr<SessionCore>& ran_on, const Batch& batch,
                              std::vector<OrtValue*>* outputs) {
  Failure f;
  RunJob* first = batch.jobs[0];
  std::vector<int64_t> job_dims;
  for (size_t o = 0; o < outputs->size() && !f; ++o) {
    const IoInfo& io = ran_on->outputs()[first->output_index()[o]];
    auto whole = std::make_shared<DeviceValue>();
    whole->core = ran_on;
    whole->value = (*outputs)[o];
    (*outputs)[o] = nullptr;
    if ((f = whole->Describe())) break;
    const int64_t padded = std::max(batch.padded_rows, batch.rows);
    if (whole->dims.empty() || whole->dims[0] != padded) {
      f.Set(code::kRuntimeError, TensorName(io, true) + " came back without the batch's " + std::to_string(padded) +
                                     " rows as its first dim: load the model with batching.batchDim: false");
      break;
    }
    const size_t row_bytes = padded > 0 ? whole->bytes / static_cast<size_t>(padded) : 0;
    uint8_t* base = TensorData(whole->value);
    const bool on_device = !IsHostMemory(whole->memory);
    size_t offset = 0;
    for (RunJob* job : batch.jobs) {
      const int64_t rows = job->batch_key().rows;
      job_dims = whole->dims;
      job_dims[0] = rows;
      const size_t n = row_bytes * static_cast<size_t>(rows);
      OrtValue* view = nullptr;
      // A view of the job's rows in the same memory (on the device, or the host).
      Failure vf = FromOrtStatus(g_ort->CreateTensorWithDataAsOrtValue(whole->memory, base + offset, n, job_dims.data(),
                                                                      job_dims.size(), whole->elem, &view),
                                 "viewing " + TensorName(io, true));
      OrtAllocator* device_allocator = ran_on->memory().device_allocator();
      if (!vf && on_device && device_allocator != nullptr &&
          (reinterpret_cast<uintptr_t>(base) + offset) % kDeviceAlignment != 0) {
        // Device kernels (TensorRT's I/O above all) expect tensors at aligned addresses, which
        // a view at an arbitrary row is not: such a request gets its rows in memory of its own.
        // (No device allocator: the view is kept, as ORT made the batch output.)
        OrtValue* own = nullptr;
        vf = FromOrtStatus(g_ort->CreateTensorAsOrtValue(device_allocator, job_dims.data(), job_dims.size(), whole->elem, &own),
                           "allocating " + TensorName(io, true));
        if (!vf) vf = ran_on->memory().Copy(view, own, "copying " + TensorName(io, true));
        g_ort->ReleaseValue(view);
        if (vf) {
          if (own != nullptr) g_ort->ReleaseValue(own);
        } else {
          auto mine = std::make_shared<DeviceValue>();
          mine->core = ran_on;
          mine->value = own;
          if (!(vf = mine->Describe())) job->SetOutputParent(o, std::move(mine));
        }
      } else if (!vf) {
        job->output(o).SetValue(view);
        job->SetOutputParent(o, whole);
      }
      if (vf) job->Fail(vf);
      offset += n;
    }
  }
  return f;
}

}  // namespace nimify
