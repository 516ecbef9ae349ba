"""Tiny random-weight Qwen3-Omni checkpoints and transformers reference outputs (see tools/README.md).

For each config: build `Qwen3OmniMoeForConditionalGeneration`, randomise its weights (fixed seed),
save it in BF16 exactly as a real checkpoint (on-disk names, shards, index, config.json), then load
it twice in float32 -- once as stored ("raw") and once with every tensor round-tripped through the
quantizer's type rule ("q8", tools/q8_0.py) -- and run the component calls of spec §11.3 on each.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

import fixtures_audio as fa
import q8_0

VARIANTS = ("q8", "raw")
TOPK = 8  # top-k logits kept per generation step
THINKER_NEW_TOKENS = 16
TALKER_NEW_TOKENS = 16
C2W_FRAMES = 16
C2W_CHUNK, C2W_CONTEXT = 6, 4  # chunked_decode parameters used for the fixture (HF default 300/25)


def _rope(section, theta):
    return {"rope_type": "default", "rope_theta": theta, "mrope_section": section, "interleaved": True,
            "mrope_interleaved": True}


REAL_IDS = dict(im_start=151644, im_end=151645, tts_pad=151671, tts_bos=151672, tts_eos=151673, system=8948,
                user=872, assistant=77091, audio=151675, audio_start=151669, audio_end=151670, image=151655,
                video=151656, vision_start=151652, vision_end=151653)


def real_vocab_config() -> dict:
    """Tiny widths, real vocabularies and ids (spec §11.4); real ratios: GQA 8:1, experts 16:1 per token."""
    i = REAL_IDS
    H = 32
    return dict(
        enable_audio_output=True, im_start_token_id=i["im_start"], im_end_token_id=i["im_end"],
        tts_pad_token_id=i["tts_pad"], tts_bos_token_id=i["tts_bos"], tts_eos_token_id=i["tts_eos"],
        system_token_id=i["system"], user_token_id=i["user"], assistant_token_id=i["assistant"],
        thinker_config=dict(
            audio_token_id=i["audio"], audio_start_token_id=i["audio_start"], audio_end_token_id=i["audio_end"],
            image_token_id=i["image"], video_token_id=i["video"], vision_start_token_id=i["vision_start"],
            vision_end_token_id=i["vision_end"], user_token_id=i["user"], position_id_per_seconds=13,
            seconds_per_chunk=2, tie_word_embeddings=False,
            audio_config=dict(num_mel_bins=128, d_model=64, encoder_layers=2, encoder_attention_heads=4,
                              encoder_ffn_dim=128, downsample_hidden_size=32, output_dim=H, n_window=50,
                              n_window_infer=800, conv_chunksize=500, max_source_positions=1500,
                              activation_function="gelu", scale_embedding=False),
            vision_config=dict(depth=1, hidden_size=32, intermediate_size=32, num_heads=2, out_hidden_size=H,
                               num_position_embeddings=16,
                               patch_size=4, temporal_patch_size=2, spatial_merge_size=2,
                               deepstack_visual_indexes=[0]),
            text_config=dict(vocab_size=152064, hidden_size=H, intermediate_size=64, num_hidden_layers=4,
                             num_attention_heads=32, num_key_value_heads=4, head_dim=16, hidden_act="silu",
                             moe_intermediate_size=32, num_experts=48, num_experts_per_tok=3, norm_topk_prob=True,
                             decoder_sparse_step=1, mlp_only_layers=[], use_qk_norm=True, rms_norm_eps=1e-6,
                             attention_bias=False, sliding_window=None, max_position_embeddings=65536,
                             rope_parameters=_rope([4, 2, 2], 1e6), tie_word_embeddings=False),
        ),
        talker_config=dict(
            accept_hidden_layer=2, num_code_groups=16, thinker_hidden_size=H, codec_pad_id=2148, codec_bos_id=2149,
            codec_eos_token_id=2150, codec_nothink_id=2155, codec_think_bos_id=2156, codec_think_eos_id=2157,
            speaker_id={"chelsie": 2301, "ethan": 2302, "aiden": 2303}, audio_token_id=i["audio"],
            audio_start_token_id=i["audio_start"], audio_end_token_id=i["audio_end"], image_token_id=i["image"],
            video_token_id=i["video"], vision_start_token_id=i["vision_start"], position_id_per_seconds=13,
            seconds_per_chunk=2, spatial_merge_size=2, tie_word_embeddings=False,
            text_config=dict(vocab_size=3072, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=16, num_key_value_heads=2, head_dim=16, moe_intermediate_size=32,
                             num_experts=32, num_experts_per_tok=3, norm_topk_prob=True,
                             shared_expert_intermediate_size=64, decoder_sparse_step=1, mlp_only_layers=[],
                             rms_norm_eps=1e-6, hidden_act="silu", attention_bias=False, sliding_window=None,
                             max_position_embeddings=65536, rope_parameters=_rope([4, 2, 2], 1e6)),
            code_predictor_config=dict(vocab_size=2048, hidden_size=32, intermediate_size=96, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_code_groups=16,
                                       rms_norm_eps=1e-6, hidden_act="silu",
                                       rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                                       max_position_embeddings=32768, attention_bias=False),
        ),
        code2wav_config=dict(codebook_size=2048, num_quantizers=16, hidden_size=32, intermediate_size=96,
                             num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, sliding_window=72,
                             rms_norm_eps=1e-5, layer_scale_initial_scale=0.01, hidden_act="silu",
                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                             max_position_embeddings=8000, decoder_dim=64, upsample_rates=[8, 5, 4, 3],
                             upsampling_ratios=[2, 2], attention_bias=False),
    )


RAGGED_IDS = dict(im_start=240, im_end=241, tts_pad=242, tts_bos=243, tts_eos=244, system=7, user=6, assistant=8,
                  audio=250, audio_start=251, audio_end=252, image=253, video=254, vision_start=245,
                  vision_end=246)


def ragged_config() -> dict:
    """Small vocab, odd head/expert/group counts, a 52-token audio window, Code2Wav rates 2·3·5·3 = 90.

    Every Linear input width stays a multiple of 32 (Q8_0-able, as in the real model)."""
    i = RAGGED_IDS
    H = 64
    return dict(
        enable_audio_output=True, im_start_token_id=i["im_start"], im_end_token_id=i["im_end"],
        tts_pad_token_id=i["tts_pad"], tts_bos_token_id=i["tts_bos"], tts_eos_token_id=i["tts_eos"],
        system_token_id=i["system"], user_token_id=i["user"], assistant_token_id=i["assistant"],
        thinker_config=dict(
            audio_token_id=i["audio"], audio_start_token_id=i["audio_start"], audio_end_token_id=i["audio_end"],
            image_token_id=i["image"], video_token_id=i["video"], vision_start_token_id=i["vision_start"],
            vision_end_token_id=i["vision_end"], user_token_id=i["user"], position_id_per_seconds=13,
            seconds_per_chunk=2, tie_word_embeddings=False,
            audio_config=dict(num_mel_bins=128, d_model=96, encoder_layers=3, encoder_attention_heads=3,
                              encoder_ffn_dim=160, downsample_hidden_size=64, output_dim=H, n_window=50,
                              n_window_infer=400, conv_chunksize=500, max_source_positions=1500,
                              activation_function="gelu", scale_embedding=False),
            vision_config=dict(depth=1, hidden_size=32, intermediate_size=32, num_heads=2, out_hidden_size=H,
                               num_position_embeddings=16,
                               patch_size=4, temporal_patch_size=2, spatial_merge_size=2,
                               deepstack_visual_indexes=[0]),
            text_config=dict(vocab_size=257, hidden_size=H, intermediate_size=64, num_hidden_layers=3,
                             num_attention_heads=6, num_key_value_heads=3, head_dim=16, hidden_act="silu",
                             moe_intermediate_size=32, num_experts=5, num_experts_per_tok=3, norm_topk_prob=True,
                             decoder_sparse_step=1, mlp_only_layers=[], use_qk_norm=True, rms_norm_eps=1e-6,
                             attention_bias=False, sliding_window=None, max_position_embeddings=65536,
                             rope_parameters=_rope([4, 2, 2], 1e6), tie_word_embeddings=False),
        ),
        talker_config=dict(
            accept_hidden_layer=1, num_code_groups=5, thinker_hidden_size=H, codec_pad_id=1054, codec_bos_id=1055,
            codec_eos_token_id=1050, codec_nothink_id=1051, codec_think_bos_id=1052, codec_think_eos_id=1053,
            speaker_id={"ethan": 1056, "chelsie": 1057, "aiden": 1058}, audio_token_id=i["audio"],
            audio_start_token_id=i["audio_start"], audio_end_token_id=i["audio_end"], image_token_id=i["image"],
            video_token_id=i["video"], vision_start_token_id=i["vision_start"], position_id_per_seconds=13,
            seconds_per_chunk=2, spatial_merge_size=2, tie_word_embeddings=False,
            text_config=dict(vocab_size=1100, hidden_size=32, intermediate_size=96, num_hidden_layers=2,
                             num_attention_heads=3, num_key_value_heads=1, head_dim=32, moe_intermediate_size=32,
                             num_experts=6, num_experts_per_tok=2, norm_topk_prob=True,
                             shared_expert_intermediate_size=64, decoder_sparse_step=1, mlp_only_layers=[],
                             rms_norm_eps=1e-6, hidden_act="silu", attention_bias=False, sliding_window=None,
                             max_position_embeddings=65536, rope_parameters=_rope([8, 4, 4], 1e6)),
            code_predictor_config=dict(vocab_size=76, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2, num_key_value_heads=1, head_dim=16, num_code_groups=5,
                                       rms_norm_eps=1e-6, hidden_act="silu",
                                       rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                                       max_position_embeddings=32768, attention_bias=False),
        ),
        code2wav_config=dict(codebook_size=76, num_quantizers=5, hidden_size=32, intermediate_size=64,
                             num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, sliding_window=5,
                             rms_norm_eps=1e-5, layer_scale_initial_scale=0.01, hidden_act="silu",
                             rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                             max_position_embeddings=8000, decoder_dim=64, upsample_rates=[5, 3],
                             upsampling_ratios=[2, 3], attention_bias=False),
    )


MODELS = {
    "tiny-real-vocab": dict(config=real_vocab_config, ids=REAL_IDS, seed=20261126, real_vocab=True,
                            clips=["privet_mir_16k_mono", "privet_mir_44k_stereo", "english_16k_mono",
                                   "english_44k_stereo", "synthetic_40s_16k_mono"],
                            shard_mb=10),
    "tiny-ragged": dict(config=ragged_config, ids=RAGGED_IDS, seed=7, real_vocab=False,
                        clips=["privet_mir_16k_mono", "english_44k_stereo", "synthetic_40s_16k_mono"],
                        shard_mb=1),
}


# ----------------------------------------------------------------------------------------------
# weights


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Weights large enough that greedy tokens and codes vary (default init std 0.02 gives near-ties)."""
    g = torch.Generator().manual_seed(seed)

    def normal(shape, std, mean=0.0):
        return torch.randn(shape, generator=g) * std + mean

    def uniform(shape, lo, hi):
        return torch.rand(shape, generator=g) * (hi - lo) + lo

    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            shape, last = p.shape, name.rsplit(".", 1)[-1]
            if last in ("alpha", "beta"):  # SnakeBeta, log space
                v = normal(shape, 0.2)
            elif last in ("scale", "gamma"):  # layer scales, ConvNeXt gamma
                v = uniform(shape, 0.1, 0.5)
            elif last == "bias":
                v = normal(shape, 0.05)
            elif p.dim() == 1:  # RMSNorm / LayerNorm weights
                v = normal(shape, 0.1, 1.0)
            elif "embed" in name or "embedding" in name:
                v = normal(shape, 1.0)
            elif name.endswith("mlp.gate.weight"):  # routers: decisive but varied routing
                v = normal(shape, 2.0 / math.sqrt(shape[-1]))
            elif "gate_up_proj" in name or name.endswith("experts.down_proj"):  # fused [E, out, in]
                v = normal(shape, 1.0 / math.sqrt(shape[-1]))
            elif "upsample" in name and ".0.conv.weight" in name or ".block.1.conv.weight" in name:
                # ConvTranspose1d [in, out, k]: each output sees ~in*k/stride inputs
                v = normal(shape, 1.0 / math.sqrt(shape[0]))
            else:  # Linear [out, in], Conv [out, in/groups, k...]
                fan_in = int(np.prod(shape[1:]))
                v = normal(shape, 1.0 / math.sqrt(fan_in))
            p.copy_(v.to(p.dtype))


def tame_code2wav(model, seed: int, target_std: float = 0.25) -> None:
    """Scale the last Code2Wav conv so the waveform (before its ±1 clamp) has std ~0.25, not saturating."""
    c2w = model.code2wav
    cfg = c2w.config
    g = torch.Generator().manual_seed(seed + 1)
    codes = torch.randint(0, cfg.codebook_size, (1, cfg.num_quantizers, 30), generator=g)
    last = c2w.decoder[-1]
    seen = {}
    hook = last.register_forward_hook(lambda m, i, o: seen.setdefault("y", o))
    with torch.no_grad():
        c2w(codes)
        hook.remove()
        y = seen["y"] - last.conv.bias.view(1, -1, 1)
        last.conv.weight.mul_(target_std / float(y.std()))


def build_checkpoint(name: str, out_dir: Path) -> dict:
    from transformers import Qwen3OmniMoeConfig, Qwen3OmniMoeForConditionalGeneration

    spec = MODELS[name]
    cfg = Qwen3OmniMoeConfig(**spec["config"]())
    torch.manual_seed(spec["seed"])
    model = Qwen3OmniMoeForConditionalGeneration(cfg)
    randomise(model, spec["seed"])
    tame_code2wav(model, spec["seed"])
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model.to(torch.bfloat16).save_pretrained(out_dir, max_shard_size=f"{spec['shard_mb']}MB")
    return spec


def read_checkpoint(ckpt: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = json.loads((ckpt / "model.safetensors.index.json").read_text())
    out = {}
    for shard in sorted(set(index["weight_map"].values())):
        out.update(load_file(str(ckpt / shard)))
    return out


def load_variant(ckpt: Path, variant: str, tmp: Path):
    """float32 model from the BF16 checkpoint; "q8" round-trips every tensor by the quantizer rule first."""
    from safetensors.torch import save_file
    from transformers import Qwen3OmniMoeForConditionalGeneration

    src = ckpt
    types = {}
    if variant == "q8":
        src = tmp / "q8"
        src.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for k, v in read_checkpoint(ckpt).items():
            x = v.float().numpy()
            types[k] = q8_0.decide(k, x.shape)
            tensors[k] = torch.from_numpy(q8_0.roundtrip(k, x).copy())
        save_file(tensors, str(src / "model.safetensors"))
        shutil.copy(ckpt / "config.json", src / "config.json")
    model = Qwen3OmniMoeForConditionalGeneration.from_pretrained(src, dtype=torch.float32,
                                                                 attn_implementation="eager")
    model.eval()
    return model, types


# ----------------------------------------------------------------------------------------------
# references


def f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy().copy()


def audio_tower(model, mel: np.ndarray) -> np.ndarray:
    T = mel.shape[1]
    out = model.thinker.model.audio_tower(input_features=torch.from_numpy(mel), feature_lens=torch.tensor([T]))
    return f32(out.last_hidden_state)


def prompts(spec: dict, tok, mels: dict) -> dict:
    """Two prompts: text only, and audio (privet_mir_16k_mono) + text. Returns ids and audio inputs."""
    ids = spec["ids"]
    mel = mels["privet_mir_16k_mono"]
    T = mel.shape[1]
    n_audio = 13 * (T // 100) + -(-(T % 100) // 8)
    if spec["real_vocab"]:
        def enc(s):
            return tok(s)["input_ids"]
        text = enc("<|im_start|>user\nWhat is the capital of France? Answer in one word.<|im_end|>\n"
                   "<|im_start|>assistant\n")
        audio = enc("<|im_start|>user\n<|audio_start|>" + "<|audio_pad|>" * n_audio +
                    "<|audio_end|>Что ты слышишь?<|im_end|>\n<|im_start|>assistant\n")
    else:
        rng = np.random.default_rng(5)
        body = lambda n: rng.integers(10, 230, n).tolist()  # noqa: E731 - ordinary tokens below special ids
        text = [ids["im_start"], ids["user"], 198 % 230] + body(11) + [ids["im_end"], 10, ids["im_start"],
                                                                       ids["assistant"], 11]
        audio = ([ids["im_start"], ids["user"], 12, ids["audio_start"]] + [ids["audio"]] * n_audio +
                 [ids["audio_end"]] + body(5) + [ids["im_end"], 10, ids["im_start"], ids["assistant"], 11])
    return {"text": {"ids": text}, "audio": {"ids": audio, "mel": mel}}


def thinker_refs(model, cfg, p: dict) -> dict:
    ids = torch.tensor([p["ids"]])
    kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids))
    if "mel" in p:
        kw["input_features"] = torch.from_numpy(p["mel"])[None]
        kw["feature_attention_mask"] = torch.ones(1, p["mel"].shape[1], dtype=torch.long)
    accept = cfg.talker_config.accept_hidden_layer
    out = model.thinker(**kw, output_hidden_states=True)
    hs = out.hidden_states
    assert len(hs) == cfg.thinker_config.text_config.num_hidden_layers + 1
    r = {
        "hs_all": np.stack([f32(h[0]) for h in hs]),
        "logits_first": f32(out.logits[0, -1]),
        "hs0": f32(hs[0][0]),
        f"hs{accept}": f32(hs[accept][0]),
        "hs_last": f32(hs[-1][0]),
    }
    gen = model.thinker.generate(**kw, max_new_tokens=THINKER_NEW_TOKENS, do_sample=False, num_beams=1,
                                 repetition_penalty=1.0, eos_token_id=cfg.im_end_token_id,
                                 output_logits=True, return_dict_in_generate=True)
    new = gen.sequences[0, ids.shape[1]:]
    logits = torch.stack([l[0] for l in gen.logits])  # raw logits per step
    top = torch.topk(logits.float(), TOPK, dim=-1)
    assert torch.equal(top.indices[:, 0], new[: len(logits)]), "greedy ids != argmax"
    assert torch.allclose(logits[0], out.logits[0, -1], rtol=1e-4, atol=1e-4)
    r["greedy_ids"] = new.to(torch.int32).numpy().copy()
    r["greedy_topk_values"] = f32(top.values)
    r["greedy_topk_ids"] = top.indices.to(torch.int32).numpy().copy()
    return r


def talker_refs(model, cfg, p: dict, thinker_greedy: np.ndarray) -> dict:
    ids = torch.tensor([p["ids"]])
    kw = dict(attention_mask=torch.ones_like(ids))
    if "mel" in p:
        kw["input_features"] = torch.from_numpy(p["mel"])[None]
        kw["feature_attention_mask"] = torch.ones(1, p["mel"].shape[1], dtype=torch.long)
    captured = {}
    orig = model.talker.generate

    def spy(**k):
        captured.update(k)
        res = orig(**k)
        captured["result"] = res
        return res

    # Debug taps: the Talker's final normed hidden per step (codec_head input, also the code predictor's
    # first input) and the code predictor's logits for every group of the first frame.
    taps = {"h": [], "cp": {}}
    def tap_h(_m, args):
        taps["h"].append(f32(args[0][0, -1]))

    def tap_cp(j):
        def hook(_m, _args, out):
            if j not in taps["cp"]:
                taps["cp"][j] = f32(out[0, -1])
        return hook

    hooks = [model.talker.codec_head.register_forward_pre_hook(tap_h)]
    for j, head in enumerate(model.talker.code_predictor.lm_head):
        hooks.append(head.register_forward_hook(tap_cp(j)))
    model.talker.generate = spy
    try:
        seq, wav = model.generate(input_ids=ids, speaker="Ethan", return_audio=True,
                                  thinker_max_new_tokens=THINKER_NEW_TOKENS, thinker_do_sample=False,
                                  talker_max_new_tokens=TALKER_NEW_TOKENS, talker_do_sample=False,
                                  talker_output_logits=True, **kw)
    finally:
        model.talker.generate = orig
        for h in hooks:
            h.remove()
    assert np.array_equal(seq[0, ids.shape[1]:].numpy(), thinker_greedy), "full generate thinker != thinker greedy"
    res = captured["result"]
    codes = torch.stack([h[-1] for h in res.hidden_states if h[-1] is not None], dim=1)[0].T  # [groups, T]
    code0_logits = torch.stack([l[0] for l in res.logits]).float()
    top = torch.topk(code0_logits, TOPK, dim=-1)
    cp = torch.from_numpy(np.stack([taps["cp"][j] for j in sorted(taps["cp"])]))
    cp_top = torch.topk(cp, TOPK, dim=-1)
    cp_topk = {"cp_topk_values_frame0": f32(cp_top.values),
               "cp_topk_ids_frame0": cp_top.indices.to(torch.int32).numpy().copy()}
    return {
        "prompt_embeds": f32(captured["inputs_embeds"][0]),
        "prompt_ids": captured["talker_input_ids"][0].to(torch.int32).numpy().copy(),
        "trailing_text": f32(captured["trailing_text_hidden"][0]),
        "tts_pad": f32(captured["tts_pad_embed"].reshape(-1)),
        "code0_sequence": res.sequences[0].to(torch.int32).numpy().copy(),
        "code0_logits_first": f32(code0_logits[0]),
        "code0_topk_values": f32(top.values),
        "code0_topk_ids": top.indices.to(torch.int32).numpy().copy(),
        "codes": codes.to(torch.int32).numpy().copy(),
        "talker_hidden": np.stack(taps["h"]),
        **cp_topk,
        "wav": f32(wav.reshape(-1)),
    }


def code2wav_refs(model, codes: np.ndarray) -> dict:
    c = torch.from_numpy(codes.astype(np.int64))[None]
    full = model.code2wav(c)
    chunked = model.code2wav.chunked_decode(c, chunk_size=C2W_CHUNK, left_context_size=C2W_CONTEXT)
    return {"full": f32(full.reshape(-1)), "chunked": f32(chunked.reshape(-1))}


def check_audio_windowing(model, mel: np.ndarray, window_tokens: int) -> None:
    """Changing audio after the first attention window must not change the first window's output."""
    a = audio_tower(model, mel)
    mel2 = mel.copy()
    frames = (window_tokens // 13) * 100
    mel2[:, frames:] = mel2[:, frames:][:, ::-1]
    b = audio_tower(model, mel2)
    assert np.array_equal(a[:window_tokens], b[:window_tokens]), "AudioTower attention is not windowed"
    assert not np.array_equal(a[window_tokens:], b[window_tokens:])


# ----------------------------------------------------------------------------------------------


def describe(tensors: dict) -> dict:
    return {k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in sorted(tensors.items())}


def build_model(fixtures: Path, name: str, tok_path: Path, versions: dict, mels: dict) -> None:
    from safetensors.numpy import save_file
    from transformers import PreTrainedTokenizerFast

    out = fixtures / "models" / name
    spec = build_checkpoint(name, out)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(tok_path)) if spec["real_vocab"] else None
    ps = prompts(spec, tok, mels)
    rng = np.random.default_rng(spec["seed"])
    manifest = {
        "model": name,
        "versions": versions,
        "seed": spec["seed"],
        "variants": {"q8": "weights round-tripped through tools/q8_0.py (quantizer rule), then float32",
                     "raw": "BF16 checkpoint weights as float32"},
        "compute": "float32 on CPU, attn_implementation=eager; inputs (mel) not cast to bf16",
        "prompts": {k: {"ids": v["ids"]} for k, v in ps.items()},
        "audio_prompt_clip": "privet_mir_16k_mono",
        "thinker_generation": {"max_new_tokens": THINKER_NEW_TOKENS, "greedy": True, "repetition_penalty": 1.0,
                               "eos_token_id": MODELS[name]["ids"]["im_end"], "topk": TOPK},
        "talker_generation": {"call": "model.generate(speaker='Ethan', thinker_do_sample=False, "
                                      "talker_do_sample=False)",
                              "thinker_max_new_tokens": THINKER_NEW_TOKENS,
                              "talker_max_new_tokens": TALKER_NEW_TOKENS, "repetition_penalty": 1.05,
                              "suppress": "[vocab-1024, vocab) except codec_eos", "speaker": "ethan"},
        "code2wav": {"frames": C2W_FRAMES, "chunked_decode": {"chunk_size": C2W_CHUNK,
                                                              "left_context_size": C2W_CONTEXT}},
        "files": {},
    }
    cfg_json = json.loads((out / "config.json").read_text())
    ncg = cfg_json["talker_config"]["num_code_groups"]
    cb = cfg_json["code2wav_config"]["codebook_size"]
    c2w_codes = rng.integers(0, cb, size=(ncg, C2W_FRAMES)).astype(np.int32)

    with tempfile.TemporaryDirectory() as tmp:
        for variant in VARIANTS:
            model, types = load_variant(out, variant, Path(tmp) / variant)
            cfg = model.config
            if variant == "q8":
                counts = {}
                for t in types.values():
                    counts[t] = counts.get(t, 0) + 1
                manifest["q8_tensor_types"] = counts
                manifest["q8_f16_tensors"] = sorted(k for k, t in types.items() if t == "F16"
                                                   and not k.startswith("thinker.visual."))
            with torch.no_grad():
                if variant == "q8":
                    wt = 13 * cfg.thinker_config.audio_config.n_window_infer // 100
                    check_audio_windowing(model, mels["synthetic_40s_16k_mono"], wt)
                    manifest["audio_window_tokens"] = wt
                # AudioTower
                at = {f"{c}": audio_tower(model, mels[c]) for c in spec["clips"]}
                # Thinker + Talker
                th, tk = {}, {}
                for pname, p in ps.items():
                    r = thinker_refs(model, cfg, p)
                    th.update({f"{pname}.{k}": v for k, v in r.items()})
                    t = talker_refs(model, cfg, p, r["greedy_ids"])
                    tk.update({f"{pname}.{k}": v for k, v in t.items()})
                cw = {"codes": c2w_codes, **code2wav_refs(model, c2w_codes)}
            for comp, tensors in (("audio_tower", at), ("thinker", th), ("talker", tk), ("code2wav", cw)):
                fname = f"ref_{comp}_{variant}.safetensors"
                save_file(tensors, str(out / fname))
                manifest["files"][fname] = describe(tensors)
            del model

    # The audio front-end config a real checkpoint ships (real values, spec §2.2).
    fa.feature_extractor().save_pretrained(out)
    ignore = out / ".gitignore"
    if spec["real_vocab"]:
        shutil.copy(tok_path, out / "tokenizer.json")
        ignore.write_text("# Copy of models/tokenizer/tokenizer.json (5 MB), made by tools/make_fixtures.py;"
                          " not committed.\n/tokenizer.json\n")
        manifest["tokenizer"] = "tokenizer.json (ignored copy of models/tokenizer/tokenizer.json)"
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def write_mels(fixtures: Path) -> dict:
    from safetensors.numpy import save_file

    audio_dir = fixtures / "audio"
    fe = fa.feature_extractor()
    mels, tensors, meta = {}, {}, {}
    for clip, fname in fa.clip_files().items():
        w, m = fa.load_16k(audio_dir / fname)
        mel, _ = fa.log_mel(fe, w)
        mels[clip] = mel
        tensors[f"{clip}.mel"] = mel
        if m["sample_rate"] != 16000:
            tensors[f"{clip}.wav16k"] = w
        # Confirms spec §4.1: an independent float64 implementation agrees with transformers.
        spec_diff = float(np.abs(fa.spec_log_mel(w) - mel).max())
        assert spec_diff < 1e-4, (clip, spec_diff)
        meta[clip] = {"file": fname, **m, "n_mel_frames": int(mel.shape[1]),
                      "max_abs_diff_vs_spec_float64_mel": spec_diff}
    save_file(tensors, str(audio_dir / "mel.safetensors"))
    (audio_dir / "mel.json").write_text(json.dumps({"clips": meta, "tensors": describe(tensors)}, indent=1) + "\n")
    return mels


def load_mels(fixtures: Path) -> dict:
    from safetensors.numpy import load_file

    t = load_file(str(fixtures / "audio" / "mel.safetensors"))
    return {k[: -len(".mel")]: v for k, v in t.items() if k.endswith(".mel")}


def build_all(fixtures: Path, tok_path: Path, versions: dict, names=None) -> None:
    q8_0.self_check(fixtures / "q8_0")
    mels = load_mels(fixtures)
    for name in names or list(MODELS):
        build_model(fixtures, name, tok_path, versions, mels)
        print(f"model {name} written", flush=True)
