#!/usr/bin/env python3
"""Write a synthetic Qwen3-Omni-shaped safetensors checkpoint (Thinker text subset) for tests
and for the quantizer benchmark.

    python3 tools/make_synthetic_bf16.py OUT_DIR --layers 6          # ~9 GB, real Thinker widths
    python3 tools/make_synthetic_bf16.py OUT_DIR --tiny              # a few hundred KB, for CI

The checkpoint has config.json (the real Qwen3-Omni config with the Thinker's layer count and,
with --tiny, tiny widths), model.safetensors.index.json and several shards of at most --shard-gb,
holding `thinker.model.embed_tokens.weight`, every tensor of N Thinker decoder layers (attention,
q/k norms, router, all experts), `thinker.model.norm.weight` and `thinker.lm_head.weight`.
Values are random BF16 (std ~0.02); with --tiny some tensors are stored as F32/F16 to exercise
every input dtype, and a toy tokenizer.json is added. Needs numpy only. Never write into the repo.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np


def real_config():
    return {
        "architectures": ["Qwen3OmniMoeForConditionalGeneration"], "model_type": "qwen3_omni_moe",
        "enable_audio_output": True, "im_start_token_id": 151644, "im_end_token_id": 151645,
        "tts_pad_token_id": 151671, "tts_bos_token_id": 151672, "tts_eos_token_id": 151673,
        "thinker_config": {
            "audio_token_id": 151675, "audio_start_token_id": 151669, "audio_end_token_id": 151670,
            "audio_config": {"num_mel_bins": 128, "d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20,
                             "encoder_ffn_dim": 5120, "downsample_hidden_size": 480, "output_dim": 2048},
            "text_config": {"vocab_size": 152064, "hidden_size": 2048, "num_hidden_layers": 48,
                            "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
                            "moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8,
                            "norm_topk_prob": True, "rms_norm_eps": 1e-6,
                            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                                "mrope_section": [24, 20, 20], "interleaved": True}},
        },
        "talker_config": {
            "num_code_groups": 16, "thinker_hidden_size": 2048, "speaker_id": {"chelsie": 2301, "ethan": 2302, "aiden": 2303},
            "text_config": {"vocab_size": 3072, "hidden_size": 1024, "intermediate_size": 2048, "num_hidden_layers": 20,
                            "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 128,
                            "moe_intermediate_size": 384, "num_experts": 128, "num_experts_per_tok": 6,
                            "shared_expert_intermediate_size": 768},
            "code_predictor_config": {"vocab_size": 2048, "hidden_size": 1024, "intermediate_size": 3072,
                                      "num_hidden_layers": 5, "num_attention_heads": 16, "num_key_value_heads": 8,
                                      "head_dim": 128},
        },
        "code2wav_config": {"codebook_size": 2048, "num_quantizers": 16, "hidden_size": 1024, "decoder_dim": 1536},
    }


def thinker_tensors(t, layers):
    h, hd = t["hidden_size"], t["head_dim"]
    q, kv = t["num_attention_heads"] * hd, t["num_key_value_heads"] * hd
    out = [("thinker.model.embed_tokens.weight", [t["vocab_size"], h])]
    for i in range(layers):
        p = f"thinker.model.layers.{i}"
        out += [(f"{p}.input_layernorm.weight", [h]), (f"{p}.post_attention_layernorm.weight", [h]),
                (f"{p}.self_attn.q_proj.weight", [q, h]), (f"{p}.self_attn.k_proj.weight", [kv, h]),
                (f"{p}.self_attn.v_proj.weight", [kv, h]), (f"{p}.self_attn.o_proj.weight", [h, q]),
                (f"{p}.self_attn.q_norm.weight", [hd]), (f"{p}.self_attn.k_norm.weight", [hd]),
                (f"{p}.mlp.gate.weight", [t["num_experts"], h])]
        for e in range(t["num_experts"]):
            m = t["moe_intermediate_size"]
            out += [(f"{p}.mlp.experts.{e}.gate_proj.weight", [m, h]), (f"{p}.mlp.experts.{e}.up_proj.weight", [m, h]),
                    (f"{p}.mlp.experts.{e}.down_proj.weight", [h, m])]
    out += [("thinker.model.norm.weight", [h]), ("thinker.lm_head.weight", [t["vocab_size"], h])]
    return out


class Source:
    """Random BF16 bytes: one pool reused at rotating offsets, so multi-GB output is fast."""

    def __init__(self, seed):
        rng = np.random.default_rng(seed)
        f = (rng.standard_normal(1 << 24, dtype=np.float32) * 0.02)
        self.pool = (f.view(np.uint32) >> 16).astype(np.uint16).tobytes()  # 32 MiB
        self.rng = rng

    def bytes(self, n, dtype):
        if dtype == "BF16":
            out = bytearray()
            while len(out) < n:
                start = int(self.rng.integers(0, len(self.pool) // 2)) * 2
                out += self.pool[start:start + min(n - len(out), len(self.pool) - start)]
            return bytes(out)
        k = n // (4 if dtype == "F32" else 2)
        x = self.rng.standard_normal(k, dtype=np.float32) * 0.02 + (1.0 if dtype == "F32" else 0.0)
        return x.astype(np.float32 if dtype == "F32" else np.float16).tobytes()


def write_shard(path, entries, src):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, dtype in entries:
        n = int(np.prod(shape)) * (4 if dtype == "F32" else 2)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name, shape, dtype in entries:
            f.write(src.bytes(int(np.prod(shape)) * (4 if dtype == "F32" else 2), dtype))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--shard-gb", type=float, default=2.0)
    ap.add_argument("--tiny", action="store_true", help="tiny widths, mixed dtypes, toy tokenizer")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if os.path.abspath(a.out).startswith(os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))) and not a.tiny:
        sys.exit("refusing to write a large checkpoint inside the repository")
    cfg = real_config()
    t = cfg["thinker_config"]["text_config"]
    if a.tiny:
        t.update(vocab_size=320, hidden_size=64, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                 moe_intermediate_size=96, num_experts=4, num_experts_per_tok=2)
        a.shard_gb = 100e3 / 1e9
    t["num_hidden_layers"] = a.layers
    os.makedirs(a.out, exist_ok=True)
    tensors = thinker_tensors(t, a.layers)
    entries = []
    for name, shape in tensors:
        dtype = "BF16"
        if a.tiny and name.endswith("norm.weight"):
            dtype = "F32"
        elif a.tiny and name.endswith("q_proj.weight"):
            dtype = "F16"
        entries.append((name, shape, dtype))
    limit = a.shard_gb * 1e9
    shards, cur, size = [], [], 0
    for e in entries:
        n = int(np.prod(e[1])) * (4 if e[2] == "F32" else 2)
        if cur and size + n > limit:
            shards.append(cur)
            cur, size = [], 0
        cur.append(e)
        size += n
    shards.append(cur)
    src = Source(a.seed)
    weight_map, total = {}, 0
    for i, s in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_shard(os.path.join(a.out, fname), s, src)
        for name, shape, dtype in s:
            weight_map[name] = fname
            total += int(np.prod(shape)) * (4 if dtype == "F32" else 2)
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"do_sample": True, "temperature": 0.7, "top_p": 0.8, "top_k": 20}, f)
    if a.tiny:
        vocab = {f"tok{i}": i for i in range(300)}
        added = [{"id": 300 + i, "content": c, "special": True}
                 for i, c in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])]
        tok = {"model": {"type": "BPE", "vocab": vocab, "merges": ["tok1 tok2", ["tok3", "tok4"]]}, "added_tokens": added}
        with open(os.path.join(a.out, "tokenizer.json"), "w") as f:
            json.dump(tok, f)
        with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
            json.dump({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}, f)
    print(f"{len(entries)} tensors, {total / 1e9:.3f} GB in {len(shards)} shards -> {a.out}")


if __name__ == "__main__":
    main()
