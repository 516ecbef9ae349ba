//! What config.json says each tensor's shape must be (safetensors/torch order).

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config.json: {0}")]
    Missing(String),
    #[error("tensor {tensor:?}: shape {actual:?} disagrees with config.json, which implies {expected:?} ({why})")]
    ShapeMismatch { tensor: String, expected: Vec<u64>, actual: Vec<u64>, why: String },
    #[error("tensor {tensor:?}: {what} index {index} is out of range (config.json has {limit})")]
    IndexOutOfRange { tensor: String, what: &'static str, index: u64, limit: u64 },
}

/// Dimensions of one decoder stack (Thinker text, Talker text, code predictor).
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderDims {
    pub vocab: u64,
    pub hidden: u64,
    pub layers: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub intermediate: u64,
    pub moe_intermediate: u64,
    pub experts: u64,
    pub shared_intermediate: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AudioDims {
    pub d_model: u64,
    pub layers: u64,
    pub ffn: u64,
    pub output_dim: u64,
}

/// The dimensions the shape checks need, read from config.json.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDims {
    pub thinker: DecoderDims,
    pub talker: DecoderDims,
    pub code_predictor: DecoderDims,
    pub num_code_groups: u64,
    pub audio: AudioDims,
}

fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn req(v: &Value, path: &str) -> Result<u64, ConfigError> {
    get(v, path).and_then(Value::as_u64).ok_or_else(|| ConfigError::Missing(format!("missing integer {path}")))
}

fn opt(v: &Value, path: &str, default: u64) -> u64 {
    get(v, path).and_then(Value::as_u64).unwrap_or(default)
}

fn decoder(v: &Value, p: &str) -> Result<DecoderDims, ConfigError> {
    let hidden = req(v, &format!("{p}.hidden_size"))?;
    let heads = req(v, &format!("{p}.num_attention_heads"))?;
    let head_dim = match get(v, &format!("{p}.head_dim")).and_then(Value::as_u64) {
        Some(h) => h,
        None if heads > 0 => hidden / heads,
        None => return Err(ConfigError::Missing(format!("{p}.num_attention_heads is 0"))),
    };
    let experts = get(v, &format!("{p}.num_experts"))
        .or_else(|| get(v, &format!("{p}.num_local_experts")))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(DecoderDims {
        vocab: req(v, &format!("{p}.vocab_size"))?,
        hidden,
        layers: req(v, &format!("{p}.num_hidden_layers"))?,
        heads,
        kv_heads: opt(v, &format!("{p}.num_key_value_heads"), heads),
        head_dim,
        intermediate: opt(v, &format!("{p}.intermediate_size"), 0),
        moe_intermediate: opt(v, &format!("{p}.moe_intermediate_size"), 0),
        experts,
        shared_intermediate: opt(v, &format!("{p}.shared_expert_intermediate_size"), 0),
    })
}

impl ModelDims {
    pub fn from_config(v: &Value) -> Result<Self, ConfigError> {
        Ok(ModelDims {
            thinker: decoder(v, "thinker_config.text_config")?,
            talker: decoder(v, "talker_config.text_config")?,
            code_predictor: decoder(v, "talker_config.code_predictor_config")?,
            num_code_groups: opt(v, "talker_config.num_code_groups", 16),
            audio: AudioDims {
                d_model: req(v, "thinker_config.audio_config.d_model")?,
                layers: req(v, "thinker_config.audio_config.encoder_layers")?,
                ffn: req(v, "thinker_config.audio_config.encoder_ffn_dim")?,
                output_dim: req(v, "thinker_config.audio_config.output_dim")?,
            },
        })
    }

    /// The shape config.json implies for `name`, or None where it does not determine it.
    /// Layer, expert and code-group indices beyond the config are errors.
    pub fn expected_shape(&self, name: &str) -> Result<Option<(Vec<u64>, String)>, ConfigError> {
        let why = |s: &str| s.to_owned();
        if let Some(rest) = name.strip_prefix("thinker.") {
            let d = &self.thinker;
            match rest {
                "model.embed_tokens.weight" => {
                    return Ok(Some((vec![d.vocab, d.hidden], why("thinker vocab_size × hidden_size"))))
                }
                "lm_head.weight" => {
                    return Ok(Some((vec![d.vocab, d.hidden], why("thinker vocab_size × hidden_size"))))
                }
                "model.norm.weight" => return Ok(Some((vec![d.hidden], why("thinker hidden_size")))),
                _ => {}
            }
            if let Some(r) = rest.strip_prefix("model.layers.") {
                return decoder_layer(name, r, d, "thinker text_config");
            }
            if let Some(r) = rest.strip_prefix("audio_tower.layers.") {
                return audio_layer(name, r, &self.audio);
            }
            if rest == "audio_tower.proj2.weight" {
                let a = &self.audio;
                return Ok(Some((vec![a.output_dim, a.d_model], why("audio output_dim × d_model"))));
            }
            return Ok(None);
        }
        if let Some(rest) = name.strip_prefix("talker.code_predictor.") {
            let d = &self.code_predictor;
            let groups = self.num_code_groups.saturating_sub(1);
            for p in ["model.codec_embedding.", "lm_head."] {
                if let Some(r) = rest.strip_prefix(p) {
                    if let Some(idx) = r.strip_suffix(".weight").and_then(|i| i.parse::<u64>().ok()) {
                        if idx >= groups {
                            return Err(ConfigError::IndexOutOfRange {
                                tensor: name.into(),
                                what: "code group",
                                index: idx,
                                limit: groups,
                            });
                        }
                        return Ok(Some((vec![d.vocab, d.hidden], why("code_predictor vocab_size × hidden_size"))));
                    }
                }
            }
            if let Some(r) = rest.strip_prefix("model.layers.") {
                return decoder_layer(name, r, d, "code_predictor_config");
            }
            return Ok(None);
        }
        if let Some(rest) = name.strip_prefix("talker.") {
            let d = &self.talker;
            match rest {
                "model.codec_embedding.weight" | "codec_head.weight" => {
                    return Ok(Some((vec![d.vocab, d.hidden], why("talker vocab_size × hidden_size"))))
                }
                _ => {}
            }
            if let Some(r) = rest.strip_prefix("model.layers.") {
                return decoder_layer(name, r, d, "talker text_config");
            }
        }
        Ok(None)
    }

    /// Check `shape` against [`Self::expected_shape`].
    pub fn check(&self, name: &str, shape: &[u64]) -> Result<(), ConfigError> {
        match self.expected_shape(name)? {
            Some((exp, why)) if exp != shape => {
                Err(ConfigError::ShapeMismatch { tensor: name.into(), expected: exp, actual: shape.to_vec(), why })
            }
            _ => Ok(()),
        }
    }
}

fn split_index<'a>(
    name: &str,
    r: &'a str,
    what: &'static str,
    limit: u64,
) -> Result<Option<(u64, &'a str)>, ConfigError> {
    let Some((i, rest)) = r.split_once('.') else { return Ok(None) };
    let Ok(i) = i.parse::<u64>() else { return Ok(None) };
    if i >= limit {
        return Err(ConfigError::IndexOutOfRange { tensor: name.into(), what, index: i, limit });
    }
    Ok(Some((i, rest)))
}

fn decoder_layer(name: &str, r: &str, d: &DecoderDims, cfg: &str) -> Result<Option<(Vec<u64>, String)>, ConfigError> {
    let Some((_, rest)) = split_index(name, r, "layer", d.layers)? else { return Ok(None) };
    let q = d.heads * d.head_dim;
    let kv = d.kv_heads * d.head_dim;
    let h = d.hidden;
    let w = |s: Vec<u64>, why: &str| Ok(Some((s, format!("{cfg}: {why}"))));
    match rest {
        "self_attn.q_proj.weight" => return w(vec![q, h], "num_attention_heads·head_dim × hidden_size"),
        "self_attn.k_proj.weight" | "self_attn.v_proj.weight" => {
            return w(vec![kv, h], "num_key_value_heads·head_dim × hidden_size")
        }
        "self_attn.o_proj.weight" => return w(vec![h, q], "hidden_size × num_attention_heads·head_dim"),
        "self_attn.q_norm.weight" | "self_attn.k_norm.weight" => return w(vec![d.head_dim], "head_dim"),
        "input_layernorm.weight" | "post_attention_layernorm.weight" => return w(vec![h], "hidden_size"),
        _ => {}
    }
    if d.experts == 0 {
        return match rest {
            "mlp.gate_proj.weight" | "mlp.up_proj.weight" => {
                w(vec![d.intermediate, h], "intermediate_size × hidden_size")
            }
            "mlp.down_proj.weight" => w(vec![h, d.intermediate], "hidden_size × intermediate_size"),
            _ => Ok(None),
        };
    }
    match rest {
        "mlp.gate.weight" => return w(vec![d.experts, h], "num_experts × hidden_size (router)"),
        "mlp.shared_expert.gate_proj.weight" | "mlp.shared_expert.up_proj.weight" => {
            return w(vec![d.shared_intermediate, h], "shared_expert_intermediate_size × hidden_size")
        }
        "mlp.shared_expert.down_proj.weight" => {
            return w(vec![h, d.shared_intermediate], "hidden_size × shared_expert_intermediate_size")
        }
        "mlp.shared_expert_gate.weight" => return w(vec![1, h], "1 × hidden_size"),
        _ => {}
    }
    if let Some(e) = rest.strip_prefix("mlp.experts.") {
        let Some((_, p)) = split_index(name, e, "expert", d.experts)? else { return Ok(None) };
        return match p {
            "gate_proj.weight" | "up_proj.weight" => {
                w(vec![d.moe_intermediate, h], "moe_intermediate_size × hidden_size")
            }
            "down_proj.weight" => w(vec![h, d.moe_intermediate], "hidden_size × moe_intermediate_size"),
            _ => Ok(None),
        };
    }
    Ok(None)
}

fn audio_layer(name: &str, r: &str, a: &AudioDims) -> Result<Option<(Vec<u64>, String)>, ConfigError> {
    let Some((_, rest)) = split_index(name, r, "audio layer", a.layers)? else { return Ok(None) };
    let d = a.d_model;
    let w = |s: Vec<u64>, why: &str| Ok(Some((s, format!("audio_config: {why}"))));
    match rest {
        "self_attn.q_proj.weight"
        | "self_attn.k_proj.weight"
        | "self_attn.v_proj.weight"
        | "self_attn.out_proj.weight" => w(vec![d, d], "d_model × d_model"),
        "fc1.weight" => w(vec![a.ffn, d], "encoder_ffn_dim × d_model"),
        "fc2.weight" => w(vec![d, a.ffn], "d_model × encoder_ffn_dim"),
        _ => Ok(None),
    }
}
