"""Q8_0 round trip and the quantizer's per-tensor type rule, in numpy (see tools/README.md).

Q8_0 (ggml's reference `quantize_row_q8_0_ref`): per block of 32 values along the last axis,
    amax = max|x|;  d = amax / 127;  id = 1/d (0 if d == 0);  q = roundf(x * id)  (half away from 0)
    stored: f16(d) (round to nearest even), int8 q;   dequantized value = f32(f16(d)) * q
All arithmetic in float32, as in C.

Type rule (mirrors quantizer/src/rules.rs, `TypeRules::decide` with no --keep-f16 globs):
    F32  : 1-D tensors, `.bias`, MoE routers (`.mlp.gate.weight`), `.mlp.shared_expert_gate.weight`,
           scale-like tensors (last name component alpha / beta / scale / gamma)
    Q8_0 : 2-D tensors whose row length (last dim) is a multiple of 32
    F16  : everything else (conv kernels 3-D/4-D, 2-D tensors with ragged rows)
`roundtrip(name, x)` returns what an engine reading the quantized GGUF sees, as float32.
"""

from __future__ import annotations

import numpy as np

QK = 32


def quantize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x: float32 [..., n] with n % 32 == 0 -> (d as float16 [..., n/32], q as int8 [..., n])."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    assert x.shape[-1] % QK == 0, x.shape
    b = x.reshape(-1, QK)
    amax = np.abs(b).max(axis=1)
    d = (amax / np.float32(127.0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1.0) / d, np.float32(0.0)).astype(np.float32)
    v = (b * inv[:, None]).astype(np.float32)
    # roundf: half away from zero. floor/frac are exact in float32 for |v| <= 127.5.
    a = np.abs(v)
    fl = np.floor(a)
    r = fl + (a - fl >= np.float32(0.5))
    q = (np.sign(v) * r).astype(np.int8)
    with np.errstate(over="ignore"):  # huge blocks overflow to inf in f16, as in ggml
        d16 = d.astype(np.float16)
    return d16.reshape(x.shape[:-1] + (-1,)), q.reshape(x.shape)


def dequantize(d: np.ndarray, q: np.ndarray) -> np.ndarray:
    qb = q.reshape(-1, QK).astype(np.float32)
    return (qb * d.reshape(-1, 1).astype(np.float32)).reshape(q.shape)


def encode_blocks(x: np.ndarray) -> bytes:
    """ggml byte layout: per block f16 d (LE) then 32 int8."""
    d, q = quantize(x)
    d = d.reshape(-1, 1).view(np.uint8).reshape(-1, 2)
    q = q.reshape(-1, QK).view(np.uint8)
    return np.concatenate([d, q], axis=1).tobytes()


def _is_router(name: str) -> bool:
    return name.endswith(".mlp.gate.weight") or name.endswith(".mlp.shared_expert_gate.weight")


def _is_scale_like(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in ("alpha", "beta", "scale", "gamma")


def decide(name: str, shape: tuple[int, ...]) -> str:
    if len(shape) <= 1 or _is_router(name) or _is_scale_like(name) or name.endswith(".bias"):
        return "F32"
    if len(shape) == 2 and shape[-1] % QK == 0:
        return "Q8_0"
    return "F16"


def roundtrip(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    kind = decide(name, x.shape)
    if kind == "Q8_0":
        return dequantize(*quantize(x))
    if kind == "F16":
        return x.astype(np.float16).astype(np.float32)
    return x


def self_check(fixture_dir) -> None:
    """Compare with the quantizer's codec fixture (tests/fixtures/q8_0), if present."""
    from pathlib import Path

    fixture_dir = Path(fixture_dir)
    inp, exp = fixture_dir / "input_f32.bin", fixture_dir / "expected_q8_0.bin"
    if not (inp.exists() and exp.exists()):
        return
    x = np.fromfile(inp, dtype="<f4")
    got = encode_blocks(x)
    if got != exp.read_bytes():
        raise SystemExit(f"q8_0.py disagrees with {exp} (the Rust codec's fixture)")
