//! Talker and code-predictor hyper-parameters and ids, read from the model file's config (spec §2.2;
//! never transformers' class defaults, which differ from the checkpoint: §2.3).

use crate::model_file::{ModelError, ModelFile};

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

fn decoder(m: &ModelFile, p: &str, moe: bool) -> Result<DecoderConfig, ModelError> {
    let u = |k: &str| -> Result<u32, ModelError> {
        let path = format!("{p}/{k}");
        let v = m.config_u64(&path)?;
        u32::try_from(v).map_err(|_| m.config_err(&path, "does not fit in 32 bits"))
    };
    let has = |k: &str| m.config().pointer(&format!("{p}/{k}")).is_some_and(|v| !v.is_null());
    let hidden = u("hidden_size")?;
    let n_heads = u("num_attention_heads")?;
    let head_dim = if has("head_dim") { u("head_dim")? } else { hidden / n_heads.max(1) };
    let theta = m
        .config()
        .pointer(&format!("{p}/rope_parameters/rope_theta"))
        .or_else(|| m.config().pointer(&format!("{p}/rope_theta")))
        .and_then(|v| v.as_f64())
        .ok_or_else(|| m.config_err(&format!("{p}/rope_parameters/rope_theta"), "missing"))?;
    let sec: Vec<u32> = m
        .config()
        .pointer(&format!("{p}/rope_parameters/mrope_section"))
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32).collect())
        .unwrap_or_else(|| vec![head_dim / 2, 0, 0]);
    let (n_experts, top_k, moe_inter, shared_inter) = if moe {
        // transformers serialises the Talker's expert count as `num_local_experts`.
        let ne = if has("num_experts") { u("num_experts")? } else { u("num_local_experts")? };
        (ne, u("num_experts_per_tok")?, u("moe_intermediate_size")?, u("shared_expert_intermediate_size")?)
    } else {
        (0, 0, 0, 0)
    };
    Ok(DecoderConfig {
        hidden,
        layers: u("num_hidden_layers")?,
        n_heads,
        n_kv_heads: u("num_key_value_heads")?,
        head_dim,
        vocab: u("vocab_size")?,
        rms_eps: m.config_f64(&format!("{p}/rms_norm_eps"))? as f32,
        rope_theta: theta as f32,
        mrope_section: [
            sec.first().copied().unwrap_or(0),
            sec.get(1).copied().unwrap_or(0),
            sec.get(2).copied().unwrap_or(0),
        ],
        inter: u("intermediate_size")?,
        n_experts,
        top_k,
        moe_inter,
        shared_inter,
        // The checkpoint says true; transformers' Talker class default would be false (§2.3).
        norm_topk: m.config().pointer(&format!("{p}/norm_topk_prob")).and_then(|v| v.as_bool()).unwrap_or(true),
        max_positions: u("max_position_embeddings").unwrap_or(32768),
    })
}

impl TalkerConfig {
    pub fn from_model(m: &ModelFile) -> Result<TalkerConfig, ModelError> {
        let u = |p: &str| -> Result<u32, ModelError> {
            let v = m.config_u64(p)?;
            u32::try_from(v).map_err(|_| m.config_err(p, "does not fit in 32 bits"))
        };
        let t = |k: &str| u(&format!("{TK}/{k}"));
        let speakers = m
            .config()
            .pointer(&format!("{TK}/speaker_id"))
            .and_then(|v| v.as_object())
            .ok_or_else(|| m.config_err(&format!("{TK}/speaker_id"), "missing or not an object"))?
            .iter()
            .map(|(k, v)| {
                let id = v
                    .as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(|| m.config_err(&format!("{TK}/speaker_id/{k}"), "not an id"))?;
                Ok((k.to_lowercase(), id))
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let ids = TalkerIds {
            codec_pad: t("codec_pad_id")?,
            codec_bos: t("codec_bos_id")?,
            codec_eos: t("codec_eos_token_id")?,
            codec_nothink: t("codec_nothink_id")?,
            codec_think_bos: t("codec_think_bos_id")?,
            codec_think_eos: t("codec_think_eos_id")?,
            speakers,
            tts_pad: u("/tts_pad_token_id")?,
            tts_bos: u("/tts_bos_token_id")?,
            tts_eos: u("/tts_eos_token_id")?,
            im_start: u("/im_start_token_id")?,
            im_end: u("/im_end_token_id")?,
            user: u("/user_token_id")?,
            assistant: u("/assistant_token_id")?,
            multimodal: [t("audio_token_id")?, t("image_token_id")?, t("video_token_id")?],
        };
        let talker = decoder(m, &format!("{TK}/text_config"), true)?;
        let predictor = decoder(m, &format!("{TK}/code_predictor_config"), false)?;
        let c = TalkerConfig {
            groups: t("num_code_groups")?,
            thinker_hidden: t("thinker_hidden_size")?,
            accept_layer: t("accept_hidden_layer")?,
            talker,
            predictor,
            ids,
        };
        c.check(m)?;
        Ok(c)
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

    fn check(&self, m: &ModelFile) -> Result<(), ModelError> {
        for (p, d, moe) in [("text_config", &self.talker, true), ("code_predictor_config", &self.predictor, false)] {
            let bad = |f: &str, w: String| Err(m.config_err(&format!("{TK}/{p}/{f}"), &w));
            if d.n_kv_heads == 0 || d.n_heads % d.n_kv_heads != 0 {
                return bad(
                    "num_key_value_heads",
                    format!("{} does not divide num_attention_heads {}", d.n_kv_heads, d.n_heads),
                );
            }
            if d.mrope_section.iter().sum::<u32>() != d.head_dim / 2 {
                return bad(
                    "rope_parameters/mrope_section",
                    format!("{:?} does not sum to head_dim / 2 = {}", d.mrope_section, d.head_dim / 2),
                );
            }
            if moe && (d.top_k == 0 || d.top_k > d.n_experts.min(8)) {
                return bad("num_experts_per_tok", format!("{} is not within 1..=min(8, {})", d.top_k, d.n_experts));
            }
            let widths = [("hidden_size", d.hidden), ("intermediate_size", d.inter)];
            for (f, v) in widths.into_iter().chain(
                moe.then_some([
                    ("moe_intermediate_size", d.moe_inter),
                    ("shared_expert_intermediate_size", d.shared_inter),
                ])
                .into_iter()
                .flatten(),
            ) {
                if v == 0 || v % 32 != 0 {
                    return bad(f, format!("{v} is not a positive multiple of 32 (Q8_0 rows)"));
                }
            }
            if (d.n_heads * d.head_dim) % 32 != 0 {
                return bad("head_dim", "num_attention_heads × head_dim is not a multiple of 32".into());
            }
            if d.head_dim % 4 != 0 || d.head_dim > 128 || d.n_heads / d.n_kv_heads > 16 {
                return bad(
                    "head_dim",
                    format!(
                        "head_dim {} with {} query heads per KV head: the attention kernels need a multiple of 4 \
                         up to 128 and at most 16 heads per KV head",
                        d.head_dim,
                        d.n_heads / d.n_kv_heads
                    ),
                );
            }
        }
        if self.predictor.hidden != self.talker.hidden {
            return Err(m.config_err(
                &format!("{TK}/code_predictor_config/hidden_size"),
                &format!("{} differs from the Talker's {}", self.predictor.hidden, self.talker.hidden),
            ));
        }
        if self.groups < 2 || self.groups > 64 {
            return Err(
                m.config_err(&format!("{TK}/num_code_groups"), &format!("{} is not within 2..=64", self.groups))
            );
        }
        if !self.thinker_hidden.is_multiple_of(32) {
            return Err(m.config_err(&format!("{TK}/thinker_hidden_size"), "not a multiple of 32 (Q8_0 rows)"));
        }
        let v = self.talker.vocab;
        let i = &self.ids;
        for (f, id) in [
            ("codec_pad_id", i.codec_pad),
            ("codec_bos_id", i.codec_bos),
            ("codec_eos_token_id", i.codec_eos),
            ("codec_nothink_id", i.codec_nothink),
            ("codec_think_bos_id", i.codec_think_bos),
            ("codec_think_eos_id", i.codec_think_eos),
        ]
        .into_iter()
        .chain(i.speakers.iter().map(|(_, id)| ("speaker_id", *id)))
        {
            if id >= v {
                return Err(m.config_err(&format!("{TK}/{f}"), &format!("{id} is outside the codec vocabulary ({v})")));
            }
        }
        if self.suppress_start() != self.predictor.vocab {
            // Spec §9 trap 17: code 0 must come from the same codebook as the residual codes.
            return Err(m.config_err(
                &format!("{TK}/text_config/vocab_size"),
                &format!(
                    "vocab − 1024 = {} differs from the code predictor's codebook {}",
                    self.suppress_start(),
                    self.predictor.vocab
                ),
            ));
        }
        Ok(())
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
