//! Config fields read with their limits, and checked against the tensors of the file.
//!
//! Every component's config (`ThinkerConfig`, `TalkerConfig`, `Code2WavConfig`, `AudioConfig`)
//! reads its fields through a [`Section`], so a field that is missing, of the wrong type, out of
//! its range (zero, negative, huge, NaN or infinite) or inconsistent with another field or with a
//! tensor's shape is refused with the field's JSON pointer in the error, before any GPU work and
//! for every front end alike (CLI, C API, tests). [`check_model`] runs every component's checks
//! at once (what `Model::load` does before it opens a device).
//!
//! The limits keep every size the engine computes far from u32 / u64 overflow and every buffer
//! within what a storage-buffer binding addresses; the kernel limits are the kernels' own.

use std::ops::RangeInclusive;

use serde_json::Value;

use crate::model_file::{ModelError, ModelFile};

/// Hidden, intermediate and projection widths (the real model's largest is 5120).
pub const MAX_WIDTH: u32 = 65_536;
/// Decoder / encoder layers (real: 48 at most).
pub const MAX_LAYERS: u32 = 1024;
/// Attention heads (real: 32 at most).
pub const MAX_HEADS: u32 = 1024;
/// head_dim of the Thinker's and Talker's attention kernels (decode: a multiple of 4 up to one
/// 128-wide workgroup; prefill: a multiple of 8 up to 128) and of Code2Wav's windowed attention.
pub const MAX_HEAD_DIM: u32 = 128;
/// Query heads per KV head of the decode attention kernels.
pub const MAX_GQA_GROUP: u32 = 16;
/// Vocabulary rows (real: 152,064).
pub const MAX_VOCAB: u32 = 1 << 20;
/// max_position_embeddings (real: 65,536).
pub const MAX_POSITIONS: u32 = 1 << 20;
/// Routed experts (the routing kernel's limit; real: 128).
pub const MAX_EXPERTS: u32 = qwen3_omni_vk::MOE_ROUTE_MAX_EXPERTS;
/// Experts per token (the MoE kernels' limit; real: 8).
pub const MAX_TOP_K: u32 = qwen3_omni_vk::MOE_MAX_K;
/// Bytes of one weight or cache buffer: shaders address a binding with 32-bit offsets.
pub const MAX_BUFFER_BYTES: u64 = u32::MAX as u64;
/// rms_norm_eps must lie in (0, RMS_EPS_MAX) (real: 1e-6 and 1e-5).
pub const RMS_EPS_MAX: f64 = 1.0;
/// rope_theta must lie in (1, ROPE_THETA_MAX] (real: 1e6 and 1e4).
pub const ROPE_THETA_MAX: f64 = 1e12;

/// A refused config field: its JSON pointer and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub what: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, what: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), what: what.into() }
    }

    /// As the model file's config error.
    pub fn into_model(self, m: &ModelFile) -> ModelError {
        m.config_err(&self.field, &self.what)
    }
}

pub type Checked<T> = Result<T, FieldError>;

fn show_range(r: &RangeInclusive<u32>) -> String {
    format!("{}..={}", r.start(), r.end())
}

/// A JSON value as the error shows it (a string that reads as a float — `NaN`, `Infinity`, an
/// overflowing number quoted by the parser — unquoted).
fn show_value(v: &Value) -> String {
    match v {
        Value::String(s) if s.parse::<f64>().is_ok() => s.clone(),
        Value::String(s) => format!("the string {s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
        Value::Null => "null".into(),
    }
}

/// One config object, by JSON pointer (e.g. `/thinker_config/text_config`).
#[derive(Clone, Copy)]
pub struct Section<'a> {
    cfg: &'a Value,
    base: &'a str,
}

impl<'a> Section<'a> {
    pub fn new(cfg: &'a Value, base: &'a str) -> Section<'a> {
        Section { cfg, base }
    }

    /// The JSON pointer of field `k`.
    pub fn path(&self, k: &str) -> String {
        format!("{}/{k}", self.base)
    }

    pub fn err(&self, k: &str, what: impl Into<String>) -> FieldError {
        FieldError::new(self.path(k), what)
    }

    /// Field `k` unless it is absent or null.
    pub fn get(&self, k: &str) -> Option<&'a Value> {
        self.cfg.pointer(&self.path(k)).filter(|v| !v.is_null())
    }

    pub fn has(&self, k: &str) -> bool {
        self.get(k).is_some()
    }

    /// `Err` naming `k` with `what()` unless `ok`.
    pub fn ensure(&self, k: &str, ok: bool, what: impl FnOnce() -> String) -> Checked<()> {
        if ok {
            Ok(())
        } else {
            Err(self.err(k, what()))
        }
    }

    /// An unsigned integer field within `range`.
    pub fn uint(&self, k: &str, range: RangeInclusive<u32>) -> Checked<u32> {
        match self.get(k) {
            Some(v) => self.uint_value(k, v, &range),
            None => Err(self.err(k, format!("missing (need an integer in {})", show_range(&range)))),
        }
    }

    /// [`Section::uint`], or `default` (unchecked) when the field is absent.
    pub fn uint_or(&self, k: &str, default: u32, range: RangeInclusive<u32>) -> Checked<u32> {
        match self.get(k) {
            Some(v) => self.uint_value(k, v, &range),
            None => Ok(default),
        }
    }

    fn uint_value(&self, k: &str, v: &Value, range: &RangeInclusive<u32>) -> Checked<u32> {
        let n = v
            .as_u64()
            .ok_or_else(|| self.err(k, format!("{} is not an integer in {}", show_value(v), show_range(range))))?;
        if n < *range.start() as u64 || n > *range.end() as u64 {
            return Err(self.err(k, format!("{n} is outside {}", show_range(range))));
        }
        Ok(n as u32)
    }

    /// A finite number field for which `ok` holds (`range` describes it in the error).
    pub fn float(&self, k: &str, range: &str, ok: impl Fn(f64) -> bool) -> Checked<f64> {
        let v = self.get(k).ok_or_else(|| self.err(k, format!("missing (need a number in {range})")))?;
        match v.as_f64() {
            Some(x) if x.is_finite() && ok(x) => Ok(x),
            _ => Err(self.err(k, format!("{} is not a number in {range}", show_value(v)))),
        }
    }

    /// A boolean field, or `default` when absent.
    pub fn bool_or(&self, k: &str, default: bool) -> Checked<bool> {
        match self.get(k) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.err(k, format!("{} is not true or false", show_value(v)))),
        }
    }

    /// A list of `len` unsigned integers, each within `each`.
    pub fn uint_list(&self, k: &str, len: RangeInclusive<usize>, each: RangeInclusive<u32>) -> Checked<Vec<u32>> {
        let v = self.get(k).ok_or_else(|| self.err(k, "missing (need a list of integers)"))?;
        let a = v.as_array().ok_or_else(|| self.err(k, format!("{} is not a list of integers", show_value(v))))?;
        if !len.contains(&a.len()) {
            return Err(self.err(k, format!("has {} entries, need {}..={}", a.len(), len.start(), len.end())));
        }
        a.iter().map(|x| self.uint_value(k, x, &each)).collect()
    }

    /// A width: a positive multiple of 32 (Q8_0 rows) up to [`MAX_WIDTH`].
    pub fn width(&self, k: &str) -> Checked<u32> {
        let v = self.uint(k, 32..=MAX_WIDTH)?;
        self.ensure(k, v.is_multiple_of(32), || format!("{v} is not a multiple of 32 (Q8_0 rows)"))?;
        Ok(v)
    }

    /// `rms_norm_eps` in (0, [`RMS_EPS_MAX`]).
    pub fn rms_eps(&self) -> Checked<f32> {
        Ok(self.float("rms_norm_eps", "(0, 1)", |x| x > 0.0 && x < RMS_EPS_MAX)? as f32)
    }

    /// `rope_parameters/rope_theta` (or a top-level `rope_theta`) in (1, [`ROPE_THETA_MAX`]].
    pub fn rope_theta(&self) -> Checked<f32> {
        let k = if !self.has("rope_parameters/rope_theta") && self.has("rope_theta") {
            "rope_theta"
        } else {
            "rope_parameters/rope_theta"
        };
        Ok(self.float(k, "(1, 1e12]", |x| x > 1.0 && x <= ROPE_THETA_MAX)? as f32)
    }

    /// The MRoPE sections (T, H, W): up to three entries summing to head_dim / 2 (spec §11.2); a
    /// config without them gets plain 1-D RoPE, `[head_dim / 2, 0, 0]`.
    pub fn mrope_section(&self, head_dim: u32) -> Checked<[u32; 3]> {
        let half = head_dim / 2;
        let k = ["rope_parameters/mrope_section", "rope_scaling/mrope_section"].into_iter().find(|k| self.has(k));
        let Some(k) = k else { return Ok([half, 0, 0]) };
        let s = self.uint_list(k, 1..=3, 0..=half)?;
        let sec = [s[0], s.get(1).copied().unwrap_or(0), s.get(2).copied().unwrap_or(0)];
        self.ensure(k, sec.iter().sum::<u32>() == half, || format!("{sec:?} does not sum to head_dim / 2 = {half}"))?;
        Ok(sec)
    }

    /// `bytes` of one buffer sized by field `k` within [`MAX_BUFFER_BYTES`].
    pub fn buffer(&self, k: &str, what: &str, bytes: u64) -> Checked<()> {
        self.ensure(k, bytes <= MAX_BUFFER_BYTES, || {
            format!("{what} would take {bytes} bytes, over the {MAX_BUFFER_BYTES}-byte limit of one buffer")
        })
    }
}

/// The file's tensors, as far as the config checks need them: shapes and counts, where present
/// (a missing tensor is left to the loader, which names it).
#[derive(Clone, Copy)]
pub struct Tensors<'a> {
    m: &'a ModelFile,
}

impl<'a> Tensors<'a> {
    pub fn new(m: &'a ModelFile) -> Tensors<'a> {
        Tensors { m }
    }

    /// Torch-order shape of `name`, if the file has it.
    pub fn shape(&self, name: &str) -> Option<Vec<u64>> {
        self.m.gguf.header.tensor(name).map(|t| t.dims.iter().rev().copied().collect())
    }

    pub fn has(&self, name: &str) -> bool {
        self.m.gguf.header.tensor(name).is_some()
    }

    /// Whether any tensor's name starts with `prefix`.
    pub fn any(&self, prefix: &str) -> bool {
        self.m.gguf.header.tensors.iter().any(|t| t.name.starts_with(prefix))
    }

    /// Axis `axis` of tensor `name` (when present) is `want`, the value field `k` of `s` gives
    /// (`what` says how, e.g. "num_attention_heads × head_dim").
    pub fn dim(&self, s: &Section, k: &str, name: &str, axis: usize, want: u64, what: &str) -> Checked<()> {
        match self.shape(name) {
            Some(shape) if shape.get(axis) != Some(&want) => {
                Err(s.err(k, format!("{what} = {want} disagrees with tensor {name} of shape {shape:?} (axis {axis})")))
            }
            _ => Ok(()),
        }
    }

    /// The file holds `name(0)..name(n − 1)` and no `name(n)`, as field `k` says.
    pub fn count(&self, s: &Section, k: &str, n: u32, name: impl Fn(u32) -> String) -> Checked<()> {
        if n > 0 && !self.has(&name(n - 1)) {
            return Err(s.err(k, format!("{n}, but the file has no tensor {}", name(n - 1))));
        }
        if self.has(&name(n)) {
            return Err(s.err(k, format!("{n}, but the file also has tensor {}", name(n))));
        }
        Ok(())
    }
}

/// The shapes of one decoder stack, for [`check_decoder_tensors`].
pub struct DecoderShape<'k> {
    pub hidden: u32,
    pub layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// Routed experts (0: a dense MLP of `inter`) and the config key that counts them.
    pub n_experts: u32,
    pub experts_key: &'k str,
    pub moe_inter: u32,
    /// The shared expert's width (0: none).
    pub shared_inter: u32,
    pub inter: u32,
}

/// A decoder stack's config against its tensors under `prefix` (e.g. `thinker.model`): layer and
/// expert counts, head shapes and widths. A stack the file lacks altogether is not checked.
pub fn check_decoder_tensors(t: &Tensors, s: &Section, prefix: &str, d: &DecoderShape) -> Checked<()> {
    let layer = |l: u32| format!("{prefix}.layers.{l}.input_layernorm.weight");
    if !t.has(&layer(0)) {
        return Ok(());
    }
    t.count(s, "num_hidden_layers", d.layers, layer)?;
    let n = |x: &str| format!("{prefix}.layers.0.{x}");
    let (qd, kvd) = (d.n_heads as u64 * d.head_dim as u64, d.n_kv_heads as u64 * d.head_dim as u64);
    t.dim(s, "hidden_size", &n("input_layernorm.weight"), 0, d.hidden as u64, "hidden_size")?;
    t.dim(s, "head_dim", &n("self_attn.q_norm.weight"), 0, d.head_dim as u64, "head_dim")?;
    let q = n("self_attn.q_proj.weight");
    t.dim(s, "num_attention_heads", &q, 0, qd, "num_attention_heads × head_dim")?;
    t.dim(s, "num_key_value_heads", &n("self_attn.k_proj.weight"), 0, kvd, "num_key_value_heads × head_dim")?;
    if d.n_experts == 0 {
        let g = n("mlp.gate_proj.weight");
        return t.dim(s, "intermediate_size", &g, 0, d.inter as u64, "intermediate_size");
    }
    let ek = d.experts_key;
    t.dim(s, ek, &n("mlp.gate.weight"), 0, d.n_experts as u64, ek)?;
    t.count(s, ek, d.n_experts, |e| n(&format!("mlp.experts.{e}.gate_proj.weight")))?;
    let g = n("mlp.experts.0.gate_proj.weight");
    t.dim(s, "moe_intermediate_size", &g, 0, d.moe_inter as u64, "moe_intermediate_size")?;
    if d.shared_inter > 0 {
        let g = n("mlp.shared_expert.gate_proj.weight");
        t.dim(s, "shared_expert_intermediate_size", &g, 0, d.shared_inter as u64, "shared_expert_intermediate_size")?;
    }
    Ok(())
}

/// Every component's config in `m` checked at once (each component's tensors present decide
/// whether its config must be valid): the Thinker always, the AudioTower, Talker and Code2Wav
/// where the file has their weights, and the Talker against Code2Wav.
pub fn check_model(m: &ModelFile) -> Result<(), ModelError> {
    crate::thinker::ThinkerConfig::from_model(m)?;
    let t = Tensors::new(m);
    if t.any("thinker.audio_tower.") {
        crate::audio::AudioConfig::from_model(m)?;
    }
    let talker = if t.any("talker.") { Some(crate::talker::TalkerConfig::from_model(m)?) } else { None };
    let c2w = if t.any("code2wav.") { Some(crate::code2wav::Code2WavConfig::from_model(m)?) } else { None };
    if let (Some(talker), Some(c2w)) = (talker, c2w) {
        check_speech_pair(&talker, &c2w).map_err(|e| e.into_model(m))?;
    }
    Ok(())
}

/// The Talker's codes are Code2Wav's input: as many groups per frame, from codebooks as large.
pub fn check_speech_pair(talker: &crate::talker::TalkerConfig, c2w: &crate::code2wav::Code2WavConfig) -> Checked<()> {
    if talker.groups != c2w.num_quantizers {
        return Err(FieldError::new(
            "/code2wav_config/num_quantizers",
            format!("{} differs from the Talker's num_code_groups {}", c2w.num_quantizers, talker.groups),
        ));
    }
    if talker.predictor.vocab != c2w.codebook_size {
        return Err(FieldError::new(
            "/code2wav_config/codebook_size",
            format!(
                "{} differs from the code predictor's vocab_size {} (the codes it decodes)",
                c2w.codebook_size, talker.predictor.vocab
            ),
        ));
    }
    Ok(())
}
