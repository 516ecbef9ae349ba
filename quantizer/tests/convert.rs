//! Conversion of tiny synthetic safetensors checkpoints (index.json + 2 shards), including the
//! error cases: each must fail with a clear message and leave no output file behind.

use std::path::{Path, PathBuf};

use quantizer::codec::{decode_into, encode_f16_into, quantize_q8_0, SrcType};
use quantizer::convert::{convert, ConvertError, ConvertOptions, TokenizerSource};
use quantizer::gguf::{GgmlType, GgufFile, MetaValue};
use quantizer::rules::{Preset, TypeRules};
use quantizer::synthetic::{tensor_list, XorShift};
use serde_json::{json, Value};

fn tiny_config() -> Value {
    json!({
        "model_type": "qwen3_omni_moe", "im_end_token_id": 5,
        "thinker_config": {
            "audio_token_id": 7,
            "audio_config": {"d_model": 32, "encoder_layers": 1, "encoder_ffn_dim": 64, "output_dim": 64,
                              "downsample_hidden_size": 32, "num_mel_bins": 16, "encoder_attention_heads": 2},
            "text_config": {"vocab_size": 96, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                             "num_key_value_heads": 1, "head_dim": 32, "moe_intermediate_size": 32, "num_experts": 4,
                             "num_experts_per_tok": 2, "rms_norm_eps": 1e-6,
                             "rope_parameters": {"rope_theta": 1000000.0, "mrope_section": [4, 6, 6]}},
            "vision_config": {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "patch_size": 2,
                               "temporal_patch_size": 2, "out_hidden_size": 64, "num_position_embeddings": 4,
                               "spatial_merge_size": 2, "deepstack_visual_indexes": [0]}
        },
        "talker_config": {
            "num_code_groups": 3, "thinker_hidden_size": 64, "speaker_id": {"ethan": 60},
            "text_config": {"vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                             "num_attention_heads": 1, "num_key_value_heads": 1, "head_dim": 32,
                             "moe_intermediate_size": 32, "num_local_experts": 2, "shared_expert_intermediate_size": 32},
            "code_predictor_config": {"vocab_size": 32, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                       "num_attention_heads": 1, "num_key_value_heads": 1, "head_dim": 32}
        },
        "code2wav_config": {"codebook_size": 16, "num_quantizers": 4, "hidden_size": 32, "intermediate_size": 64,
                             "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
                             "decoder_dim": 64, "upsample_rates": [2, 2], "upsampling_ratios": [2]}
    })
}

struct Tensor {
    name: String,
    dtype: &'static str,
    shape: Vec<u64>,
    data: Vec<u8>,
}

fn random_bf16(n: u64, rng: &mut XorShift) -> Vec<u8> {
    let mut v = Vec::with_capacity(n as usize * 2);
    for _ in 0..n {
        let x = rng.next_f32() * 0.1;
        v.extend_from_slice(&((x.to_bits() >> 16) as u16).to_le_bytes());
    }
    v
}

fn write_shard(path: &Path, tensors: &[Tensor]) {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut off = 0u64;
    for t in tensors {
        let n = t.data.len() as u64;
        header.insert(t.name.clone(), json!({"dtype": t.dtype, "shape": t.shape, "data_offsets": [off, off + n]}));
        off += n;
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).unwrap();
    h.extend_from_slice(&[b' '; 64]); // room for tests that patch the header in place
    #[allow(clippy::manual_is_multiple_of)]
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    for t in tensors {
        out.extend_from_slice(&t.data);
    }
    std::fs::write(path, out).unwrap();
}

/// Writes config, tokenizer files and two shards; returns the tensors (name, shape, bf16 bytes).
fn make_checkpoint(dir: &Path, cfg: &Value, with_vision: bool) -> Vec<Tensor> {
    let mut rng = XorShift::new(42);
    let mut tensors: Vec<Tensor> = tensor_list(cfg, with_vision)
        .into_iter()
        .map(|(name, shape)| {
            let n = shape.iter().product();
            Tensor { name, dtype: "BF16", shape, data: random_bf16(n, &mut rng) }
        })
        .collect();
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(cfg).unwrap()).unwrap();
    std::fs::write(dir.join("generation_config.json"), r#"{"temperature": 0.7}"#).unwrap();
    std::fs::write(dir.join("preprocessor_config.json"), r#"{"feature_size": 16}"#).unwrap();
    let vocab: serde_json::Map<String, Value> = (0..90).map(|i| (format!("t{i}"), json!(i))).collect();
    let tok = json!({
        "model": {"type": "BPE", "vocab": vocab, "merges": ["t t1", ["t1", "t2"]]},
        "added_tokens": [{"id": 90, "content": "<|endoftext|>", "special": true},
                          {"id": 91, "content": "<|im_end|>", "special": true},
                          {"id": 92, "content": "word", "special": false}]
    });
    std::fs::write(dir.join("tokenizer.json"), tok.to_string()).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "chat_template": "{{x}}"}"#,
    )
    .unwrap();
    let half = tensors.len() / 2;
    let second = tensors.split_off(half);
    let names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
    write_shard(&dir.join(names[0]), &tensors);
    write_shard(&dir.join(names[1]), &second);
    let mut map = serde_json::Map::new();
    for t in &tensors {
        map.insert(t.name.clone(), json!(names[0]));
    }
    for t in &second {
        map.insert(t.name.clone(), json!(names[1]));
    }
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        json!({"metadata": {"total_size": 0}, "weight_map": map}).to_string(),
    )
    .unwrap();
    tensors.extend(second);
    tensors
}

fn out_dir() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("ckpt");
    let out = d.path().join("out");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    (d, input, out)
}

fn assert_no_output(out: &Path) {
    let left: Vec<_> = std::fs::read_dir(out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "files left behind: {left:?}");
}

fn bf16_to_f32(b: &[u8]) -> Vec<f32> {
    let mut v = Vec::new();
    decode_into(SrcType::BF16, b, &mut v);
    v
}

#[test]
fn converts_tiny_checkpoint() {
    let (_d, input, out) = out_dir();
    let cfg = tiny_config();
    let src = make_checkpoint(&input, &cfg, true);
    let gguf = out.join("m.gguf");
    // small chunks so that tensors span many chunks, threads and page releases
    let opts = ConvertOptions { threads: 3, chunk_elems: 100, ..Default::default() };
    let rep = convert(&input, &gguf, &opts).unwrap();
    let n_vision = src.iter().filter(|t| t.name.starts_with("thinker.visual.")).count();
    assert!(n_vision > 0);
    assert_eq!(rep.skipped, n_vision);
    let f = GgufFile::open(&gguf).unwrap();
    assert_eq!(f.header.tensors.len(), src.len() - n_vision);
    let mut n_q8 = 0;
    for s in src.iter().filter(|t| !t.name.starts_with("thinker.visual.")) {
        let t = f.header.tensor(&s.name).unwrap_or_else(|| panic!("missing {}", s.name));
        let rev: Vec<u64> = s.shape.iter().rev().copied().collect();
        assert_eq!(t.dims, rev, "{}", s.name);
        let x = bf16_to_f32(&s.data);
        let want = match t.ty {
            GgmlType::Q8_0 => {
                n_q8 += 1;
                quantize_q8_0(&x)
            }
            GgmlType::F16 => {
                let mut o = Vec::new();
                encode_f16_into(&x, &mut o);
                o
            }
            GgmlType::F32 => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
            other => panic!("unexpected type {other}"),
        };
        assert_eq!(f.tensor_data(t), &want[..], "{}", s.name);
    }
    assert!(n_q8 > 10);
    // rules
    let ty = |n: &str| f.header.tensor(n).unwrap().ty;
    assert_eq!(ty("thinker.model.layers.0.mlp.gate.weight"), GgmlType::F32);
    assert_eq!(ty("thinker.model.layers.0.mlp.experts.3.down_proj.weight"), GgmlType::Q8_0);
    assert_eq!(ty("code2wav.decoder.0.conv.weight"), GgmlType::F16);
    assert_eq!(ty("code2wav.decoder.1.block.0.alpha"), GgmlType::F32);
    // metadata
    let h = &f.header;
    assert_eq!(h.get("general.architecture").and_then(|v| v.as_str()), Some("qwen3omni"));
    assert_eq!(h.get("general.alignment"), Some(&MetaValue::U32(32)));
    assert_eq!(h.get("general.file_type"), Some(&MetaValue::U32(7)));
    assert_eq!(h.get("qwen3omni.thinker.text.hidden_size"), Some(&MetaValue::U32(64)));
    assert_eq!(h.get("qwen3omni.talker.speaker_id.ethan"), Some(&MetaValue::U32(60)));
    let cj: Value = serde_json::from_str(h.get("qwen3omni.config_json").and_then(|v| v.as_str()).unwrap()).unwrap();
    assert_eq!(cj, cfg);
    assert!(h.get("qwen3omni.generation_config_json").is_some());
    assert!(h.get("qwen3omni.preprocessor_config_json").is_some());
    assert!(h.get("tokenizer.huggingface.json").is_some());
    assert_eq!(h.get("tokenizer.ggml.model").and_then(|v| v.as_str()), Some("gpt2"));
    assert_eq!(h.get("tokenizer.ggml.eos_token_id"), Some(&MetaValue::U32(91)));
    assert_eq!(h.get("tokenizer.ggml.padding_token_id"), Some(&MetaValue::U32(90)));
    assert_eq!(h.get("tokenizer.chat_template").and_then(|v| v.as_str()), Some("{{x}}"));
    match h.get("tokenizer.ggml.tokens") {
        Some(MetaValue::Array(quantizer::gguf::MetaArray::String(t))) => {
            assert_eq!(t.len(), 96); // padded to the thinker vocab
            assert_eq!(t[92], "word");
            assert_eq!(t[95], "[PAD95]");
        }
        other => panic!("tokens: {other:?}"),
    }
    match h.get("tokenizer.ggml.merges") {
        Some(MetaValue::Array(quantizer::gguf::MetaArray::String(m))) => assert_eq!(m, &["t t1", "t1 t2"]),
        other => panic!("merges: {other:?}"),
    }
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

#[test]
fn keep_f16_and_include_vision() {
    let (_d, input, out) = out_dir();
    let src = make_checkpoint(&input, &tiny_config(), true);
    let gguf = out.join("m.gguf");
    let opts = ConvertOptions {
        rules: TypeRules {
            keep_f16: vec!["talker.code_predictor.*".into(), "code2wav.*".into()],
            include_vision: true,
            ..TypeRules::default()
        },
        ..Default::default()
    };
    convert(&input, &gguf, &opts).unwrap();
    let f = GgufFile::open(&gguf).unwrap();
    assert_eq!(f.header.tensors.len(), src.len());
    let ty = |n: &str| f.header.tensor(n).unwrap().ty;
    assert_eq!(ty("talker.code_predictor.lm_head.1.weight"), GgmlType::F16);
    assert_eq!(ty("talker.code_predictor.model.norm.weight"), GgmlType::F32);
    assert_eq!(ty("code2wav.pre_transformer.layers.0.mlp.up_proj.weight"), GgmlType::F16);
    assert_eq!(ty("talker.codec_head.weight"), GgmlType::Q8_0);
    assert_eq!(ty("thinker.visual.blocks.0.attn.qkv.weight"), GgmlType::Q8_0);
}

#[test]
fn single_file_checkpoint() {
    let (_d, input, out) = out_dir();
    let cfg = tiny_config();
    let src = make_checkpoint(&input, &cfg, false);
    for e in std::fs::read_dir(&input).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().contains("safetensors") {
            std::fs::remove_file(p).unwrap();
        }
    }
    write_shard(&input.join("model.safetensors"), &src);
    convert(&input, &out.join("m.gguf"), &ConvertOptions::default()).unwrap();
    assert_eq!(GgufFile::open(out.join("m.gguf")).unwrap().header.tensors.len(), src.len());
}

fn expect_err(input: &Path, out: &Path) -> String {
    let e = convert(input, &out.join("m.gguf"), &ConvertOptions::default()).expect_err("conversion should fail");
    assert_no_output(out);
    e.to_string()
}

#[test]
fn truncated_shard_is_rejected() {
    let (_d, input, out) = out_dir();
    make_checkpoint(&input, &tiny_config(), false);
    let p = input.join("model-00002-of-00002.safetensors");
    let len = std::fs::metadata(&p).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(len - 100).unwrap();
    let msg = expect_err(&input, &out);
    assert!(msg.contains("model-00002-of-00002") && msg.contains("beyond the end"), "{msg}");
}

#[test]
fn shard_truncated_inside_header_is_rejected() {
    let (_d, input, out) = out_dir();
    make_checkpoint(&input, &tiny_config(), false);
    let p = input.join("model-00001-of-00002.safetensors");
    std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(50).unwrap();
    let msg = expect_err(&input, &out);
    assert!(msg.contains("runs past the end"), "{msg}");
}

/// Rewrites one tensor's header entry of a shard (keeping the header length).
fn patch_header(path: &Path, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let mut h: serde_json::Map<String, Value> = serde_json::from_slice(&b[8..8 + n]).unwrap();
    f(&mut h);
    let mut nh = serde_json::to_vec(&Value::Object(h)).unwrap();
    assert!(nh.len() <= n, "patched header grew");
    nh.resize(n, b' ');
    let mut out = b[..8].to_vec();
    out.extend_from_slice(&nh);
    out.extend_from_slice(&b[8 + n..]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn header_lying_about_offsets_is_rejected() {
    let (_d, input, out) = out_dir();
    make_checkpoint(&input, &tiny_config(), false);
    patch_header(&input.join("model-00001-of-00002.safetensors"), |h| {
        h["thinker.model.embed_tokens.weight"]["data_offsets"] = json!([0, 999_999_990]);
    });
    let msg = expect_err(&input, &out);
    assert!(msg.contains("thinker.model.embed_tokens.weight") && msg.contains("needs"), "{msg}");
}

#[test]
fn header_offsets_beyond_file_are_rejected() {
    let (_d, input, out) = out_dir();
    let src = make_checkpoint(&input, &tiny_config(), false);
    let n = src[0].data.len() as u64;
    patch_header(&input.join("model-00001-of-00002.safetensors"), |h| {
        h[&src[0].name]["data_offsets"] = json!([900_000_000u64, 900_000_000u64 + n]);
    });
    let msg = expect_err(&input, &out);
    assert!(msg.contains("beyond the end"), "{msg}");
}

#[test]
fn unexpected_dtype_is_rejected() {
    let (_d, input, out) = out_dir();
    make_checkpoint(&input, &tiny_config(), false);
    patch_header(&input.join("model-00001-of-00002.safetensors"), |h| {
        // same byte size: BF16 [96, 64] -> I16 [96, 64]
        h["thinker.model.embed_tokens.weight"]["dtype"] = json!("I16");
    });
    let e = convert(&input, &out.join("m.gguf"), &ConvertOptions::default()).unwrap_err();
    assert!(matches!(e, ConvertError::UnexpectedDtype { .. }), "{e}");
    assert!(e.to_string().contains("I16") && e.to_string().contains("embed_tokens"));
    assert_no_output(&out);
}

#[test]
fn shape_disagreeing_with_config_is_rejected() {
    let (_d, input, out) = out_dir();
    let mut cfg = tiny_config();
    make_checkpoint(&input, &cfg, false);
    cfg["thinker_config"]["text_config"]["num_key_value_heads"] = json!(2);
    std::fs::write(input.join("config.json"), cfg.to_string()).unwrap();
    let msg = expect_err(&input, &out);
    assert!(msg.contains("k_proj.weight") && msg.contains("[32, 64]") && msg.contains("[64, 64]"), "{msg}");
}

#[test]
fn expert_count_disagreeing_with_config_is_rejected() {
    let (_d, input, out) = out_dir();
    let mut cfg = tiny_config();
    make_checkpoint(&input, &cfg, false);
    cfg["thinker_config"]["text_config"]["num_experts"] = json!(3);
    std::fs::write(input.join("config.json"), cfg.to_string()).unwrap();
    let msg = expect_err(&input, &out);
    assert!(msg.contains("mlp.gate.weight") || msg.contains("expert index 3"), "{msg}");
}

#[test]
fn missing_config_and_index_inconsistency() {
    let (_d, input, out) = out_dir();
    make_checkpoint(&input, &tiny_config(), false);
    let idx = input.join("model.safetensors.index.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&idx).unwrap()).unwrap();
    v["weight_map"]["ghost.weight"] = json!("model-00001-of-00002.safetensors");
    std::fs::write(&idx, v.to_string()).unwrap();
    let msg = expect_err(&input, &out);
    assert!(msg.contains("ghost.weight"), "{msg}");
    std::fs::remove_file(input.join("config.json")).unwrap();
    let msg = expect_err(&input, &out);
    assert!(msg.contains("config.json"), "{msg}");
}

/// The tiny real-vocabulary checkpoint made with transformers (tests/fixtures/models, another
/// team's fixture): our config-derived tensor list must match its index exactly, and it converts.
#[test]
fn transformers_fixture_matches_tensor_list_and_converts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/tiny-real-vocab");
    let index = dir.join("model.safetensors.index.json");
    if !index.exists() {
        eprintln!("skipping: {} not present", index.display());
        return;
    }
    let cfg: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let idx: Value = serde_json::from_slice(&std::fs::read(&index).unwrap()).unwrap();
    let mut theirs: Vec<String> = idx["weight_map"].as_object().unwrap().keys().cloned().collect();
    let mut ours: Vec<String> = tensor_list(&cfg, true).into_iter().map(|(n, _)| n).collect();
    theirs.sort();
    ours.sort();
    let only_theirs: Vec<_> = theirs.iter().filter(|n| !ours.contains(n)).take(5).collect();
    let only_ours: Vec<_> = ours.iter().filter(|n| !theirs.contains(n)).take(5).collect();
    assert!(
        only_theirs.is_empty() && only_ours.is_empty(),
        "only in fixture: {only_theirs:?}; only ours: {only_ours:?}"
    );
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("m.gguf");
    convert(&dir, &out, &ConvertOptions::default()).unwrap();
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(f.header.tensors.len(), theirs.iter().filter(|n| !n.starts_with("thinker.visual.")).count());
}

/// The output may not be one of the inputs nor inside the checkpoint directory (issue 16: the
/// GGUF once overwrote `model-00001-of-00004.safetensors` with rc 0); every input byte stays.
#[test]
fn output_overlapping_the_input_is_refused() {
    let (d, input, out) = out_dir();
    make_checkpoint(&input, &tiny_config(), false);
    let shard = input.join("model-00001-of-00002.safetensors");
    let before = std::fs::read(&shard).unwrap();
    let link = out.join("link.gguf");
    std::os::unix::fs::symlink(&shard, &link).unwrap();
    std::fs::create_dir(input.join("sub")).unwrap();
    let hard = d.path().join("hard.gguf");
    std::fs::hard_link(&shard, &hard).unwrap();
    let cases = [
        (shard.clone(), "input shard"),
        (input.join("config.json"), "input shard"),
        (input.join("new.gguf"), "inside the checkpoint"),
        (input.join("sub/../x.gguf"), "inside the checkpoint"),
        (link.clone(), "input shard"),
        (hard.clone(), "input shard"),
    ];
    for (o, want) in cases {
        let e = convert(&input, &o, &ConvertOptions::default()).expect_err("must refuse").to_string();
        let want = if o.ends_with("config.json") { "input file" } else { want };
        assert!(e.contains(want) && e.contains("outside the checkpoint"), "{}: {e}", o.display());
    }
    assert_eq!(std::fs::read(&shard).unwrap(), before, "the shard changed");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    let left: Vec<_> = std::fs::read_dir(&input).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().contains("gguf")), "{left:?}");
    // An unwritable output is refused before any work, naming it once.
    let e = convert(&input, &d.path().join("missing/m.gguf"), &ConvertOptions::default()).unwrap_err().to_string();
    assert_eq!(e.matches("missing/m.gguf").count(), 1, "{e}");
}

/// A link to a new name outside the checkpoint is written through: the GGUF lands at the link's
/// target and the link stays a link.
#[test]
fn output_through_a_symlink_writes_its_target() {
    let (d, input, out) = out_dir();
    make_checkpoint(&input, &tiny_config(), false);
    let target = d.path().join("real.gguf");
    let link = out.join("m.gguf");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    convert(&input, &link, &ConvertOptions::default()).unwrap();
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(GgufFile::open(&target).is_ok());
}

#[test]
fn a_checkpoint_without_a_tokenizer_is_refused_when_one_is_required() {
    let (_d, input, out) = out_dir();
    make_checkpoint(&input, &tiny_config(), false);
    let moved = out.parent().unwrap().join("elsewhere");
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::rename(input.join("tokenizer.json"), moved.join("tokenizer.json")).unwrap();
    let gguf = out.join("m.gguf");
    let opts = ConvertOptions { tokenizer: TokenizerSource::Required, ..Default::default() };
    let e = convert(&input, &gguf, &opts).unwrap_err();
    assert!(matches!(e, ConvertError::NoTokenizer { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&input.join("tokenizer.json").display().to_string()) && msg.contains("--tokenizer"), "{msg}");
    assert_no_output(&out);
    // Named explicitly, the tokenizer elsewhere is embedded (its config stays beside config.json).
    let opts = ConvertOptions { tokenizer: TokenizerSource::Path(moved.join("tokenizer.json")), ..Default::default() };
    convert(&input, &gguf, &opts).unwrap();
    let f = GgufFile::open(&gguf).unwrap();
    assert!(f.header.get("tokenizer.huggingface.json").and_then(|v| v.as_str()).is_some());
    assert_eq!(f.header.get("tokenizer.chat_template").and_then(|v| v.as_str()), Some("{{x}}"));
    // A missing explicit path is refused the same way.
    std::fs::remove_file(&gguf).unwrap();
    let opts = ConvertOptions { tokenizer: TokenizerSource::Path(moved.join("nope.json")), ..Default::default() };
    let msg = convert(&input, &gguf, &opts).unwrap_err().to_string();
    assert!(msg.contains("nope.json"), "{msg}");
    assert_no_output(&out);
}

#[test]
fn presets_write_the_types_they_name() {
    let (_d, input, out) = out_dir();
    let src = make_checkpoint(&input, &tiny_config(), false);
    // bf16: every Linear keeps the checkpoint's bits.
    let gguf = out.join("bf16.gguf");
    convert(&input, &gguf, &ConvertOptions { rules: Preset::Bf16.rules(), ..Default::default() }).unwrap();
    let f = GgufFile::open(&gguf).unwrap();
    let mut n_bf16 = 0;
    for s in &src {
        let t = f.header.tensor(&s.name).unwrap();
        assert_ne!(t.ty, GgmlType::Q8_0, "{}", s.name);
        if t.ty == GgmlType::BF16 {
            n_bf16 += 1;
            assert_eq!(f.tensor_data(t), &s.data[..], "{}: BF16 bits changed", s.name);
        }
    }
    assert!(n_bf16 > 10, "only {n_bf16} BF16 tensors");
    assert_eq!(f.header.get("general.file_type").and_then(|v| v.as_u64()), Some(32));
    // q8_0-hq: F16 code predictor, codec head and Code2Wav, Q8_0 elsewhere.
    let gguf = out.join("hq.gguf");
    convert(&input, &gguf, &ConvertOptions { rules: Preset::Q8_0Hq.rules(), ..Default::default() }).unwrap();
    let f = GgufFile::open(&gguf).unwrap();
    let ty = |n: &str| f.header.tensor(n).unwrap().ty;
    assert_eq!(ty("talker.code_predictor.lm_head.1.weight"), GgmlType::F16);
    assert_eq!(ty("talker.codec_head.weight"), GgmlType::F16);
    assert_eq!(ty("code2wav.pre_transformer.layers.0.mlp.up_proj.weight"), GgmlType::F16);
    assert_eq!(ty("thinker.model.layers.0.self_attn.q_proj.weight"), GgmlType::Q8_0);
    assert_eq!(ty("talker.code_predictor.model.norm.weight"), GgmlType::F32);
}
