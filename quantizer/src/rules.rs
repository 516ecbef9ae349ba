//! Which GGUF type each checkpoint tensor gets (documented in docs/quantizer.md).

use crate::gguf::GgmlType;

/// Options that change the type rules.
#[derive(Clone, Debug)]
pub struct TypeRules {
    /// The type of every 2-D tensor with rows of a multiple of 32 not matched below: Q8_0 (the
    /// default), F16 or BF16.
    pub base: GgmlType,
    /// Glob patterns (`*` any run, `?` one char) of tensors kept in F16 instead of `base`.
    pub keep_f16: Vec<String>,
    /// Glob patterns of tensors kept in BF16 instead of `base` (after `keep_f16`).
    pub keep_bf16: Vec<String>,
    /// Convert `thinker.visual.*` too (skipped by default).
    pub include_vision: bool,
}

impl Default for TypeRules {
    fn default() -> Self {
        TypeRules { base: GgmlType::Q8_0, keep_f16: Vec::new(), keep_bf16: Vec::new(), include_vision: false }
    }
}

/// The quantizer's named type plans (`--preset`, docs/quantizer.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// Every Linear, embedding and head in Q8_0 (today's default).
    Q8_0,
    /// Q8_0, with the code predictor, the Talker's codec head and Code2Wav in F16: the parts whose
    /// errors compound (15 chained argmaxes per frame, the waveform).
    Q8_0Hq,
    /// Every Linear in F16 (an unquantised reference from an F16 checkpoint).
    F16,
    /// Every Linear in BF16 (the checkpoint's own precision: an exact reference).
    Bf16,
}

impl Preset {
    pub const ALL: [Preset; 4] = [Preset::Q8_0, Preset::Q8_0Hq, Preset::F16, Preset::Bf16];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Q8_0 => "q8_0",
            Preset::Q8_0Hq => "q8_0-hq",
            Preset::F16 => "f16",
            Preset::Bf16 => "bf16",
        }
    }

    pub fn parse(s: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(s))
    }

    /// The type rules of the preset (the caller adds its own `keep_*` patterns and vision choice).
    pub fn rules(self) -> TypeRules {
        let mut r = TypeRules::default();
        match self {
            Preset::Q8_0 => {}
            Preset::Q8_0Hq => {
                r.keep_f16 = vec!["talker.code_predictor.*".into(), "talker.codec_head.*".into(), "code2wav.*".into()]
            }
            Preset::F16 => r.base = GgmlType::F16,
            Preset::Bf16 => r.base = GgmlType::BF16,
        }
        r
    }
}

/// What happens to a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Skip,
    Store(GgmlType),
}

/// Glob match over the whole name: `*` matches any run (dots included), `?` one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with single-star backtracking: O(len(p)·len(n)) worst case.
    let (mut pi, mut ni) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// MoE routers and the Talker's shared-expert gate: tiny, and their logits decide routing.
fn is_router(name: &str) -> bool {
    name.ends_with(".mlp.gate.weight") || name.ends_with(".mlp.shared_expert_gate.weight")
}

/// SnakeBeta alpha/beta, layer scales, ConvNeXt gamma (all 1-D in Qwen3-Omni; named here so a
/// reshaped variant still stays in F32).
fn is_scale_like(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or("");
    matches!(last, "alpha" | "beta" | "scale" | "gamma")
}

impl TypeRules {
    pub fn decide(&self, name: &str, shape: &[u64]) -> Decision {
        if name.starts_with("thinker.visual.") && !self.include_vision {
            return Decision::Skip;
        }
        if shape.len() <= 1 || is_router(name) || is_scale_like(name) || name.ends_with(".bias") {
            return Decision::Store(GgmlType::F32);
        }
        if self.keep_f16.iter().any(|p| glob_match(p, name)) {
            return Decision::Store(GgmlType::F16);
        }
        if self.keep_bf16.iter().any(|p| glob_match(p, name)) {
            return Decision::Store(GgmlType::BF16);
        }
        let row = shape[shape.len() - 1];
        if shape.len() == 2 && (row % 32 == 0 || self.base != GgmlType::Q8_0) {
            Decision::Store(self.base)
        } else {
            // Conv kernels (3-D/4-D) and linears with ragged rows.
            Decision::Store(GgmlType::F16)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("talker.code_predictor.*", "talker.code_predictor.lm_head.3.weight"));
        assert!(glob_match("code2wav.*", "code2wav.decoder.0.conv.weight"));
        assert!(!glob_match("code2wav.*", "talker.code2wav.x"));
        assert!(glob_match("*.experts.?.down_proj.weight", "a.experts.7.down_proj.weight"));
        assert!(!glob_match("*.experts.?.down_proj.weight", "a.experts.17.down_proj.weight"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }

    #[test]
    fn rules() {
        let r = TypeRules { keep_f16: vec!["talker.code_predictor.*".into()], ..TypeRules::default() };
        let q8 = Decision::Store(GgmlType::Q8_0);
        let f16 = Decision::Store(GgmlType::F16);
        let f32 = Decision::Store(GgmlType::F32);
        assert_eq!(r.decide("thinker.model.layers.0.self_attn.q_proj.weight", &[4096, 2048]), q8);
        assert_eq!(r.decide("thinker.model.embed_tokens.weight", &[152064, 2048]), q8);
        assert_eq!(r.decide("thinker.model.layers.0.mlp.gate.weight", &[128, 2048]), f32);
        assert_eq!(r.decide("talker.model.layers.0.mlp.shared_expert_gate.weight", &[1, 1024]), f32);
        assert_eq!(r.decide("thinker.model.norm.weight", &[2048]), f32);
        assert_eq!(r.decide("code2wav.decoder.1.block.0.alpha", &[1536]), f32);
        assert_eq!(r.decide("code2wav.decoder.0.conv.weight", &[1536, 1024, 7]), f16);
        assert_eq!(r.decide("thinker.audio_tower.conv2d1.weight", &[480, 1, 3, 3]), f16);
        assert_eq!(r.decide("talker.code_predictor.lm_head.0.weight", &[2048, 1024]), f16);
        assert_eq!(r.decide("talker.code_predictor.model.norm.weight", &[1024]), f32);
        assert_eq!(r.decide("x.weight", &[10, 33]), f16);
        assert_eq!(r.decide("thinker.visual.blocks.0.attn.qkv.weight", &[3456, 1152]), Decision::Skip);
    }

    #[test]
    fn presets() {
        let q8 = Decision::Store(GgmlType::Q8_0);
        let f16 = Decision::Store(GgmlType::F16);
        let bf16 = Decision::Store(GgmlType::BF16);
        let f32 = Decision::Store(GgmlType::F32);
        let hq = Preset::parse("q8_0-hq").unwrap().rules();
        assert_eq!(hq.decide("thinker.model.layers.0.self_attn.q_proj.weight", &[4096, 2048]), q8);
        assert_eq!(hq.decide("talker.model.layers.0.mlp.experts.0.up_proj.weight", &[384, 1024]), q8);
        assert_eq!(hq.decide("talker.code_predictor.model.layers.0.mlp.gate_proj.weight", &[3072, 1024]), f16);
        assert_eq!(hq.decide("talker.codec_head.weight", &[3072, 1024]), f16);
        assert_eq!(hq.decide("code2wav.pre_transformer.layers.0.mlp.up_proj.weight", &[3072, 1024]), f16);
        assert_eq!(hq.decide("talker.model.norm.weight", &[1024]), f32);
        let b = Preset::Bf16.rules();
        assert_eq!(b.decide("thinker.model.embed_tokens.weight", &[152064, 2048]), bf16);
        assert_eq!(b.decide("x.weight", &[10, 33]), bf16);
        assert_eq!(b.decide("code2wav.decoder.0.conv.weight", &[1536, 1024, 7]), f16);
        assert_eq!(b.decide("thinker.model.layers.0.mlp.gate.weight", &[128, 2048]), f32);
        let mut k = Preset::F16.rules();
        assert_eq!(k.decide("thinker.lm_head.weight", &[152064, 2048]), f16);
        k.keep_bf16 = vec!["thinker.lm_head.*".into()];
        assert_eq!(k.decide("thinker.lm_head.weight", &[152064, 2048]), bf16);
        assert_eq!(Preset::parse("Q8_0"), Some(Preset::Q8_0));
        assert_eq!(Preset::parse("q4_k"), None);
    }
}
