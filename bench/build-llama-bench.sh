#!/usr/bin/env bash
# Build llama.cpp's `llama-bench` from the llama-cpp-python source distribution (it vendors llama.cpp),
# pinned, into a cache outside the repository. Prints the binary's path on stdout.
#
# The source comes through pip (`pip download --no-deps --no-binary :all: llama-cpp-python==VERSION`), so
# no address is written here. pip prepares the sdist's metadata, which needs its build backend
# (scikit-build-core) and CMake: both are installed as wheels and used without build isolation (with
# isolation, `--no-binary :all:` would build CMake itself from source first).
#
#   LLAMA_CPP_PYTHON_VERSION  pinned sdist version (default 0.3.36)
#   SAIL_EDGE_BENCH_CACHE     cache folder (default ~/.cache/sail-edge-bench)
#   JOBS                      parallel compile jobs (default: all cores)
#   LLAMA_ISA                 which build:
#     native          tuned for this CPU, as llama.cpp builds by default (the default)
#     native-noamx    the same without the AMX paths (on some Sapphire Rapids VMs the default build dies with
#                     SIGSEGV at the first compute in its AMX code; bench/compare-llamacpp switches to this
#                     build by itself when that happens)
#     avx2            AVX2+FMA+F16C only: the instruction set sail-edge's baseline x86 kernels use
#     aarch64-dotprod cross-compiled for aarch64 Linux, armv8.2-a+dotprod (Cortex-A76: Raspberry Pi 5)
#     aarch64-i8mm    cross-compiled for aarch64 Linux, armv8.2-a+dotprod+i8mm (phones' big cores)
#     vulkan          the native CPU build plus llama.cpp's Vulkan backend (GGML_VULKAN; needs the Vulkan
#                     headers and loader, Debian's libvulkan-dev, and glslc): bench/vulkan-gpu runs it
#   The aarch64 builds need aarch64-linux-gnu-gcc/g++ (Debian: g++-aarch64-linux-gnu) and run under
#   `qemu-aarch64 -L /usr/aarch64-linux-gnu` (bench/arm-cost).
set -euo pipefail
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
cache="${SAIL_EDGE_BENCH_CACHE:-$HOME/.cache/sail-edge-bench}"
jobs="${JOBS:-$(nproc)}"
isa="${LLAMA_ISA:-native}"
cross=(-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc
  -DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++ -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF)
case "$isa" in
  native) build=build; flags=() ;;
  # -march=native turns the AMX code on by itself (it tests __AMX_INT8__), so the flags take it back out.
  native-noamx) build=build-noamx; flags=(-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
    "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16") ;;
  avx2) build=build-avx2; flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
    -DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF -DGGML_BMI2=ON) ;;
  aarch64-dotprod) build=build-aarch64-dotprod; flags=("${cross[@]}" -DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod) ;;
  aarch64-i8mm) build=build-aarch64-i8mm; flags=("${cross[@]}" -DGGML_CPU_ARM_ARCH=armv8.2-a+dotprod+i8mm) ;;
  vulkan) build=build-vulkan; flags=(-DGGML_VULKAN=ON) ;;
  *) echo "LLAMA_ISA must be native, native-noamx, avx2, aarch64-dotprod, aarch64-i8mm or vulkan, not '$isa'" >&2
     exit 2 ;;
esac
if [[ "$isa" == aarch64-* ]] && ! command -v aarch64-linux-gnu-g++ >/dev/null; then
  echo "LLAMA_ISA=$isa needs aarch64-linux-gnu-g++ (apt-get install g++-aarch64-linux-gnu)" >&2
  exit 2
fi
if [[ "$isa" == vulkan ]] && ! { command -v glslc >/dev/null && [[ -e /usr/include/vulkan/vulkan.h ]]; }; then
  echo "LLAMA_ISA=vulkan needs glslc and the Vulkan headers (apt-get install glslc libvulkan-dev)" >&2
  exit 2
fi
bin="$cache/llama-cpp-python-$version/$build/bin/llama-bench"
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi
mkdir -p "$cache"
python3 -m pip install -q cmake scikit-build-core >&2
sdist="$cache/llama_cpp_python-$version.tar.gz"
if [[ ! -s "$sdist" ]]; then
  dl=$(mktemp -d "$cache/download.XXXXXX")
  python3 -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$dl" \
    "llama-cpp-python==$version" >&2
  mv "$dl/llama_cpp_python-$version.tar.gz" "$sdist"
  rm -rf "$dl"
fi
src="$cache/llama-cpp-python-$version"
if [[ ! -d "$src/vendor/llama.cpp" ]]; then
  tar -xzf "$sdist" -C "$cache"
  [[ -d "$cache/llama_cpp_python-$version" ]] && mv "$cache/llama_cpp_python-$version" "$src"
fi
# No network code, static libraries (the aarch64 binary then needs only the cross libc and
# libstdc++ that qemu-user finds under /usr/aarch64-linux-gnu).
cmake -S "$src/vendor/llama.cpp" -B "$src/$build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF \
  "${flags[@]}" >&2
cmake --build "$src/$build" --target llama-bench -j "$jobs" >&2
echo "$bin"
