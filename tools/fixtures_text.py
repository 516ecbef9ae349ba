"""Tokenizer and chat-template fixtures (see tools/README.md).

Expected ids come from transformers' fast tokenizer on models/tokenizer/tokenizer.json. Chat
prompts are rendered from spec §3.2 with audio placeholders expanded by spec §4.3, and are
cross-checked against transformers' Qwen3OmniMoeProcessor (built locally from the same tokenizer
and a WhisperFeatureExtractor, since the official processor files cannot be downloaded here).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

# Multilingual and edge-case texts. Keep each case short; ids are compared exactly.
TEXTS = [
    ("english", "Hello, world! How are you doing today?"),
    ("russian", "Привет мир! Как дела? Съешь же ещё этих мягких французских булок."),
    ("chinese", "你好，世界！今天天气怎么样？我们去公园散步吧。"),
    ("japanese", "こんにちは、世界。カタカナとひらがな。"),
    ("arabic", "مرحبا بالعالم"),
    ("code", "fn main() {\n    let x: Vec<u32> = (0..10).map(|i| i * 2).collect();\n    println!(\"{x:?}\");\n}\n"),
    ("python", "def f(a, b=2):\n\treturn a ** b  # power\n\n\nprint(f(3))"),
    ("emoji", "I ❤️ Rust 🦀🚀 and 👩‍👩‍👧‍👦 families; flags 🇷🇺🇨🇳"),
    ("numbers", "3.14159 2026-11-26 1,000,000 12345678901234567890"),
    ("contractions", "It's we'll they've I'd she'S DON'T"),
    ("whitespace", "  leading and trailing  \n\n\nmultiple   spaces\r\nwindows\tline \n "),
    ("nfc", "Cafe\u0301 vs Caf\u00e9, n\u0303"),
    ("special_tokens", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
    ("omni_tokens", "<|audio_start|><|audio_pad|><|audio_pad|><|audio_end|>Describe.<tts_pad><tts_text_bos><tts_text_eod><tts_text_bos_single>"),
    ("think_tokens", "<think>\nreasoning\n</think>\n\n<tool_call>{\"a\":1}</tool_call>"),
    ("mixed", "Qwen3-Omni говорит 中文 and English; x=42 ✓"),
    ("bytes_fallback", "\u0000\u0001 control \u007f and rare 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𓀀"),
    ("empty", ""),
]

AUDIO_START, AUDIO_PAD, AUDIO_END = "<|audio_start|>", "<|audio_pad|>", "<|audio_end|>"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_tokenizer(path: Path):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(path))


def tokenizer_fixture(tok_path: Path, versions: dict) -> dict:
    tok = load_tokenizer(tok_path)
    backend = tok.backend_tokenizer
    cases = []
    for name, text in TEXTS:
        ids = tok(text, add_special_tokens=True)["input_ids"]
        assert ids == backend.encode(text, add_special_tokens=False).ids, name
        cases.append(
            {
                "name": name,
                "text": text,
                "ids": ids,
                # tokenizers' own decode (no transformers clean-up of spaces).
                "decoded": backend.decode(ids, skip_special_tokens=False),
                "decoded_skip_special": backend.decode(ids, skip_special_tokens=True),
            }
        )
    return {
        "tokenizer_sha256": sha256(tok_path),
        "versions": versions,
        "vocab_size_with_added": backend.get_vocab_size(with_added_tokens=True),
        "special": {t: tok.convert_tokens_to_ids(t) for t in [
            "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|audio_end|>",
            "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>", "<tts_text_bos_single>", "<|audio_pad|>",
        ]},
        "cases": cases,
    }


def audio_tokens(n_mel_frames: int) -> int:
    """Spec §4.3: 13 per full 100-frame chunk + ceil(r/2) three times on the remainder."""
    full, r = divmod(n_mel_frames, 100)
    for _ in range(3):
        r = (r + 1) // 2
    return 13 * full + r


# Conversations: role, items; audio items are ("audio", n_samples at 16 kHz).
CONVERSATIONS = [
    ("user_text", [("user", [("text", "What is the capital of France?")])], True),
    ("system_user", [
        ("system", [("text", "You are a helpful assistant.")]),
        ("user", [("text", "Привет! Как тебя зовут?")]),
    ], True),
    ("multi_turn", [
        ("system", [("text", "Answer briefly.")]),
        ("user", [("text", "2+2?")]),
        ("assistant", [("text", "4")]),
        ("user", [("text", "And 3+3?\nExplain.")]),
    ], True),
    ("audio_1s", [("user", [("audio", 16000), ("text", "Transcribe the audio.")])], True),
    ("audio_two_clips", [
        ("user", [("text", "Compare:"), ("audio", 40000), ("audio", 5920), ("text", "Which is louder?")]),
    ], True),
    ("audio_multi_turn", [
        ("user", [("audio", 12345)]),
        ("assistant", [("text", "I hear a tone.")]),
        ("user", [("audio", 640000), ("text", "Что здесь?")]),
    ], True),
    ("audio_short", [("user", [("audio", 320), ("text", "x")])], True),
    ("no_generation_prompt", [
        ("user", [("text", "Hi")]),
        ("assistant", [("text", "Hello! 😊")]),
    ], False),
]


def render(messages, add_generation_prompt: bool, expand: bool) -> str:
    out = []
    for role, items in messages:
        out.append(f"<|im_start|>{role}\n")
        for kind, val in items:
            if kind == "text":
                out.append(val)
            else:
                n = audio_tokens(val // 160) if expand else 1
                out.append(AUDIO_START + AUDIO_PAD * n + AUDIO_END)
        out.append("<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


def processor_ids(tok_path: Path, text: str, n_samples: list[int]) -> list[int] | None:
    """transformers' processor on the template text, or None if it cannot be built here."""
    from transformers import Qwen2TokenizerFast, WhisperFeatureExtractor
    from transformers.models.qwen3_omni_moe.processing_qwen3_omni_moe import Qwen3OmniMoeProcessor
    from transformers import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tok = Qwen2TokenizerFast(
        tokenizer_file=str(tok_path),
        audio_token=AUDIO_PAD, audio_bos_token=AUDIO_START, audio_eos_token=AUDIO_END,
        image_token="<|image_pad|>", video_token="<|video_pad|>",
        vision_bos_token="<|vision_start|>", vision_eos_token="<|vision_end|>",
    )
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400,
                                 chunk_length=300, n_samples=4_800_000, nb_max_frames=30000,
                                 return_attention_mask=True)
    proc = Qwen3OmniMoeProcessor(image_processor=Qwen2VLImageProcessor(), video_processor=Qwen2VLVideoProcessor(),
                                 feature_extractor=fe, tokenizer=tok)
    rng = np.random.default_rng(0)
    audio = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in n_samples] or None
    out = proc(text=[text], audio=audio, return_tensors="np")
    return out["input_ids"][0].tolist()


def chat_fixture(tok_path: Path, versions: dict) -> dict:
    tok = load_tokenizer(tok_path)
    convs = []
    processor_note = "ok"
    for name, messages, gen in CONVERSATIONS:
        expanded = render(messages, gen, expand=True)
        ids = tok(expanded)["input_ids"]
        samples = [v for _, items in messages for k, v in items if k == "audio"]
        try:
            pids = processor_ids(tok_path, render(messages, gen, expand=False), samples)
        except Exception as e:  # noqa: BLE001 - record why the cross-check could not run
            pids, processor_note = None, f"processor cross-check unavailable: {type(e).__name__}: {e}"
        if pids is not None and pids != ids:
            raise SystemExit(f"chat fixture {name}: processor ids differ from spec rendering")
        convs.append({
            "name": name,
            "add_generation_prompt": gen,
            "messages": [
                {"role": role, "items": [
                    {"type": "text", "text": v} if k == "text"
                    else {"type": "audio", "n_samples": v, "n_mel_frames": v // 160, "n_tokens": audio_tokens(v // 160)}
                    for k, v in items
                ]} for role, items in messages
            ],
            "template_text": render(messages, gen, expand=False),
            "ids": ids,
            "processor_checked": pids is not None,
        })
    formula = {str(t): audio_tokens(t) for t in [0, 1, 7, 8, 9, 30, 99, 100, 101, 250, 1000, 1234, 3000, 4000, 30000]}
    # Cross-check the formula against transformers' own helper.
    from transformers.models.qwen3_omni_moe.processing_qwen3_omni_moe import _get_feat_extract_output_lengths
    for t, n in formula.items():
        assert int(_get_feat_extract_output_lengths(np.array(int(t)))) == n, t
    return {
        "tokenizer_sha256": sha256(tok_path),
        "versions": versions,
        "processor_cross_check": processor_note,
        "audio_token_count": formula,
        "conversations": convs,
    }


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
