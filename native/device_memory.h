// Device memory of a session: where its provider keeps tensors, which host memory it copies
// from fastest, and the rules for moving tensors between the two (SPEC C3, issue 15 item 3).
//
// For a CPU session both are the CPU's. For a CUDA or TensorRT session (ORT's legacy providers)
// the device is "Cuda" memory of the provider's device_id and the host side is "CudaPinned"
// (page-locked: the upload is one copy at full bus speed); for a plugin-EP library, the memory infos
// its OrtEpDevice declares (default and host-accessible). Pinned staging is allocated through
// the session's own allocator for that memory (CreateAllocator); a provider that has none leaves
// staging in plain host memory (`pinned()` false), which ORT copies from synchronously.
//
// Ownership: a DeviceMemory belongs to its SessionCore and is released with it, after every
// Instance, job and DeviceValue that uses it (they hold the core). Read-only after Resolve, so
// any thread may read it; Copy is thread-safe (device_copy.h).
#pragma once

#include <onnxruntime_c_api.h>

#include <shared_mutex>
#include <string>

#include "device_copy.h"
#include "errors.h"
#include "execution_providers.h"

namespace nimify {

class DeviceMemory {
 public:
  DeviceMemory() = default;
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory();

  // Load thread, once the session exists. `first` is the provider that leads the session (null:
  // CPU only), `ep_device` the plugin device it was appended with (null for legacy providers).
  // A failure to find pinned memory is not an error (staging stays in host memory); a device
  // whose memory cannot be described is, and so is one without an allocator when
  // `need_device_allocator` (fixed device buffers).
  // `copies_through_ort`: copy even host memory as on a device (NIMIFY_IO_BINDING=fixed, so the
  // device path's copies run on the CPU).
  Failure Resolve(OrtSession* session, const EpRequest* first, const OrtEpDevice* ep_device, bool need_device_allocator,
                  bool copies_through_ort);
  // Any thread: copies `src` into `dst` (same type and shape) wherever each is (DeviceCopier).
  Failure Copy(const OrtValue* src, OrtValue* dst, const std::string& what) const { return copier_.Copy(src, dst, what); }
  // Load thread: readies the copier now (a model that copies on every batch), so that a
  // provider that cannot copy fails the load instead of a request.
  Failure PrepareCopies() const { return copier_.Prepare(); }

  const OrtMemoryInfo* device() const { return device_; }
  const OrtMemoryInfo* host() const { return host_; }
  // The allocator for host() when it is pinned memory; null: plain host memory (HostStaging).
  OrtAllocator* pinned_allocator() const { return pinned_allocator_; }
  // The session's allocator for device() (the CPU's default allocator on a CPU session): fixed
  // device buffers (CUDA graphs) and device-resident copies of them. Null only when the
  // provider offers none (Resolve then fails for a session that needs it).
  OrtAllocator* device_allocator() const { return device_allocator_; }
  bool pinned() const { return pinned_allocator_ != nullptr; }
  // "cpu", "cuda:0", ...: where device() is, as DeviceTensor.location reports it.
  const std::string& location() const { return location_; }

 private:
  OrtMemoryInfo* owned_device_ = nullptr;  // created here (legacy providers); else an EP device's or the CPU's
  OrtMemoryInfo* owned_host_ = nullptr;
  const OrtMemoryInfo* device_ = nullptr;
  const OrtMemoryInfo* host_ = nullptr;
  OrtAllocator* pinned_allocator_ = nullptr;  // from CreateAllocator; released before the session
  OrtAllocator* device_allocator_ = nullptr;  // from CreateAllocator (device sessions), else the default one
  bool owns_device_allocator_ = false;
  std::string location_ = "cpu";
  mutable DeviceCopier copier_;  // thread-safe; its sessions are made on first use
};

// CUDA graph capture (ORT captures with cudaStreamCaptureModeGlobal) forbids device calls from
// any other thread of the process while it runs: a run that may capture a graph holds this
// lock exclusively (Instance::RunFixed); every other run on a device and every device copy
// holds it shared. Process-wide, never destroyed.
std::shared_mutex& CaptureLock();
// The shared hold every device run and copy takes (nothing for a session on the host).
inline std::shared_lock<std::shared_mutex> SharedDeviceCalls(bool on_device) {
  return on_device ? std::shared_lock<std::shared_mutex>(CaptureLock()) : std::shared_lock<std::shared_mutex>();
}

// Host memory (the CPU's, and a device's pinned / host-accessible memory) that any thread may
// read with memcpy.
bool IsHostMemory(const OrtMemoryInfo* info);
// "cpu" for host memory; "cuda:<id>" for NVIDIA devices; else the memory's lower-cased name and id.
std::string LocationOf(const OrtMemoryInfo* info);
// Whether a tensor in `value_memory` can be fed to a session whose device memory is
// `session_device` without leaving the device: host memory always can (ORT uploads it); device
// memory only to a session on that same device.
bool Feedable(const OrtMemoryInfo* value_memory, const OrtMemoryInfo* session_device);

}  // namespace nimify
