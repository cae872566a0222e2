#!/usr/bin/env bash
# Packs the sail-edge C library for iOS into examples/ios/SailEdgeFFI.xcframework, which Package.swift's binary
# target points at: libsail_edge.a for devices (arm64) and for the simulator (arm64 and x86_64 in one fat
# library), each with sail_edge.h and the module map that makes it `import SailEdgeFFI`.
#
# Runs on a Mac with Xcode (xcodebuild, lipo) and rustup; it cannot run on Linux, where CI only checks that
# `cargo build --release --target aarch64-apple-ios -p sail-edge-ffi` compiles the staticlib.
#   examples/ios/scripts/build-xcframework.sh        # SAIL_EDGE_SIM_X86=0 leaves out Intel simulators
set -euo pipefail

if [ "$(uname -s)" != "Darwin" ]; then
    echo "error: build-xcframework.sh needs macOS with Xcode (xcodebuild -create-xcframework, lipo);" \
        "this is $(uname -s). On Linux, build only the staticlib:" \
        "cargo build --release --target aarch64-apple-ios -p sail-edge-ffi" >&2
    exit 1
fi
for tool in cargo rustup xcodebuild lipo; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found" >&2; exit 1; }
done

ios=$(cd "$(dirname "$0")/.." && pwd)
root=$(cd "$ios/../.." && pwd)
cd "$root"

targets=(aarch64-apple-ios aarch64-apple-ios-sim)
[ "${SAIL_EDGE_SIM_X86:-1}" = "0" ] || targets+=(x86_64-apple-ios)
installed=$(rustup target list --installed)
for target in "${targets[@]}"; do
    if ! grep -qx "$target" <<<"$installed"; then
        echo "error: the Rust target $target is missing: rustup target add ${targets[*]}" >&2
        exit 1
    fi
done

# The deployment target Package.swift declares, so the linker does not warn about newer objects. No debug
# info: the release profile keeps some for profiling, which would make each .a several times larger.
export IPHONEOS_DEPLOYMENT_TARGET=${IPHONEOS_DEPLOYMENT_TARGET:-15.0}
export CARGO_PROFILE_RELEASE_DEBUG=0
for target in "${targets[@]}"; do
    cargo build --release --target "$target" -p sail-edge-ffi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Headers/SailEdgeFFI/: a folder of its own, so this module map cannot collide with another XCFramework's.
mkdir -p "$work/headers/SailEdgeFFI" "$work/simulator"
cp ffi/include/sail_edge.h "$ios/include/SailEdgeFFI/module.modulemap" "$work/headers/SailEdgeFFI/"

simulator_libs=(target/aarch64-apple-ios-sim/release/libsail_edge.a)
[ "${SAIL_EDGE_SIM_X86:-1}" = "0" ] || simulator_libs+=(target/x86_64-apple-ios/release/libsail_edge.a)
lipo -create "${simulator_libs[@]}" -output "$work/simulator/libsail_edge.a"

out=$ios/SailEdgeFFI.xcframework
rm -rf "$out"
xcodebuild -create-xcframework \
    -library target/aarch64-apple-ios/release/libsail_edge.a -headers "$work/headers" \
    -library "$work/simulator/libsail_edge.a" -headers "$work/headers" \
    -output "$out"
echo "built $out"
