//! The Talker's f32 CPU oracle (spec §6) against transformers' fixtures for both tiny models and
//! both prompts: the prompt of §6.2 (ids and projected rows), trailing text, first code-0 logits,
//! the greedy code-0 sequence, every frame's residual codes and the Talker's hidden states.

mod common;

use std::path::PathBuf;

use qwen3_omni::model_file::ModelFile;
use qwen3_omni::talker::cpu::{thinker_embedding, CpuTalker};
use qwen3_omni::talker::{plan, trailing, TalkerConfig};

use common::rel;

fn model_dir(model: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(model)
}

pub fn gguf(model: &str, tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("qwen3vk-talker-{tag}-{model}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("tiny.gguf");
    quantizer::convert::convert(&model_dir(model), &out, &Default::default()).unwrap();
    (dir, out)
}

fn check_model(model: &str) {
    let (dir, file) = gguf(model, "cpu");
    let m = ModelFile::open(&file).unwrap();
    let c = TalkerConfig::from_model(&m).unwrap();
    let t = CpuTalker::load(&m, &c).unwrap();
    let manifest = common::read_json(&format!("models/{model}/manifest.json"));
    let th = model_dir(model).join("ref_thinker_q8.safetensors");
    let tk = model_dir(model).join("ref_talker_q8.safetensors");
    let h = c.talker.hidden as usize;
    let groups = c.groups as usize;
    let speaker = c.speaker("Ethan").unwrap();
    for prompt in ["text", "audio"] {
        let ids = common::ids(&manifest["prompts"][prompt]["ids"]);
        let gen = common::read_safetensors_i32(&th, &format!("{prompt}.greedy_ids"));
        let hs = common::read_safetensors_f32(&th, &format!("{prompt}.hs{}", c.accept_layer));
        let th_hidden = c.thinker_hidden as usize;
        let embed = |id: u32| thinker_embedding(&m, id).unwrap();
        let hidden = |p: usize| hs[p * th_hidden..(p + 1) * th_hidden].to_vec();
        let p = plan(&c, &ids, gen[0], speaker).unwrap();
        let want_ids = common::read_safetensors_i32(&tk, &format!("{prompt}.prompt_ids"));
        assert_eq!(p.ids, want_ids, "{model} {prompt}: talker_input_ids");
        let rows: Vec<Vec<f32>> = p.rows.iter().map(|r| t.row(r, &embed, &hidden)).collect();
        let e = rel(&rows.concat(), &common::read_safetensors_f32(&tk, &format!("{prompt}.prompt_embeds")));
        eprintln!("{model} {prompt}: prompt rows relative error {e:.2e}");
        assert!(e < 1e-5, "{model} {prompt}: prompt embeds {e:e}");
        // Spoken text: the tokens the Thinker fed back (all before <|im_end|>, or all but the last
        // when it stopped at its cap).
        let end = gen.iter().position(|&g| g == c.ids.im_end).unwrap_or(gen.len() - 1);
        let spoken = &gen[..end];
        let want_tr = common::read_safetensors_f32(&tk, &format!("{prompt}.trailing_text"));
        let n_tr = want_tr.len() / h;
        let text = |s: usize| t.text_side(trailing(&c, spoken, s, true).unwrap(), &embed, &hidden);
        let got_tr: Vec<f32> = (0..n_tr).flat_map(text).collect();
        let e = rel(&got_tr, &want_tr);
        assert!(e < 1e-5, "{model} {prompt}: trailing text {e:e}");
        let pad = common::read_safetensors_f32(&tk, &format!("{prompt}.tts_pad"));
        assert!(rel(&text(n_tr + 3), &pad) < 1e-5, "{model} {prompt}: tts_pad after the text");

        let want_c0 = common::read_safetensors_i32(&tk, &format!("{prompt}.code0_sequence"));
        let run = t.generate_greedy(&rows, &text, want_c0.len(), 1.05);
        let e =
            rel(&run.code0_logits_first, &common::read_safetensors_f32(&tk, &format!("{prompt}.code0_logits_first")));
        let eh = rel(&run.hidden.concat(), &common::read_safetensors_f32(&tk, &format!("{prompt}.talker_hidden")));
        eprintln!(
            "{model} {prompt}: first code-0 logits {e:.2e}, talker hidden {eh:.2e}, {} frames",
            run.residual.len()
        );
        assert!(e < 1e-4 && eh < 1e-4, "{model} {prompt}: logits {e:e}, hidden {eh:e}");
        assert_eq!(run.code0, want_c0, "{model} {prompt}: code-0 sequence");
        let codes = common::read_safetensors_i32(&tk, &format!("{prompt}.codes"));
        let frames = codes.len() / groups;
        assert_eq!(run.residual.len(), frames, "{model} {prompt}: frames");
        for (f, got) in run.residual.iter().enumerate() {
            let want: Vec<u32> = (1..groups).map(|g| codes[g * frames + f]).collect();
            assert_eq!(codes[f], run.code0[f], "{model} {prompt}: frame {f} code 0");
            assert_eq!(got, &want, "{model} {prompt}: frame {f} residual codes");
        }
        let topv = common::read_safetensors_f32(&tk, &format!("{prompt}.cp_topk_values_frame0"));
        for (g, l) in run.cp_logits_first.iter().enumerate() {
            let mut s = l.clone();
            s.sort_by(|a, b| b.partial_cmp(a).unwrap());
            let e = rel(&s[..8], &topv[g * 8..(g + 1) * 8]);
            assert!(e < 1e-4, "{model} {prompt}: code predictor group {} top-8 logits {e:e}", g + 1);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn cpu_talker_matches_transformers_real_vocab() {
    check_model("tiny-real-vocab");
}

#[test]
fn cpu_talker_matches_transformers_ragged() {
    check_model("tiny-ragged");
}

#[test]
fn config_and_speakers() {
    let (dir, file) = gguf("tiny-real-vocab", "cfg");
    let m = ModelFile::open(&file).unwrap();
    let c = TalkerConfig::from_model(&m).unwrap();
    assert_eq!((c.groups, c.talker.vocab, c.predictor.vocab), (16, 3072, 2048));
    assert_eq!((c.ids.codec_eos, c.ids.codec_pad, c.ids.codec_bos), (2150, 2148, 2149));
    assert_eq!(c.speaker("Ethan"), Ok(2302));
    assert_eq!(c.speaker("chelsie"), Ok(2301));
    assert_eq!(c.speaker("AIDEN"), Ok(2303));
    assert!(c.speaker("nobody").unwrap_err().contains("ethan"));
    assert_eq!(c.suppress_start(), 2048);
    assert_eq!(c.talker.top_k, 3);
    let _ = std::fs::remove_dir_all(dir);
}

/// §6.2 prompt layout on hand-made id sequences: system turns and earlier assistant turns are
/// skipped, every user turn kept (placeholders → hidden states), the 9-row assistant block, and the
/// trailing text with tts_eos / tts_pad; bad prompts are errors.
#[test]
fn prompt_plan_layout() {
    use qwen3_omni::talker::{PromptError, Row, TextSide};
    let (dir, file) = gguf("tiny-real-vocab", "plan");
    let m = ModelFile::open(&file).unwrap();
    let c = TalkerConfig::from_model(&m).unwrap();
    let i = c.ids.clone();
    let (nl, audio) = (198, i.multimodal[0]);
    let ids = vec![
        i.im_start,
        8948,
        nl,
        100,
        i.im_end,
        nl, // system: skipped
        i.im_start,
        i.user,
        nl,
        200,
        audio,
        audio,
        201,
        i.im_end,
        nl, // user 1
        i.im_start,
        i.assistant,
        nl,
        300,
        i.im_end,
        nl, // earlier reply: skipped
        i.im_start,
        i.user,
        nl,
        400,
        i.im_end,
        nl, // user 2
        i.im_start,
        i.assistant,
        nl,
    ];
    let spk = c.speaker("aiden").unwrap();
    let p = plan(&c, &ids, 555, spk).unwrap();
    let tok = |t| Row { text: TextSide::Token(t), codec: None };
    let mut want: Vec<Row> = [i.im_start, i.user, nl, 200].map(tok).to_vec();
    want.push(Row { text: TextSide::Hidden(10), codec: None });
    want.push(Row { text: TextSide::Hidden(11), codec: None });
    want.extend([201, i.im_end, nl, i.im_start, i.user, nl, 400, i.im_end, nl].map(tok));
    want.extend([i.im_start, i.assistant, nl].map(tok));
    for codec in [i.codec_nothink, i.codec_think_bos, i.codec_think_eos, spk] {
        want.push(Row { text: TextSide::Pad, codec: Some(codec) });
    }
    want.push(Row { text: TextSide::Bos, codec: Some(i.codec_pad) });
    want.push(Row { text: TextSide::Token(555), codec: Some(i.codec_bos) });
    assert_eq!(p.rows, want);
    assert_eq!(p.ids.len(), want.len());
    assert!(p.ids.ends_with(&[i.tts_pad; 9]));
    // Trailing text: g1.. then tts_eos then tts_pad; unknown while the reply is still coming.
    let spoken = [555, 556, 557];
    let tr: Vec<Option<TextSide>> = (0..5).map(|t| trailing(&c, &spoken, t, true)).collect();
    use TextSide::*;
    assert_eq!(tr, vec![Some(Token(556)), Some(Token(557)), Some(Eos), Some(Pad), Some(Pad)]);
    assert_eq!(trailing(&c, &spoken, 2, false), None);
    assert_eq!(trailing(&c, &[555, 556, i.im_end], 1, false), Some(Eos));
    assert_eq!(trailing(&c, &[555], 0, true), Some(Eos));
    // Errors.
    assert_eq!(plan(&c, &ids[6..15], 555, spk), Err(PromptError::NoAssistantTurn));
    assert_eq!(plan(&c, &[i.im_start, i.assistant, nl], 555, spk), Err(PromptError::NoUserTurn));
    assert_eq!(plan(&c, &ids, i.im_end, spk), Err(PromptError::NothingToSay));
    let _ = std::fs::remove_dir_all(dir);
}
