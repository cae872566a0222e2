#!/usr/bin/env bash
# Build llama.cpp's `llama-bench` from the llama-cpp-python source distribution on PyPI (it vendors
# llama.cpp), pinned, into a cache outside the repository. Prints the binary's path on stdout.
#   LLAMA_CPP_PYTHON_VERSION  pinned sdist version (default 0.3.36)
#   SAIL_EDGE_BENCH_CACHE     cache folder (default ~/.cache/sail-edge-bench)
#   JOBS                      parallel compile jobs (default: all cores)
#   LLAMA_ISA                 native (default: tuned for this CPU, as llama.cpp builds by default) or avx2
#                             (AVX2+FMA+F16C only: the instruction set sail-edge's x86 kernels use)
set -euo pipefail
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
cache="${SAIL_EDGE_BENCH_CACHE:-$HOME/.cache/sail-edge-bench}"
jobs="${JOBS:-$(nproc)}"
isa="${LLAMA_ISA:-native}"
case "$isa" in
  native) build=build; flags=() ;;
  avx2) build=build-avx2; flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
    -DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF -DGGML_BMI2=ON) ;;
  *) echo "LLAMA_ISA must be native or avx2, not '$isa'" >&2; exit 2 ;;
esac
bin="$cache/llama-cpp-python-$version/$build/bin/llama-bench"
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi
mkdir -p "$cache"
command -v cmake >/dev/null || python3 -m pip install -q cmake >&2
sdist="$cache/llama_cpp_python-$version.tar.gz"
if [[ ! -s "$sdist" ]]; then
  url=$(curl -fsSL -H "Accept: application/vnd.pypi.simple.v1+json" https://pypi.org/simple/llama-cpp-python/ |
    python3 -c "import json,sys; v=sys.argv[1]; print(next(f['url'] for f in json.load(sys.stdin)['files'] if f['filename']==f'llama_cpp_python-{v}.tar.gz'))" "$version")
  echo "downloading $url" >&2
  curl -fsSL "$url" -o "$sdist.part" && mv "$sdist.part" "$sdist"
fi
src="$cache/llama-cpp-python-$version"
if [[ ! -d "$src/vendor/llama.cpp" ]]; then
  tar -xzf "$sdist" -C "$cache"
  [[ -d "$cache/llama_cpp_python-$version" ]] && mv "$cache/llama_cpp_python-$version" "$src"
fi
# A CPU build as llama.cpp ships it by default (GGML_NATIVE: tuned for this CPU) or restricted to AVX2,
# no network code.
cmake -S "$src/vendor/llama.cpp" -B "$src/$build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=OFF \
  "${flags[@]}" >&2
cmake --build "$src/$build" --target llama-bench -j "$jobs" >&2
echo "$bin"
