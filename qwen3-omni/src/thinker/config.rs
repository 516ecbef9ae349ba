//! Thinker hyper-parameters, read from the model file's config (never from transformers' class
//! defaults, which differ from the checkpoint: spec §2.3).

use qwen3_omni_vk::layout::PlanarLayout;

use super::expert_stride;
use crate::config_check::{
    check_decoder_tensors, Checked, DecoderShape, Section, Tensors, MAX_EXPERTS, MAX_GQA_GROUP, MAX_HEADS,
    MAX_HEAD_DIM, MAX_LAYERS, MAX_POSITIONS, MAX_TOP_K, MAX_VOCAB, MAX_WIDTH,
};
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
    /// The layer whose output the Talker reads (`talker_config.accept_hidden_layer`; the middle
    /// layer when the file has no Talker config).
    pub accept_layer: u32,
}

const T: &str = "/thinker_config/text_config";

impl ThinkerConfig {
    /// The config of `m`, every field range-checked and checked against the others and against
    /// the Thinker's tensors (errors name the field: `config_check`).
    pub fn from_model(m: &ModelFile) -> Result<ThinkerConfig, ModelError> {
        Self::parse(m.config(), &Tensors::new(m)).map_err(|e| e.into_model(m))
    }

    fn parse(cfg: &serde_json::Value, t: &Tensors) -> Checked<ThinkerConfig> {
        let s = Section::new(cfg, T);
        let hidden = s.width("hidden_size")?;
        let layers = s.uint("num_hidden_layers", 1..=MAX_LAYERS)?;
        let n_heads = s.uint("num_attention_heads", 1..=MAX_HEADS)?;
        let n_kv_heads = s.uint("num_key_value_heads", 1..=n_heads)?;
        s.ensure(
            "num_key_value_heads",
            n_heads.is_multiple_of(n_kv_heads) && n_heads / n_kv_heads <= MAX_GQA_GROUP,
            || {
                format!(
                    "{n_kv_heads} must divide num_attention_heads {n_heads} into groups of at most {MAX_GQA_GROUP} \
                 (the decode attention kernels)"
                )
            },
        )?;
        let head_dim = s.uint_or("head_dim", hidden / n_heads, 0..=u32::MAX)?;
        s.ensure("head_dim", head_dim.is_multiple_of(8) && (8..=MAX_HEAD_DIM).contains(&head_dim), || {
            format!("{head_dim} is not a multiple of 8 in 8..={MAX_HEAD_DIM} (the attention kernels)")
        })?;
        let qd = n_heads * head_dim;
        s.ensure("num_attention_heads", qd.is_multiple_of(32) && qd <= MAX_WIDTH, || {
            format!("num_attention_heads × head_dim = {qd} is not a multiple of 32 up to {MAX_WIDTH} (o_proj rows)")
        })?;
        let n_experts = s.uint("num_experts", 1..=MAX_EXPERTS)?;
        let top_k = s.uint("num_experts_per_tok", 1..=MAX_TOP_K)?;
        s.ensure("num_experts_per_tok", top_k <= n_experts, || {
            format!("{top_k} is more than num_experts {n_experts}")
        })?;
        let moe_inter = s.width("moe_intermediate_size")?;
        let vocab = s.uint("vocab_size", 1..=MAX_VOCAB)?;
        let max_positions = s.uint_or("max_position_embeddings", 65536, 1..=MAX_POSITIONS)?;
        let q8 = |r: u64, c: u64| PlanarLayout::new(r, c).total();
        s.buffer("vocab_size", "the embedding (vocab_size × hidden_size)", q8(vocab as u64, hidden as u64))?;
        let stack = n_experts as u64 * expert_stride(moe_inter as u64, hidden as u64);
        s.buffer("num_experts", "one layer's stacked experts", stack)?;
        let kv = max_positions as u64 * (n_kv_heads * head_dim) as u64 * 4;
        s.buffer("max_position_embeddings", "a full-context KV cache layer", kv)?;
        s.buffer(
            "max_position_embeddings",
            "the full-context hidden states",
            max_positions as u64 * hidden as u64 * 4,
        )?;
        // GpuThinker keeps hs[accept_hidden_layer] for the Talker (spec §5.4): within the stack.
        let accept = Section::new(cfg, "/talker_config").uint_or("accept_hidden_layer", layers / 2, 1..=layers)?;
        let c = ThinkerConfig {
            hidden,
            layers,
            n_heads,
            n_kv_heads,
            head_dim,
            n_experts,
            top_k,
            moe_inter,
            vocab,
            rms_eps: s.rms_eps()?,
            rope_theta: s.rope_theta()?,
            mrope_section: s.mrope_section(head_dim)?,
            norm_topk: s.bool_or("norm_topk_prob", true)?,
            max_positions,
            accept_layer: accept,
        };
        for name in ["thinker.model.embed_tokens.weight", "thinker.lm_head.weight"] {
            t.dim(&s, "vocab_size", name, 0, vocab as u64, "vocab_size")?;
            t.dim(&s, "hidden_size", name, 1, hidden as u64, "hidden_size")?;
        }
        let shape = DecoderShape {
            hidden,
            layers,
            n_heads,
            n_kv_heads,
            head_dim,
            n_experts,
            experts_key: "num_experts",
            moe_inter,
            shared_inter: 0,
            inter: 0,
        };
        check_decoder_tensors(t, &s, "thinker.model", &shape)?;
        Ok(c)
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
