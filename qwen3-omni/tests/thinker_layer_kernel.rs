//! The persistent decode-layer kernel (`decode_layer.comp`: the work between two attentions as one
//! dispatch, its stages separated by grid barriers) against the per-stage fused dispatches and transformers, on
//! lavapipe with validation on: logits and hidden states at every step, greedy tokens, replayed
//! generation; and a grid barrier that times out reports an error instead of hanging.
//!
//! lavapipe runs the kernel with one workgroup (every grid barrier passes at once): it may run
//! several workgroups of a dispatch as coroutines of one thread that share one copy of the
//! shared memory, which breaks any kernel whose workgroups wait for each other. The
//! multi-workgroup barrier is checked on a real GPU (`bench-thinker --check-layer-kernel`,
//! docs/perf.md).

mod common;

use std::path::PathBuf;

use qwen3_omni::model_file::ModelFile;
use qwen3_omni::thinker::gpu::{GenError, GpuThinker};
use qwen3_omni_vk::vk_runtime::Gpu;
use qwen3_omni_vk::{Kernels, MatvecPath};

fn root() -> PathBuf {
    common::tiny_real_vocab()
}

fn gguf(tag: &str) -> (PathBuf, PathBuf) {
    common::tiny_gguf("layer", tag)
}

use common::rel;

/// Teacher-forced stepping over the prompt and the reference's tokens: (greedy choice, logits) per
/// step and the hidden states of every position.
fn stepped(t: &mut GpuThinker, ids: &[u32], forced: &[u32]) -> (Vec<u32>, Vec<Vec<f32>>, Vec<f32>) {
    t.reset().unwrap();
    let mut got = Vec::new();
    let mut logits = Vec::new();
    for (i, &id) in ids.iter().chain(forced).enumerate() {
        let next = t.step(id, false).unwrap().0;
        if i + 1 >= ids.len() {
            got.push(next);
            logits.push(t.logits().unwrap());
        }
    }
    let (_, hs, _) = t.hidden_states().unwrap();
    (got, logits, hs)
}

fn load(gpu: &Gpu, m: &ModelFile, path: MatvecPath, groups: Option<u32>, ctx: u32) -> GpuThinker {
    let mut k = Kernels::new(gpu.clone());
    k.set_matvec_path(path).unwrap();
    k.set_decode_layer_groups(groups);
    GpuThinker::load(k, m, ctx, |_, _| {}).unwrap()
}

#[test]
fn layer_kernel_matches_per_stage_dispatches_and_transformers() {
    let (dir, file) = gguf("match");
    let m = ModelFile::open(&file).unwrap();
    let manifest = common::read_json("models/tiny-real-vocab/manifest.json");
    let ids = common::ids(&manifest["prompts"]["text"]["ids"]);
    let refs = root().join("ref_thinker_q8.safetensors");
    let want: Vec<u32> = common::read_safetensors_i32(&refs, "text.greedy_ids").iter().map(|&v| v as u32).collect();
    let forced = &want[..want.len() - 1];
    let gpu = common::gpu();
    for path in [MatvecPath::Float, MatvecPath::IntDot] {
        let mut t = load(&gpu, &m, path, Some(1), 64);
        assert!(!t.set_layer_kernel(false).unwrap());
        let (g0, l0, hs0) = stepped(&mut t, &ids, forced);
        for groups in [1u32] {
            let mut t = load(&gpu, &m, path, Some(groups), 64);
            assert!(t.set_layer_kernel(true).unwrap(), "{path:?}: the layer kernel should cover the fixture model");
            let (g1, l1, hs1) = stepped(&mut t, &ids, forced);
            let worst = l0.iter().zip(&l1).map(|(a, b)| rel(b, a)).fold(0.0, f64::max);
            let ehs = rel(&hs1, &hs0);
            eprintln!("{path:?}, {groups} workgroup(s): logits vs per-stage dispatches, worst step {worst:.2e}; hidden states {ehs:.2e}");
            assert!(worst <= 1e-5, "{path:?}, {groups} workgroups: logits differ by {worst:e}");
            assert!(ehs <= 1e-5, "{path:?}, {groups} workgroups: hidden states differ by {ehs:e}");
            assert_eq!(g1, g0, "{path:?}, {groups} workgroups: greedy tokens");
            if path == MatvecPath::Float {
                assert_eq!(g1, want, "{path:?}: greedy tokens (teacher-forced) vs transformers");
            }
        }
    }
    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(dir);
}

/// Replay (two steps queued, position and cache length advanced on the GPU) with the layer kernel:
/// the same tokens as without it, and a stop rolls back as before.
#[test]
fn layer_kernel_replay_matches() {
    let (dir, file) = gguf("replay");
    let m = ModelFile::open(&file).unwrap();
    let manifest = common::read_json("models/tiny-real-vocab/manifest.json");
    let ids = common::ids(&manifest["prompts"]["text"]["ids"]);
    let gpu = common::gpu();
    for path in [MatvecPath::Float, MatvecPath::IntDot] {
        let mut t = load(&gpu, &m, path, Some(1), 64);
        t.set_layer_kernel(false).unwrap();
        let plain = t.generate(&ids, 16, &[], |_| true).unwrap();
        t.reset().unwrap();
        assert!(t.set_layer_kernel(true).unwrap());
        let with = t.generate(&ids, 16, &[], |_| true).unwrap();
        assert_eq!(with, plain, "{path:?}: replay with the layer kernel");
        t.reset().unwrap();
        let stop = plain[6];
        let upto = t.generate(&ids, 16, &[stop], |_| true).unwrap();
        let first = plain.iter().position(|&x| x == stop).unwrap();
        assert_eq!(upto, plain[..=first], "{path:?}: stop token");
        let rest = t.generate(&[stop], 16 - upto.len(), &[], |_| true).unwrap();
        assert_eq!(rest, plain[upto.len()..], "{path:?}: continued after a stop");
    }
    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(dir);
}

/// A grid barrier that gives up (here: after 0 polls, with 64 workgroups someone always waits)
/// makes the step report `LayerKernel` (no hang, no garbage tokens); the kernel is then off and
/// generation works on the per-stage path.
#[test]
fn layer_kernel_barrier_timeout_is_an_error() {
    let (dir, file) = gguf("resident");
    let m = ModelFile::open(&file).unwrap();
    let manifest = common::read_json("models/tiny-real-vocab/manifest.json");
    let ids = common::ids(&manifest["prompts"]["text"]["ids"]);
    let gpu = common::gpu();
    let mut k = Kernels::new(gpu.clone());
    k.set_matvec_path(MatvecPath::Float).unwrap();
    k.set_decode_layer_groups(Some(64));
    k.set_decode_layer_spin_cap(Some(0));
    let mut t = GpuThinker::load(k, &m, 64, |_, _| {}).unwrap();
    assert!(t.set_layer_kernel(true).unwrap());
    let t0 = std::time::Instant::now();
    let e = t.step(ids[0], false);
    eprintln!("64 workgroups, no polls: {e:?} after {:.1} s", t0.elapsed().as_secs_f64());
    assert!(matches!(e, Err(GenError::LayerKernel { groups: 64 })), "{e:?}");
    assert!(!t.layer_kernel());
    t.reset().unwrap();
    let out = t.generate(&ids, 4, &[], |_| true).unwrap();
    assert_eq!(out.len(), 4);
    drop(t);
    common::assert_clean(&gpu);
    let _ = std::fs::remove_dir_all(dir);
}
