//! The Talker on the GPU (lavapipe in CI, validation on) against transformers' fixtures: prompt
//! rows projected on the GPU, first code-0 logits, and with greedy decoding the codes of every
//! frame (code 0 and the 15 (4) residual codes sampled on the GPU inside one command buffer per
//! frame) on both tiny models and both prompts.

mod common;

use std::path::PathBuf;

use qwen3_omni::model_file::ModelFile;
use qwen3_omni::talker::cpu::thinker_embedding;
use qwen3_omni::talker::{plan, GpuTalker, TalkerConfig, TalkerError, TalkerSampling};
use qwen3_omni_vk::{CacheType, MatvecPath};

use common::rel;

fn model_dir(model: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(model)
}

fn gguf(model: &str, tag: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("qwen3vk-talker-gpu-{tag}-{model}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("tiny.gguf");
    quantizer::convert::convert(&model_dir(model), &out, &Default::default()).unwrap();
    (dir, out)
}

struct Outcome {
    logits_err: f64,
    /// (got, want) code 0 sequence and frames.
    code0: (Vec<u32>, Vec<u32>),
    frames: (Vec<Vec<u32>>, Vec<Vec<u32>>),
}

fn run(model: &str, prompt: &str, path: MatvecPath) -> Outcome {
    run_with(model, prompt, path, CacheType::F32)
}

/// As [`run`] with the Talker's KV cache of type `cache`.
fn run_with(model: &str, prompt: &str, path: MatvecPath, cache: CacheType) -> Outcome {
    let (dir, file) = gguf(model, &format!("{prompt}-{path:?}-{cache}"));
    let m = ModelFile::open(&file).unwrap();
    let gpu = common::gpu();
    let mut k = common::kernels_with_cache(gpu.clone(), cache);
    k.set_matvec_path(path).unwrap();
    let mut t = GpuTalker::load(k, &m, 96, |_, _| {}).unwrap();
    t.set_sampling(TalkerSampling::greedy());
    let c: TalkerConfig = t.config.clone();
    let manifest = common::read_json(&format!("models/{model}/manifest.json"));
    let th = model_dir(model).join("ref_thinker_q8.safetensors");
    let tk = model_dir(model).join("ref_talker_q8.safetensors");
    let ids = common::ids(&manifest["prompts"][prompt]["ids"]);
    let gen = common::read_safetensors_i32(&th, &format!("{prompt}.greedy_ids"));
    let hs = common::read_safetensors_f32(&th, &format!("{prompt}.hs{}", c.accept_layer));
    let thh = c.thinker_hidden as usize;

    // Prompt rows projected on the GPU.
    let p = plan(&c, &ids, gen[0], c.speaker("ethan").unwrap()).unwrap();
    let embed = |id: u32| thinker_embedding(&m, id).map_err(TalkerError::from);
    let hidden = |pos: usize| Ok(hs[pos * thh..(pos + 1) * thh].to_vec());
    let rows = t.prompt_rows(&p.rows, &embed, &hidden).unwrap();
    let e = rel(&rows.concat(), &common::read_safetensors_f32(&tk, &format!("{prompt}.prompt_embeds")));
    eprintln!("{model} {prompt} {path:?}: prompt rows relative error {e:.2e}");
    assert!(e < if path == MatvecPath::Float { 1e-5 } else { 2e-2 }, "prompt rows {e:e}");

    // The convenience path gives the same start.
    let first = t.start_from_thinker(&m, &ids, &hs, gen[0], "Ethan").unwrap();
    let logits_err =
        rel(&t.logits().unwrap(), &common::read_safetensors_f32(&tk, &format!("{prompt}.code0_logits_first")));
    let first2 = t.start(&rows).unwrap();
    assert_eq!(first, first2);
    let end = gen.iter().position(|&g| g == c.ids.im_end).unwrap_or(gen.len() - 1);
    t.push_spoken(&m, &gen[..end]).unwrap();

    let want_c0 = common::read_safetensors_i32(&tk, &format!("{prompt}.code0_sequence"));
    let codes = common::read_safetensors_i32(&tk, &format!("{prompt}.codes"));
    let g = c.groups as usize;
    let n = codes.len() / g;
    let want_frames: Vec<Vec<u32>> = (0..n).map(|f| (0..g).map(|j| codes[j * n + f]).collect()).collect();
    let mut got_c0 = vec![first];
    let mut got_frames = Vec::new();
    while got_c0.len() < want_c0.len() {
        match t.next_frame().unwrap() {
            Some(f) => {
                assert_eq!(f[0], *got_c0.last().unwrap());
                got_frames.push(f);
                // The next code 0 was sampled inside the frame's command buffer.
                got_c0.push(t.pending_code0());
            }
            None => break,
        }
    }
    drop(t);
    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(dir);
    Outcome { logits_err, code0: (got_c0, want_c0), frames: (got_frames, want_frames) }
}

fn check_float(model: &str) {
    for prompt in ["text", "audio"] {
        let o = run(model, prompt, MatvecPath::Float);
        eprintln!("{model} {prompt} float: first code-0 logits relative error {:.2e}", o.logits_err);
        assert!(o.logits_err < 1e-4, "{model} {prompt}: logits {:e}", o.logits_err);
        assert_eq!(o.code0.0, o.code0.1, "{model} {prompt}: code-0 sequence");
        assert_eq!(o.frames.0, o.frames.1, "{model} {prompt}: frames");
    }
}

#[test]
fn gpu_talker_float_path_codes_match_transformers_real_vocab() {
    check_float("tiny-real-vocab");
}

#[test]
fn gpu_talker_float_path_codes_match_transformers_ragged() {
    check_float("tiny-ragged");
}

/// The f16 Talker cache on the float path, within spec §11.5's loose tolerances: first code-0
/// logits within 1e-3 of transformers (measured ~1e-4; the f32 cache gives ~1e-6), and on these
/// fixtures every code still equal (measured: no greedy code is that close to a tie).
#[test]
fn gpu_talker_f16_cache_within_loose_tolerances() {
    for model in ["tiny-real-vocab", "tiny-ragged"] {
        for prompt in ["text", "audio"] {
            let o = run_with(model, prompt, MatvecPath::Float, CacheType::F16);
            let c0 = o.code0.0.iter().zip(&o.code0.1).filter(|(a, b)| a != b).count();
            let fr = o.frames.0.iter().zip(&o.frames.1).filter(|(a, b)| a != b).count();
            eprintln!(
                "{model} {prompt} f16: first code-0 logits relative error {:.2e}; {c0} of {} code 0 and {fr} of {} frames differ",
                o.logits_err,
                o.code0.1.len(),
                o.frames.1.len()
            );
            assert!(o.logits_err < 1e-3, "{model} {prompt}: logits {:e}", o.logits_err);
            assert_eq!(o.code0.0, o.code0.1, "{model} {prompt}: code-0 sequence");
            assert_eq!(o.frames.0, o.frames.1, "{model} {prompt}: frames");
        }
    }
}

/// Penalised, suppressed code-0 scores (spec §6.4, greedy) from raw logits.
fn code0_scores(c: &TalkerConfig, logits: &[f32], prev: &[u32]) -> Vec<f32> {
    let mut z = logits.to_vec();
    let mut seen = std::collections::BTreeSet::new();
    for &p in prev {
        if seen.insert(p) {
            let l = &mut z[p as usize];
            *l = if *l > 0.0 { *l / 1.05 } else { *l * 1.05 };
        }
    }
    for (i, v) in z.iter_mut().enumerate().skip(c.suppress_start() as usize) {
        if i as u32 != c.ids.codec_eos {
            *v = f32::NEG_INFINITY;
        }
    }
    z
}

fn rms(v: &[f32]) -> f32 {
    (v.iter().filter(|x| x.is_finite()).map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt()
}

/// A choice `got` differing from the reference's `want` is accepted only where our own scores of
/// the two are within `TIE` × rms(logits) (Q8_1 activations move logits by ~1% rms: spec §11.5).
const TIE: f32 = 0.05;

fn near_tie(scores: &[f32], got: u32, want: u32, what: &str) -> f32 {
    let gap = (scores[got as usize] - scores[want as usize]) / rms(scores);
    assert!(gap <= TIE, "{what}: chose {got}, reference {want}: our score gap {gap:.3} rms is no near-tie");
    gap
}

/// The int-dot path (Q8_1 activations, the default on GPUs with int8 dot products) teacher-forced
/// on transformers' codes: every choice equals the reference's except near-ties.
fn check_intdot_forced(model: &str) {
    for prompt in ["text", "audio"] {
        let (dir, file) = gguf(model, &format!("{prompt}-forced"));
        let m = ModelFile::open(&file).unwrap();
        let gpu = common::gpu();
        let mut k = common::exact_kernels(gpu.clone());
        k.set_matvec_path(MatvecPath::IntDot).unwrap();
        let mut t = GpuTalker::load(k, &m, 96, |_, _| {}).unwrap();
        t.set_sampling(TalkerSampling::greedy());
        let c = t.config.clone();
        let manifest = common::read_json(&format!("models/{model}/manifest.json"));
        let th = model_dir(model).join("ref_thinker_q8.safetensors");
        let tk = model_dir(model).join("ref_talker_q8.safetensors");
        let ids = common::ids(&manifest["prompts"][prompt]["ids"]);
        let gen = common::read_safetensors_i32(&th, &format!("{prompt}.greedy_ids"));
        let hs = common::read_safetensors_f32(&th, &format!("{prompt}.hs{}", c.accept_layer));
        let want_c0 = common::read_safetensors_i32(&tk, &format!("{prompt}.code0_sequence"));
        let codes = common::read_safetensors_i32(&tk, &format!("{prompt}.codes"));
        let g = c.groups as usize;
        let n = codes.len() / g;
        let frames: Vec<Vec<u32>> = (0..n).map(|f| (0..g).map(|j| codes[j * n + f]).collect()).collect();
        let first = t.start_from_thinker(&m, &ids, &hs, gen[0], "ethan").unwrap();
        let e = rel(&t.logits().unwrap(), &common::read_safetensors_f32(&tk, &format!("{prompt}.code0_logits_first")));
        let end = gen.iter().position(|&x| x == c.ids.im_end).unwrap_or(gen.len() - 1);
        t.push_spoken(&m, &gen[..end]).unwrap();
        let (mut flips, mut total, mut worst) = (0, 0, 0f32);
        let mut check = |scores: &[f32], got: u32, want: u32, what: String| {
            total += 1;
            if got != want {
                flips += 1;
                worst = worst.max(near_tie(scores, got, want, &what));
            }
        };
        check(
            &code0_scores(&c, &t.logits().unwrap(), &[]),
            first,
            want_c0[0],
            format!("{model} {prompt} code 0 of frame 0"),
        );
        for (f, fr) in frames.iter().enumerate() {
            let (pred, logits) = t.next_frame_forced(fr).unwrap();
            for (j, (p, l)) in pred.iter().zip(&logits).enumerate() {
                check(l, *p, fr[j + 1], format!("{model} {prompt} frame {f} code {}", j + 1));
            }
            let z = code0_scores(&c, &t.logits().unwrap(), &want_c0[..=f]);
            check(&z, t.pending_code0(), want_c0[f + 1], format!("{model} {prompt} code 0 of frame {}", f + 1));
        }
        eprintln!(
            "{model} {prompt} int-dot, teacher-forced: first code-0 logits relative error {e:.2e}; {flips} of {total} choices differ (near-ties, largest gap {worst:.3} rms)"
        );
        assert!(e < 3e-2, "first code-0 logits {e:e}");
        drop(t);
        common::assert_clean(&gpu);
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn gpu_talker_intdot_path_teacher_forced_real_vocab() {
    check_intdot_forced("tiny-real-vocab");
}

#[test]
fn gpu_talker_intdot_path_teacher_forced_ragged() {
    check_intdot_forced("tiny-ragged");
}

/// `run_frames` (one frame command buffer recorded once, replayed per frame with the RNG step read
/// on the GPU) gives the same frames as `next_frame` (recorded per frame), greedy and sampled; the
/// sampled codes stay in their codebooks, and the text side must be known before a frame runs.
#[test]
fn replayed_frames_equal_stepped_frames() {
    let model = "tiny-real-vocab";
    let (dir, file) = gguf(model, "replay");
    let m = ModelFile::open(&file).unwrap();
    let gpu = common::gpu();
    let mut t = GpuTalker::load(common::exact_kernels(gpu.clone()), &m, 96, |_, _| {}).unwrap();
    let c = t.config.clone();
    let manifest = common::read_json(&format!("models/{model}/manifest.json"));
    let th = model_dir(model).join("ref_thinker_q8.safetensors");
    let ids = common::ids(&manifest["prompts"]["text"]["ids"]);
    let gen = common::read_safetensors_i32(&th, "text.greedy_ids");
    let hs = common::read_safetensors_f32(&th, &format!("text.hs{}", c.accept_layer));
    let n = 12;
    let mut runs = Vec::new();
    for sampling in [TalkerSampling::greedy(), TalkerSampling::sampled(7)] {
        t.set_sampling(sampling);
        let mut both = Vec::new();
        for replay in [false, true] {
            let first = t.start_from_thinker(&m, &ids, &hs, gen[0], "chelsie").unwrap();
            // Only 3 text tokens known so far: frames stop when the 4th step's text is missing.
            t.push_tokens(&m, &gen[1..4]).unwrap();
            let mut frames = Vec::new();
            if replay {
                let made = t
                    .run_frames(n, |f| {
                        frames.push(f.to_vec());
                        true
                    })
                    .unwrap();
                assert_eq!(made, 3);
                assert!(!t.ready());
                t.push_tokens(&m, &gen[4..10]).unwrap();
                t.finish_text();
                t.run_frames(n - 3, |f| {
                    frames.push(f.to_vec());
                    true
                })
                .unwrap();
            } else {
                for _ in 0..3 {
                    frames.push(t.next_frame().unwrap().unwrap());
                }
                assert!(matches!(t.next_frame(), Err(TalkerError::TextNotReady { step: 3 })));
                t.push_tokens(&m, &gen[4..10]).unwrap();
                t.finish_text();
                while frames.len() < n {
                    match t.next_frame().unwrap() {
                        Some(f) => frames.push(f),
                        None => break,
                    }
                }
            }
            assert_eq!(frames[0][0], first);
            for f in &frames {
                assert!(f[0] < c.suppress_start() && f[1..].iter().all(|&x| x < c.predictor.vocab), "{f:?}");
            }
            both.push(frames);
        }
        assert_eq!(both[0], both[1], "{sampling:?}: stepped vs replayed");
        runs.push(both.remove(0));
    }
    assert_ne!(runs[0], runs[1], "sampled codes equal the greedy ones");
    drop(t);
    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(dir);
}

/// The batched prompt prefill (matrix × matrix, Q8_1 activations; the int-dot default) against the
/// replayed one-row step on the same path: same first code 0, hidden and logits within 1e-4 on the
/// real prompt, and a prompt split over several chunks gives the same as the step (within the
/// near-tie spread of a long prompt).
#[test]
fn batched_prefill_equals_stepped_prefill() {
    let model = "tiny-real-vocab";
    let (dir, file) = gguf(model, "prefill");
    let m = ModelFile::open(&file).unwrap();
    let gpu = common::gpu();
    let mut k = common::exact_kernels(gpu.clone());
    k.set_matvec_path(MatvecPath::IntDot).unwrap();
    let mut t = GpuTalker::load(k, &m, 400, |_, _| {}).unwrap();
    t.set_sampling(TalkerSampling::greedy());
    let c = t.config.clone();
    let manifest = common::read_json(&format!("models/{model}/manifest.json"));
    let th = model_dir(model).join("ref_thinker_q8.safetensors");
    let ids = common::ids(&manifest["prompts"]["audio"]["ids"]);
    let gen = common::read_safetensors_i32(&th, "audio.greedy_ids");
    let hs = common::read_safetensors_f32(&th, &format!("audio.hs{}", c.accept_layer));
    let thh = c.thinker_hidden as usize;
    let p = plan(&c, &ids, gen[0], c.speaker("aiden").unwrap()).unwrap();
    let embed = |id: u32| thinker_embedding(&m, id).map_err(TalkerError::from);
    let hidden = |pos: usize| Ok(hs[pos * thh..(pos + 1) * thh].to_vec());
    let rows = t.prompt_rows(&p.rows, &embed, &hidden).unwrap();
    // A long prompt (over one 128-row chunk) from the rows repeated.
    let long: Vec<Vec<f32>> = rows.iter().cycle().take(300).cloned().collect();
    for prompt in [&rows, &long] {
        let mut got = Vec::new();
        for batched in [false, true] {
            t.set_batched_prefill(batched);
            let c0 = t.start(prompt).unwrap();
            got.push((c0, t.hidden().unwrap(), t.logits().unwrap()));
        }
        let (eh, el) = (rel(&got[1].1, &got[0].1), rel(&got[1].2, &got[0].2));
        eprintln!("{} rows: batched vs stepped prefill: hidden {eh:.2e}, logits {el:.2e}", prompt.len());
        // The real prompt agrees closely. Over hundreds of rows the two paths' different float
        // summation orders meet near ties (a Q8_1 rounding or an expert choice among the tiny
        // model's near-equal random router logits flips), which moves the last row by up to ~1e-2
        // (seen: 5.8e-4 at 257 rows on lavapipe, 2e-3..1e-2 at several lengths on the H200, the
        // same before and after issue 15: `batched_prefill_by_length`, docs/perf.md). A chunking
        // bug (wrong position or cache offset in the second chunk) is off by order 1.
        let tol = if prompt.len() <= 64 { 1e-4 } else { 5e-2 };
        assert!(eh < tol && el < tol, "hidden {eh:e}, logits {el:e} (tolerance {tol:e})");
        assert_eq!(got[0].0, got[1].0);
    }
    // Frames after a batched prefill continue from the same cache.
    t.set_batched_prefill(true);
    let c0 = t.start(&rows).unwrap();
    t.finish_text();
    let f = t.next_frame().unwrap().unwrap();
    assert_eq!(f[0], c0);
    drop(t);
    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(dir);
}

/// Bad use gives errors that say what is wrong, never a panic.
#[test]
fn errors_name_the_problem() {
    let model = "tiny-ragged";
    let (dir, file) = gguf(model, "errors");
    let m = ModelFile::open(&file).unwrap();
    let gpu = common::gpu();
    let mut t = GpuTalker::load(common::exact_kernels(gpu.clone()), &m, 16, |_, _| {}).unwrap();
    assert!(matches!(t.next_frame(), Err(TalkerError::NotStarted)));
    assert!(matches!(t.run_frames(3, |_| true), Err(TalkerError::NotStarted)));
    let c = t.config.clone();
    let manifest = common::read_json(&format!("models/{model}/manifest.json"));
    let ids = common::ids(&manifest["prompts"]["text"]["ids"]);
    let hs = vec![0f32; ids.len() * c.thinker_hidden as usize];
    let e = t.start_from_thinker(&m, &ids, &hs, 20, "nobody").unwrap_err().to_string();
    assert!(e.contains("unknown voice") && e.contains("ethan"), "{e}");
    let e = t.start_from_thinker(&m, &ids, &hs[..10], 20, "ethan").unwrap_err().to_string();
    assert!(e.contains("hidden-state values"), "{e}");
    let e = t.start_from_thinker(&m, &ids, &hs, c.ids.im_end, "ethan").unwrap_err().to_string();
    assert!(e.contains("no text to speak"), "{e}");
    // 25 prompt rows do not fit 16 positions.
    let e = t.start_from_thinker(&m, &ids, &hs, 20, "ethan").unwrap_err();
    assert!(matches!(e, TalkerError::ContextFull { .. }), "{e}");
    let e = t.start(&[vec![0.0; 3]]).unwrap_err().to_string();
    assert!(e.contains("vectors of 32 values"), "{e}");
    let e = t.project(&[vec![0.0; 5]], false).unwrap_err().to_string();
    assert!(e.contains("thinker_hidden_size is 64"), "{e}");
    // A short prompt fits; text must come before frames need it.
    let rows = vec![vec![0.1f32; 32]; 4];
    t.start(&rows).unwrap();
    if t.pending_code0() != c.ids.codec_eos {
        assert!(matches!(t.next_frame(), Err(TalkerError::TextNotReady { step: 0 })));
        assert_eq!(t.run_frames(5, |_| true).unwrap(), 0);
        t.finish_text();
        // Frames until the context is full: then an error, not a panic.
        let mut r = Ok(Some(vec![]));
        while let Ok(Some(_)) = r {
            r = t.next_frame();
        }
        if let Err(e) = r {
            assert!(matches!(e, TalkerError::ContextFull { .. }), "{e}");
        }
    }
    let e = t.next_frame_forced(&[0; 3]).unwrap_err().to_string();
    assert!(e.contains("forced frame"), "{e}");
    drop(t);
    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(dir);
}

/// End to end on the GPU, float path: the Thinker (stepped) answers the text prompt, its prompt
/// hidden states and reply feed the Talker; every frame's codes equal transformers'.
#[test]
fn thinker_to_talker_on_gpu_matches_transformers() {
    use qwen3_omni::thinker::gpu::GpuThinker;
    let model = "tiny-real-vocab";
    let (dir, file) = gguf(model, "e2e");
    let m = ModelFile::open(&file).unwrap();
    let gpu = common::gpu();
    let mut k = common::exact_kernels(gpu.clone());
    k.set_matvec_path(MatvecPath::Float).unwrap();
    let manifest = common::read_json(&format!("models/{model}/manifest.json"));
    let ids = common::ids(&manifest["prompts"]["text"]["ids"]);
    let tk = model_dir(model).join("ref_talker_q8.safetensors");
    let mut thinker = GpuThinker::load(k, &m, 64, |_, _| {}).unwrap();
    let mut reply = Vec::new();
    let mut next = 0;
    for &id in &ids {
        next = thinker.step(id, false).unwrap().0;
    }
    // 16 new tokens as the fixture (greedy); the 16th is never fed back, so never spoken.
    while reply.len() < 16 {
        reply.push(next);
        if reply.len() < 16 {
            next = thinker.step(next, false).unwrap().0;
        }
    }
    let th_ref = model_dir(model).join("ref_thinker_q8.safetensors");
    assert_eq!(reply, common::read_safetensors_i32(&th_ref, "text.greedy_ids"), "Thinker reply");
    let (_, hs, _) = thinker.hidden_states().unwrap();
    drop(thinker);
    let mut k = common::exact_kernels(gpu.clone());
    k.set_matvec_path(MatvecPath::Float).unwrap();
    let mut t = GpuTalker::load(k, &m, 96, |_, _| {}).unwrap();
    t.set_sampling(TalkerSampling::greedy());
    let th = t.config.thinker_hidden as usize;
    let first = t.start_from_thinker(&m, &ids, &hs[..ids.len() * th], reply[0], "ethan").unwrap();
    t.push_spoken(&m, &reply[..15]).unwrap();
    let mut frames = Vec::new();
    t.run_frames(15, |f| {
        frames.push(f.to_vec());
        true
    })
    .unwrap();
    let codes = common::read_safetensors_i32(&tk, "text.codes");
    let g = t.config.groups as usize;
    let n = codes.len() / g;
    let want: Vec<Vec<u32>> = (0..n).map(|f| (0..g).map(|j| codes[j * n + f]).collect()).collect();
    assert_eq!(first, want[0][0]);
    assert_eq!(frames, want);
    assert_eq!(t.pending_code0(), common::read_safetensors_i32(&tk, "text.code0_sequence")[15]);
    drop(t);
    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(dir);
}

/// Device diagnostic (ignored; ~25 s on lavapipe): batched vs stepped prefill at prompt lengths
/// around the 128-row chunk, printing both errors (same code 0, within the long-prompt tolerance); with `QWEN3VK_TEST_DUMP=DIR`, each length's last hidden row from
/// both paths is written there (raw f32) so two devices' runs can be compared.
#[test]
#[ignore]
fn batched_prefill_by_length() {
    let model = "tiny-real-vocab";
    let (dir, file) = gguf(model, "sweep");
    let m = ModelFile::open(&file).unwrap();
    let gpu = common::gpu();
    let mut k = common::exact_kernels(gpu.clone());
    k.set_matvec_path(MatvecPath::IntDot).unwrap();
    let mut t = GpuTalker::load(k, &m, 400, |_, _| {}).unwrap();
    t.set_sampling(TalkerSampling::greedy());
    let c = t.config.clone();
    let manifest = common::read_json(&format!("models/{model}/manifest.json"));
    let th = model_dir(model).join("ref_thinker_q8.safetensors");
    let ids = common::ids(&manifest["prompts"]["audio"]["ids"]);
    let gen = common::read_safetensors_i32(&th, "audio.greedy_ids");
    let hs = common::read_safetensors_f32(&th, &format!("audio.hs{}", c.accept_layer));
    let thh = c.thinker_hidden as usize;
    let p = plan(&c, &ids, gen[0], c.speaker("aiden").unwrap()).unwrap();
    let embed = |id: u32| thinker_embedding(&m, id).map_err(TalkerError::from);
    let hidden = |pos: usize| Ok(hs[pos * thh..(pos + 1) * thh].to_vec());
    let rows = t.prompt_rows(&p.rows, &embed, &hidden).unwrap();
    let dump = std::env::var("QWEN3VK_TEST_DUMP").ok();
    for n in [41usize, 64, 100, 127, 128, 129, 140, 160, 200, 256, 257, 300] {
        let prompt: Vec<Vec<f32>> = rows.iter().cycle().take(n).cloned().collect();
        let mut got = Vec::new();
        for batched in [false, true] {
            t.set_batched_prefill(batched);
            let c0 = t.start(&prompt).unwrap();
            got.push((c0, t.hidden().unwrap(), t.logits().unwrap()));
        }
        let (eh, el) = (rel(&got[1].1, &got[0].1), rel(&got[1].2, &got[0].2));
        eprintln!("sweep {n} rows: hidden {eh:.2e}, logits {el:.2e}, code0 {} {}", got[0].0, got[1].0);
        assert!(eh < 5e-2 && el < 5e-2 && got[0].0 == got[1].0, "{n} rows: hidden {eh:e}, logits {el:e}");
        if let Some(d) = &dump {
            for (tag, g) in [("stepped", &got[0]), ("batched", &got[1])] {
                let b: Vec<u8> = g.1.iter().flat_map(|v| v.to_le_bytes()).collect();
                std::fs::write(format!("{d}/{tag}-{n}.f32"), b).unwrap();
            }
        }
    }
    drop(t);
    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(dir);
}
