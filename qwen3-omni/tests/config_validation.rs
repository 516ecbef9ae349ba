//! Malformed configs are refused when a model loads, naming the field, with no panic and no GPU
//! work: for every config field the engine reads (Thinker, AudioTower, Talker + code predictor,
//! Code2Wav), GGUFs written from the tiny-ragged fixture with the field set to zero, negative,
//! huge, NaN / infinite, the wrong type, and values inconsistent with other fields or with the
//! tensors. Each file goes through `config_check::check_model` (what `Model::load` runs before it
//! opens a device) and through the component's own config parser (what its loader runs).

mod common;

use std::path::{Path, PathBuf};

use qwen3_omni::audio::AudioConfig;
use qwen3_omni::code2wav::Code2WavConfig;
use qwen3_omni::config_check::check_model;
use qwen3_omni::model_file::{ModelError, ModelFile};
use qwen3_omni::talker::TalkerConfig;
use qwen3_omni::thinker::ThinkerConfig;
use serde_json::{json, Value};

use common::gguf_edit::{config_only, config_text, ragged_gguf, with_config};

const T: &str = "/thinker_config/text_config";
const A: &str = "/thinker_config/audio_config";
const TK: &str = "/talker_config";
const TT: &str = "/talker_config/text_config";
const CP: &str = "/talker_config/code_predictor_config";
const C: &str = "/code2wav_config";

/// What a field is set to.
#[derive(Clone, Debug)]
enum Bad {
    /// A JSON value.
    V(Value),
    /// Raw text where serde_json has no value for it (`NaN`, `Infinity`, `1e999`).
    Raw(&'static str),
    /// The field removed.
    Gone,
}

struct Case {
    /// JSON pointer of the field changed.
    field: String,
    bad: Bad,
    /// The field the error must name when another one holds the inconsistency (e.g. `num_key_value_heads`
    /// for a head count it does not divide); its message must still name `field`'s key.
    names: Option<String>,
}

fn raw_numbers() -> Vec<Bad> {
    vec![Bad::Raw("NaN"), Bad::Raw("Infinity"), Bad::Raw("-Infinity"), Bad::Raw("1e999")]
}

/// Counts and widths: zero (unless it is a valid value), negative, huge (within u32 and beyond),
/// non-integer, NaN and infinities, a string, missing.
fn int_cases(zero_ok: bool, required: bool) -> Vec<Bad> {
    let mut v = vec![
        Bad::V(json!(-1)),
        Bad::V(json!(2_147_483_648u64)),
        Bad::V(json!(4_294_967_296u64)),
        Bad::V(json!(1e30)),
        Bad::V(json!(1.5)),
        Bad::V(json!("12")),
    ];
    v.extend(raw_numbers());
    if !zero_ok {
        v.push(Bad::V(json!(0)));
    }
    if required {
        v.push(Bad::Gone);
    }
    v
}

/// Floats: zero, negative, huge, NaN and infinities, a string, missing.
fn float_cases() -> Vec<Bad> {
    let mut v = vec![Bad::V(json!(0.0)), Bad::V(json!(-1.0)), Bad::V(json!(1e99)), Bad::V(json!("1e-6")), Bad::Gone];
    v.extend(raw_numbers());
    v
}

/// Every case of the suite.
fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut push = |sec: &str, key: &str, bads: Vec<Bad>, names: Option<&str>| {
        for bad in bads {
            out.push(Case { field: format!("{sec}/{key}"), bad, names: names.map(|n| format!("{sec}/{n}")) });
        }
    };
    let v = |x: Value| Bad::V(x);
    // Integers: (section, key, zero is valid, required, inconsistent values naming the field itself).
    let ints: Vec<(&str, &str, bool, bool, Vec<Value>)> = vec![
        (T, "hidden_size", false, true, vec![json!(96), json!(33), json!(131072)]),
        (T, "num_hidden_layers", false, true, vec![json!(2), json!(4), json!(5000)]),
        (T, "num_attention_heads", false, true, vec![json!(12)]),
        (T, "num_key_value_heads", false, true, vec![json!(4), json!(6), json!(7)]),
        (T, "head_dim", false, false, vec![json!(20), json!(256)]),
        (T, "num_experts", false, true, vec![json!(4), json!(6), json!(100000)]),
        (T, "num_experts_per_tok", false, true, vec![json!(6), json!(9)]),
        (T, "moe_intermediate_size", false, true, vec![json!(64), json!(33)]),
        (T, "vocab_size", false, true, vec![json!(256), json!(2_000_000)]),
        (T, "max_position_embeddings", false, false, vec![json!(2_000_000)]),
        (TK, "accept_hidden_layer", false, true, vec![json!(4)]),
        (A, "num_mel_bins", false, true, vec![json!(80)]),
        (A, "d_model", false, true, vec![json!(192), json!(100)]),
        (A, "encoder_layers", false, true, vec![json!(2), json!(4)]),
        (A, "encoder_attention_heads", false, true, vec![json!(5)]),
        (A, "encoder_ffn_dim", false, true, vec![json!(128)]),
        (A, "downsample_hidden_size", false, true, vec![json!(32), json!(3)]),
        (A, "output_dim", false, true, vec![json!(96)]),
        (A, "n_window", false, true, vec![json!(2000)]),
        (A, "n_window_infer", false, true, vec![json!(50), json!(1_000_000)]),
        (C, "hidden_size", false, true, vec![json!(64)]),
        (C, "num_hidden_layers", false, true, vec![json!(3)]),
        (C, "num_key_value_heads", false, true, vec![json!(1)]),
        (C, "head_dim", false, false, vec![json!(3), json!(256)]),
        (C, "intermediate_size", false, true, vec![json!(96)]),
        (C, "codebook_size", false, true, vec![json!(75), json!(2_000_000)]),
        (C, "num_quantizers", false, true, vec![json!(65)]),
        (C, "sliding_window", false, true, vec![json!(5000)]),
        (C, "decoder_dim", false, true, vec![json!(63), json!(128)]),
        (C, "num_attention_heads", false, true, vec![]),
        (TT, "hidden_size", false, true, vec![]),
        (TT, "num_hidden_layers", false, true, vec![json!(3)]),
        (TT, "num_attention_heads", false, true, vec![json!(1)]),
        (TT, "num_key_value_heads", false, true, vec![json!(3)]),
        (TT, "head_dim", false, false, vec![json!(12)]),
        (TT, "vocab_size", false, true, vec![json!(1101), json!(76)]),
        (TT, "num_local_experts", false, true, vec![json!(5)]),
        (TT, "num_experts_per_tok", false, true, vec![json!(7), json!(9)]),
        (TT, "moe_intermediate_size", false, true, vec![json!(64)]),
        (TT, "shared_expert_intermediate_size", false, true, vec![json!(32)]),
        (TT, "intermediate_size", false, true, vec![json!(64)]),
        (TT, "max_position_embeddings", false, false, vec![json!(8)]),
        (CP, "hidden_size", false, true, vec![json!(64)]),
        (CP, "num_hidden_layers", false, true, vec![json!(3)]),
        (CP, "num_attention_heads", false, true, vec![json!(4)]),
        (CP, "num_key_value_heads", false, true, vec![json!(2)]),
        (CP, "head_dim", false, false, vec![json!(32)]),
        (CP, "vocab_size", false, true, vec![]),
        (CP, "intermediate_size", false, true, vec![json!(96)]),
        (CP, "max_position_embeddings", false, false, vec![json!(4)]),
        (TK, "num_code_groups", false, true, vec![json!(1), json!(4), json!(65)]),
        (TK, "thinker_hidden_size", false, true, vec![json!(96)]),
        (TK, "speaker_id/ethan", true, false, vec![json!(1100)]),
    ];
    for (sec, key, zero_ok, required, inc) in ints {
        let mut b = int_cases(zero_ok, required);
        b.extend(inc.into_iter().map(v));
        push(sec, key, b, None);
    }
    // Token ids: 0 is a valid id; the inconsistent value is just past the vocabulary.
    let codec = ["codec_pad_id", "codec_bos_id", "codec_eos_token_id", "codec_nothink_id", "codec_think_bos_id"];
    for key in codec.into_iter().chain(["codec_think_eos_id"]) {
        let mut b = int_cases(true, true);
        b.push(v(json!(1100)));
        push(TK, key, b, None);
    }
    for key in ["audio_token_id", "image_token_id", "video_token_id"] {
        let mut b = int_cases(true, true);
        b.push(v(json!(257)));
        push(TK, key, b, None);
    }
    let text_ids = ["tts_pad_token_id", "tts_bos_token_id", "tts_eos_token_id", "im_start_token_id", "im_end_token_id"];
    for key in text_ids.into_iter().chain(["user_token_id", "assistant_token_id"]) {
        let mut b = int_cases(true, true);
        b.push(v(json!(257)));
        push("", key, b, None);
    }
    // Floats.
    for sec in [T, TT, CP, C] {
        push(sec, "rms_norm_eps", float_cases(), None);
        let mut theta = float_cases();
        theta.extend([v(json!(1.0)), v(json!(0.5)), v(json!(1e13))]);
        push(sec, "rope_parameters/rope_theta", theta, None);
    }
    // Booleans.
    for sec in [T, TT, CP] {
        push(sec, "norm_topk_prob", vec![v(json!(0)), v(json!("yes")), Bad::Raw("NaN")], None);
    }
    // Lists.
    for (sec, good) in [(T, [4u32, 2, 2]), (TT, [8, 4, 4])] {
        let bads = vec![
            v(json!([0, 0, 0])),
            v(json!([-1, good[1] + 1, good[2] + 1])),
            v(json!([4_000_000_000u64, 2, 2])),
            v(json!([good[0], good[1], good[2] - 1])),
            v(json!([good[0], good[1], good[2], 0])),
            v(json!([])),
            v(json!("abc")),
            Bad::Raw("[NaN, 2, 2]"),
        ];
        push(sec, "rope_parameters/mrope_section", bads, None);
    }
    // The code predictor's config has no sections (plain RoPE); present, they are checked too.
    let cp_sections = vec![v(json!([4, 2, 1])), v(json!([9])), v(json!([-8])), v(json!("abc")), Bad::Raw("[NaN]")];
    push(CP, "rope_parameters/mrope_section", cp_sections, None);
    let rates = vec![
        v(json!([])),
        v(json!([0, 3])),
        v(json!([-1, 3])),
        v(json!([1000, 3])),
        v(json!([5, 3, 2])),
        v(json!([4, 3])),
        v(json!([64, 64, 64, 64, 64, 64, 64, 64])),
        v(json!("abc")),
        Bad::Raw("[NaN, 3]"),
        Bad::Gone,
    ];
    push(C, "upsample_rates", rates, None);
    let ratios = vec![
        v(json!([0, 3])),
        v(json!([-1, 3])),
        v(json!([100, 3])),
        v(json!([2])),
        v(json!([3, 3])),
        v(json!(7)),
        Bad::Raw("[Infinity]"),
        Bad::Gone,
    ];
    push(C, "upsampling_ratios", ratios, None);
    push(TK, "speaker_id", vec![v(json!({})), v(json!("ethan")), Bad::Gone], None);
    // Inconsistencies another field reports, its message naming the changed one.
    let cross: Vec<(&str, &str, Value, &str)> = vec![
        (T, "num_attention_heads", json!(5), "num_key_value_heads"),
        (T, "head_dim", json!(32), "rope_parameters/mrope_section"),
        (T, "head_dim", json!(8), "num_attention_heads"),
        (T, "num_experts", json!(2), "num_experts_per_tok"),
        (A, "n_window", json!(300), "n_window_infer"),
        (C, "num_attention_heads", json!(3), "num_key_value_heads"),
        (C, "head_dim", json!(8), "num_attention_heads"),
        (C, "head_dim", json!(32), "num_attention_heads"),
        (TT, "head_dim", json!(16), "num_attention_heads"),
        (TT, "num_local_experts", json!(1), "num_experts_per_tok"),
        (T, "head_dim", json!(24), "num_attention_heads"),
        (C, "num_quantizers", json!(4), "codebook_size"),
    ];
    for (sec, key, val, names) in cross {
        push(sec, key, vec![v(val)], Some(names));
    }
    // Across sections: the field named lives elsewhere.
    let across: Vec<(&str, Value, &str)> = vec![
        ("/talker_config/text_config/hidden_size", json!(64), "/talker_config/code_predictor_config/hidden_size"),
        ("/talker_config/code_predictor_config/vocab_size", json!(75), "/talker_config/text_config/vocab_size"),
    ];
    for (field, val, names) in across {
        out.push(Case { field: field.into(), bad: Bad::V(val), names: Some(names.into()) });
    }
    out
}

/// `cfg` with the field at `pointer` set to (or, for `Gone`, without) `bad`, as text.
fn mutate(cfg: &Value, pointer: &str, bad: &Bad) -> String {
    const RAW: &str = "@@raw@@";
    let mut cfg = cfg.clone();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let obj = if parent.is_empty() { &mut cfg } else { cfg.pointer_mut(parent).expect("parent object") };
    let obj = obj.as_object_mut().expect("an object");
    match bad {
        Bad::V(x) => {
            obj.insert(key.into(), x.clone());
        }
        Bad::Raw(_) => {
            obj.insert(key.into(), json!(RAW));
        }
        Bad::Gone => {
            assert!(obj.remove(key).is_some(), "{pointer} is not in the config");
        }
    }
    let text = serde_json::to_string_pretty(&cfg).unwrap();
    match bad {
        Bad::Raw(r) => text.replace(&format!("\"{RAW}\""), r),
        _ => text,
    }
}

/// The component parser of the section `field` is in.
fn component_err(m: &ModelFile, field: &str) -> Option<ModelError> {
    let sec = field.rsplit_once('/').unwrap().0;
    if sec.starts_with(T) {
        ThinkerConfig::from_model(m).err()
    } else if sec.starts_with(A) {
        AudioConfig::from_model(m).err()
    } else if sec.starts_with(C) {
        Code2WavConfig::from_model(m).err()
    } else {
        TalkerConfig::from_model(m).err()
    }
}

fn check_refused(e: Option<ModelError>, case: &Case, via: &str, bad: &str) -> Result<(), String> {
    let key = case.field.rsplit('/').next().unwrap();
    let key = if key.chars().all(|c| c.is_ascii_lowercase()) && case.field.contains("speaker_id") {
        "speaker_id"
    } else {
        key
    };
    let want = case.names.as_deref().unwrap_or(&case.field);
    match e {
        None => Err(format!("{} = {bad}: accepted by {via}", case.field)),
        Some(e @ ModelError::Config { .. }) => {
            let ModelError::Config { field, .. } = &e else { unreachable!() };
            let msg = e.to_string();
            if field != want || !msg.contains(key) {
                Err(format!(
                    "{} = {bad}: {via} named {field}, want {want} (and {key:?} in the message): {msg}",
                    case.field
                ))
            } else {
                Ok(())
            }
        }
        Some(e) => Err(format!("{} = {bad}: {via} refused it with another error: {e}", case.field)),
    }
}

fn workdir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("qwen3vk-cfgval-{tag}-{}", std::process::id()))
}

#[test]
fn the_fixtures_pass() {
    let dir = workdir("ok");
    let gguf = ragged_gguf(&dir);
    check_model(&ModelFile::open(&gguf).unwrap()).unwrap();
    // The rewrite itself changes nothing the checks see.
    let again = dir.join("again.gguf");
    with_config(&gguf, &again, &config_text(&gguf));
    check_model(&ModelFile::open(&again).unwrap()).unwrap();
    let (d2, real) = common::tiny_gguf("cfgval", "real");
    check_model(&ModelFile::open(&real).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(d2);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn every_malformed_field_is_refused_by_name() {
    let dir = workdir("suite");
    let base = ragged_gguf(&dir);
    let cfg: Value = serde_json::from_str(&config_text(&base)).unwrap();
    let file = dir.join("case.gguf");
    let mut failures = Vec::new();
    let cases = cases();
    for case in &cases {
        let bad = match &case.bad {
            Bad::V(x) => x.to_string(),
            Bad::Raw(r) => r.to_string(),
            Bad::Gone => "(missing)".into(),
        };
        with_config(&base, &file, &mutate(&cfg, &case.field, &case.bad));
        let m = match ModelFile::open(&file) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{} = {bad}: the file did not open: {e}", case.field));
                continue;
            }
        };
        for (via, e) in [("check_model", check_model(&m).err()), ("its component", component_err(&m, &case.field))] {
            if let Err(f) = check_refused(e, case, via, &bad) {
                failures.push(f);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    assert!(cases.len() > 400, "{} cases", cases.len());
}

/// The real checkpoint's config (spec §2.2) passes every limit: written without tensors, so that
/// only the config is checked (the limits must not refuse the model they are for).
#[test]
fn the_real_models_config_passes() {
    let dir = workdir("real");
    let base = ragged_gguf(&dir);
    let mut cfg: Value = serde_json::from_str(&config_text(&base)).unwrap();
    let mut set = |sec: &str, fields: Value| {
        for (k, v) in fields.as_object().unwrap() {
            *cfg.pointer_mut(&format!("{sec}/{k}")).unwrap_or_else(|| panic!("{sec}/{k}")) = v.clone();
        }
    };
    let rope = |theta: f64, sec: Option<[u32; 3]>| match sec {
        Some(s) => json!({"rope_type": "default", "rope_theta": theta, "mrope_section": s}),
        None => json!({"rope_type": "default", "rope_theta": theta}),
    };
    set(
        T,
        json!({"vocab_size": 152064, "hidden_size": 2048, "num_hidden_layers": 48, "num_attention_heads": 32,
            "num_key_value_heads": 4, "head_dim": 128, "moe_intermediate_size": 768, "num_experts": 128,
            "num_experts_per_tok": 8, "norm_topk_prob": true, "rms_norm_eps": 1e-6, "max_position_embeddings": 65536,
            "rope_parameters": rope(1e6, Some([24, 20, 20]))}),
    );
    set(
        A,
        json!({"num_mel_bins": 128, "d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20,
            "encoder_ffn_dim": 5120, "downsample_hidden_size": 480, "output_dim": 2048, "n_window": 50,
            "n_window_infer": 800}),
    );
    set(
        TK,
        json!({"accept_hidden_layer": 24, "num_code_groups": 16, "thinker_hidden_size": 2048, "codec_pad_id": 2148,
            "codec_bos_id": 2149, "codec_eos_token_id": 2150, "codec_nothink_id": 2155, "codec_think_bos_id": 2156,
            "codec_think_eos_id": 2157, "speaker_id": {"chelsie": 2301, "ethan": 2302, "aiden": 2303},
            "audio_token_id": 151675, "image_token_id": 151655, "video_token_id": 151656}),
    );
    set(
        "",
        json!({"im_start_token_id": 151644, "im_end_token_id": 151645, "user_token_id": 872,
            "assistant_token_id": 77091, "tts_pad_token_id": 151671, "tts_bos_token_id": 151672,
            "tts_eos_token_id": 151673}),
    );
    set(
        TT,
        json!({"vocab_size": 3072, "hidden_size": 1024, "intermediate_size": 2048, "num_hidden_layers": 20,
            "num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 128, "moe_intermediate_size": 384,
            "num_local_experts": 128, "num_experts_per_tok": 6, "shared_expert_intermediate_size": 768,
            "rms_norm_eps": 1e-6, "max_position_embeddings": 65536, "rope_parameters": rope(1e6, Some([24, 20, 20]))}),
    );
    set(
        CP,
        json!({"vocab_size": 2048, "hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 5,
            "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "rms_norm_eps": 1e-6,
            "max_position_embeddings": 32768, "rope_parameters": rope(1e6, None)}),
    );
    set(
        C,
        json!({"codebook_size": 2048, "num_quantizers": 16, "hidden_size": 1024, "intermediate_size": 3072,
            "num_hidden_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 16, "sliding_window": 72,
            "rms_norm_eps": 1e-5, "rope_parameters": rope(1e4, None), "decoder_dim": 1536,
            "upsample_rates": [8, 5, 4, 3], "upsampling_ratios": [2, 2]}),
    );
    // Code2Wav's checkpoint has no head_dim: hidden / heads.
    cfg.pointer_mut(C).unwrap().as_object_mut().unwrap().remove("head_dim");
    let file = dir.join("real.gguf");
    config_only(&base, &file, &serde_json::to_string_pretty(&cfg).unwrap());
    let m = ModelFile::open(&file).unwrap();
    check_model(&m).unwrap();
    let th = ThinkerConfig::from_model(&m).unwrap();
    assert_eq!((th.layers, th.head_dim, th.max_positions, th.accept_layer), (48, 128, 65536, 24));
    let a = AudioConfig::from_model(&m).unwrap();
    assert_eq!((a.head_dim, a.flat_features(), a.plan(100).window), (64, 7680, 104));
    let tk = TalkerConfig::from_model(&m).unwrap();
    assert_eq!((tk.groups, tk.suppress_start(), tk.predictor.mrope_section), (16, 2048, [64, 0, 0]));
    let c = Code2WavConfig::from_model(&m).unwrap();
    assert_eq!((c.head_dim, c.upsample_rates.len()), (64, 4));
    qwen3_omni::config_check::check_speech_pair(&tk, &c).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Text that is not JSON even to the lenient reading is refused naming the key nearest the error.
#[test]
fn broken_json_names_the_nearest_field() {
    let dir = workdir("json");
    let base = ragged_gguf(&dir);
    let text = config_text(&base).replacen("\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": 1e-06 1", 1);
    let file = dir.join("broken.gguf");
    with_config(&base, &file, &text);
    let e = ModelFile::open(&file).err().expect("broken JSON opened");
    let _ = std::fs::remove_dir_all(&dir);
    let msg = e.to_string();
    assert!(msg.contains("qwen3omni.config_json") && msg.contains("rms_norm_eps"), "{msg}");
}

/// The load paths of every front end refuse before placing anything on the GPU:
/// `Model::load` (CLI chat and C API) before it opens a device, and each component's GPU loader.
#[test]
fn loaders_refuse_malformed_configs() {
    let dir = workdir("load");
    let base = ragged_gguf(&dir);
    let cfg: Value = serde_json::from_str(&config_text(&base)).unwrap();
    let bad = |field: &str, x: Value| -> PathBuf {
        let p = dir.join(format!("{}.gguf", field.replace('/', "_")));
        with_config(&base, &p, &mutate(&cfg, field, &Bad::V(x)));
        p
    };
    let open = |p: &Path| ModelFile::open(p).unwrap();
    let named = |r: Result<(), String>, field: &str| match r {
        Err(e) => assert!(e.contains(field), "{e}"),
        Ok(()) => panic!("{field}: accepted"),
    };
    // Once a panic ("min > max" in the context clamp), once loaded silently.
    let max_pos = bad("/thinker_config/text_config/max_position_embeddings", json!(0));
    let opts = qwen3_omni::session::LoadOptions { validation: true, ..Default::default() };
    let r = qwen3_omni::session::Model::load(&max_pos, &opts, |_| true);
    named(r.map(|_| ()).map_err(|e| e.to_string()), "max_position_embeddings");
    let k = common::kernels();
    let r = qwen3_omni::thinker::gpu::GpuThinker::load(k.sibling(), &open(&max_pos), 64, |_, _| {});
    named(r.map(|_| ()).map_err(|e| e.to_string()), "max_position_embeddings");
    for (field, x) in [
        ("/thinker_config/text_config/rms_norm_eps", json!(-1.0)),
        ("/thinker_config/text_config/rms_norm_eps", json!(1e99)),
        ("/thinker_config/text_config/num_hidden_layers", json!(0)),
    ] {
        let r = qwen3_omni::thinker::gpu::GpuThinker::load(k.sibling(), &open(&bad(field, x)), 64, |_, _| {});
        named(r.map(|_| ()).map_err(|e| e.to_string()), field);
    }
    let f = "/talker_config/text_config/max_position_embeddings";
    let r = qwen3_omni::talker::GpuTalker::load(k.sibling(), &open(&bad(f, json!(8))), 64, |_, _| {});
    named(r.map(|_| ()).map_err(|e| e.to_string()), f);
    let f = "/code2wav_config/codebook_size";
    let r = qwen3_omni::speech::Speaker::load(k.sibling(), &open(&bad(f, json!(0))), 64, Default::default());
    named(r.map(|_| ()).map_err(|e| e.to_string()), f);
    let f = "/code2wav_config/sliding_window";
    let r = qwen3_omni::code2wav::Code2Wav::load(k.sibling(), &open(&bad(f, json!(0))), 4);
    named(r.map(|_| ()).map_err(|e| e.to_string()), f);
    let f = "/thinker_config/audio_config/n_window";
    let r = qwen3_omni::audio::gpu::GpuAudioTower::load(k.gpu(), &open(&bad(f, json!(0))), |_, _| {});
    named(r.map(|_| ()).map_err(|e| e.to_string()), f);
    common::assert_clean(k.gpu());
    let _ = std::fs::remove_dir_all(&dir);
}
