//! Malformed model files for the validation tests: a converted fixture GGUF rewritten with another
//! config.json text, or with some bytes of one tensor overwritten.

use std::path::{Path, PathBuf};

use quantizer::gguf::{GgufFile, GgufWriter, MetaValue, TensorSpec};

/// The tiny-ragged fixture (1 MB as Q8_0) converted into `dir` (created): the cheapest complete
/// model (Thinker, AudioTower, Talker, code predictor, Code2Wav).
pub fn ragged_gguf(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("ragged.gguf");
    let src = super::fixtures().join("models/tiny-ragged");
    quantizer::convert::convert(&src, &out, &Default::default()).unwrap_or_else(|e| panic!("converting: {e}"));
    out
}

/// The config.json text stored in `gguf`.
pub fn config_text(gguf: &Path) -> String {
    let f = GgufFile::open(gguf).unwrap();
    f.header.get("qwen3omni.config_json").and_then(|v| v.as_str()).expect("config key").to_string()
}

/// `src` rewritten to `dst` with `config` as its config.json text (every other key and tensor as is).
pub fn with_config(src: &Path, dst: &Path, config: &str) {
    let f = GgufFile::open(src).unwrap();
    let h = &f.header;
    let mut w = GgufWriter::new();
    w.set_alignment(h.alignment as u32).unwrap();
    for (k, v) in &h.metadata {
        let v = if k == "qwen3omni.config_json" { MetaValue::String(config.to_string()) } else { v.clone() };
        w.set(k, v);
    }
    for t in &h.tensors {
        w.add_tensor(TensorSpec { name: t.name.clone(), dims: t.dims.clone(), ty: t.ty }).unwrap();
    }
    let mut out = w.create_file(dst).unwrap();
    for t in &h.tensors {
        out.write_tensor(f.tensor_data(t)).unwrap();
    }
    out.finish().unwrap();
}

/// `src`'s metadata with `config` as its config.json text, and no tensors: a file whose config
/// only is checked (every check against a tensor is skipped when the tensor is absent).
pub fn config_only(src: &Path, dst: &Path, config: &str) {
    let f = GgufFile::open(src).unwrap();
    let mut w = GgufWriter::new();
    for (k, v) in &f.header.metadata {
        let v = if k == "qwen3omni.config_json" { MetaValue::String(config.to_string()) } else { v.clone() };
        w.set(k, v);
    }
    w.create_file(dst).unwrap().finish().unwrap();
}

/// A copy of `src` at `dst` with `bytes` written at byte `at` of tensor `name`'s data.
pub fn patch_tensor(src: &Path, dst: &Path, name: &str, at: usize, bytes: &[u8]) {
    let f = GgufFile::open(src).unwrap();
    let t = f.header.tensor(name).unwrap_or_else(|| panic!("no tensor {name}"));
    assert!(at + bytes.len() <= t.n_bytes as usize, "{name}: patch beyond the data");
    let mut all = f.bytes().to_vec();
    let off = t.abs_offset as usize + at;
    all[off..off + bytes.len()].copy_from_slice(bytes);
    std::fs::write(dst, all).unwrap();
}
