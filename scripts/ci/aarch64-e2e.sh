#!/usr/bin/env bash
# aarch64 end to end under qemu-user: the whole `sail-edge` binary (default features: hub, camera, serial)
# cross-built for aarch64-unknown-linux-gnu, then on three emulated CPUs, each with the kernel path it must
# take:
#
#   cortex-a76  (Raspberry Pi 5's core: NEON + dotprod, no i8mm)  -> dotprod
#   max         (every feature qemu has: dotprod + i8mm)           -> i8mm
#   cortex-a53  (Pi 3 / Zero 2 W: plain armv8.0 NEON)              -> neon
#
# per CPU: `sail-edge doctor --json` (its kernel_path is asserted), `sail-edge describe` of the fixture (its
# `kernel path:` log line is asserted, and its stdout must equal the native x86-64 describe's byte for byte,
# from the rows and from the repack cache), and pipeline goldens (tests/pipeline_goldens.rs, cross-built, run
# through the qemu runner of .cargo/config.toml). The fixture is converted once with the aarch64 binary under
# qemu, and that file must equal the native conversion byte for byte.
#
# The pipeline goldens are shared out between the CPUs rather than all run on each (about 220 s per CPU):
# the quantized files (f16, q8_0, q4_0, q4_k_m) of the dense fixture on the A76 (dotprod) and of the MoE
# fixture on `max` (i8mm; the same vision tower), the f32 ones on the A53 (float weights take the same NEON
# code on every CPU). Every integer tile is compared bit for bit with the scalar one on all three CPUs, and
# the decoder goldens and llama.cpp's files run through every path, dense and MoE, in scripts/test.sh's
# kernel section.
#
# Run from anywhere; needs ../shared/fixtures beside the checkout and the packages scripts/test.sh installs
# (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user, libclang-dev). Missing tools fail, never skip.
#
# Cross-compiling notes, checked on Debian 12 with only those packages:
# - v4l's build script runs bindgen with --target=aarch64-unknown-linux-gnu; libclang finds the cross GCC
#   (/usr/lib/gcc-cross/aarch64-linux-gnu) and with it /usr/aarch64-linux-gnu/include, so the V4L2 bindings
#   come from the arm64 glibc and kernel headers with no extra flags (the script checks they did).
#   BINDGEN_EXTRA_CLANG_ARGS is deliberately not set: it is part of the build script's fingerprint, and a
#   value here that scripts/test.sh's own aarch64 runs lack would rebuild v4l and everything above it twice.
# - ring (rustls, `hub`): the cc crate picks aarch64-linux-gnu-gcc for this target by itself.
set -euo pipefail
# A failing command names itself and its line (set -e alone exits without a word).
trap 'echo "error: scripts/ci/aarch64-e2e.sh line $LINENO: \`$BASH_COMMAND\` failed (exit $?)" >&2' ERR
cd "$(dirname "$0")/../.."

TARGET=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu
CPUS=(cortex-a76 max cortex-a53)
declare -A EXPECT=([cortex-a76]=dotprod [max]=i8mm [cortex-a53]=neon)
declare -A FEATURES=([cortex-a76]="dotprod neon" [max]="dotprod i8mm neon sve" [cortex-a53]="neon")
# The pipeline_goldens tests each CPU runs (name filters; each must match exactly one test).
declare -A GOLDENS=(
    [cortex-a76]="dense_quantized_files_stay_close_to_the_reference"
    [max]="moe_quantized_files_stay_close_to_the_reference"
    [cortex-a53]="dense_f32_matches_the_reference moe_f32_matches_the_reference"
)
FIXTURE=../shared/fixtures/sailvl2-tiny
# One tile (the three-tile page takes 10 s a describe under qemu; tiling is the same code on every ISA).
IMAGE=../shared/fixtures/images/astronaut.png
PROMPT="What is in the picture?"

die() {
    echo "error: $*" >&2
    exit 1
}

# ---- preconditions (no silent skips)
[ -d "$FIXTURE" ] || die "$FIXTURE not found (the golden fixtures live beside the checkout)"
command -v qemu-aarch64 >/dev/null || die "qemu-aarch64 not found: install qemu-user (scripts/test.sh does)"
command -v aarch64-linux-gnu-gcc >/dev/null ||
    die "aarch64-linux-gnu-gcc not found: install gcc-aarch64-linux-gnu (scripts/test.sh does)"
[ -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ] ||
    die "$SYSROOT/lib/ld-linux-aarch64.so.1 not found: install libc6-dev-arm64-cross (scripts/test.sh does)"
[ -e "$SYSROOT/include/linux/videodev2.h" ] ||
    die "$SYSROOT/include/linux/videodev2.h not found: install linux-libc-dev-arm64-cross (scripts/test.sh does)"
command -v python3 >/dev/null || die "python3 not found (reads doctor's JSON)"
supported=$(qemu-aarch64 -cpu help || true) # lists the CPUs, then exits 1
for cpu in "${CPUS[@]}"; do
    grep -qw -- "$cpu" <<<"$supported" || die "this qemu-aarch64 has no -cpu $cpu ($(qemu-aarch64 --version | head -1))"
done
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"
# The qemu runs below set their own CPU and log level.
unset QEMU_CPU RUST_LOG SAIL_EDGE_ISA

# ---- timing: every step's seconds, and a summary at the end
declare -a TIMES=()
script_start=$SECONDS
step() { # step NAME COMMAND...: run, report and record how long it took
    local name=$1 t0=$SECONDS
    shift
    echo "== $name"
    "$@"
    local dt=$((SECONDS - t0))
    TIMES+=("$(printf '%5ds  %s' "$dt" "$name")")
    echo "   ($name: ${dt}s)"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
native=target/release/sail-edge
cross=target/$TARGET/release/sail-edge
on_cpu() { # on_cpu CPU ARGS...: the aarch64 binary on an emulated CPU
    local cpu=$1
    shift
    qemu-aarch64 -cpu "$cpu" -L "$SYSROOT" "$cross" "$@"
}
describe_args=(-m "$work/tiny.gguf" --mmproj "$work/mmproj-sailvl2-tiny-q8_0.gguf" --image "$IMAGE" -p "$PROMPT" -n 12)

# ---- builds (no-ops after scripts/test.sh's native and aarch64 steps, which build the same artifacts)
step "native build (x86-64 reference)" cargo build --release --bin sail-edge
step "cross build: sail-edge for $TARGET (default features)" \
    cargo build --release --target "$TARGET" --bin sail-edge
step "cross build: tests/pipeline_goldens.rs for $TARGET" \
    cargo test --release --target "$TARGET" --test pipeline_goldens --no-run

check_cross_artifacts() {
    # An aarch64 ELF (e_machine 183 = EM_AARCH64) ...
    [ "$(od -An -tu2 -j18 -N2 "$cross" | tr -d ' ')" = 183 ] || die "$cross is not an aarch64 executable"
    # ... whose V4L2 bindings came from the arm64 headers: glibc's bits/wordsize.h sets this 0 on aarch64
    # and 1 on x86-64 (bindgen runs on the host; with the host headers it would say 1).
    local bindings
    bindings=$(ls -t target/"$TARGET"/release/build/v4l2-sys-mit-*/out/v4l2_bindings.rs 2>/dev/null | head -1)
    [ -n "$bindings" ] || die "no aarch64 v4l2 bindings under target/$TARGET (was the camera feature built?)"
    grep -q '__WORDSIZE_TIME64_COMPAT32: u32 = 0;' "$bindings" ||
        die "$bindings was generated from non-arm64 headers"
    echo "aarch64 ELF; V4L2 bindings from the arm64 headers ($bindings)"
}
step "cross artifacts are aarch64" check_cross_artifacts

# ---- the fixture, converted under qemu; the converter's output is the same bytes on every ISA
convert_fixture() {
    on_cpu cortex-a53 convert "$FIXTURE" --type q8_0 -o "$work/tiny.gguf" >/dev/null
    mkdir "$work/x86"
    "$native" convert "$FIXTURE" --type q8_0 -o "$work/x86/tiny.gguf" >/dev/null
    for f in tiny.gguf mmproj-sailvl2-tiny-q8_0.gguf; do
        cmp "$work/$f" "$work/x86/$f" || die "$f converted on aarch64 differs from the x86-64 conversion"
    done
    echo "aarch64 conversion = x86-64 conversion ($(wc -c <"$work/tiny.gguf") + $(wc -c <"$work/mmproj-sailvl2-tiny-q8_0.gguf") bytes)"
}
step "convert the fixture (aarch64 under qemu -cpu cortex-a53, and native)" convert_fixture

native_describe() {
    RUST_LOG=info "$native" describe "${describe_args[@]}" >"$work/native.txt" 2>"$work/native.err"
    [ -s "$work/native.txt" ] || die "native describe printed nothing"
    echo "native ($(grep -o 'kernel path: [a-z0-9]*' "$work/native.err")): $(wc -c <"$work/native.txt") bytes"
}
step "describe natively (the reference output)" native_describe

# ---- per CPU
kernel_path_check() {
    local cpu=$1 want=${EXPECT[$1]} got
    # `doctor --json` reports the path the runtime will take (runtime::kernels::isa()).
    on_cpu "$cpu" doctor --json >"$work/doctor-$cpu.json"
    got=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["kernel_path"])' <"$work/doctor-$cpu.json")
    [ "$got" = "$want" ] || die "-cpu $cpu: doctor reports kernel path '$got', expected '$want'"
    # Its features are the emulated CPU's (what the process detects), not the host's /proc/cpuinfo.
    local features
    features=$(python3 -c 'import json, sys; f = json.load(sys.stdin)["features"]; print(" ".join(k for k in sorted(f) if f[k]))' \
        <"$work/doctor-$cpu.json")
    [ "$features" = "${FEATURES[$cpu]}" ] || die "-cpu $cpu: doctor reports features '$features', expected '${FEATURES[$cpu]}'"
    echo "-cpu $cpu: doctor kernel_path = $got, features = $features"
}
describe_check() {
    local cpu=$1 want=${EXPECT[$1]}
    RUST_LOG=info on_cpu "$cpu" describe "${describe_args[@]}" >"$work/$cpu.txt" 2>"$work/$cpu.err" ||
        { cat "$work/$cpu.err" >&2; die "-cpu $cpu: describe failed"; }
    # The engine logs the path it runs at open (runtime/src/engine/mod.rs).
    grep -q "kernel path: $want\$" "$work/$cpu.err" ||
        { cat "$work/$cpu.err" >&2; die "-cpu $cpu: describe did not run the $want kernels"; }
    # The same answer as on x86-64, byte for byte (measured on all three CPUs): the q8_0 block dots are
    # exact integer sums scaled per block on every path; where float sums are ordered differently (x86's
    # decode matmul) logits may move in the last bits, but greedy tokens of this fixture do not. The goldens
    # bound the numerics themselves.
    cmp "$work/native.txt" "$work/$cpu.txt" || {
        echo "native:" >&2; cat "$work/native.txt" >&2
        echo "-cpu $cpu:" >&2; cat "$work/$cpu.txt" >&2
        die "-cpu $cpu: describe's answer differs from the native x86-64 one"
    }
    echo "-cpu $cpu: describe ran the $want kernels; answer = native ($(wc -c <"$work/$cpu.txt") bytes)"
}
describe_repacked_check() {
    local cpu=$1 want=${EXPECT[$1]}
    # The same question with the repack cache: the first CPU writes $work/tiny.gguf.repack (the aarch64
    # cache; the x86-64 one would be refused), the others read it. The repacked kernels are bit-identical to
    # the row kernels, so the answer is again the native one.
    RUST_LOG=info on_cpu "$cpu" describe --repack "${describe_args[@]}" >"$work/$cpu-repack.txt" \
        2>"$work/$cpu-repack.err" || { cat "$work/$cpu-repack.err" >&2; die "-cpu $cpu: describe --repack failed"; }
    grep -q "kernel path: $want\$" "$work/$cpu-repack.err" ||
        { cat "$work/$cpu-repack.err" >&2; die "-cpu $cpu: describe --repack did not run the $want kernels"; }
    grep -Eq "using the repacked weights in|repacked [0-9]+ tensors into" "$work/$cpu-repack.err" ||
        { cat "$work/$cpu-repack.err" >&2; die "-cpu $cpu: describe --repack did not decode from the cache"; }
    cmp "$work/native.txt" "$work/$cpu-repack.txt" || die "-cpu $cpu: the repacked answer differs from the native one"
    local how="read the cache"
    grep -Eq "repacked [0-9]+ tensors into" "$work/$cpu-repack.err" && how="wrote the cache"
    echo "-cpu $cpu: describe --repack $how and decoded from it on $want; answer = native"
}
goldens_check() {
    local cpu=$1 tests
    read -ra tests <<<"${GOLDENS[$cpu]}"
    QEMU_CPU="$cpu" cargo test --release --target "$TARGET" --test pipeline_goldens -- --exact "${tests[@]}" |
        tee "$work/goldens-$cpu.txt"
    # A filter that matched nothing would pass without running anything.
    grep -q "test result: ok. ${#tests[@]} passed" "$work/goldens-$cpu.txt" ||
        die "-cpu $cpu: expected ${#tests[@]} pipeline golden tests to pass (${tests[*]})"
}
for cpu in "${CPUS[@]}"; do
    step "-cpu $cpu: kernel path (doctor --json)" kernel_path_check "$cpu"
    step "-cpu $cpu: describe the fixture" describe_check "$cpu"
    step "-cpu $cpu: describe the fixture from the repack cache" describe_repacked_check "$cpu"
    step "-cpu $cpu: pipeline goldens (${GOLDENS[$cpu]})" goldens_check "$cpu"
done

echo "== aarch64 end to end: times"
printf '%s\n' "${TIMES[@]}"
printf '%5ds  total\n' $((SECONDS - script_start))
