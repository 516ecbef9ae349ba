#!/usr/bin/env python3
"""Regenerate every reference fixture under tests/fixtures/ (see tools/README.md).

    tools/fetch-tokenizer.sh
    /work/venv/bin/python tools/make_fixtures.py            # everything
    /work/venv/bin/python tools/make_fixtures.py --only text
    /work/venv/bin/python tools/make_fixtures.py --only models --models tiny-real-vocab

Needs torch, transformers (with qwen3_omni_moe), torchvision (for the processor cross-check),
safetensors, numpy, and espeak-ng + sox on PATH. CPU only; deterministic (fixed seeds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
sys.path.insert(0, str(TOOLS))

FIXTURES = ROOT / "tests" / "fixtures"
TOKENIZER = ROOT / "models" / "tokenizer" / "tokenizer.json"


def versions() -> dict:
    import numpy
    import safetensors
    import tokenizers
    import torch
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["text", "audio", "models"], action="append",
                    help="generate only these groups (repeatable); default: all")
    ap.add_argument("--models", nargs="*", default=None, help="model configs to build (default: all)")
    args = ap.parse_args()
    groups = set(args.only or ["text", "audio", "models"])

    if not TOKENIZER.exists():
        sys.exit(f"{TOKENIZER} is missing: run tools/fetch-tokenizer.sh")
    ver = versions()

    if "text" in groups:
        import fixtures_text as ft

        ft.write_json(FIXTURES / "tokenizer" / "tokenizer_ids.json", ft.tokenizer_fixture(TOKENIZER, ver))
        ft.write_json(FIXTURES / "chat" / "chat_ids.json", ft.chat_fixture(TOKENIZER, ver))
        print("text fixtures written", file=sys.stderr)

    if "audio" in groups:
        import fixtures_audio as fa
        import fixtures_models as fm

        fa.make_wavs(FIXTURES / "audio")
        fm.write_mels(FIXTURES)
        print("audio inputs and log-mel features written", file=sys.stderr)

    if "models" in groups:
        import fixtures_models as fm

        fm.build_all(FIXTURES, TOKENIZER, ver, names=args.models)


if __name__ == "__main__":
    main()
