#!/usr/bin/env python3
"""Cross-check a GGUF written by the qwen3-omni-vk quantizer with gguf-py (PyPI `gguf`).

    pip install gguf numpy
    # check one file against the quantizer's own view of it (info --json --checksums):
    python3 tools/gguf_check.py FILE.gguf --bin target/release/qwen3-omni-quantize
    # additionally check every tensor against the source checkpoint (gguf-py re-quantises it):
    python3 tools/gguf_check.py FILE.gguf --bin BIN --source CKPT_DIR
    # CI: build a tiny checkpoint, convert it with BIN, and run both checks:
    python3 tools/gguf_check.py --selftest [--bin target/debug/qwen3-omni-quantize]

Without --bin the binary is $QWEN3VK_BIN, else the first of qwen3-omni-quantize / qwen3-omni-vk
found in $CARGO_TARGET_DIR (or ./target) under debug/ then release/.

gguf-py's GGUFReader must agree with our `info --json` on every metadata key (type and value),
every tensor's name, ggml type, shape (ggml order), data offset, byte size and CRC-32 of the data.
With --source, each tensor must equal the source tensor encoded by gguf-py: Q8_0 byte-identical
to gguf.quants.quantize, F16 equal to numpy's float16 cast, F32 equal to the f32 values.
Exits non-zero on any mismatch.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, quants

errors = []


def fail(msg):
    errors.append(msg)
    if len(errors) <= 30:
        print("MISMATCH:", msg, file=sys.stderr)


def info_json(bin_path, gguf_path):
    out = subprocess.run([bin_path, "info", "--json", "--checksums", gguf_path], check=True, capture_output=True)
    return json.loads(out.stdout)


def same_value(ours, theirs, elem_type):
    if isinstance(ours, list):
        if not isinstance(theirs, list) or len(ours) != len(theirs):
            return False
        return all(same_value(a, b, elem_type) for a, b in zip(ours, theirs))
    if elem_type in ("F32",):
        return np.float32(ours) == np.float32(theirs)
    if elem_type in ("F64",):
        return float(ours) == float(theirs)
    return ours == theirs


def check_against_info(reader, info):
    fields = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    ours = info["metadata"]
    if set(fields) != set(ours):
        fail(f"metadata keys differ: only gguf-py {sorted(set(fields) - set(ours))[:5]}, only ours {sorted(set(ours) - set(fields))[:5]}")
    for k in sorted(set(fields) & set(ours)):
        f, o = fields[k], ours[k]
        ty = f.types[0].name
        want = {"UINT8": "U8", "INT8": "I8", "UINT16": "U16", "INT16": "I16", "UINT32": "U32", "INT32": "I32",
                "FLOAT32": "F32", "BOOL": "BOOL", "STRING": "STRING", "ARRAY": "ARRAY", "UINT64": "U64",
                "INT64": "I64", "FLOAT64": "F64"}[ty]
        if want != o["type"]:
            fail(f"{k}: type {ty} vs ours {o['type']}")
            continue
        elem = None
        if f.types[0] == GGUFValueType.ARRAY:
            if len(f.types) < 2:  # empty array: gguf-py records no element type
                if o["value"] != []:
                    fail(f"{k}: empty in gguf-py, ours has {len(o['value'])} items")
                continue
            if f.types[1] == GGUFValueType.ARRAY:
                continue  # nested arrays: gguf-py's contents() does not decode them
            elem = {"FLOAT32": "F32", "FLOAT64": "F64"}.get(f.types[1].name, f.types[1].name)
        else:
            elem = o["type"]
        if not same_value(o["value"], f.contents(), elem):
            fail(f"{k}: value differs")
    if len(reader.tensors) != len(info["tensors"]):
        fail(f"tensor count {len(reader.tensors)} vs ours {len(info['tensors'])}")
    by_name = {t["name"]: t for t in info["tensors"]}
    for t in reader.tensors:
        o = by_name.get(t.name)
        if o is None:
            fail(f"tensor {t.name} missing from our info")
            continue
        if int(t.tensor_type) != o["type_id"]:
            fail(f"{t.name}: type {t.tensor_type.name} vs ours {o['type']}")
        if [int(x) for x in t.shape] != o["dims"]:
            fail(f"{t.name}: shape {list(t.shape)} vs ours {o['dims']}")
        if int(t.data_offset) != o["abs_offset"]:
            fail(f"{t.name}: data offset {t.data_offset} vs ours {o['abs_offset']}")
        if int(t.n_bytes) != o["n_bytes"]:
            fail(f"{t.name}: n_bytes {t.n_bytes} vs ours {o['n_bytes']}")
        crc = zlib.crc32(np.ascontiguousarray(t.data).tobytes())
        if crc != o["crc32"]:
            fail(f"{t.name}: crc32 {crc:08x} vs ours {o['crc32']:08x}")


def load_safetensors(ckpt):
    """name -> (file, dtype, shape, start, end) from our own header parse."""
    index = os.path.join(ckpt, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    out = {}
    for fn in files:
        path = os.path.join(ckpt, fn)
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            h = json.loads(f.read(n))
        for name, v in h.items():
            if name != "__metadata__":
                out[name] = (path, v["dtype"], v["shape"], 8 + n + v["data_offsets"][0], 8 + n + v["data_offsets"][1])
    return out


def source_f32(entry):
    path, dtype, shape, start, end = entry
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=start, shape=(end - start,))
    if dtype == "BF16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if dtype == "F16":
        return raw.view(np.float16).astype(np.float32)
    if dtype == "F32":
        return np.array(raw.view(np.float32))
    raise ValueError(f"unexpected dtype {dtype}")


def check_against_source(reader, ckpt):
    src = load_safetensors(ckpt)
    for t in reader.tensors:
        if t.name not in src:
            fail(f"{t.name}: not in the source checkpoint")
            continue
        entry = src[t.name]
        shape = entry[2]
        want_dims = list(reversed(shape)) if len(shape) <= 4 else [int(np.prod(shape[1:])), shape[0]]
        if [int(x) for x in t.shape] != want_dims:
            fail(f"{t.name}: shape {list(t.shape)} vs source {shape}")
            continue
        x = source_f32(entry)
        got = np.ascontiguousarray(t.data).tobytes()
        if t.tensor_type == GGMLQuantizationType.Q8_0:
            want = quants.quantize(x.reshape(-1, want_dims[0]), GGMLQuantizationType.Q8_0).tobytes()
        elif t.tensor_type == GGMLQuantizationType.F16:
            want = x.astype(np.float16).tobytes()
        elif t.tensor_type == GGMLQuantizationType.F32:
            want = x.astype(np.float32).tobytes()
        else:
            fail(f"{t.name}: unexpected type {t.tensor_type.name}")
            continue
        if got != want:
            a = np.frombuffer(got, np.uint8)
            b = np.frombuffer(want, np.uint8)
            idx = np.nonzero(a != b)[0][:5] if a.size == b.size else "size differs"
            fail(f"{t.name} ({t.tensor_type.name}): data differs from gguf-py's encoding of the source at bytes {idx}")
    missing = [n for n in src if n not in {t.name for t in reader.tensors} and not n.startswith("thinker.visual.")]
    if missing:
        fail(f"source tensors missing from the GGUF: {missing[:5]}")


def find_bin():
    env = os.environ.get("QWEN3VK_BIN")
    if env:
        return env
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(root, "target")
    for profile in ("debug", "release"):
        for name in ("qwen3-omni-quantize", "qwen3-omni-vk"):
            p = os.path.join(target, profile, name)
            if os.access(p, os.X_OK):
                return p
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf", nargs="?")
    ap.add_argument("--bin", help="qwen3-omni-quantize (or qwen3-omni-vk) binary providing `info --json`")
    ap.add_argument("--json", help="precomputed `info --json --checksums` output instead of --bin")
    ap.add_argument("--source", help="source checkpoint directory to compare tensor data with")
    ap.add_argument("--selftest", action="store_true", help="build a tiny checkpoint, convert it with --bin, check")
    a = ap.parse_args()
    if not a.bin and not a.json:
        a.bin = find_bin()
    if a.selftest:
        if not a.bin:
            ap.error("--selftest needs --bin (no built qwen3-omni-quantize found; run cargo build -p quantizer-cli)")
        with tempfile.TemporaryDirectory() as d:
            ck = os.path.join(d, "ckpt")
            here = os.path.dirname(os.path.abspath(__file__))
            subprocess.run([sys.executable, os.path.join(here, "make_synthetic_bf16.py"), ck, "--tiny", "--layers", "2"], check=True)
            out = os.path.join(d, "tiny.gguf")
            subprocess.run([a.bin, "quantize", ck, out, "--keep-f16", "*.experts.1.*"], check=True)
            reader = GGUFReader(out)
            check_against_info(reader, info_json(a.bin, out))
            check_against_source(reader, ck)
            types = {t.tensor_type.name for t in reader.tensors}
            if types != {"Q8_0", "F16", "F32"}:
                fail(f"selftest expected Q8_0, F16 and F32 tensors, got {types}")
            n = len(reader.tensors)
    else:
        if not a.gguf or not (a.bin or a.json):
            ap.error("need GGUF and --bin or --json (no built qwen3-omni-quantize found)")
        reader = GGUFReader(a.gguf)
        info = json.load(open(a.json)) if a.json else info_json(a.bin, a.gguf)
        check_against_info(reader, info)
        if a.source:
            check_against_source(reader, a.source)
        n = len(reader.tensors)
    if errors:
        print(f"gguf_check: {len(errors)} mismatches", file=sys.stderr)
        print(f"0 passed, 1 failed")
        return 1
    print(f"gguf_check: gguf-py agrees on {n} tensors and all metadata")
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
