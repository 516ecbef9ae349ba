//! The Thinker on the GPU (lavapipe in CI, validation on) against transformers' fixture for the
//! text prompt: first-step logits and 16 greedy tokens, on both matrix × vector paths.

mod common;

use std::path::PathBuf;

use qwen3_omni::model_file::ModelFile;
use qwen3_omni::thinker::gpu::{GenError, GpuThinker};
use qwen3_omni_vk::{CacheType, MatvecPath};

fn root() -> PathBuf {
    common::tiny_real_vocab()
}

fn gguf(tag: &str) -> (PathBuf, PathBuf) {
    common::tiny_gguf("gpu", tag)
}

use common::rel;

fn run(path: MatvecPath, tag: &str) -> (f64, Vec<u32>, Vec<u32>, Vec<Vec<f32>>) {
    run_with(path, tag, CacheType::F32)
}

/// First-step logits error, teacher-forced greedy tokens, the reference's tokens and our logits at
/// each step, with a KV cache of type `cache`.
fn run_with(path: MatvecPath, tag: &str, cache: CacheType) -> (f64, Vec<u32>, Vec<u32>, Vec<Vec<f32>>) {
    let (dir, file) = gguf(tag);
    let m = ModelFile::open(&file).unwrap();
    let gpu = common::gpu();
    let mut k = common::kernels_with_cache(gpu.clone(), cache);
    k.set_matvec_path(path).unwrap();
    let mut t = GpuThinker::load(k, &m, 64, |_, _| {}).unwrap();
    let manifest = common::read_json("models/tiny-real-vocab/manifest.json");
    let ids = common::ids(&manifest["prompts"]["text"]["ids"]);
    let refs = root().join("ref_thinker_q8.safetensors");
    let want = common::read_safetensors_i32(&refs, "text.greedy_ids");
    let mut next = 0;
    for &id in &ids {
        next = t.step(id, false).unwrap().0;
    }
    let e = rel(&t.logits().unwrap(), &common::read_safetensors_f32(&refs, "text.logits_first"));
    // The hidden states the Talker needs, for every prompt position.
    let (hs0, hs_acc, accept) = t.hidden_states().unwrap();
    let e0 = rel(&hs0, &common::read_safetensors_f32(&refs, "text.hs0"));
    let ea = rel(&hs_acc, &common::read_safetensors_f32(&refs, &format!("text.hs{accept}")));
    eprintln!("{path:?}: hs0 relative error {e0:.2e}, hs{accept} {ea:.2e}");
    // hs0 is the embedding: no attention, exact whatever the cache holds.
    assert!(e0 < 1e-6, "hs0: relative error {e0:e}");
    // A rounded cache moves hs[accept] by ~2e-4 on the float path; on the int-dot path the Q8_1
    // activations amplify that through near-tied MoE routes (spec §11.5: "up to ~6%").
    let hs_tol = if cache == CacheType::F32 { 2e-2 } else { 6e-2 };
    assert!(ea < hs_tol, "hs{accept}: relative error {ea:e}");
    // Teacher-forced: feed the reference's tokens, record our greedy choice and logits at each step.
    let mut got = vec![next];
    let mut logits = vec![t.logits().unwrap()];
    for &id in &want[..want.len() - 1] {
        got.push(t.step(id, false).unwrap().0);
        logits.push(t.logits().unwrap());
    }
    drop(t);
    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(dir);
    (e, got, want, logits)
}

#[test]
fn gpu_thinker_float_path_matches_transformers() {
    let (e, got, want, _) = run(MatvecPath::Float, "float");
    eprintln!("float path: first-step logits relative error {e:.2e}");
    assert!(e <= 2e-2, "first-step logits: relative error {e:e}");
    assert_eq!(got, want, "greedy tokens (teacher-forced)");
}

#[test]
fn gpu_thinker_intdot_path_matches_transformers() {
    let (e, got, want, logits) = run(MatvecPath::IntDot, "intdot");
    eprintln!("int-dot path: first-step logits relative error {e:.2e}");
    assert!(e <= 2e-2, "first-step logits: relative error {e:e}");
    assert_near_ties(&got, &want, &logits);
}

/// The f16 KV cache (the default) on both paths, within spec §11.5's loose tolerances. Float path:
/// the rounding alone (~2e-4 on the logits), every greedy token as transformers'. Int-dot path:
/// first-step logits within 3% of transformers (spec §11.5 gives 1–2.5% for Q8_0 weights; the
/// Q8_1 activations amplify the cache's rounding through this random model's near-tied MoE
/// routes), and against the same path with the f32 cache: logits within 5% at the median step and
/// the same teacher-forced greedy tokens at all but 2 of the 16 steps (a route that flips moves one
/// step's logits by ~20% on this model, measured).
#[test]
fn gpu_thinker_f16_cache_within_loose_tolerances() {
    let (e, got, want, _) = run_with(MatvecPath::Float, "f16-float", CacheType::F16);
    eprintln!("f16 cache, float path: first-step logits relative error {e:.2e}");
    assert!(e <= 1e-3, "float path: first-step logits: relative error {e:e}");
    assert_eq!(got, want, "float path, f16 cache: greedy tokens (teacher-forced)");
    let (e, got, _, logits16) = run_with(MatvecPath::IntDot, "f16-intdot", CacheType::F16);
    eprintln!("f16 cache, int-dot path: first-step logits relative error {e:.2e}");
    assert!(e <= 3e-2, "int-dot path: first-step logits: relative error {e:e}");
    let (_, got32, _, logits32) = run_with(MatvecPath::IntDot, "f32-intdot", CacheType::F32);
    let mut d: Vec<f64> = logits16.iter().zip(&logits32).map(|(a, b)| rel(a, b)).collect();
    let flips = got.iter().zip(&got32).filter(|(a, b)| a != b).count();
    d.sort_by(f64::total_cmp);
    eprintln!("int-dot path, f16 vs f32 cache: median logits difference {:.2e}, {flips} tokens differ", d[d.len() / 2]);
    assert!(d[d.len() / 2] <= 5e-2, "median logits difference {:e}", d[d.len() / 2]);
    assert!(flips <= 2, "{flips} of {} greedy tokens differ from the f32 cache's: {got:?} vs {got32:?}", got.len());
}

/// The batched prefill into an f16 cache (kv_append rounding in the store kernel, the tiled
/// attention reading f16) against transformers within the int-dot tolerance, and against the
/// same prompt stepped through the decode path into an f16 cache (the two round nearly equal
/// values, so an element may land one f16 step apart, which the Q8_1 activations amplify).
#[test]
fn gpu_thinker_f16_prefill_matches_stepping() {
    let (dir, file) = gguf("f16-prefill");
    let m = ModelFile::open(&file).unwrap();
    let gpu = common::gpu();
    let mut k = common::kernels_with_cache(gpu.clone(), CacheType::F16);
    k.set_matvec_path(MatvecPath::IntDot).unwrap();
    let mut t = GpuThinker::load(k, &m, 64, |_, _| {}).unwrap();
    assert_eq!(t.cache_type(), CacheType::F16);
    let manifest = common::read_json("models/tiny-real-vocab/manifest.json");
    let ids = common::ids(&manifest["prompts"]["text"]["ids"]);
    let refs = root().join("ref_thinker_q8.safetensors");
    let _ = t.prefill(&ids[..7]).unwrap();
    let _ = t.prefill(&ids[7..]).unwrap();
    let lp = t.logits().unwrap();
    let e = rel(&lp, &common::read_safetensors_f32(&refs, "text.logits_first"));
    t.reset().unwrap();
    for &id in &ids {
        t.step(id, false).unwrap();
    }
    let d = rel(&lp, &t.logits().unwrap());
    eprintln!("f16 cache prefill: logits vs transformers {e:.2e}, vs stepping {d:.2e}");
    assert!(e <= 3e-2, "prefill logits: {e:e}");
    assert!(d <= 1e-2, "prefill vs stepping: {d:e}");
    drop(t);
    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(dir);
}

/// Q8_1 activations (or a rounded KV cache) perturb logits by ~1%: a different greedy choice is
/// accepted only where the reference's own top-2 margin is tiny (spec §11.5), judged on our logits
/// at that step.
fn assert_near_ties(got: &[u32], want: &[u32], logits: &[Vec<f32>]) {
    let refs = root().join("ref_thinker_q8.safetensors");
    let topv = common::read_safetensors_f32(&refs, "text.greedy_topk_values");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g != w {
            let margin = topv[i * 8] - topv[i * 8 + 1];
            let ours = logits[i][*w as usize];
            let best = logits[i][*g as usize];
            assert!(
                margin < 0.02 * topv[i * 8].abs().max(1.0) && best - ours < 0.05,
                "step {i}: token {g} vs reference {w} (reference top-2 margin {margin})"
            );
        }
    }
}

/// Batched prefill (matrix × matrix with Q8_1 activations, tiled causal attention, MoE over all
/// tokens): same logits and hidden states as transformers within the int-dot tolerance, whether
/// the prompt comes in one batch or two (the second starting at position 7).
#[test]
fn gpu_thinker_prefill_matches_transformers() {
    let (dir, file) = gguf("prefill");
    let m = ModelFile::open(&file).unwrap();
    let gpu = common::gpu();
    // Prefill multiplies matrices with Q8_1 activations: compare it with the int-dot decode path.
    let mut k = common::exact_kernels(gpu.clone());
    k.set_matvec_path(MatvecPath::IntDot).unwrap();
    let mut t = GpuThinker::load(k, &m, 64, |_, _| {}).unwrap();
    let manifest = common::read_json("models/tiny-real-vocab/manifest.json");
    let ids = common::ids(&manifest["prompts"]["text"]["ids"]);
    let refs = root().join("ref_thinker_q8.safetensors");
    let logits_ref = common::read_safetensors_f32(&refs, "text.logits_first");
    let want = common::read_safetensors_i32(&refs, "text.greedy_ids");
    let topv = common::read_safetensors_f32(&refs, "text.greedy_topk_values");

    let next_a = t.prefill(&ids).unwrap();
    assert_eq!(t.len() as usize, ids.len());
    let la = t.logits().unwrap();
    let (hs0, hs_acc, accept) = t.hidden_states().unwrap();
    t.reset().unwrap();
    let _ = t.prefill(&ids[..7]).unwrap();
    let next_b = t.prefill(&ids[7..]).unwrap();
    let lb = t.logits().unwrap();
    let (e_a, e_b, e_ab) = (rel(&la, &logits_ref), rel(&lb, &logits_ref), rel(&lb, &la));
    eprintln!("prefill logits: one batch {e_a:.2e}, two batches {e_b:.2e}, between them {e_ab:.2e}");
    assert!(e_a <= 2e-2 && e_b <= 2e-2, "prefill logits: {e_a:e}, {e_b:e}");
    assert!(e_ab <= 1e-4, "one batch vs two: {e_ab:e}");
    assert_eq!(next_a, next_b);
    if next_a != want[0] as u32 {
        let margin = topv[0] - topv[1];
        assert!(
            margin < 0.02 * topv[0].abs().max(1.0),
            "first token {next_a} vs reference {} (margin {margin})",
            want[0]
        );
    }
    let e0 = rel(&hs0, &common::read_safetensors_f32(&refs, "text.hs0"));
    let ea = rel(&hs_acc, &common::read_safetensors_f32(&refs, &format!("text.hs{accept}")));
    eprintln!("prefill hidden states: hs0 {e0:.2e}, hs{accept} {ea:.2e}");
    // The same positions stepped one by one through the decode path (also int-dot).
    t.reset().unwrap();
    for &id in &ids {
        t.step(id, false).unwrap();
    }
    let ls = t.logits().unwrap();
    let (_, hs_step, _) = t.hidden_states().unwrap();
    let (dl, dh) = (rel(&la, &ls), rel(&hs_acc, &hs_step));
    eprintln!("prefill vs stepping: logits {dl:.2e}, hs{accept} {dh:.2e}");
    assert!(dl <= 1e-5 && dh <= 1e-5, "prefill and stepping differ: logits {dl:e}, hs {dh:e}");
    assert!(e0 < 1e-6 && ea < 2e-2, "hidden states: hs0 {e0:e}, hs{accept} {ea:e}");
    drop(t);
    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(dir);
}

/// `generate` records one decode step and replays it for every token (position and cache length
/// read from GPU buffers): its greedy output equals token-by-token stepping on both paths.
/// (Free-running parity with transformers is not asserted: the batched prefill's Q8_1 activations
/// move the state by ~1e-2, enough to flip this random model's near-tied tokens after ~9 steps;
/// teacher-forced parity is checked above.)
#[test]
fn replayed_generation_matches() {
    let (dir, file) = gguf("replay");
    let m = ModelFile::open(&file).unwrap();
    let manifest = common::read_json("models/tiny-real-vocab/manifest.json");
    let ids = common::ids(&manifest["prompts"]["text"]["ids"]);
    let want = vec![0; 16];
    for path in [MatvecPath::Float, MatvecPath::IntDot] {
        let gpu = common::gpu();
        let mut k = common::exact_kernels(gpu.clone());
        k.set_matvec_path(path).unwrap();
        let mut t = GpuThinker::load(k, &m, 64, |_, _| {}).unwrap();
        let replayed = t.generate(&ids, want.len(), &[], |_| true).unwrap();
        assert_eq!(t.len() as usize, ids.len() + want.len() - 1);
        t.reset().unwrap();
        let mut stepped = vec![t.prefill(&ids).unwrap()];
        while stepped.len() < want.len() {
            let last = *stepped.last().unwrap();
            stepped.push(t.step(last, false).unwrap().0);
        }
        assert_eq!(replayed, stepped, "{path:?}: replayed vs stepped");
        // Replay keeps two steps queued: stopping early (callback, stop token) must roll the
        // queued step back, so a later turn continues exactly where the stepping path would.
        t.reset().unwrap();
        let mut seen = 0;
        let part = t
            .generate(&ids, want.len(), &[], |_| {
                seen += 1;
                seen < 5
            })
            .unwrap();
        assert_eq!(part, replayed[..5], "{path:?}: stopped by the callback");
        assert_eq!(t.len() as usize, ids.len() + 4, "{path:?}: positions after a stop");
        let rest = t.generate(&[part[4]], want.len() - 5, &[], |_| true).unwrap();
        assert_eq!(rest, replayed[5..], "{path:?}: continued after a stop");
        t.reset().unwrap();
        let stop = replayed[3];
        let upto = t.generate(&ids, want.len(), &[stop], |_| true).unwrap();
        let first = replayed.iter().position(|&x| x == stop).unwrap();
        assert_eq!(upto, replayed[..=first], "{path:?}: stop token");
        // The repetition penalty reads the history the GPU appends to: replay and stepping agree.
        let pen = qwen3_omni_vk::SampleParams { repetition_penalty: 1.5, ..Default::default() };
        t.reset().unwrap();
        t.set_sampling(pen);
        let replayed_pen = t.generate(&ids, want.len(), &[], |_| true).unwrap();
        t.reset().unwrap();
        let mut stepped_pen = vec![t.prefill(&ids).unwrap()];
        while stepped_pen.len() < want.len() {
            let last = *stepped_pen.last().unwrap();
            stepped_pen.push(t.step(last, false).unwrap().0);
        }
        assert_eq!(replayed_pen, stepped_pen, "{path:?}: with a repetition penalty");
        // Sampled generation is replayed too (the RNG step is read from the GPU): the same draws
        // as stepping, also when a second turn continues after the first (steps counted alike).
        let samp =
            qwen3_omni_vk::SampleParams { temperature: 1.5, top_k: 50, top_p: 0.98, seed: 11, ..Default::default() };
        let mut runs = Vec::new();
        for replay in [true, false] {
            t.reset().unwrap();
            t.set_sampling(samp);
            let mut turns = Vec::new();
            for (turn, prompt) in [&ids[..], &ids[..3]].into_iter().enumerate() {
                if replay {
                    turns.push(t.generate(prompt, 8, &[], |_| true).unwrap());
                } else {
                    let mut out = vec![t.prefill(prompt).unwrap()];
                    while out.len() < 8 {
                        let last = *out.last().unwrap();
                        out.push(t.step(last, false).unwrap().0);
                    }
                    turns.push(out);
                }
                assert_eq!(t.len() as usize, ids.len() + 7 + turn * (3 + 7), "{path:?}: positions");
            }
            runs.push(turns);
        }
        assert_eq!(runs[0], runs[1], "{path:?}: sampled, replayed vs stepped");
        // Not greedy in disguise: at this temperature the draws leave the argmax path.
        assert_ne!(runs[0][0], replayed[..8], "{path:?}: sampling drew the greedy tokens");
        drop(t);
        // Filling the context exactly: the last position's token is still read back, then the
        // next feed is refused with ContextFull (no read past the history).
        let mut k = common::exact_kernels(gpu.clone());
        k.set_matvec_path(path).unwrap();
        let ctx = ids.len() as u32 + 4;
        let mut t = GpuThinker::load(k, &m, ctx, |_, _| {}).unwrap();
        let mut seen = Vec::new();
        let e = t.generate(&ids, want.len(), &[], |x| {
            seen.push(x);
            true
        });
        assert!(matches!(e, Err(GenError::ContextFull { .. })), "{path:?}: {e:?}");
        assert_eq!(seen, replayed[..5], "{path:?}: tokens up to a full context");
        assert_eq!(t.len(), ctx);
        drop(t);
        common::assert_clean(&gpu);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// The decode-attention variants (norm/RoPE/store by q/k/v's workgroups, the default; three
/// dispatches; one dispatch with the merge by the last workgroup; the norm/RoPE/store in the
/// attention kernel's prologue and the merge a second dispatch) give the same greedy tokens, with
/// short and long caches.
#[test]
fn attention_modes_agree() {
    use qwen3_omni::thinker::gpu::AttnMode;
    let (dir, file) = gguf("caches");
    let m = ModelFile::open(&file).unwrap();
    let manifest = common::read_json("models/tiny-real-vocab/manifest.json");
    let ids = common::ids(&manifest["prompts"]["text"]["ids"]);
    let gpu = common::gpu();
    // f32 at a short and a long cache; f16 (every mode rounds its keys and values alike) short.
    for (cache, ctxs) in [(CacheType::F32, &[64u32, 2100][..]), (CacheType::F16, &[64][..])] {
        let mut outs = Vec::new();
        for &ctx in ctxs {
            let mut k = common::kernels_with_cache(gpu.clone(), cache);
            k.set_matvec_path(MatvecPath::Float).unwrap();
            let mut t = GpuThinker::load(k, &m, ctx, |_, _| {}).unwrap();
            for mode in [AttnMode::SplitHeads, AttnMode::Split, AttnMode::Fused, AttnMode::Prologue] {
                t.reset().unwrap();
                t.set_attention_mode(Some(mode));
                outs.push((ctx, mode, t.generate(&ids, 12, &[], |_| true).unwrap()));
            }
        }
        for (ctx, mode, out) in &outs[1..] {
            assert_eq!(out, &outs[0].2, "{cache}: {mode:?} with a cache of {ctx} vs the default with 64");
        }
    }
    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(dir);
}
