//! Which GGUF type each checkpoint tensor gets (documented in docs/quantizer.md).

use crate::gguf::GgmlType;

/// Options that change the type rules.
#[derive(Clone, Debug, Default)]
pub struct TypeRules {
    /// Glob patterns (`*` any run, `?` one char) of tensors kept in F16 instead of Q8_0.
    pub keep_f16: Vec<String>,
    /// Convert `thinker.visual.*` too (skipped by default).
    pub include_vision: bool,
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
        let row = shape[shape.len() - 1];
        if shape.len() == 2 && row % 32 == 0 {
            Decision::Store(GgmlType::Q8_0)
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
        let r = TypeRules { keep_f16: vec!["talker.code_predictor.*".into()], include_vision: false };
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
}
