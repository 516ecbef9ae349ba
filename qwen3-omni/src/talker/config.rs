//! Talker and code-predictor hyper-parameters and ids, read from the model file's config (spec §2.2;
//! never transformers' class defaults, which differ from the checkpoint: §2.3).

use crate::config_check::{
    check_decoder_tensors, Checked, DecoderShape, Section, Tensors, MAX_EXPERTS, MAX_GQA_GROUP, MAX_HEADS,
    MAX_HEAD_DIM, MAX_LAYERS, MAX_POSITIONS, MAX_TOP_K, MAX_VOCAB, MAX_WIDTH,
};
use crate::model_file::{ModelError, ModelFile};
use crate::thinker::expert_stride;

/// One decoder stack's shapes (the Talker's MoE stack or the code predictor's dense one).
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    pub hidden: u32,
    pub layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// Rows of the output head(s) (codec vocabulary).
    pub vocab: u32,
    pub rms_eps: f32,
    pub rope_theta: f32,
    /// MRoPE sections (T, H, W); `[head_dim / 2, 0, 0]` is plain 1-D RoPE.
    pub mrope_section: [u32; 3],
    /// Dense MLP width (code predictor); for the Talker: the projections' hidden width.
    pub inter: u32,
    /// MoE (Talker only; 0 experts = dense).
    pub n_experts: u32,
    pub top_k: u32,
    pub moe_inter: u32,
    pub shared_inter: u32,
    pub norm_topk: bool,
    pub max_positions: u32,
}

/// The Talker's special codec ids and the Thinker-side ids its prompt is built from (spec §6.2).
#[derive(Debug, Clone, PartialEq)]
pub struct TalkerIds {
    pub codec_pad: u32,
    pub codec_bos: u32,
    pub codec_eos: u32,
    pub codec_nothink: u32,
    pub codec_think_bos: u32,
    pub codec_think_eos: u32,
    /// Speaker name (lower case) → codec id, e.g. ("ethan", 2302).
    pub speakers: Vec<(String, u32)>,
    pub tts_pad: u32,
    pub tts_bos: u32,
    pub tts_eos: u32,
    pub im_start: u32,
    pub im_end: u32,
    pub user: u32,
    pub assistant: u32,
    /// Thinker placeholder ids whose positions take `hidden_projection(hs[accept])`.
    pub multimodal: [u32; 3],
}

/// Everything the Talker and its code predictor depend on.
#[derive(Debug, Clone, PartialEq)]
pub struct TalkerConfig {
    pub talker: DecoderConfig,
    pub predictor: DecoderConfig,
    /// Codes per frame (16): code 0 from the Talker, 1.. from the code predictor.
    pub groups: u32,
    /// Thinker hidden width (input of text_projection / hidden_projection).
    pub thinker_hidden: u32,
    /// Thinker layer whose output feeds `hidden_projection` (hs[accept], spec §5.4).
    pub accept_layer: u32,
    pub ids: TalkerIds,
}

const TK: &str = "/talker_config";

/// One decoder stack's config at `base` (the Talker's MoE stack or the code predictor's dense one),
/// range- and consistency-checked (errors name the field).
fn decoder(s: &Section, moe: bool, min_positions: u32) -> Checked<DecoderConfig> {
    let hidden = s.width("hidden_size")?;
    let layers = s.uint("num_hidden_layers", 1..=MAX_LAYERS)?;
    let n_heads = s.uint("num_attention_heads", 1..=MAX_HEADS)?;
    let n_kv_heads = s.uint("num_key_value_heads", 1..=n_heads)?;
    s.ensure(
        "num_key_value_heads",
        n_heads.is_multiple_of(n_kv_heads) && n_heads / n_kv_heads <= MAX_GQA_GROUP,
        || {
            format!(
                "{n_kv_heads} must divide num_attention_heads {n_heads} into groups of at most {MAX_GQA_GROUP} (the \
             decode attention kernels)"
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
    let vocab = s.uint("vocab_size", 1..=MAX_VOCAB)?;
    s.buffer("vocab_size", "the codec embedding (vocab_size × hidden_size)", vocab as u64 * hidden as u64 * 2)?;
    let (n_experts, top_k, moe_inter, shared_inter) = if moe {
        // transformers serialises the Talker's expert count as `num_local_experts`.
        let ek = if s.has("num_experts") { "num_experts" } else { "num_local_experts" };
        let ne = s.uint(ek, 1..=MAX_EXPERTS)?;
        let top_k = s.uint("num_experts_per_tok", 1..=MAX_TOP_K)?;
        s.ensure("num_experts_per_tok", top_k <= ne, || format!("{top_k} is more than {ek} {ne}"))?;
        let mi = s.width("moe_intermediate_size")?;
        s.buffer(ek, "one layer's stacked experts", ne as u64 * expert_stride(mi as u64, hidden as u64))?;
        (ne, top_k, mi, s.width("shared_expert_intermediate_size")?)
    } else {
        (0, 0, 0, 0)
    };
    let default_positions = if moe { 65536 } else { 32768 };
    let max_positions = s.uint_or("max_position_embeddings", default_positions, min_positions..=MAX_POSITIONS)?;
    let kv = max_positions as u64 * (n_kv_heads * head_dim) as u64 * 4;
    s.buffer("max_position_embeddings", "a full-context KV cache layer", kv)?;
    Ok(DecoderConfig {
        hidden,
        layers,
        n_heads,
        n_kv_heads,
        head_dim,
        vocab,
        rms_eps: s.rms_eps()?,
        rope_theta: s.rope_theta()?,
        mrope_section: s.mrope_section(head_dim)?,
        inter: s.width("intermediate_size")?,
        n_experts,
        top_k,
        moe_inter,
        shared_inter,
        // The checkpoint says true; transformers' Talker class default would be false (§2.3).
        norm_topk: s.bool_or("norm_topk_prob", true)?,
        max_positions,
    })
}

impl TalkerConfig {
    /// The Talker's and code predictor's config in `m`, every field range-checked and checked
    /// against the others, the Thinker's config and the tensors (errors name the field).
    pub fn from_model(m: &ModelFile) -> Result<TalkerConfig, ModelError> {
        Self::parse(m.config(), &Tensors::new(m)).map_err(|e| e.into_model(m))
    }

    fn parse(cfg: &serde_json::Value, t: &Tensors) -> Checked<TalkerConfig> {
        let tk = Section::new(cfg, TK);
        let top = Section::new(cfg, "");
        let thinker = Section::new(cfg, "/thinker_config/text_config");
        let groups = tk.uint("num_code_groups", 2..=64)?;
        // The Talker's prompt is at least 16 rows (GpuTalker's smallest context); the code
        // predictor's positions are the frame's code groups.
        let tp = Section::new(cfg, "/talker_config/text_config");
        let talker = decoder(&tp, true, 16)?;
        let cpp = Section::new(cfg, "/talker_config/code_predictor_config");
        let predictor = decoder(&cpp, false, groups)?;
        cpp.ensure("hidden_size", predictor.hidden == talker.hidden, || {
            format!("{} differs from the Talker's {}", predictor.hidden, talker.hidden)
        })?;
        // Spec §9 trap 17: code 0 (below vocab − 1024) comes from the same codebook as the others.
        tp.ensure("vocab_size", talker.vocab.checked_sub(1024) == Some(predictor.vocab), || {
            format!(
                "{}: vocab_size − 1024 must equal the code predictor's vocab_size {}",
                talker.vocab, predictor.vocab
            )
        })?;
        // The Thinker's config, where it is valid, bounds what the Talker takes from it.
        let th_hidden = thinker.get("hidden_size").and_then(|v| v.as_u64());
        let th_layers = thinker.get("num_hidden_layers").and_then(|v| v.as_u64()).filter(|&l| l >= 1);
        let th_vocab = t
            .shape("thinker.model.embed_tokens.weight")
            .and_then(|s| s.first().copied())
            .or_else(|| thinker.get("vocab_size").and_then(|v| v.as_u64()));
        let thinker_hidden = tk.width("thinker_hidden_size")?;
        if let Some(h) = th_hidden {
            tk.ensure("thinker_hidden_size", thinker_hidden as u64 == h, || {
                format!("{thinker_hidden} differs from the Thinker's hidden_size {h}")
            })?;
        }
        let max_layer = th_layers.map_or(MAX_LAYERS, |l| l.min(MAX_LAYERS as u64) as u32);
        let accept_layer = tk.uint("accept_hidden_layer", 1..=max_layer)?;
        let speakers_v = tk.get("speaker_id").and_then(|v| v.as_object());
        let speakers_v = speakers_v.ok_or_else(|| tk.err("speaker_id", "missing or not an object"))?;
        tk.ensure("speaker_id", !speakers_v.is_empty(), || "has no voices".into())?;
        let v = talker.vocab;
        let codec = |k: &str| tk.uint(k, 0..=v - 1);
        let speakers = speakers_v
            .keys()
            .map(|k| Ok((k.to_lowercase(), codec(&format!("speaker_id/{k}"))?)))
            .collect::<Checked<Vec<_>>>()?;
        // Thinker ids: rows of the Thinker's embedding E(id) (spec §6.1).
        let tv = th_vocab.map_or(MAX_VOCAB, |n| n.clamp(1, MAX_VOCAB as u64) as u32);
        let text = |s: &Section, k: &str| s.uint(k, 0..=tv - 1);
        let ids = TalkerIds {
            codec_pad: codec("codec_pad_id")?,
            codec_bos: codec("codec_bos_id")?,
            codec_eos: codec("codec_eos_token_id")?,
            codec_nothink: codec("codec_nothink_id")?,
            codec_think_bos: codec("codec_think_bos_id")?,
            codec_think_eos: codec("codec_think_eos_id")?,
            speakers,
            tts_pad: text(&top, "tts_pad_token_id")?,
            tts_bos: text(&top, "tts_bos_token_id")?,
            tts_eos: text(&top, "tts_eos_token_id")?,
            im_start: text(&top, "im_start_token_id")?,
            im_end: text(&top, "im_end_token_id")?,
            user: text(&top, "user_token_id")?,
            assistant: text(&top, "assistant_token_id")?,
            multimodal: [text(&tk, "audio_token_id")?, text(&tk, "image_token_id")?, text(&tk, "video_token_id")?],
        };
        let c = TalkerConfig { talker, predictor, groups, thinker_hidden, accept_layer, ids };
        c.check_tensors(t, &tp, &cpp, &tk)?;
        Ok(c)
    }

    fn check_tensors(&self, t: &Tensors, tp: &Section, cpp: &Section, tk: &Section) -> Checked<()> {
        let (d, cp) = (&self.talker, &self.predictor);
        for name in ["talker.model.codec_embedding.weight", "talker.codec_head.weight"] {
            t.dim(tp, "vocab_size", name, 0, d.vocab as u64, "vocab_size")?;
            t.dim(tp, "hidden_size", name, 1, d.hidden as u64, "hidden_size")?;
        }
        for p in ["talker.text_projection", "talker.hidden_projection"] {
            let n = format!("{p}.linear_fc1.weight");
            t.dim(tp, "intermediate_size", &n, 0, d.inter as u64, "intermediate_size")?;
            t.dim(tk, "thinker_hidden_size", &n, 1, self.thinker_hidden as u64, "thinker_hidden_size")?;
        }
        let ek = if tp.has("num_experts") { "num_experts" } else { "num_local_experts" };
        let shape = |d: &DecoderConfig, experts_key| DecoderShape {
            hidden: d.hidden,
            layers: d.layers,
            n_heads: d.n_heads,
            n_kv_heads: d.n_kv_heads,
            head_dim: d.head_dim,
            n_experts: d.n_experts,
            experts_key,
            moe_inter: d.moe_inter,
            shared_inter: d.shared_inter,
            inter: d.inter,
        };
        check_decoder_tensors(t, tp, "talker.model", &shape(d, ek))?;
        check_decoder_tensors(t, cpp, "talker.code_predictor.model", &shape(cp, ""))?;
        let head = |j: u32| format!("talker.code_predictor.lm_head.{j}.weight");
        if t.has(&head(0)) {
            // One head and one embedding per residual group.
            let n = self.groups - 1;
            let s = tk;
            t.count(s, "num_code_groups", n, head).map_err(|mut e| {
                e.what = format!("{} code groups need {n} code predictor heads: {}", self.groups, e.what);
                e
            })?;
            t.dim(cpp, "vocab_size", &head(0), 0, cp.vocab as u64, "vocab_size")?;
        }
        Ok(())
    }

    /// The codec id of `speaker` (case-insensitive), or an error listing the known ones.
    pub fn speaker(&self, speaker: &str) -> Result<u32, String> {
        let s = speaker.to_lowercase();
        self.ids.speakers.iter().find(|(n, _)| *n == s).map(|(_, id)| *id).ok_or_else(|| {
            let names: Vec<&str> = self.ids.speakers.iter().map(|(n, _)| n.as_str()).collect();
            format!("unknown voice {speaker:?}; this model has {}", names.join(", "))
        })
    }

    /// The first code id that code-0 sampling suppresses (`vocab − 1024`, spec §6.4): codes below it
    /// are audio codes; at and above it only codec EOS may be produced.
    pub fn suppress_start(&self) -> u32 {
        self.talker.vocab.saturating_sub(1024)
    }

    /// Bytes of weights read per Talker step (attention, routed + shared experts, routers, codec
    /// head): the numerator of its roofline.
    pub fn talker_bytes_per_step(&self) -> u64 {
        let d = &self.talker;
        let q8 = |rows: u64, cols: u64| rows * cols / 32 * 34;
        let (h, hd) = (d.hidden as u64, d.head_dim as u64);
        let attn = q8(d.n_heads as u64 * hd, h) + 2 * q8(d.n_kv_heads as u64 * hd, h) + q8(h, d.n_heads as u64 * hd);
        let moe = d.top_k as u64 * 3 * q8(d.moe_inter as u64, h)
            + 3 * q8(d.shared_inter as u64, h)
            + (d.n_experts as u64 + 1) * h * 4;
        d.layers as u64 * (attn + moe) + q8(d.vocab as u64, h)
    }

    /// Bytes of weights read per frame by the code predictor (16 passes, 15 heads).
    pub fn predictor_bytes_per_frame(&self) -> u64 {
        let d = &self.predictor;
        let q8 = |rows: u64, cols: u64| rows * cols / 32 * 34;
        let (h, hd) = (d.hidden as u64, d.head_dim as u64);
        let layer = q8(d.n_heads as u64 * hd, h)
            + 2 * q8(d.n_kv_heads as u64 * hd, h)
            + q8(h, d.n_heads as u64 * hd)
            + 3 * q8(d.inter as u64, h);
        self.groups as u64 * d.layers as u64 * layer + (self.groups as u64 - 1) * q8(d.vocab as u64, h)
    }
}
