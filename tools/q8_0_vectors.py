#!/usr/bin/env python3
"""Write the Q8_0 golden vectors for the quantizer's codec test.

Inputs are fixed (seeded) f32 vectors with edge cases; the expected bytes come from PyPI's `gguf`
package (llama.cpp's gguf-py, whose Q8_0 is bit-exact with ggml's quantize_row_q8_0_ref).

    pip install gguf numpy
    python3 tools/q8_0_vectors.py tests/fixtures/q8_0

Writes input_f32.bin (little-endian f32) and expected_q8_0.bin (34-byte blocks). Run once; the
outputs are committed and compared byte for byte by quantizer/tests/q8_0_golden.rs.
"""
import os
import sys

import numpy as np
from gguf import GGMLQuantizationType, quants


def vectors() -> np.ndarray:
    rng = np.random.default_rng(20260126)
    blocks = []
    blocks.append(np.zeros(32, np.float32))                      # d = 0 -> id = 0
    blocks.append(np.full(32, 1.0, np.float32))                   # all at amax
    blocks.append(np.linspace(-1, 1, 32, dtype=np.float32))
    # values landing exactly on .5 quant steps: amax 127 -> d 1, x = k + 0.5
    b = (np.arange(32, dtype=np.float32) - 16) + np.float32(0.5)
    b[0] = 127.0
    blocks.append(b)
    blocks.append(-b)
    blocks.append(np.full(32, 1e-30, np.float32))                 # d underflows f16 to 0
    blocks.append(rng.normal(0, 1e-6, 32).astype(np.float32))     # subnormal f16 scale
    blocks.append(rng.normal(0, 1e5, 32).astype(np.float32) * np.float32(100))  # f16 scale overflow -> inf
    one_spike = rng.normal(0, 0.01, 32).astype(np.float32)
    one_spike[7] = 3.0
    blocks.append(one_spike)
    for scale in (1e-3, 0.02, 0.5, 4.0, 300.0):
        for _ in range(20):
            blocks.append(rng.normal(0, scale, 32).astype(np.float32))
    # bf16-representable inputs, as the converter sees them
    for _ in range(50):
        x = rng.normal(0, 0.05, 32).astype(np.float32)
        x = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
        blocks.append(x)
    return np.concatenate(blocks).astype(np.float32)


def main() -> int:
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/q8_0"
    os.makedirs(out, exist_ok=True)
    x = vectors()
    with np.errstate(over="ignore"):
        q = quants.quantize(x.reshape(-1, 32), GGMLQuantizationType.Q8_0)
    assert q.dtype == np.uint8 and q.size == x.size // 32 * 34
    x.astype("<f4").tofile(os.path.join(out, "input_f32.bin"))
    q.tofile(os.path.join(out, "expected_q8_0.bin"))
    print(f"{x.size // 32} blocks -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
