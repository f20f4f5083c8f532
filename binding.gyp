{
  "targets": [
    {
      "target_name": "nimify",
      "sources": [
        "native/addon.cc",
        "native/async_job.cc",
        "native/batch.cc",
        "native/deferred_wake.cc",
        "native/device_copy.cc",
        "native/device_memory.cc",
        "native/device_tensor.cc",
        "native/element_type.cc",
        "native/errors.cc",
        "native/execution_providers.cc",
        "native/executor.cc",
        "native/formation.cc",
        "native/instance.cc",
        "native/io_binding.cc",
        "native/json_scan.cc",
        "native/json_scan_binding.cc",
        "native/ort_api.cc",
        "native/run_job.cc",
        "native/runtime.cc",
        "native/scheduler.cc",
        "native/session.cc",
        "native/session_core.cc",
        "native/settlement.cc",
        "native/tensor_io.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!(node scripts/fetch-ort-headers.js)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-fvisibility=hidden", "-Wall", "-Wextra"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++14", "-std=gnu++17"],
      "libraries": ["-ldl"]
    }
  ]
}
