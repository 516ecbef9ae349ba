//! Schema of the tiny reference models in tests/fixtures/models/ (made by tools/make_fixtures.py).
//!
//! Each model directory is laid out like the real checkpoint (config.json, BF16 shards,
//! model.safetensors.index.json, on-disk tensor names) plus `manifest.json` and
//! `ref_<component>_<variant>.safetensors` reference outputs. These tests pin that schema so engine
//! code can rely on it; numerical parity tests live with each component.

mod common;

use common::{fixtures, ids, read_json, read_safetensors_header, tokenizer};
use qwen3_omni::chat::{audio_token_count, render, Item, Message, Role};
use serde_json::Value;
use std::path::Path;

const MODELS: [&str; 2] = ["tiny-real-vocab", "tiny-ragged"];

fn u(v: &Value, path: &str) -> u64 {
    let mut cur = v;
    for p in path.split('.') {
        cur = &cur[p];
    }
    cur.as_u64().unwrap_or_else(|| panic!("config field {path} missing or not an integer"))
}

fn shape_of(all: &std::collections::BTreeMap<String, (String, Vec<u64>)>, name: &str) -> Vec<u64> {
    all.get(name).unwrap_or_else(|| panic!("tensor {name} missing")).1.clone()
}

#[test]
fn checkpoints_are_laid_out_like_the_real_one() {
    for model in MODELS {
        let dir = fixtures().join("models").join(model);
        let cfg = read_json(&format!("models/{model}/config.json"));
        assert_eq!(cfg["model_type"], "qwen3_omni_moe", "{model}");
        let index = read_json(&format!("models/{model}/model.safetensors.index.json"));
        let map = index["weight_map"].as_object().expect("weight_map");

        // Every tensor of the index is in its shard, BF16, with consistent offsets.
        let mut all = std::collections::BTreeMap::new();
        let shards: std::collections::BTreeSet<&str> = map.values().map(|v| v.as_str().unwrap()).collect();
        for shard in &shards {
            let h = read_safetensors_header(&dir.join(shard));
            for (name, (dtype, shape, _)) in h.tensors {
                assert_eq!(dtype, "BF16", "{model}: {name}");
                assert_eq!(map.get(&name).and_then(Value::as_str), Some(*shard), "{model}: {name} not indexed");
                all.insert(name, (dtype, shape));
            }
        }
        assert_eq!(all.len(), map.len(), "{model}: index lists tensors missing from shards");

        // On-disk names and shapes the engine loads (spec §10), derived from config.json.
        let t = &cfg["thinker_config"]["text_config"];
        let (vocab, hidden) = (u(t, "vocab_size"), u(t, "hidden_size"));
        let (heads, kv, hd) = (u(t, "num_attention_heads"), u(t, "num_key_value_heads"), u(t, "head_dim"));
        assert_eq!(shape_of(&all, "thinker.model.embed_tokens.weight"), [vocab, hidden]);
        assert_eq!(shape_of(&all, "thinker.lm_head.weight"), [vocab, hidden]);
        assert_eq!(shape_of(&all, "thinker.model.layers.0.self_attn.q_proj.weight"), [heads * hd, hidden]);
        assert_eq!(shape_of(&all, "thinker.model.layers.0.self_attn.k_proj.weight"), [kv * hd, hidden]);
        assert_eq!(shape_of(&all, "thinker.model.layers.0.mlp.gate.weight"), [u(t, "num_experts"), hidden]);
        let last_expert = u(t, "num_experts") - 1;
        assert_eq!(
            shape_of(&all, &format!("thinker.model.layers.0.mlp.experts.{last_expert}.down_proj.weight")),
            [hidden, u(t, "moe_intermediate_size")]
        );
        let a = &cfg["thinker_config"]["audio_config"];
        assert_eq!(
            shape_of(&all, "thinker.audio_tower.conv_out.weight"),
            [u(a, "d_model"), u(a, "downsample_hidden_size") * u(a, "num_mel_bins") / 8]
        );
        assert_eq!(shape_of(&all, "thinker.audio_tower.proj2.weight"), [u(a, "output_dim"), u(a, "d_model")]);
        let tk = &cfg["talker_config"];
        let tt = &tk["text_config"];
        let groups = u(tk, "num_code_groups");
        assert_eq!(shape_of(&all, "talker.codec_head.weight"), [u(tt, "vocab_size"), u(tt, "hidden_size")]);
        assert_eq!(shape_of(&all, "talker.model.layers.0.mlp.shared_expert_gate.weight"), [1, u(tt, "hidden_size")]);
        assert_eq!(shape_of(&all, "talker.text_projection.linear_fc1.weight"), [u(tt, "intermediate_size"), hidden]);
        let cp = &tk["code_predictor_config"];
        for j in 0..groups - 1 {
            assert_eq!(
                shape_of(&all, &format!("talker.code_predictor.lm_head.{j}.weight")),
                [u(cp, "vocab_size"), u(cp, "hidden_size")]
            );
        }
        assert!(!all.contains_key(&format!("talker.code_predictor.lm_head.{}.weight", groups - 1)));
        let c = &cfg["code2wav_config"];
        assert_eq!(u(c, "num_quantizers"), groups, "{model}");
        assert_eq!(u(tt, "vocab_size") - 1024, u(c, "codebook_size"), "{model}: suppression range (spec §9 #17)");
        assert_eq!(
            shape_of(&all, "code2wav.code_embedding.weight"),
            [u(c, "codebook_size") * groups, u(c, "hidden_size")]
        );
    }
}

fn st_dtype(numpy: &str) -> &'static str {
    match numpy {
        "float32" => "F32",
        "int32" => "I32",
        d => panic!("unexpected manifest dtype {d}"),
    }
}

#[test]
fn manifest_lists_reference_files() {
    for model in MODELS {
        let dir = fixtures().join("models").join(model);
        let m = read_json(&format!("models/{model}/manifest.json"));
        assert!(m["versions"]["transformers"].is_string());
        let files = m["files"].as_object().expect("files");
        for comp in ["audio_tower", "thinker", "talker", "code2wav"] {
            for variant in ["q8", "raw"] {
                let fname = format!("ref_{comp}_{variant}.safetensors");
                let want = files.get(&fname).unwrap_or_else(|| panic!("{model}: {fname} not in manifest"));
                let h = read_safetensors_header(&dir.join(&fname));
                let want = want.as_object().unwrap();
                assert_eq!(h.tensors.len(), want.len(), "{model}/{fname}");
                for (k, d) in want {
                    let (dtype, shape, _) = h.tensors.get(k).unwrap_or_else(|| panic!("{model}/{fname}: {k}"));
                    assert_eq!(dtype, st_dtype(d["dtype"].as_str().unwrap()), "{model}/{fname}: {k}");
                    let ws: Vec<u64> = d["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
                    assert_eq!(shape, &ws, "{model}/{fname}: {k}");
                }
            }
        }
        // AudioTower outputs have audio_token_count(T) rows for each clip's mel.
        let mel = read_json("audio/mel.json");
        let h = read_safetensors_header(&dir.join("ref_audio_tower_q8.safetensors"));
        for (clip, (_, shape, _)) in &h.tensors {
            let t = mel["clips"][clip]["n_mel_frames"].as_u64().unwrap_or_else(|| panic!("clip {clip}"));
            assert_eq!(shape[0], audio_token_count(t as usize) as u64, "{model}: {clip}");
        }
    }
}

#[test]
fn mel_fixture_lengths() {
    let mel = read_json("audio/mel.json");
    let h = read_safetensors_header(&fixtures().join("audio/mel.safetensors"));
    for (clip, meta) in mel["clips"].as_object().unwrap() {
        let n = meta["n_samples_16k"].as_u64().unwrap();
        let t = meta["n_mel_frames"].as_u64().unwrap();
        assert_eq!(t, n / 160, "{clip}");
        assert_eq!(h.tensors[&format!("{clip}.mel")].1, vec![128, t], "{clip}");
        assert!(Path::new(&fixtures().join("audio").join(meta["file"].as_str().unwrap())).exists());
    }
}

#[test]
fn real_vocab_prompts_match_chat_renderer() {
    let tok = tokenizer();
    let m = read_json("models/tiny-real-vocab/manifest.json");
    let mel = read_json("audio/mel.json");
    let frames = mel["clips"]["privet_mir_16k_mono"]["n_mel_frames"].as_u64().unwrap() as usize;
    let text = [Message::text(Role::User, "What is the capital of France? Answer in one word.")];
    assert_eq!(render(&tok, &text, true).unwrap().ids, ids(&m["prompts"]["text"]["ids"]));
    let audio = [Message::new(Role::User, vec![Item::audio_frames(frames), Item::text("Что ты слышишь?")])];
    assert_eq!(render(&tok, &audio, true).unwrap().ids, ids(&m["prompts"]["audio"]["ids"]));
}
