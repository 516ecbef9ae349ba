//! The Qwen3-Omni-30B-A3B tensor list derived from config.json, the real config, and a fast
//! writer of random-weight GGUFs with exactly that list (for full-size engine benchmarks).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

use crate::gguf::{GgmlType, GgufWriter, MetaValue, TensorSpec, WriteError};
use crate::metadata::{self, FTYPE_Q8_0};
use crate::rules::{Decision, TypeRules};

fn u(v: &Value, path: &str, default: u64) -> u64 {
    path.split('.').try_fold(v, |v, k| v.get(k)).and_then(Value::as_u64).unwrap_or(default)
}

fn list(v: &Value, path: &str) -> Vec<u64> {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// The on-disk (safetensors) tensor names and torch-order shapes that a checkpoint with this
/// config.json holds (spec §10). Values absent from the config fall back to the real model's.
pub fn tensor_list(cfg: &Value, include_vision: bool) -> Vec<(String, Vec<u64>)> {
    let mut out: Vec<(String, Vec<u64>)> = Vec::new();
    let mut t = |name: String, shape: Vec<u64>| out.push((name, shape));

    // AudioTower
    let a = "thinker_config.audio_config";
    let (ds, d, mel) = (
        u(cfg, &format!("{a}.downsample_hidden_size"), 480),
        u(cfg, &format!("{a}.d_model"), 1280),
        u(cfg, &format!("{a}.num_mel_bins"), 128),
    );
    let (ffn, alayers, aout) = (
        u(cfg, &format!("{a}.encoder_ffn_dim"), 5120),
        u(cfg, &format!("{a}.encoder_layers"), 32),
        u(cfg, &format!("{a}.output_dim"), 2048),
    );
    let freq = (0..3).fold(mel, |f, _| f.div_ceil(2));
    let p = "thinker.audio_tower";
    t(format!("{p}.conv2d1.weight"), vec![ds, 1, 3, 3]);
    t(format!("{p}.conv2d1.bias"), vec![ds]);
    for c in ["conv2d2", "conv2d3"] {
        t(format!("{p}.{c}.weight"), vec![ds, ds, 3, 3]);
        t(format!("{p}.{c}.bias"), vec![ds]);
    }
    t(format!("{p}.conv_out.weight"), vec![d, ds * freq]);
    for i in 0..alayers {
        let l = format!("{p}.layers.{i}");
        for q in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            t(format!("{l}.self_attn.{q}.weight"), vec![d, d]);
            t(format!("{l}.self_attn.{q}.bias"), vec![d]);
        }
        for n in ["self_attn_layer_norm", "final_layer_norm"] {
            t(format!("{l}.{n}.weight"), vec![d]);
            t(format!("{l}.{n}.bias"), vec![d]);
        }
        t(format!("{l}.fc1.weight"), vec![ffn, d]);
        t(format!("{l}.fc1.bias"), vec![ffn]);
        t(format!("{l}.fc2.weight"), vec![d, ffn]);
        t(format!("{l}.fc2.bias"), vec![d]);
    }
    t(format!("{p}.ln_post.weight"), vec![d]);
    t(format!("{p}.ln_post.bias"), vec![d]);
    t(format!("{p}.proj1.weight"), vec![d, d]);
    t(format!("{p}.proj1.bias"), vec![d]);
    t(format!("{p}.proj2.weight"), vec![aout, d]);
    t(format!("{p}.proj2.bias"), vec![aout]);

    // Vision (out of scope; listed for completeness and for the 28,010 count)
    if include_vision {
        let v = "thinker_config.vision_config";
        let (h, depth, inter) = (
            u(cfg, &format!("{v}.hidden_size"), 1152),
            u(cfg, &format!("{v}.depth"), 27),
            u(cfg, &format!("{v}.intermediate_size"), 4304),
        );
        let (patch, tp, inch) = (
            u(cfg, &format!("{v}.patch_size"), 16),
            u(cfg, &format!("{v}.temporal_patch_size"), 2),
            u(cfg, &format!("{v}.in_channels"), 3),
        );
        let (npos, vout, merge) = (
            u(cfg, &format!("{v}.num_position_embeddings"), 2304),
            u(cfg, &format!("{v}.out_hidden_size"), 2048),
            u(cfg, &format!("{v}.spatial_merge_size"), 2),
        );
        let mut deep = list(cfg, &format!("{v}.deepstack_visual_indexes")).len() as u64;
        if deep == 0 {
            deep = 3;
        }
        let mh = h * merge * merge;
        let p = "thinker.visual";
        t(format!("{p}.patch_embed.proj.weight"), vec![h, inch, tp, patch, patch]);
        t(format!("{p}.patch_embed.proj.bias"), vec![h]);
        t(format!("{p}.pos_embed.weight"), vec![npos, h]);
        for i in 0..depth {
            let b = format!("{p}.blocks.{i}");
            for n in ["norm1", "norm2"] {
                t(format!("{b}.{n}.weight"), vec![h]);
                t(format!("{b}.{n}.bias"), vec![h]);
            }
            t(format!("{b}.attn.qkv.weight"), vec![3 * h, h]);
            t(format!("{b}.attn.qkv.bias"), vec![3 * h]);
            t(format!("{b}.attn.proj.weight"), vec![h, h]);
            t(format!("{b}.attn.proj.bias"), vec![h]);
            t(format!("{b}.mlp.linear_fc1.weight"), vec![inter, h]);
            t(format!("{b}.mlp.linear_fc1.bias"), vec![inter]);
            t(format!("{b}.mlp.linear_fc2.weight"), vec![h, inter]);
            t(format!("{b}.mlp.linear_fc2.bias"), vec![h]);
        }
        let mergers =
            std::iter::once(("merger".to_owned(), h)).chain((0..deep).map(|i| (format!("merger_list.{i}"), mh)));
        for (m, ln) in mergers {
            t(format!("{p}.{m}.ln_q.weight"), vec![ln]);
            t(format!("{p}.{m}.ln_q.bias"), vec![ln]);
            t(format!("{p}.{m}.mlp.0.weight"), vec![mh, mh]);
            t(format!("{p}.{m}.mlp.0.bias"), vec![mh]);
            t(format!("{p}.{m}.mlp.2.weight"), vec![vout, mh]);
            t(format!("{p}.{m}.mlp.2.bias"), vec![vout]);
        }
    }

    // Decoder stacks
    struct Dec {
        vocab: u64,
        hidden: u64,
        layers: u64,
        heads: u64,
        kv: u64,
        hd: u64,
        inter: u64,
        moe: u64,
        experts: u64,
        shared: u64,
    }
    let dec = |p: &str, def: [u64; 10]| {
        let hidden = u(cfg, &format!("{p}.hidden_size"), def[1]);
        let heads = u(cfg, &format!("{p}.num_attention_heads"), def[3]);
        let experts = u(cfg, &format!("{p}.num_experts"), u(cfg, &format!("{p}.num_local_experts"), def[8]));
        Dec {
            vocab: u(cfg, &format!("{p}.vocab_size"), def[0]),
            hidden,
            layers: u(cfg, &format!("{p}.num_hidden_layers"), def[2]),
            heads,
            kv: u(cfg, &format!("{p}.num_key_value_heads"), def[4]),
            hd: u(cfg, &format!("{p}.head_dim"), hidden.checked_div(heads).unwrap_or(def[5])),
            inter: u(cfg, &format!("{p}.intermediate_size"), def[6]),
            moe: u(cfg, &format!("{p}.moe_intermediate_size"), def[7]),
            experts,
            shared: u(cfg, &format!("{p}.shared_expert_intermediate_size"), def[9]),
        }
    };
    let layers = |out: &mut Vec<(String, Vec<u64>)>, p: &str, d: &Dec| {
        for i in 0..d.layers {
            let l = format!("{p}.layers.{i}");
            let mut t = |n: String, s: Vec<u64>| out.push((n, s));
            t(format!("{l}.input_layernorm.weight"), vec![d.hidden]);
            t(format!("{l}.post_attention_layernorm.weight"), vec![d.hidden]);
            t(format!("{l}.self_attn.q_proj.weight"), vec![d.heads * d.hd, d.hidden]);
            t(format!("{l}.self_attn.k_proj.weight"), vec![d.kv * d.hd, d.hidden]);
            t(format!("{l}.self_attn.v_proj.weight"), vec![d.kv * d.hd, d.hidden]);
            t(format!("{l}.self_attn.o_proj.weight"), vec![d.hidden, d.heads * d.hd]);
            t(format!("{l}.self_attn.q_norm.weight"), vec![d.hd]);
            t(format!("{l}.self_attn.k_norm.weight"), vec![d.hd]);
            if d.experts == 0 {
                t(format!("{l}.mlp.gate_proj.weight"), vec![d.inter, d.hidden]);
                t(format!("{l}.mlp.up_proj.weight"), vec![d.inter, d.hidden]);
                t(format!("{l}.mlp.down_proj.weight"), vec![d.hidden, d.inter]);
                continue;
            }
            t(format!("{l}.mlp.gate.weight"), vec![d.experts, d.hidden]);
            for e in 0..d.experts {
                t(format!("{l}.mlp.experts.{e}.gate_proj.weight"), vec![d.moe, d.hidden]);
                t(format!("{l}.mlp.experts.{e}.up_proj.weight"), vec![d.moe, d.hidden]);
                t(format!("{l}.mlp.experts.{e}.down_proj.weight"), vec![d.hidden, d.moe]);
            }
            if d.shared > 0 {
                t(format!("{l}.mlp.shared_expert.gate_proj.weight"), vec![d.shared, d.hidden]);
                t(format!("{l}.mlp.shared_expert.up_proj.weight"), vec![d.shared, d.hidden]);
                t(format!("{l}.mlp.shared_expert.down_proj.weight"), vec![d.hidden, d.shared]);
                t(format!("{l}.mlp.shared_expert_gate.weight"), vec![1, d.hidden]);
            }
        }
    };

    // Thinker text
    let th = dec("thinker_config.text_config", [152064, 2048, 48, 32, 4, 128, 768, 768, 128, 0]);
    out.push(("thinker.model.embed_tokens.weight".into(), vec![th.vocab, th.hidden]));
    layers(&mut out, "thinker.model", &th);
    out.push(("thinker.model.norm.weight".into(), vec![th.hidden]));
    out.push(("thinker.lm_head.weight".into(), vec![th.vocab, th.hidden]));

    // Talker
    let tk = dec("talker_config.text_config", [3072, 1024, 20, 16, 2, 128, 2048, 384, 128, 768]);
    let thinker_hidden = u(cfg, "talker_config.thinker_hidden_size", th.hidden);
    out.push(("talker.model.codec_embedding.weight".into(), vec![tk.vocab, tk.hidden]));
    layers(&mut out, "talker.model", &tk);
    out.push(("talker.model.norm.weight".into(), vec![tk.hidden]));
    out.push(("talker.codec_head.weight".into(), vec![tk.vocab, tk.hidden]));
    for pj in ["text_projection", "hidden_projection"] {
        out.push((format!("talker.{pj}.linear_fc1.weight"), vec![tk.inter, thinker_hidden]));
        out.push((format!("talker.{pj}.linear_fc1.bias"), vec![tk.inter]));
        out.push((format!("talker.{pj}.linear_fc2.weight"), vec![tk.hidden, tk.inter]));
        out.push((format!("talker.{pj}.linear_fc2.bias"), vec![tk.hidden]));
    }

    // Code predictor
    let cp = dec("talker_config.code_predictor_config", [2048, 1024, 5, 16, 8, 128, 3072, 0, 0, 0]);
    let groups = u(cfg, "talker_config.num_code_groups", 16).saturating_sub(1);
    layers(&mut out, "talker.code_predictor.model", &cp);
    out.push(("talker.code_predictor.model.norm.weight".into(), vec![cp.hidden]));
    for g in 0..groups {
        out.push((format!("talker.code_predictor.model.codec_embedding.{g}.weight"), vec![cp.vocab, cp.hidden]));
    }
    for g in 0..groups {
        out.push((format!("talker.code_predictor.lm_head.{g}.weight"), vec![cp.vocab, cp.hidden]));
    }

    // Code2Wav
    let c = "code2wav_config";
    let ch = u(cfg, &format!("{c}.hidden_size"), 1024);
    let cw = Dec {
        vocab: 0,
        hidden: ch,
        layers: u(cfg, &format!("{c}.num_hidden_layers"), 8),
        heads: u(cfg, &format!("{c}.num_attention_heads"), 16),
        kv: u(cfg, &format!("{c}.num_key_value_heads"), 16),
        hd: u(cfg, &format!("{c}.head_dim"), ch / u(cfg, &format!("{c}.num_attention_heads"), 16).max(1)),
        inter: u(cfg, &format!("{c}.intermediate_size"), 3072),
        moe: 0,
        experts: 0,
        shared: 0,
    };
    let _ = cw.vocab;
    let books = u(cfg, &format!("{c}.codebook_size"), 2048) * u(cfg, &format!("{c}.num_quantizers"), 16);
    out.push(("code2wav.code_embedding.weight".into(), vec![books, ch]));
    let start = out.len();
    layers(&mut out, "code2wav.pre_transformer", &cw);
    // Code2Wav layers have no q/k norms but two layer scales.
    let mut fixed = Vec::new();
    for (n, s) in out.drain(start..) {
        if n.ends_with("q_norm.weight") || n.ends_with("k_norm.weight") {
            continue;
        }
        let is_down = n.ends_with("mlp.down_proj.weight");
        fixed.push((n.clone(), s));
        if is_down {
            let l = n.trim_end_matches(".mlp.down_proj.weight");
            fixed.push((format!("{l}.self_attn_layer_scale.scale"), vec![ch]));
            fixed.push((format!("{l}.mlp_layer_scale.scale"), vec![ch]));
        }
    }
    out.extend(fixed);
    out.push(("code2wav.pre_transformer.norm.weight".into(), vec![ch]));
    let mut ratios = list(cfg, &format!("{c}.upsampling_ratios"));
    if ratios.is_empty() {
        ratios = vec![2, 2];
    }
    for (i, r) in ratios.iter().enumerate() {
        let p = format!("code2wav.upsample.{i}");
        out.push((format!("{p}.0.conv.weight"), vec![ch, ch, *r]));
        out.push((format!("{p}.0.conv.bias"), vec![ch]));
        out.push((format!("{p}.1.dwconv.conv.weight"), vec![ch, 1, 7]));
        out.push((format!("{p}.1.dwconv.conv.bias"), vec![ch]));
        out.push((format!("{p}.1.norm.weight"), vec![ch]));
        out.push((format!("{p}.1.norm.bias"), vec![ch]));
        out.push((format!("{p}.1.pwconv1.weight"), vec![4 * ch, ch]));
        out.push((format!("{p}.1.pwconv1.bias"), vec![4 * ch]));
        out.push((format!("{p}.1.pwconv2.weight"), vec![ch, 4 * ch]));
        out.push((format!("{p}.1.pwconv2.bias"), vec![ch]));
        out.push((format!("{p}.1.gamma"), vec![ch]));
    }
    let dd = u(cfg, &format!("{c}.decoder_dim"), 1536);
    out.push(("code2wav.decoder.0.conv.weight".into(), vec![dd, ch, 7]));
    out.push(("code2wav.decoder.0.conv.bias".into(), vec![dd]));
    let mut rates = list(cfg, &format!("{c}.upsample_rates"));
    if rates.is_empty() {
        rates = vec![8, 5, 4, 3];
    }
    let mut cin = dd;
    for (b, r) in rates.iter().enumerate() {
        let p = format!("code2wav.decoder.{}.block", b + 1);
        let cout = cin / 2;
        out.push((format!("{p}.0.alpha"), vec![cin]));
        out.push((format!("{p}.0.beta"), vec![cin]));
        out.push((format!("{p}.1.conv.weight"), vec![cin, cout, 2 * r]));
        out.push((format!("{p}.1.conv.bias"), vec![cout]));
        for k in 2..5 {
            for act in ["act1", "act2"] {
                out.push((format!("{p}.{k}.{act}.alpha"), vec![cout]));
                out.push((format!("{p}.{k}.{act}.beta"), vec![cout]));
            }
            out.push((format!("{p}.{k}.conv1.conv.weight"), vec![cout, cout, 7]));
            out.push((format!("{p}.{k}.conv1.conv.bias"), vec![cout]));
            out.push((format!("{p}.{k}.conv2.conv.weight"), vec![cout, cout, 1]));
            out.push((format!("{p}.{k}.conv2.conv.bias"), vec![cout]));
        }
        cin = cout;
    }
    let last = rates.len() + 1;
    out.push((format!("code2wav.decoder.{last}.alpha"), vec![cin]));
    out.push((format!("code2wav.decoder.{last}.beta"), vec![cin]));
    out.push((format!("code2wav.decoder.{}.conv.weight", last + 1), vec![1, cin, 7]));
    out.push((format!("code2wav.decoder.{}.conv.bias", last + 1), vec![1]));
    out
}

/// The checkpoint's config.json values (spec §2) as a JSON object.
pub fn real_config() -> Value {
    let rope = |theta: f64| json!({"rope_type": "default", "rope_theta": theta, "mrope_section": [24, 20, 20], "interleaved": true, "mrope_interleaved": true});
    json!({
        "architectures": ["Qwen3OmniMoeForConditionalGeneration"],
        "model_type": "qwen3_omni_moe",
        "enable_audio_output": true,
        "im_start_token_id": 151644, "im_end_token_id": 151645,
        "system_token_id": 8948, "user_token_id": 872, "assistant_token_id": 77091,
        "tts_pad_token_id": 151671, "tts_bos_token_id": 151672, "tts_eos_token_id": 151673,
        "dtype": "bfloat16",
        "thinker_config": {
            "model_type": "qwen3_omni_moe_thinker",
            "audio_token_id": 151675, "audio_start_token_id": 151669, "audio_end_token_id": 151670,
            "image_token_id": 151655, "video_token_id": 151656,
            "vision_start_token_id": 151652, "vision_end_token_id": 151653, "user_token_id": 872,
            "position_id_per_seconds": 13, "seconds_per_chunk": 2, "tie_word_embeddings": false,
            "audio_config": {
                "model_type": "qwen3_omni_moe_audio_encoder",
                "num_mel_bins": 128, "d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20,
                "encoder_ffn_dim": 5120, "activation_function": "gelu", "downsample_hidden_size": 480,
                "output_dim": 2048, "n_window": 50, "n_window_infer": 800, "conv_chunksize": 500,
                "max_source_positions": 1500, "scale_embedding": false,
                "dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0
            },
            "text_config": {
                "model_type": "qwen3_omni_moe_text",
                "vocab_size": 152064, "hidden_size": 2048, "num_hidden_layers": 48,
                "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "hidden_act": "silu",
                "moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8,
                "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [],
                "intermediate_size": 768, "shared_expert_intermediate_size": 0, "use_qk_norm": true,
                "rms_norm_eps": 1e-6, "attention_bias": false, "sliding_window": null,
                "max_position_embeddings": 65536, "rope_parameters": rope(1_000_000.0),
                "tie_word_embeddings": false
            },
            "vision_config": {
                "depth": 27, "hidden_size": 1152, "num_heads": 16, "intermediate_size": 4304,
                "hidden_act": "gelu_pytorch_tanh", "patch_size": 16, "temporal_patch_size": 2,
                "spatial_merge_size": 2, "in_channels": 3, "out_hidden_size": 2048,
                "num_position_embeddings": 2304, "deepstack_visual_indexes": [8, 16, 24]
            }
        },
        "talker_config": {
            "model_type": "qwen3_omni_moe_talker",
            "accept_hidden_layer": 24, "num_code_groups": 16, "thinker_hidden_size": 2048,
            "codec_pad_id": 2148, "codec_bos_id": 2149, "codec_eos_token_id": 2150,
            "codec_nothink_id": 2155, "codec_think_bos_id": 2156, "codec_think_eos_id": 2157,
            "speaker_id": {"chelsie": 2301, "ethan": 2302, "aiden": 2303},
            "audio_token_id": 151675, "audio_start_token_id": 151669, "audio_end_token_id": 151670,
            "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
            "position_id_per_seconds": 13, "seconds_per_chunk": 2, "spatial_merge_size": 2,
            "tie_word_embeddings": false,
            "text_config": {
                "model_type": "qwen3_omni_moe_talker_text",
                "vocab_size": 3072, "hidden_size": 1024, "intermediate_size": 2048, "num_hidden_layers": 20,
                "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 128,
                "moe_intermediate_size": 384, "num_experts": 128, "num_experts_per_tok": 6,
                "norm_topk_prob": true, "shared_expert_intermediate_size": 768, "decoder_sparse_step": 1,
                "mlp_only_layers": [], "rms_norm_eps": 1e-6, "hidden_act": "silu", "attention_bias": false,
                "sliding_window": null, "max_position_embeddings": 65536, "rope_parameters": rope(1_000_000.0)
            },
            "code_predictor_config": {
                "model_type": "qwen3_omni_moe_talker_code_predictor",
                "vocab_size": 2048, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 5,
                "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "num_code_groups": 16,
                "rms_norm_eps": 1e-6, "hidden_act": "silu",
                "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
                "layer_types": ["full_attention", "full_attention", "full_attention", "full_attention", "full_attention"],
                "sliding_window": null, "max_position_embeddings": 32768, "attention_bias": false
            }
        },
        "code2wav_config": {
            "codebook_size": 2048, "num_quantizers": 16, "hidden_size": 1024, "intermediate_size": 3072,
            "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 16,
            "sliding_window": 72, "rms_norm_eps": 1e-5, "layer_scale_initial_scale": 0.01,
            "hidden_act": "silu", "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            "max_position_embeddings": 8000, "decoder_dim": 1536, "upsample_rates": [8, 5, 4, 3],
            "upsampling_ratios": [2, 2], "attention_bias": false, "codebook_dim": 512,
            "num_semantic_quantizers": 1, "semantic_codebook_size": 4096,
            "vector_quantization_hidden_dimension": 512
        }
    })
}

/// The real config with fewer Thinker, Talker and AudioTower layers (each min(N, real)).
pub fn config_with_layers(layers: Option<u64>) -> Value {
    let mut cfg = real_config();
    if let Some(n) = layers {
        for (path, key) in [
            ("/thinker_config/text_config", "num_hidden_layers"),
            ("/talker_config/text_config", "num_hidden_layers"),
            ("/thinker_config/audio_config", "encoder_layers"),
        ] {
            if let Some(o) = cfg.pointer_mut(path).and_then(Value::as_object_mut) {
                let real = o.get(key).and_then(Value::as_u64).unwrap_or(n);
                o.insert(key.into(), json!(n.min(real)));
            }
        }
    }
    cfg
}

/// xorshift64* — fast, deterministic, good enough for random weights.
#[derive(Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // splitmix64 of the seed so that nearby seeds diverge; never zero.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift((z ^ (z >> 31)) | 1)
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    #[inline]
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Q8_0 blocks per independently seeded group (so the output does not depend on thread count).
const GROUP_BLOCKS: u64 = 1 << 15;

/// Fill `out` with random Q8_0 blocks: uniform quants, f16 scales in [2e-4, 6e-4] (|w| ≲ 0.08).
fn random_q8_0(rng: &mut XorShift, n_blocks: u64, scales: &[u16; 256], out: &mut Vec<u8>) {
    out.reserve(n_blocks as usize * 34);
    for _ in 0..n_blocks {
        let r = [rng.next_u64(), rng.next_u64(), rng.next_u64(), rng.next_u64()];
        out.extend_from_slice(&scales[(r[0] >> 56) as usize].to_le_bytes());
        for x in r {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

fn is_norm_weight(name: &str) -> bool {
    name.ends_with("norm.weight") || name.ends_with("ln_post.weight") || name.ends_with("ln_q.weight")
}

#[derive(Clone, Debug, Default)]
pub struct SyntheticReport {
    pub output: PathBuf,
    pub tensors: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// The writer of a synthetic full-size model: the real metadata and tensor list (minus vision),
/// no data yet; and the tensors in order.
pub fn synthetic_writer(layers: Option<u64>, seed: u64) -> Result<(GgufWriter, Vec<TensorSpec>), WriteError> {
    let cfg = config_with_layers(layers);
    let rules = TypeRules::default();
    let mut w = GgufWriter::new();
    w.set_alignment(crate::gguf::DEFAULT_ALIGNMENT as u32)?;
    let text = serde_json::to_string_pretty(&cfg).unwrap_or_default();
    metadata::set_model_metadata(
        &mut w,
        "Qwen3-Omni-30B-A3B-Instruct (synthetic random weights)",
        &cfg,
        &text,
        FTYPE_Q8_0,
    );
    w.set("qwen3omni.synthetic", MetaValue::Bool(true));
    w.set("qwen3omni.synthetic.seed", MetaValue::U64(seed));
    let mut specs = Vec::new();
    for (name, shape) in tensor_list(&cfg, false) {
        let Decision::Store(ty) = rules.decide(&name, &shape) else { continue };
        let spec = TensorSpec { name, dims: crate::convert::gguf_dims(&shape), ty };
        w.add_tensor(spec.clone())?;
        specs.push(spec);
    }
    Ok((w, specs))
}

/// A synthetic full-size model whose tensor data is a hole: the header is written and the file
/// extended to its full size without writing the data (a sparse file on most filesystems), for
/// tests of what happens before the weights are read (config checks, the memory plan). `extra`
/// metadata is added (e.g. the tokenizer). Returns the file's size.
pub fn write_synthetic_sparse(
    output: &Path,
    layers: Option<u64>,
    extra: Vec<(String, MetaValue)>,
) -> Result<u64, WriteError> {
    let (mut w, _) = synthetic_writer(layers, 0)?;
    for (k, v) in extra {
        w.set(&k, v);
    }
    let (header, _, total) = w.layout();
    let io = |op: &'static str| {
        let path = output.to_path_buf();
        move |source| WriteError::Io { op, path, source }
    };
    let f = std::fs::File::create(output).map_err(io("creating"))?;
    use std::io::Write;
    (&f).write_all(&header).map_err(io("writing the header of"))?;
    f.set_len(total).map_err(io("extending"))?;
    Ok(total)
}

/// Write a random-weight GGUF with the real tensor list (minus vision) and real metadata.
pub fn write_synthetic(
    output: &Path,
    layers: Option<u64>,
    seed: u64,
    progress: bool,
) -> Result<SyntheticReport, WriteError> {
    let start = Instant::now();
    let (w, specs) = synthetic_writer(layers, seed)?;
    let scales: [u16; 256] = std::array::from_fn(|i| half::f16::from_f32(2e-4 + 4e-4 * i as f32 / 255.0).to_bits());
    let mut out = w.create_file(output)?;
    let total = out.total_size();
    let pb = crate::convert::progress_bar(total, progress);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
    for (ti, spec) in specs.iter().enumerate() {
        pb.set_message(format!("tensor {}/{}", ti + 1, specs.len()));
        let tseed = seed ^ (ti as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        if spec.ty == GgmlType::Q8_0 {
            let n_blocks = spec.n_elements() / 32;
            let groups = n_blocks.div_ceil(GROUP_BLOCKS) as usize;
            crate::pipeline::run_ordered(
                groups,
                threads,
                |gi, buf| {
                    let gi = gi as u64;
                    let nb = GROUP_BLOCKS.min(n_blocks - gi * GROUP_BLOCKS);
                    let mut rng = XorShift::new(tseed ^ gi.wrapping_mul(0xD1B5_4A32_D192_ED03));
                    random_q8_0(&mut rng, nb, &scales, buf);
                },
                |_, buf| {
                    out.write_data(buf)?;
                    pb.inc(buf.len() as u64);
                    Ok::<(), WriteError>(())
                },
            )?;
        } else {
            let mut rng = XorShift::new(tseed);
            let norm = is_norm_weight(&spec.name);
            let mut buf = Vec::with_capacity(spec.n_bytes() as usize);
            for _ in 0..spec.n_elements() {
                let v = if norm { 1.0 + 0.05 * rng.next_f32() } else { 0.02 * rng.next_f32() };
                if spec.ty == GgmlType::F32 {
                    buf.extend_from_slice(&v.to_le_bytes());
                } else {
                    buf.extend_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes());
                }
            }
            out.write_data(&buf)?;
            pb.inc(buf.len() as u64);
        }
        out.end_tensor()?;
    }
    let path = out.finish()?;
    pb.finish_and_clear();
    Ok(SyntheticReport { output: path, tensors: specs.len(), bytes: total, seconds: start.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_tensor_list_matches_spec_counts() {
        let cfg = real_config();
        let all = tensor_list(&cfg, true);
        assert_eq!(all.len(), 28_010);
        let params: u64 = all.iter().map(|(_, s)| s.iter().product::<u64>()).sum();
        assert_eq!(params, 35_259_818_545);
        let no_vision = tensor_list(&cfg, false);
        assert_eq!(no_vision.len(), 28_010 - 351);
        let mut names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "duplicate names");
        // every shape agrees with the config-derived checks
        let dims = crate::config::ModelDims::from_config(&cfg).unwrap();
        for (n, s) in &all {
            dims.check(n, s).unwrap();
        }
    }

    #[test]
    fn component_parameter_counts() {
        let all = tensor_list(&real_config(), true);
        let sum =
            |p: &str| all.iter().filter(|(n, _)| n.starts_with(p)).map(|(_, s)| s.iter().product::<u64>()).sum::<u64>();
        assert_eq!(sum("thinker.audio_tower."), 647_927_168);
        assert_eq!(sum("thinker.visual."), 538_631_408);
        assert_eq!(sum("talker.code_predictor."), 141_570_304);
        assert_eq!(sum("code2wav."), 216_016_577);
    }

    #[test]
    fn fewer_layers() {
        let cfg = config_with_layers(Some(2));
        let l = tensor_list(&cfg, false);
        assert!(l.iter().any(|(n, _)| n == "thinker.model.layers.1.mlp.experts.127.down_proj.weight"));
        assert!(!l.iter().any(|(n, _)| n.starts_with("thinker.model.layers.2.")));
        assert!(!l.iter().any(|(n, _)| n.starts_with("talker.model.layers.2.")));
        assert!(!l.iter().any(|(n, _)| n.starts_with("thinker.audio_tower.layers.2.")));
        assert!(l.iter().any(|(n, _)| n.starts_with("talker.code_predictor.model.layers.4.")));
    }
}
