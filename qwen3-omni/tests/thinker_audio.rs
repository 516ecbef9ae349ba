//! Audio into the Thinker (spec §4.4): WAV → our log-mel → GPU AudioTower → embeddings in place of
//! the `<|audio_pad|>` rows → the Thinker, against transformers' audio+text fixture (manifest
//! "prompts.audio", clip privet_mir_16k_mono), 16 greedy tokens teacher-forced, both fixture
//! models: (1) with the f32 CPU Thinker oracle the tokens are transformers' exactly; (2, 3) the GPU
//! Thinker's batched prefill (Q8_1 activations) gives the same tokens with our audio rows as with
//! transformers' own rows, and hs[0] at every position equals transformers'.

mod common;

use std::path::PathBuf;

use qwen3_omni::audio::gpu::{AudioMatmul, GpuAudioTower};
use qwen3_omni::audio::{load_wav, LoadOptions, MelExtractor};
use qwen3_omni::model_file::ModelFile;
use qwen3_omni::thinker::cpu::CpuThinker;
use qwen3_omni::thinker::gpu::GpuThinker;
use qwen3_omni_vk::MatvecPath;

use common::rel;

/// Feeds the reference's tokens after the prompt; returns our greedy choice and logits per step.
fn teacher_forced(t: &mut GpuThinker, first: u32, want: &[u32]) -> (Vec<u32>, Vec<Vec<f32>>) {
    let mut got = vec![first];
    let mut logits = vec![t.logits().unwrap()];
    for &id in &want[..want.len() - 1] {
        got.push(t.step(id, false).unwrap().0);
        logits.push(t.logits().unwrap());
    }
    (got, logits)
}

fn argmax(l: &[f32]) -> u32 {
    l.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0 as u32
}

fn run(model: &str) {
    let root = common::fixtures().join("models").join(model);
    let dir = std::env::temp_dir().join(format!("qwen3vk-thinker-audio-{model}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file: PathBuf = dir.join("tiny.gguf");
    quantizer::convert::convert(&root, &file, &Default::default()).unwrap();
    let m = ModelFile::open(&file).unwrap();
    let manifest = common::read_json(&format!("models/{model}/manifest.json"));
    let ids = common::ids(&manifest["prompts"]["audio"]["ids"]);
    let clip = manifest["audio_prompt_clip"].as_str().unwrap();
    let audio_token = m.config_u64("/thinker_config/audio_token_id").unwrap() as u32;

    let gpu = common::gpu();
    let mut k = common::exact_kernels(gpu.clone());
    // The float path: f32 activations in the batched prefill as in stepping (the int-dot path's
    // Q8_1 activations flip near-ties; thinker_gpu.rs covers that path).
    k.set_matvec_path(MatvecPath::Float).unwrap();
    let wav = load_wav(common::fixtures().join(format!("audio/{clip}.wav")), &LoadOptions::default()).unwrap();
    let mel = MelExtractor::new(128).compute(&wav.samples);
    let mut tower = GpuAudioTower::load(&gpu, &m, |_, _| {}).unwrap();
    tower.matmul = AudioMatmul::Float;
    let mut t = GpuThinker::load(k, &m, 96, |_, _| {}).unwrap();
    let emb = tower.forward(t.kernels(), &mel.data, mel.frames as u32).unwrap();
    assert_eq!(emb.dim, t.config.hidden);
    let rows = emb.read().unwrap();
    let refs = root.join("ref_thinker_q8.safetensors");
    let want = common::read_safetensors_i32(&refs, "audio.greedy_ids");
    let logits_ref = common::read_safetensors_f32(&refs, "audio.logits_first");
    let hs0_ref = common::read_safetensors_f32(&refs, "audio.hs0");
    let h = t.config.hidden as usize;

    // 1. Float end to end: our WAV → mel → GPU tower rows scattered into the CPU Thinker oracle
    //    (f32, no activation quantisation): transformers' greedy tokens exactly.
    let cpu = CpuThinker::load(&m, &t.config).unwrap();
    let mut x = cpu.embed_rows(&ids);
    let mut r = 0;
    for (i, &id) in ids.iter().enumerate() {
        if id == audio_token {
            x[i] = rows[r * h..(r + 1) * h].to_vec();
            r += 1;
        }
    }
    assert_eq!(r, emb.tokens as usize);
    let f = cpu.forward_embeds(x.clone());
    let (e_l, e_h0) = (rel(&f.logits, &logits_ref), rel(&f.hidden[0], &hs0_ref));
    let mut cpu_got = vec![argmax(&f.logits)];
    for &id in &want[..want.len() - 1] {
        x.push(cpu.embed_rows(&[id]).remove(0));
        cpu_got.push(argmax(&cpu.forward_embeds(x.clone()).logits));
    }
    eprintln!("{model}: float (GPU tower + CPU Thinker): first logits {e_l:.2e}, hs0 {e_h0:.2e}, greedy {cpu_got:?}");
    assert!(e_l < 1e-4 && e_h0 < 1e-5, "{model}: float path logits {e_l:e}, hs0 {e_h0:e}");
    assert_eq!(cpu_got, want, "{model}: greedy tokens, float path (teacher-forced)");

    // A placeholder count that does not match the rows is refused.
    assert!(t.prefill_with_audio(&ids[..ids.len() - 8], &emb.buf, emb.tokens + 1, audio_token).is_err());
    assert_eq!(t.len(), 0);

    // 2. The GPU Thinker (batched prefill, f32 activations) with transformers' own audio rows
    //    scattered in: what the Thinker alone does on this prompt.
    let ref_rows: Vec<f32> = ids
        .iter()
        .enumerate()
        .filter(|(_, &id)| id == audio_token)
        .flat_map(|(i, _)| hs0_ref[i * h..(i + 1) * h].to_vec())
        .collect();
    let b = gpu.buffer_from("ref audio rows", &ref_rows, qwen3_omni_vk::vk_runtime::MemoryIntent::Upload).unwrap();
    let first = t.prefill_with_audio(&ids, &b, emb.tokens, audio_token).unwrap();
    let (hs0, hs_acc, accept) = t.hidden_states().unwrap();
    let acc_ref = common::read_safetensors_f32(&refs, &format!("audio.hs{accept}"));
    let (e, ea) = (rel(&t.logits().unwrap(), &logits_ref), rel(&hs_acc, &acc_ref));
    assert!(rel(&hs0, &hs0_ref) < 1e-6);
    let (ref_rows_got, _) = teacher_forced(&mut t, first, &want);
    eprintln!("{model}: GPU Thinker with transformers' audio rows: first logits {e:.2e}, hs{accept} {ea:.2e}, greedy {ref_rows_got:?}");
    t.reset().unwrap();

    // 3. The GPU path end to end: our rows, scattered on the GPU.
    let first = t.prefill_with_audio(&ids, &emb.buf, emb.tokens, audio_token).unwrap();
    let e = rel(&t.logits().unwrap(), &logits_ref);
    let (hs0, hs_acc, _) = t.hidden_states().unwrap();
    let (e0, ea) = (rel(&hs0, &hs0_ref), rel(&hs_acc, &acc_ref));
    eprintln!("{model}: GPU end to end: first logits {e:.2e}, hs0 {e0:.2e}, hs{accept} {ea:.2e}");
    assert!(e0 < 1e-5, "{model}: hs0 {e0:e}");
    let (got, logits) = teacher_forced(&mut t, first, &want);
    // Our audio rows give the same tokens as transformers' rows.
    assert_eq!(got, ref_rows_got, "{model}: our audio rows vs transformers' rows, same GPU Thinker");
    let topv = common::read_safetensors_f32(&refs, "audio.greedy_topk_values");
    let mut flips = 0;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if g != w {
            flips += 1;
            let margin = topv[i * 8] - topv[i * 8 + 1];
            let (ours, best) = (logits[i][*w as usize], logits[i][*g as usize]);
            eprintln!("{model}: GPU step {i}: {g} vs reference {w} (reference top-2 margin {margin:.3e}; ours prefers by {:.3e})", best - ours);
        }
    }
    eprintln!("{model}: GPU greedy {got:?}\n{model}: reference  {want:?} ({flips} differ)");
    assert_eq!(got, want, "{model}: GPU end to end, greedy tokens (teacher-forced)");
    assert!(e < 1e-4, "{model}: GPU end to end, first logits {e:e}");
    drop(t);
    drop(tower);
    drop(emb);
    drop(b);
    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn audio_prompt_matches_transformers_real_vocab() {
    run("tiny-real-vocab");
}

#[test]
fn audio_prompt_matches_transformers_ragged() {
    run("tiny-ragged");
}

/// A long clip (40 s: 520 audio tokens) spans several prefill batches: every audio position's
/// hs[0] is exactly its AudioTower row, in order, and the text positions keep their embeddings.
#[test]
fn long_audio_spans_prefill_batches() {
    let model = "tiny-ragged";
    let root = common::fixtures().join("models").join(model);
    let dir = std::env::temp_dir().join(format!("qwen3vk-thinker-audio-long-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file: PathBuf = dir.join("tiny.gguf");
    quantizer::convert::convert(&root, &file, &Default::default()).unwrap();
    let m = ModelFile::open(&file).unwrap();
    let audio_token = m.config_u64("/thinker_config/audio_token_id").unwrap() as u32;
    let gpu = common::gpu();
    let wav = load_wav(common::fixtures().join("audio/synthetic_40s_16k_mono.wav"), &LoadOptions::default()).unwrap();
    let mel = MelExtractor::new(128).compute(&wav.samples);
    let mut tower = GpuAudioTower::load(&gpu, &m, |_, _| {}).unwrap();
    let mut t = GpuThinker::load(common::exact_kernels(gpu.clone()), &m, 600, |_, _| {}).unwrap();
    let emb = tower.forward(t.kernels(), &mel.data, mel.frames as u32).unwrap();
    assert_eq!(emb.tokens, 520);
    let mut ids = vec![240, 6, 12, 251];
    ids.extend(std::iter::repeat_n(audio_token, emb.tokens as usize));
    ids.extend([252, 94, 135, 241, 10, 240, 8, 11]);
    t.prefill_with_audio(&ids, &emb.buf, emb.tokens, audio_token).unwrap();
    let (hs0, _, _) = t.hidden_states().unwrap();
    let rows = emb.read().unwrap();
    let h = t.config.hidden as usize;
    let mut r = 0;
    for (i, &id) in ids.iter().enumerate() {
        let got = &hs0[i * h..(i + 1) * h];
        if id == audio_token {
            assert_eq!(got, &rows[r * h..(r + 1) * h], "position {i}: audio row {r}");
            r += 1;
        } else {
            assert!(got.iter().any(|&v| v != 0.0), "position {i}: text embedding");
        }
    }
    assert_eq!(r, 520);
    drop(t);
    drop(tower);
    drop(emb);
    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(dir);
}
