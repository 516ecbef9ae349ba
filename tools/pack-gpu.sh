#!/usr/bin/env bash
# Packs release binaries for the NVIDIA test machine (no Rust there) into the ignored .gpu/:
# the CLI and the kernel benchmark, stripped and xz-compressed. Also fetches the Vulkan loader
# packages into the ignored .gl/ once. See docs/gpu-runs.md.
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-target}"
# The dev profile optimises our crates (Cargo.toml) and shares the from-source shaderc build.
cargo build -p qwen3-omni --bin qwen3-omni-vk
bench=$(cargo build -p qwen3-omni-vk --benches --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="kernels" and m.get("executable"): print(m["executable"])' | tail -1)
mkdir -p .gpu
for f in "$T/debug/qwen3-omni-vk" "$bench"; do
  n=$(basename "$f"); n=${n%%-[0-9a-f]*[0-9a-f]}; [ "$n" = kernels ] || n=qwen3-omni-vk
  cp "$f" ".gpu/$n" && strip ".gpu/$n" && xz -f -9 ".gpu/$n"
done
# With --tests: the compute library's test binaries too (.gpu/tests/NAME.xz), for the paths lavapipe
# cannot run and the subgroup size NVIDIA runs (32); run them there with the validation layer
# (its Debian package goes into .gl/ as well) and `--skip lavapipe_widths`.
if [ "${1:-}" = --tests ]; then
  mkdir -p .gpu/tests
  cargo test -p qwen3-omni-vk --no-run --message-format=json 2>/dev/null | python3 -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["kind"]==["test"]: print(m["target"]["name"], m["executable"])' \
  | while read -r name exe; do cp "$exe" ".gpu/tests/$name" && strip ".gpu/tests/$name" && xz -f -9 ".gpu/tests/$name"; done
fi
if [ ! -d .gl ] || [ -z "$(ls .gl/*.deb 2>/dev/null)" ]; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update -q
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 vulkan-validationlayers)
fi
ls -la .gpu .gl
