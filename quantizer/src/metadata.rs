//! GGUF metadata for a Qwen3-Omni file: `general.*`, the `qwen3omni.*` namespace flattened from
//! config.json, the side JSON files, and the tokenizer (`tokenizer.*`). Key list: docs/quantizer.md.

use std::path::Path;

use serde_json::Value;

use crate::gguf::{GgufWriter, MetaArray, MetaValue};

pub const ARCH: &str = "qwen3omni";
/// llama.cpp's `LLAMA_FTYPE_MOSTLY_Q8_0` / `_MOSTLY_F16` / `_ALL_F32` / `_MOSTLY_BF16`.
pub const FTYPE_Q8_0: u32 = 7;
pub const FTYPE_F16: u32 = 1;
pub const FTYPE_F32: u32 = 0;
pub const FTYPE_BF16: u32 = 32;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("cannot read {path}: {source}")]
    Io { path: std::path::PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Bad { path: std::path::PathBuf, reason: String },
}

/// Rename rule for config paths: object keys lose a `_config` suffix, so
/// `thinker_config.text_config.hidden_size` becomes `qwen3omni.thinker.text.hidden_size`.
fn seg(k: &str) -> &str {
    k.strip_suffix("_config").unwrap_or(k)
}

fn json_scalar(v: &Value) -> Option<MetaValue> {
    match v {
        Value::Bool(b) => Some(MetaValue::Bool(*b)),
        Value::String(s) => Some(MetaValue::String(s.clone())),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Some(u32::try_from(u).map(MetaValue::U32).unwrap_or(MetaValue::U64(u)))
            } else if let Some(i) = n.as_i64() {
                Some(i32::try_from(i).map(MetaValue::I32).unwrap_or(MetaValue::I64(i)))
            } else {
                n.as_f64().map(|f| MetaValue::F32(f as f32))
            }
        }
        _ => None,
    }
}

fn json_array(a: &[Value]) -> Option<MetaValue> {
    if a.iter().all(|v| v.as_i64().is_some()) {
        let v: Vec<i64> = a.iter().filter_map(Value::as_i64).collect();
        if v.iter().all(|&x| i32::try_from(x).is_ok()) {
            return Some(MetaValue::Array(MetaArray::I32(v.into_iter().map(|x| x as i32).collect())));
        }
        return Some(MetaValue::Array(MetaArray::I64(v)));
    }
    if a.iter().all(Value::is_number) {
        return Some(MetaValue::Array(MetaArray::F32(a.iter().filter_map(Value::as_f64).map(|f| f as f32).collect())));
    }
    if a.iter().all(Value::is_string) {
        return Some(MetaValue::Array(MetaArray::String(
            a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect(),
        )));
    }
    if a.iter().all(Value::is_boolean) {
        return Some(MetaValue::Array(MetaArray::Bool(a.iter().filter_map(Value::as_bool).collect())));
    }
    None // mixed or nested: only in qwen3omni.config_json
}

/// Flatten config.json into typed `qwen3omni.*` keys (see [`seg`] for the renaming rule).
/// Integers → U32 (I32/U64/I64 where needed), floats → F32, bools, strings, homogeneous arrays;
/// nulls, empty objects and mixed arrays are skipped.
pub fn flatten_config(v: &Value) -> Vec<(String, MetaValue)> {
    fn rec(prefix: &str, v: &Value, out: &mut Vec<(String, MetaValue)>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    rec(&format!("{prefix}.{}", seg(k)), x, out);
                }
            }
            Value::Array(a) => {
                if let Some(m) = json_array(a) {
                    out.push((prefix.to_owned(), m));
                }
            }
            other => {
                if let Some(m) = json_scalar(other) {
                    out.push((prefix.to_owned(), m));
                }
            }
        }
    }
    let mut out = Vec::new();
    rec(ARCH, v, &mut out);
    // Two JSON paths can only collide if both `x` and `x_config` exist; keep the first.
    let mut seen = std::collections::HashSet::new();
    out.retain(|(k, _)| seen.insert(k.clone()));
    out
}

/// `general.*` and the whole `qwen3omni.*` namespace from config.json.
pub fn set_model_metadata(w: &mut GgufWriter, name: &str, config: &Value, config_text: &str, file_type: u32) {
    w.set("general.architecture", MetaValue::String(ARCH.into()));
    w.set("general.name", MetaValue::String(name.into()));
    w.set("general.file_type", MetaValue::U32(file_type));
    w.set("general.quantization_version", MetaValue::U32(2));
    w.set("qwen3omni.config_json", MetaValue::String(config_text.into()));
    for (k, v) in flatten_config(config) {
        if k != "qwen3omni.config_json" {
            w.set(&k, v);
        }
    }
}

fn read_json(path: &Path) -> Result<Option<(Value, String)>, MetadataError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| MetadataError::Io { path: path.into(), source })?;
    let v = serde_json::from_str(&text)
        .map_err(|e| MetadataError::Bad { path: path.into(), reason: format!("not valid JSON: {e}") })?;
    Ok(Some((v, text)))
}

/// preprocessor_config.json, generation_config.json, tokenizer_config.json as JSON strings.
pub fn set_side_files(w: &mut GgufWriter, dir: &Path) -> Result<(), MetadataError> {
    for (file, key) in [
        ("preprocessor_config.json", "qwen3omni.preprocessor_config_json"),
        ("generation_config.json", "qwen3omni.generation_config_json"),
        ("tokenizer_config.json", "qwen3omni.tokenizer_config_json"),
    ] {
        if let Some((_, text)) = read_json(&dir.join(file))? {
            w.set(key, MetaValue::String(text));
        }
    }
    Ok(())
}

/// llama.cpp token types.
const TT_NORMAL: i32 = 1;
const TT_CONTROL: i32 = 3;
const TT_USER_DEFINED: i32 = 4;
const TT_UNUSED: i32 = 5;

fn token_content(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// Tokenizer keys from the `tokenizer.json` at `path` (+ `tokenizer_config.json` and the chat
/// template files beside it, else in the checkpoint directory `dir`) if present.
/// `vocab_size` pads the token list with `[PAD{id}]` (type UNUSED) up to the model's embedding rows.
/// Returns whether a tokenizer was found.
pub fn set_tokenizer(
    w: &mut GgufWriter,
    path: &Path,
    dir: &Path,
    vocab_size: Option<u64>,
) -> Result<bool, MetadataError> {
    let path = path.to_path_buf();
    let Some((tok, text)) = read_json(&path)? else { return Ok(false) };
    // Side files beside the tokenizer when it has them, else beside config.json.
    let beside = path.parent().filter(|p| p.join("tokenizer_config.json").is_file()).unwrap_or(dir);
    let dir = beside;
    let bad = |reason: &str| MetadataError::Bad { path: path.clone(), reason: reason.into() };
    let vocab = tok.pointer("/model/vocab").and_then(Value::as_object).ok_or_else(|| bad("missing model.vocab"))?;
    let mut entries: Vec<(u64, String, i32)> = Vec::with_capacity(vocab.len() + 64);
    for (t, id) in vocab {
        let id = id.as_u64().ok_or_else(|| bad("model.vocab id is not an integer"))?;
        entries.push((id, t.clone(), TT_NORMAL));
    }
    if let Some(added) = tok.get("added_tokens").and_then(Value::as_array) {
        for a in added {
            let (Some(id), Some(c)) = (a.get("id").and_then(Value::as_u64), a.get("content").and_then(Value::as_str))
            else {
                return Err(bad("added_tokens entry without id/content"));
            };
            let special = a.get("special").and_then(Value::as_bool).unwrap_or(false);
            entries.retain(|e| e.0 != id);
            entries.push((id, c.to_owned(), if special { TT_CONTROL } else { TT_USER_DEFINED }));
        }
    }
    let max_id = entries.iter().map(|e| e.0).max().unwrap_or(0);
    if max_id > 10_000_000 {
        return Err(bad("token id above 10,000,000"));
    }
    let n = (max_id + 1).max(vocab_size.unwrap_or(0)) as usize;
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut types = vec![TT_UNUSED; n];
    for (id, t, ty) in entries {
        tokens[id as usize] = Some(t);
        types[id as usize] = ty;
    }
    let tokens: Vec<String> =
        tokens.into_iter().enumerate().map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]"))).collect();
    let merges: Vec<String> = match tok.pointer("/model/merges").and_then(Value::as_array) {
        Some(m) => m
            .iter()
            .map(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Array(p) if p.len() == 2 => Some(format!("{} {}", p[0].as_str()?, p[1].as_str()?)),
                _ => None,
            })
            .collect::<Option<_>>()
            .ok_or_else(|| bad("model.merges entries must be \"a b\" strings or [a, b] pairs"))?,
        None => Vec::new(),
    };
    let find = |s: &str| tokens.iter().position(|t| t == s).map(|i| i as u32);

    w.set("tokenizer.ggml.model", MetaValue::String("gpt2".into()));
    w.set("tokenizer.ggml.pre", MetaValue::String("qwen2".into()));
    w.set("tokenizer.ggml.tokens", MetaValue::Array(MetaArray::String(tokens.clone())));
    w.set("tokenizer.ggml.token_type", MetaValue::Array(MetaArray::I32(types)));
    w.set("tokenizer.ggml.merges", MetaValue::Array(MetaArray::String(merges)));

    let tc = read_json(&dir.join("tokenizer_config.json"))?.map(|(v, _)| v);
    let from_tc = |k: &str| tc.as_ref().and_then(|t| token_content(t.get(k)));
    let eos = from_tc("eos_token").or_else(|| Some("<|im_end|>".into()));
    let pad = from_tc("pad_token").or_else(|| Some("<|endoftext|>".into()));
    let bos = from_tc("bos_token");
    if let Some(id) = eos.as_deref().and_then(find) {
        w.set("tokenizer.ggml.eos_token_id", MetaValue::U32(id));
    }
    if let Some(id) = pad.as_deref().and_then(find) {
        w.set("tokenizer.ggml.padding_token_id", MetaValue::U32(id));
    }
    match bos.as_deref().and_then(find) {
        Some(id) => {
            w.set("tokenizer.ggml.bos_token_id", MetaValue::U32(id));
            w.set("tokenizer.ggml.add_bos_token", MetaValue::Bool(true));
        }
        None => w.set("tokenizer.ggml.add_bos_token", MetaValue::Bool(false)),
    }
    let template = tc
        .as_ref()
        .and_then(|t| t.get("chat_template").and_then(Value::as_str).map(str::to_owned))
        .or_else(|| {
            read_json(&dir.join("chat_template.json"))
                .ok()
                .flatten()
                .and_then(|(v, _)| v.get("chat_template").and_then(Value::as_str).map(str::to_owned))
        })
        .or_else(|| std::fs::read_to_string(dir.join("chat_template.jinja")).ok());
    if let Some(t) = template {
        w.set("tokenizer.chat_template", MetaValue::String(t));
    }
    w.set("tokenizer.huggingface.json", MetaValue::String(text));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_renames_config_segments() {
        let v: Value = serde_json::json!({
            "thinker_config": {"text_config": {"hidden_size": 2048, "rms_norm_eps": 1e-6, "mrope_section": [24, 20, 20]},
                               "audio_token_id": 151675},
            "talker_config": {"speaker_id": {"chelsie": 2301}, "x": null, "mixed": [1, "a"]},
            "enable_audio_output": true, "neg": -3, "big": 5000000000u64
        });
        let f: std::collections::HashMap<String, MetaValue> = flatten_config(&v).into_iter().collect();
        assert_eq!(f["qwen3omni.thinker.text.hidden_size"], MetaValue::U32(2048));
        assert_eq!(f["qwen3omni.thinker.text.rms_norm_eps"], MetaValue::F32(1e-6));
        assert_eq!(f["qwen3omni.thinker.text.mrope_section"], MetaValue::Array(MetaArray::I32(vec![24, 20, 20])));
        assert_eq!(f["qwen3omni.thinker.audio_token_id"], MetaValue::U32(151675));
        assert_eq!(f["qwen3omni.talker.speaker_id.chelsie"], MetaValue::U32(2301));
        assert_eq!(f["qwen3omni.enable_audio_output"], MetaValue::Bool(true));
        assert_eq!(f["qwen3omni.neg"], MetaValue::I32(-3));
        assert_eq!(f["qwen3omni.big"], MetaValue::U64(5000000000));
        assert!(!f.contains_key("qwen3omni.talker.x"));
        assert!(!f.contains_key("qwen3omni.talker.mixed"));
    }
}
