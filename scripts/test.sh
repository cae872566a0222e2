#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what the tests need (Python's reference GGUF reader), then:
# format and lint checks, every Rust test, and the Python compatibility tests against our own outputs.
# Needs ../shared/fixtures beside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d ../shared/fixtures ]; then
    echo "error: ../shared/fixtures not found (the golden fixtures live beside the checkout)" >&2
    exit 1
fi

echo "== python test dependencies"
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    "gguf==0.19.0" "numpy>=1.26" "pytest>=8"

echo "== rustfmt / clippy"
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings

echo "== cargo test"
cargo test --release --workspace

echo "== reference goldens on the portable scalar path too"
SAIL_EDGE_ISA=scalar cargo test --release --test decoder_goldens --test pipeline_goldens

echo "== gguf-py compatibility"
cargo build --release --bin sail-edge
SAIL_EDGE_BIN="$PWD/target/release/sail-edge" python3 -m pytest -q tests/python
