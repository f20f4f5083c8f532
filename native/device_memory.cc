#include "device_memory.h"

#include <cctype>
#include <cstdlib>

#include "ort_api.h"

namespace nimify {

namespace {

constexpr uint32_t kNvidiaVendorId = 0x10DE;

int DeviceId(const EpRequest& req) {
  for (size_t i = 0; i < req.keys.size(); ++i) {
    if (req.keys[i] == "device_id") return std::atoi(req.values[i].c_str());
  }
  return 0;
}

}  // namespace

DeviceMemory::~DeviceMemory() {
  if (pinned_allocator_ != nullptr) g_ort->ReleaseAllocator(pinned_allocator_);
  if (owns_device_allocator_) g_ort->ReleaseAllocator(device_allocator_);
  if (owned_device_ != nullptr) g_ort->ReleaseMemoryInfo(owned_device_);
  if (owned_host_ != nullptr) g_ort->ReleaseMemoryInfo(owned_host_);
}

Failure DeviceMemory::Resolve(OrtSession* session, const EpRequest* first, const OrtEpDevice* ep_device,
                              bool need_device_allocator, bool copies_through_ort) {
  Failure f;
  device_ = host_ = CpuMemoryInfo();
  device_allocator_ = DefaultAllocator();
  location_ = "cpu";
  // Copies outside a run: ORT's CopyTensors where the environment has the provider's data
  // transfer (a plugin library), else an Identity run on the provider (device_copy.h).
  copier_.Configure(first == nullptr ? (copies_through_ort ? DeviceCopier::Via::kIdentityRun : DeviceCopier::Via::kMemcpy)
                    : ep_device != nullptr ? DeviceCopier::Via::kCopyTensors
                                           : DeviceCopier::Via::kIdentityRun,
                    first);
  if (first == nullptr) return f;
  if (ep_device != nullptr) {
    // A plugin EP declares its memories with its device.
    const OrtMemoryInfo* d = g_ort->EpDevice_MemoryInfo(ep_device, OrtDeviceMemoryType_DEFAULT);
    const OrtMemoryInfo* h = g_ort->EpDevice_MemoryInfo(ep_device, OrtDeviceMemoryType_HOST_ACCESSIBLE);
    if (d != nullptr) device_ = d;
    if (h != nullptr) host_ = h;
  } else if (first->name == "cuda" || first->name == "tensorrt") {
    // ORT's CUDA allocators are registered under these names (TensorRT's too: it allocates
    // through the CUDA provider's memory).
    const int id = DeviceId(*first);
    if ((f = FromOrtStatus(g_ort->CreateMemoryInfo("Cuda", OrtArenaAllocator, id, OrtMemTypeDefault, &owned_device_),
                           "describing the " + first->name + " device's memory"))) {
      return f;
    }
    device_ = owned_device_;
    if (OrtStatus* st = g_ort->CreateMemoryInfo("CudaPinned", OrtDeviceAllocator, id, OrtMemTypeCPUOutput, &owned_host_)) {
      g_ort->ReleaseStatus(st);
      owned_host_ = nullptr;
    } else {
      host_ = owned_host_;
    }
  }
  location_ = LocationOf(device_);
  if (!IsHostMemory(device_)) {
    if (OrtStatus* st = g_ort->CreateAllocator(session, device_, &device_allocator_)) {
      device_allocator_ = nullptr;
      if (need_device_allocator) return FromOrtStatus(st, "the " + first->name + " device's allocator");
      g_ort->ReleaseStatus(st);
    } else {
      owns_device_allocator_ = true;
    }
  }
  if (host_ != CpuMemoryInfo()) {
    // The session's allocator for the pinned memory; none (a provider without one): host staging.
    if (OrtStatus* st = g_ort->CreateAllocator(session, host_, &pinned_allocator_)) {
      g_ort->ReleaseStatus(st);
      pinned_allocator_ = nullptr;
      host_ = CpuMemoryInfo();
    }
  }
  return f;
}

std::shared_mutex& CaptureLock() {
  static auto* lock = new std::shared_mutex();  // leaked on purpose: threads may outlive statics
  return *lock;
}

bool IsHostMemory(const OrtMemoryInfo* info) {
  OrtMemoryInfoDeviceType type = OrtMemoryInfoDeviceType_CPU;
  g_ort->MemoryInfoGetDeviceType(info, &type);
  // A device's pinned memory is described as the device's, of the host-accessible kind.
  return type == OrtMemoryInfoDeviceType_CPU || g_ort->MemoryInfoGetDeviceMemType(info) == OrtDeviceMemoryType_HOST_ACCESSIBLE;
}

std::string LocationOf(const OrtMemoryInfo* info) {
  if (IsHostMemory(info)) return "cpu";
  int id = 0;
  if (OrtStatus* st = g_ort->MemoryInfoGetId(info, &id)) g_ort->ReleaseStatus(st);
  if (g_ort->MemoryInfoGetVendorId(info) == kNvidiaVendorId) return "cuda:" + std::to_string(id);
  const char* name = nullptr;
  std::string out = "device";
  if (OrtStatus* st = g_ort->MemoryInfoGetName(info, &name)) g_ort->ReleaseStatus(st);
  else if (name != nullptr) out = name;
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out + ":" + std::to_string(id);
}

bool Feedable(const OrtMemoryInfo* value_memory, const OrtMemoryInfo* session_device) {
  if (IsHostMemory(value_memory)) return true;
  if (IsHostMemory(session_device)) return false;
  OrtMemoryInfoDeviceType a = OrtMemoryInfoDeviceType_CPU, b = OrtMemoryInfoDeviceType_CPU;
  g_ort->MemoryInfoGetDeviceType(value_memory, &a);
  g_ort->MemoryInfoGetDeviceType(session_device, &b);
  int ia = 0, ib = 0;
  if (OrtStatus* st = g_ort->MemoryInfoGetId(value_memory, &ia)) g_ort->ReleaseStatus(st);
  if (OrtStatus* st = g_ort->MemoryInfoGetId(session_device, &ib)) g_ort->ReleaseStatus(st);
  return a == b && ia == ib && g_ort->MemoryInfoGetVendorId(value_memory) == g_ort->MemoryInfoGetVendorId(session_device);
}

}  // namespace nimify
