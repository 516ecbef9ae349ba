//! Thinker hyper-parameters, read from the model file's config (never from transformers' class
//! defaults, which differ from the checkpoint: spec §2.3).

use crate::model_file::{ModelError, ModelFile};

/// What the Thinker's shapes and numerics depend on.
#[derive(Debug, Clone, PartialEq)]
pub struct ThinkerConfig {
    pub hidden: u32,
    pub layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub n_experts: u32,
    pub top_k: u32,
    pub moe_inter: u32,
    pub vocab: u32,
    pub rms_eps: f32,
    pub rope_theta: f32,
    /// MRoPE sections (T, H, W) in frequency slots; they sum to head_dim / 2.
    pub mrope_section: [u32; 3],
    pub norm_topk: bool,
    pub max_positions: u32,
}

const T: &str = "/thinker_config/text_config";

impl ThinkerConfig {
    pub fn from_model(m: &ModelFile) -> Result<ThinkerConfig, ModelError> {
        let u = |k: &str| -> Result<u32, ModelError> {
            let p = format!("{T}/{k}");
            let v = m.config_u64(&p)?;
            u32::try_from(v).map_err(|_| m.config_err(&p, "does not fit in 32 bits"))
        };
        let hidden = u("hidden_size")?;
        let n_heads = u("num_attention_heads")?;
        let head_dim = match m.config().pointer(&format!("{T}/head_dim")) {
            Some(_) => u("head_dim")?,
            None => hidden / n_heads.max(1),
        };
        let theta = m
            .config()
            .pointer(&format!("{T}/rope_parameters/rope_theta"))
            .or_else(|| m.config().pointer(&format!("{T}/rope_theta")))
            .and_then(|v| v.as_f64())
            .ok_or_else(|| m.config_err(&format!("{T}/rope_parameters/rope_theta"), "missing"))?;
        let sec: Vec<u32> = m
            .config()
            .pointer(&format!("{T}/rope_parameters/mrope_section"))
            .or_else(|| m.config().pointer(&format!("{T}/rope_scaling/mrope_section")))
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect())
            .unwrap_or_else(|| vec![head_dim / 2, 0, 0]);
        let c = ThinkerConfig {
            hidden,
            layers: u("num_hidden_layers")?,
            n_heads,
            n_kv_heads: u("num_key_value_heads")?,
            head_dim,
            n_experts: u("num_experts")?,
            top_k: u("num_experts_per_tok")?,
            moe_inter: u("moe_intermediate_size")?,
            vocab: u("vocab_size")?,
            rms_eps: m.config_f64(&format!("{T}/rms_norm_eps"))? as f32,
            rope_theta: theta as f32,
            mrope_section: [
                sec.first().copied().unwrap_or(0),
                sec.get(1).copied().unwrap_or(0),
                sec.get(2).copied().unwrap_or(0),
            ],
            norm_topk: m.config().pointer(&format!("{T}/norm_topk_prob")).and_then(|v| v.as_bool()).unwrap_or(true),
            max_positions: u("max_position_embeddings").unwrap_or(65536),
        };
        c.check(m)?;
        Ok(c)
    }

    fn check(&self, m: &ModelFile) -> Result<(), ModelError> {
        let bad = |f: &str, w: String| Err(m.config_err(&format!("{T}/{f}"), &w));
        if self.n_kv_heads == 0 || self.n_heads % self.n_kv_heads != 0 {
            return bad(
                "num_key_value_heads",
                format!("{} does not divide num_attention_heads {}", self.n_kv_heads, self.n_heads),
            );
        }
        if self.top_k == 0 || self.top_k > self.n_experts {
            return bad("num_experts_per_tok", format!("{} is not within 1..={} experts", self.top_k, self.n_experts));
        }
        if self.mrope_section.iter().sum::<u32>() != self.head_dim / 2 {
            return bad(
                "rope_parameters/mrope_section",
                format!("{:?} does not sum to head_dim / 2 = {}", self.mrope_section, self.head_dim / 2),
            );
        }
        for (f, v) in [("hidden_size", self.hidden), ("moe_intermediate_size", self.moe_inter)] {
            if v % 32 != 0 {
                return bad(f, format!("{v} is not a multiple of 32 (Q8_0 rows)"));
            }
        }
        if (self.n_heads * self.head_dim) % 32 != 0 {
            return bad(
                "head_dim",
                "num_attention_heads × head_dim is not a multiple of 32 (Q8_0 rows of o_proj)".into(),
            );
        }
        Ok(())
    }

    /// Bytes of weights read per decoded token (attention, routed experts, norms, lm_head; not the
    /// embedding table, of which one row is read): the numerator of the decode roofline.
    pub fn decode_bytes_per_token(&self) -> u64 {
        let q8 = |rows: u64, cols: u64| rows * cols / 32 * 34;
        let (h, hd) = (self.hidden as u64, self.head_dim as u64);
        let attn =
            q8(self.n_heads as u64 * hd, h) + 2 * q8(self.n_kv_heads as u64 * hd, h) + q8(h, self.n_heads as u64 * hd);
        let moe = self.top_k as u64 * 3 * q8(self.moe_inter as u64, h) + self.n_experts as u64 * h * 4;
        self.layers as u64 * (attn + moe) + q8(self.vocab as u64, h)
    }
}
