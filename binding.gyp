{
  "targets": [
    {
      "target_name": "codejail",
      "sources": ["<!@(node native/sources.mjs addon)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"],
      "ldflags": ["-Wl,-z,relro,-z,now"],
      "conditions": [["OS!='linux'", {"sources!": ["native/addon.cc"]}]]
    },
    {
      "target_name": "codejail_warm",
      "type": "shared_library",
      "product_name": "codejail_warm",
      "sources": ["<!@(node native/sources.mjs warm)"],
      "defines": ["_GNU_SOURCE"],
      "cflags": ["-fvisibility=hidden"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2"],
      "ldflags": ["-Wl,-z,relro,-z,now", "-pthread"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    }
  ]
}
