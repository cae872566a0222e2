#!/usr/bin/env bash
# The C API from C: examples/c/describe.c against the static and the shared library prints what
# `sail-edge describe` prints; the threads and misuse tests pass; all three run clean under valgrind memcheck
# (no invalid reads or writes, no definite or indirect leaks). Then the staticlibs for Android and iOS.
# Needs: cc, valgrind, ../shared/fixtures; called by scripts/test.sh.
set -euo pipefail
# A failing command names itself and its line (set -e alone exits without a word).
trap 'echo "error: scripts/ci/c-api.sh line $LINENO: \`$BASH_COMMAND\` failed (exit $?)" >&2' ERR
cd "$(dirname "$0")/../.."

for tool in cc valgrind; do
    command -v "$tool" >/dev/null || { echo "error: $tool is required for the C API tests" >&2; exit 1; }
done

cargo build --release -p sail-edge-ffi -p sail-edge
lib=target/release
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# rustc's list of the system libraries a static Rust library needs on this target.
native_libs=(-lpthread -ldl -lm -lrt -lutil -lgcc_s -lc)
cflags=(-std=c11 -Wall -Wextra -Werror -O1 -g -Iffi/include)
build() { # name source
    cc "${cflags[@]}" "$2" "$lib/libsail_edge.a" "${native_libs[@]}" -o "$dir/$1-static"
}
cc "${cflags[@]}" examples/c/describe.c -L"$lib" -lsail_edge -Wl,-rpath,"$PWD/$lib" -o "$dir/describe-shared"
build describe examples/c/describe.c
build threads ffi/tests/c/threads.c
build misuse ffi/tests/c/misuse.c
# The shared build really loads the shared library. (ldd's output is kept first: `ldd | grep -q` under
# pipefail fails at random when grep exits before ldd has written everything.)
libs=$(ldd "$dir/describe-shared")
grep -q "libsail_edge.so" <<< "$libs" || { echo "error: describe-shared does not load libsail_edge.so:" >&2; echo "$libs" >&2; exit 1; }

./target/release/sail-edge convert ../shared/fixtures/sailvl2-tiny --type q8_0 -o "$dir/tiny.gguf" >/dev/null
model=(-m "$dir/tiny.gguf" --mmproj "$dir/mmproj-sailvl2-tiny-q8_0.gguf")
images=../shared/fixtures/images

echo "-- examples/c/describe = sail-edge describe"
for image in page.png astronaut.png; do
    args=("${model[@]}" --image "$images/$image" -p "What is in the picture?" -n 12)
    ./target/release/sail-edge describe "${args[@]}" > "$dir/cli.txt" 2> "$dir/cli.err" || { cat "$dir/cli.err" >&2; exit 1; }
    for kind in static shared; do
        "$dir/describe-$kind" "${args[@]}" > "$dir/c.txt"
        cmp "$dir/c.txt" "$dir/cli.txt"
    done
    echo "describe.c (static and shared) = sail-edge describe on $image ($(wc -c < "$dir/cli.txt") bytes)"
done

echo "-- threads and misuse"
"$dir/threads-static" "$dir/tiny.gguf" "$dir/mmproj-sailvl2-tiny-q8_0.gguf" "$images/page.png" "$images/astronaut.png"
"$dir/misuse-static" "$dir/tiny.gguf" "$dir/mmproj-sailvl2-tiny-q8_0.gguf" "$images/page.png"

echo "-- the same under valgrind memcheck"
# Definite and indirect leaks fail; "still reachable" is process-lifetime state (the handle registry, the
# tracing dispatcher) that is freed by exit.
memcheck=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect
          --show-leak-kinds=definite,indirect)
"${memcheck[@]}" "$dir/misuse-static" "$dir/tiny.gguf" "$dir/mmproj-sailvl2-tiny-q8_0.gguf" "$images/page.png"
"${memcheck[@]}" "$dir/threads-static" "$dir/tiny.gguf" "$dir/mmproj-sailvl2-tiny-q8_0.gguf" "$images/page.png" \
    "$images/astronaut.png"
# (One tile: under memcheck each tile costs seconds, and the threads test above already took the page's three.)
"${memcheck[@]}" "$dir/describe-shared" "${model[@]}" --image "$images/astronaut.png" -p "What is in the picture?" \
    -n 12 > "$dir/c.txt"
./target/release/sail-edge describe "${model[@]}" --image "$images/astronaut.png" -p "What is in the picture?" -n 12 \
    > "$dir/cli.txt" 2> "$dir/cli.err" || { cat "$dir/cli.err" >&2; exit 1; }
cmp "$dir/cli.txt" "$dir/c.txt"
echo "valgrind: misuse, threads and describe clean"
