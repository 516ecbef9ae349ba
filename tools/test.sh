#!/usr/bin/env bash
# The test suite: every crate's tests on whatever Vulkan device is present (lavapipe without a GPU),
# with the validation layer on inside the tests, then gguf-py's cross-check of our GGUF output.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${QWEN3VK_VENV:-$PWD/target/venv}"
export CARGO_TERM_COLOR=never
# The validation layer's synchronization checks too: a missing barrier fails the test that needed it.
export VK_LAYER_ENABLES="${VK_LAYER_ENABLES:-VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT}"
cargo build --workspace --all-targets
cargo test --workspace
if [ -f tools/gguf_check.py ]; then
  "$VENV/bin/python" tools/gguf_check.py --selftest
fi
