#!/usr/bin/env bash
# The Android JNI shim (examples/android/.../sail_jni.c) on the host JVM: the shim is built with the system cc
# against the JDK's headers and the ffi crate's libsail_edge.so, and examples/android/jvm-test/SailNativeTest
# drives it through the same dev.sailedge.SailNative class an Android app loads, on the tiny fixture model.
# The answers must equal `sail-edge describe`'s. Run from anywhere; needs a JDK (javac, java, jni.h: Debian's
# default-jdk-headless) and ../shared/fixtures beside the checkout. Installs nothing.
set -euo pipefail
# A failing command names itself and its line (set -e alone exits without a word).
trap 'echo "error: scripts/ci/jni-test.sh line $LINENO: \`$BASH_COMMAND\` failed (exit $?)" >&2' ERR
cd "$(dirname "$0")/../.."

android=examples/android/sail-edge-android/src/main
fixtures=../shared/fixtures

# --- the JDK
for tool in javac java cc; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: $tool not found (apt-get install default-jdk-headless gcc)" >&2
        exit 1
    fi
done
if [ -z "${JAVA_HOME:-}" ]; then
    JAVA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v javac)")")")
fi
if [ ! -f "$JAVA_HOME/include/jni.h" ] || [ ! -f "$JAVA_HOME/include/linux/jni_md.h" ]; then
    echo "error: no jni.h under JAVA_HOME=$JAVA_HOME/include (a JRE, not a JDK? apt-get install default-jdk-headless)" >&2
    exit 1
fi
if [ ! -d "$fixtures/sailvl2-tiny" ]; then
    echo "error: $fixtures/sailvl2-tiny not found (the fixtures live beside the checkout)" >&2
    exit 1
fi

# --- the C library and the CLI (for the model and the expected answer)
# The same packages as c-api.sh (and so the same features of runtime as the test build): no second build.
cargo build --release -p sail-edge-ffi -p sail-edge
cargo build --release --bin sail-edge
header=ffi/include/sail_edge.h
test -f "$header" || { echo "error: $header missing" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- the shim: every warning is an error; libsail_edge.so beside it, found through $ORIGIN
cp target/release/libsail_edge.so "$work/"
cc -std=c11 -O2 -g -fPIC -shared -Wall -Wextra -Werror -fvisibility=hidden \
    -I"$JAVA_HOME/include" -I"$JAVA_HOME/include/linux" -Iffi/include \
    -o "$work/libsail_jni.so" "$android/cpp/sail_jni.c" \
    -L"$work" -lsail_edge -Wl,-rpath,'$ORIGIN' -Wl,--no-undefined
# Only the JNI entry points are exported (the methods are bound with RegisterNatives).
exported=$(nm -D --defined-only "$work/libsail_jni.so" | awk '{print $3}' | grep -v '^_' | sort | tr '\n' ' ')
if [ "$exported" != "JNI_OnLoad JNI_OnUnload " ]; then
    echo "error: libsail_jni.so exports more than JNI_OnLoad/JNI_OnUnload: $exported" >&2
    exit 1
fi

# --- the Java side: the library's classes and the test
javac -Xlint:all -Werror -d "$work/classes" \
    "$android"/java/dev/sailedge/*.java examples/android/jvm-test/SailNativeTest.java

# --- the model and the answer sail-edge describe gives
./target/release/sail-edge convert "$fixtures/sailvl2-tiny" --type q8_0 -o "$work/tiny.gguf" >/dev/null
model=$work/tiny.gguf
mmproj=$work/mmproj-sailvl2-tiny-q8_0.gguf
image=$fixtures/images/page.png
./target/release/sail-edge describe -m "$model" --mmproj "$mmproj" --image "$image" \
    -p "What is in the picture?" -n 12 > "$work/expected.txt" 2>/dev/null

# --- the test, under -Xcheck:jni: it reports JNI misuse (a leaked local reference table, a call with an
# exception pending) as warnings, which fail the run here
status=0
java -Xcheck:jni -Djava.library.path="$work" -cp "$work/classes" dev.sailedge.SailNativeTest \
    "$model" "$mmproj" "$image" "$work/expected.txt" 2>&1 | tee "$work/test.log" || status=$?
if [ "$status" -ne 0 ]; then
    echo "error: SailNativeTest failed (exit $status)" >&2
    exit 1
fi
if grep -E "WARNING in native method|JNI local refs|FATAL ERROR in native method" "$work/test.log"; then
    echo "error: -Xcheck:jni reported misuse of JNI (above)" >&2
    exit 1
fi
echo "jni-test: the JNI shim passes on $(java -version 2>&1 | head -n1)"
