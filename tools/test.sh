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
# Subgroup sizes (docs/kernels.md, "Subgroup sizes"): lavapipe runs 8 lanes by default and truly 4 and
# 16 at LP_NATIVE_VECTOR_WIDTH=128 / 512 (at 1024 / 2048 it reports 32 / 64 but runs 16, so those test
# nothing: tests/subgroups.rs checks that the self-check refuses them). On lavapipe only, the kernel
# tests (also at a required subgroup size) and the Thinker, Talker, Code2Wav and AudioTower parity
# tests run again at 4 and 16 lanes (~8 minutes on 2 cores).
if cargo run -q -p qwen3-omni --bin qwen3-omni-vk -- devices 2>/dev/null | grep -q '^would use: .*llvmpipe'; then
  for width in 128 512; do
    echo "test.sh: subgroup size $((width / 32)) (LP_NATIVE_VECTOR_WIDTH=$width)"
    LP_NATIVE_VECTOR_WIDTH=$width cargo test -p qwen3-omni-vk --test kernels --test moe --test moe_fused --test attention \
      --test sample --test audio_kernels --test code2wav_kernels --test subgroups
    LP_NATIVE_VECTOR_WIDTH=$width QWEN3VK_TEST_SUBGROUP_SIZE=max cargo test -p qwen3-omni-vk --test kernels --test moe
    LP_NATIVE_VECTOR_WIDTH=$width cargo test -p qwen3-omni --test thinker_gpu --test talker_gpu --test code2wav_gpu \
      --test audio_tower
  done
fi
# The server through the official `openai` Python client (loopback, bounded, the server killed at
# the end; the demo model is built by the first `chat` without -m).
cargo run -q -p qwen3-omni --bin qwen3-omni-vk -- chat -p hi -n 1 >/dev/null
"$VENV/bin/python" tools/openai_client_test.py "${CARGO_TARGET_DIR:-target}/debug/qwen3-omni-vk" models/demo.gguf
if [ -f tools/gguf_check.py ]; then
  "$VENV/bin/python" tools/gguf_check.py --selftest
fi
