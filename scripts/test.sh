#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what the tests need (Python's reference GGUF reader), then:
# format and lint checks, every Rust test, and the Python compatibility tests against our own outputs.
# Needs ../shared/fixtures beside the checkout.
set -euo pipefail
# A failing command names itself and its line (set -e alone exits without a word).
trap 'echo "error: scripts/test.sh line $LINENO: \`$BASH_COMMAND\` failed (exit $?)" >&2' ERR
cd "$(dirname "$0")/.."
# Each section's start, in seconds since the script began, so a slow CI run shows where its time went.
section() { echo "== $* [${SECONDS}s]"; }
# Release builds without debug info here (Cargo.toml keeps it for profiling): 7-12% less time compiling and
# linking, and nothing in the tests reads it. Set for every cargo call below, so no step rebuilds another's.
export CARGO_PROFILE_RELEASE_DEBUG=0

if [ ! -d ../shared/fixtures ]; then
    echo "error: ../shared/fixtures not found (the golden fixtures live beside the checkout)" >&2
    exit 1
fi

section "system packages"
# libclang + kernel headers: the v4l crate generates its V4L2 bindings at build time. ffmpeg and socat: the
# live-video tests make their streams with ffmpeg and run serial output through socat. valgrind: the C API
# tests run under memcheck. A JDK: the Android JNI shim is tested on the host JVM. The cross compiler and
# qemu-user: the aarch64 runs at the end. Mesa's lavapipe (a CPU Vulkan driver) and glslc: the Vulkan
# shaders are compiled from source and run against the CPU kernels.
missing=()
for pkg in libclang-dev linux-libc-dev ffmpeg socat valgrind default-jdk-headless gcc-aarch64-linux-gnu \
           libc6-dev-arm64-cross linux-libc-dev-arm64-cross qemu-user mesa-vulkan-drivers glslc; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    "${as_root[@]}" apt-get update -q
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The tests that need these tools fail (rather than skip) when one is missing: `vulkan` is a Vulkan device
# (lavapipe here), `glslc` the shader compiler build.rs must have used.
export SAIL_EDGE_EXPECT_TOOLS=ffmpeg,socat,vulkan,glslc

section "python test dependencies"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    "gguf==0.19.0" "numpy>=1.26" "pytest>=8" "pytest-xdist>=3"

section "rustfmt / clippy"
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings

section "cargo test"
# The kernel twin tests say which SIMD paths they compared and which this CPU lacks; SAIL_EDGE_EXPECT_ISA,
# taken from the CPU's own flags, makes a path the CPU has but the tests did not run a failure (a CPU with
# AVX-512 VNNI or AVX-VNNI must run those tests).
x86_expect=avx2
grep -qw avx512_vnni /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo && x86_expect+=,avx512vnni
grep -qw avx_vnni /proc/cpuinfo && x86_expect+=,avxvnni
echo "x86 kernel paths expected on this CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)): $x86_expect"
SAIL_EDGE_EXPECT_ISA=$x86_expect cargo test --release --workspace

section "reference goldens on the other x86 paths too (the default run used the best one this CPU has)"
other_paths=(scalar)
if [ "$x86_expect" = avx2 ]; then
    echo "avx2 is this CPU's best path: the default run above took it"
else
    other_paths+=(avx2)
fi
for isa in "${other_paths[@]}"; do
    SAIL_EDGE_ISA=$isa SAIL_EDGE_EXPECT_PATH=$isa cargo test --release --test decoder_goldens --test pipeline_goldens
done

section "the library example prints what sail-edge describe prints"
cargo build --release --bin sail-edge --example describe
example_dir=$(mktemp -d)
trap 'rm -rf "$example_dir"' EXIT
./target/release/sail-edge convert ../shared/fixtures/sailvl2-tiny --type q8_0 -o "$example_dir/tiny.gguf" >/dev/null
for image in page.png astronaut.png; do
    args=(-m "$example_dir/tiny.gguf" --mmproj "$example_dir/mmproj-sailvl2-tiny-q8_0.gguf"
          --image "../shared/fixtures/images/$image" -p "What is in the picture?" -n 12)
    ./target/release/examples/describe "${args[@]}" > "$example_dir/example.txt"
    ./target/release/sail-edge describe "${args[@]}" > "$example_dir/cli.txt" 2>/dev/null
    cmp "$example_dir/example.txt" "$example_dir/cli.txt"
    echo "examples/describe = sail-edge describe on $image ($(wc -c < "$example_dir/cli.txt") bytes)"
done

section "the live examples run on a test pattern and a folder of frames"
cargo build --release --examples
./target/release/examples/scene-describer -m "$example_dir/tiny.gguf" --source pattern --max-updates 2 -t 2 \
    > "$example_dir/scene.txt"
test "$(wc -l < "$example_dir/scene.txt")" -ge 1
mkdir "$example_dir/kiosk"
for i in 01 02 03 04 05 06; do ln -s "$PWD/../shared/fixtures/images/page.png" "$example_dir/kiosk/$i.png"; done
./target/release/examples/kiosk-ocr -m "$example_dir/tiny.gguf" --source "frames:$example_dir/kiosk" -n 16 -t 2 \
    > "$example_dir/kiosk.txt" 2> "$example_dir/kiosk.err"
grep -q "read frame 4 " "$example_dir/kiosk.err"   # five steady, sharp frames: read once, at the fifth
grep -q "1 readings" "$example_dir/kiosk.err"
echo "scene-describer: $(wc -l < "$example_dir/scene.txt") captions; kiosk-ocr: one reading of the steady page"

section "the C API from C: describe.c = sail-edge describe, threads, misuse, all under valgrind"
./scripts/ci/c-api.sh

section "the Android JNI shim on the host JVM"
./scripts/ci/jni-test.sh

section "the C API's staticlibs for Android and iOS (no NDK or SDK needed: every dependency is pure Rust)"
# `cargo build` on these targets would also link the cdylib, which needs the NDK's (or Xcode's) linker; the
# staticlib is the same compilation without that link. What this checks is that every dependency compiles for
# the target with no SDK, which the optimization level does not change: opt-level 0 builds each in a minute
# instead of two and a half (nothing runs these libraries here).
for target in aarch64-linux-android aarch64-apple-ios; do
    rustup target list --installed | grep -qx "$target" || rustup target add "$target"
    CARGO_PROFILE_RELEASE_OPT_LEVEL=0 cargo rustc --release --target "$target" -p sail-edge-ffi --crate-type staticlib
    ls -l "target/$target/release/libsail_edge.a"
done

section "gguf-py compatibility"
cargo build --release --bin sail-edge
# Two workers (-n 2): the tests are single-threaded numpy work, about 90 s in one process and 70 s in two.
SAIL_EDGE_BIN="$PWD/target/release/sail-edge" python3 -m pytest -q -n 2 tests/python

# ---------------------------------------------------------------------------------------------------------
section "aarch64 kernels under qemu-user (NEON, dotprod, i8mm)"
# Cross-builds the runtime for aarch64 and runs the kernel tests under qemu-user (.cargo/config.toml names
# the cross linker and the runner) on three emulated CPUs: `max` (dotprod + i8mm: the sdot and smmla
# paths), the Raspberry Pi 5's Cortex-A76 (dotprod, no i8mm) and a NEON-only Cortex-A53. Every twin test is
# compared on each tier the CPU has and names the ones it lacks; SAIL_EDGE_EXPECT_ISA makes the tests
# assert which optional features each CPU reported, so a run that silently skipped a path fails.
rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
# (`-p sail-edge` beside `-p runtime`: the dependencies resolve with the features the aarch64 builds below
# use, so tokenizers, image and the rest are compiled once for this target, not twice; sail-edge has no
# library, so `--lib` still runs runtime's tests only.)
for cpu_expect in max:dotprod,i8mm cortex-a76:dotprod cortex-a53:neon; do
    QEMU_CPU=${cpu_expect%%:*} SAIL_EDGE_EXPECT_ISA=${cpu_expect#*:} \
        cargo test --release -p runtime -p sail-edge --target aarch64-unknown-linux-gnu --lib \
        -- --show-output kernels repack::
done
# The decoder goldens (reference logits, llama.cpp's f32/q8_0/q4_0 and MoE files) and the repack cache's
# tests (llama.cpp's q4_0/q8_0/MoE files decoded from the repacked layouts; another architecture's cache
# refused) through every aarch64 path: `max` has them all, SAIL_EDGE_ISA picks each one and
# SAIL_EDGE_EXPECT_PATH asserts that it ran. (The Cortex-A76 and A53 would run the same dotprod and neon
# code again; that each picks its own path by itself is asserted in the end-to-end script below.)
for isa in i8mm dotprod neon; do
    QEMU_CPU=max SAIL_EDGE_ISA=$isa SAIL_EDGE_EXPECT_PATH=$isa \
        cargo test --release --target aarch64-unknown-linux-gnu --test decoder_goldens --test repack \
        -- --skip the_repack_flag_writes_the_cache
done
# (`the_repack_flag_writes_the_cache` starts the sail-edge binary itself, which under qemu-user would need
# binfmt_misc; the aarch64 end-to-end script below runs `describe --repack` on each CPU instead.)

section "the whole sail-edge binary on aarch64 under qemu-user: Cortex-A76 (Pi 5), max, Cortex-A53"
# Cross-built with its default features; per CPU: the pipeline goldens, `doctor --json`'s kernel path, and a
# `describe` of the fixture equal byte for byte to the native one (see the script's header).
./scripts/ci/aarch64-e2e.sh
section "done"
