//! GPU sampling (`Kernels::sample`) against a CPU reference of the same algorithm and RNG, with the
//! validation layer on: greedy = argmax, exact token equality wherever the draw is not within
//! rounding of a cumulative-probability boundary, empirical frequencies under top-k and top-p,
//! the repetition penalty, the suppressed range, and argument errors.

mod common;

use common::{assert_clean, kernels};
use qwen3_omni_vk::reference::Rng;
use qwen3_omni_vk::vk_runtime::{Buffer, MemoryIntent};
use qwen3_omni_vk::SampleArgs;
use qwen3_omni_vk::{sample_uniform, Kernels, SampleParams, Suppress, SAMPLE_MAX_K};

/// Order-preserving key of the GPU selection (NaN lowest).
fn fkey(f: f32) -> u32 {
    if f.is_nan() {
        0
    } else if f.to_bits() & 0x8000_0000 != 0 {
        !f.to_bits()
    } else {
        f.to_bits() | 0x8000_0000
    }
}

/// The prepared logits: suppress, penalty (once per distinct id), temperature, with the same f32
/// multiplies as glsl/sample_prep.comp.
fn prep_ref(logits: &[f32], prev: &[u32], p: &SampleParams) -> Vec<f32> {
    let n = logits.len() as u32;
    let inv_t = if p.temperature == 0.0 { 1.0 } else { 1.0 / p.temperature };
    let sup = |i: u32| p.suppress.is_some_and(|s| i >= s.start && i < s.end && Some(i) != s.allow);
    let mut z: Vec<f32> =
        logits.iter().enumerate().map(|(i, &l)| if sup(i as u32) { f32::NEG_INFINITY } else { l * inv_t }).collect();
    if p.repetition_penalty != 1.0 {
        let inv_pen = 1.0 / p.repetition_penalty;
        for &t in prev {
            if t < n && !sup(t) {
                let l = logits[t as usize];
                let v = if l > 0.0 { l * inv_pen } else { l * p.repetition_penalty };
                z[t as usize] = v * inv_t;
            }
        }
    }
    z
}

/// The reference token and the margin of the decision: the smallest distance (relative to the
/// total mass of the candidates) between the draw target or the top-p threshold and a cumulative
/// sum. Greedy decisions have margin infinity.
fn sample_ref(logits: &[f32], prev: &[u32], p: &SampleParams) -> (u32, f64) {
    let z = prep_ref(logits, prev, p);
    if p.temperature == 0.0 {
        let best = z.iter().enumerate().fold(None, |b: Option<(usize, f32)>, (i, &v)| match b {
            Some((_, bv)) if v.partial_cmp(&bv) != Some(std::cmp::Ordering::Greater) => b,
            _ if v.is_nan() => b,
            _ => Some((i, v)),
        });
        return (best.map_or(0, |b| b.0) as u32, f64::INFINITY);
    }
    let k = (if p.top_k == 0 { SAMPLE_MAX_K } else { p.top_k } as usize).min(z.len());
    let mut order: Vec<u32> = (0..z.len() as u32).collect();
    order.sort_by(|&a, &b| fkey(z[b as usize]).cmp(&fkey(z[a as usize])).then(a.cmp(&b)));
    order.truncate(k);
    let z0 = z[order[0] as usize];
    if z0.is_nan() || z0 == f32::NEG_INFINITY {
        return (order[0], f64::INFINITY);
    }
    let mut c = Vec::with_capacity(k);
    let mut acc = 0.0f64;
    for &i in &order {
        let v = z[i as usize];
        if !v.is_nan() {
            acc += (v as f64 - z0 as f64).exp();
        }
        c.push(acc);
    }
    let s = c[k - 1];
    let mut margin = f64::INFINITY;
    let m = if p.top_p < 1.0 {
        let thr = p.top_p as f64 * s;
        margin = c.iter().map(|&ci| (ci - thr).abs() / s).fold(margin, f64::min);
        (1 + c.iter().filter(|&&ci| ci < thr).count()).min(k)
    } else {
        k
    };
    let target = sample_uniform(p.seed, p.step) as f64 * c[m - 1];
    margin = c[..m].iter().map(|&ci| (ci - target).abs() / s).fold(margin, f64::min);
    let pick = c[..m].iter().filter(|&&ci| ci <= target).count().min(m - 1);
    (order[pick], margin)
}

/// Runs one batch of samples (one output buffer each) and returns the tokens.
fn run(k: &Kernels, logits: &Buffer, vocab: u32, prev: &Buffer, n_prev: u32, ps: &[SampleParams]) -> Vec<u32> {
    let g = k.gpu();
    let sb = g.buffer("sample scratch", Kernels::sample_scratch_bytes(vocab), MemoryIntent::Scratch).unwrap();
    let outs: Vec<Buffer> = ps.iter().map(|_| g.buffer("token", 4, MemoryIntent::Readback).unwrap()).collect();
    let mut rec = g.recorder(false).unwrap();
    for (p, ob) in ps.iter().zip(&outs) {
        k.sample(&mut rec, SampleArgs { logits, vocab, prev, n_prev, scratch: &sb, out: ob }, p).unwrap();
    }
    rec.submit().unwrap();
    outs.iter().map(|ob| ob.read_vec::<u32>().unwrap()[0]).collect()
}

#[test]
fn temperature_zero_is_argmax() {
    let k = kernels();
    let g = k.gpu();
    let n_max = 152_064usize;
    let mut cases: Vec<(String, Vec<f32>, u32)> = Vec::new();
    for (i, &n) in [1usize, 10, 1000, 1025, n_max].iter().enumerate() {
        let x = Rng::new(700 + i as u64).vec(n, 10.0);
        let want = x.iter().enumerate().fold(0, |b, (j, &v)| if v > x[b] { j } else { b }) as u32;
        cases.push((format!("random n={n}"), x, want));
    }
    let mut x = Rng::new(710).vec(n_max, 1.0);
    for &j in &[151_000usize, 77_777, 5_000, 1_029, 1_027] {
        x[j] = 3.5;
    }
    cases.push(("ties across workgroups".into(), x, 1_027));
    let mut x = Rng::new(711).vec(300, 1.0);
    for &j in &[299usize, 64, 9, 8] {
        x[j] = 2.0;
    }
    cases.push(("ties within a workgroup".into(), x, 8));
    cases.push(("all equal".into(), vec![0.25; 5000], 0));
    let mut x = Rng::new(712).vec(3000, 1.0);
    x[10] = f32::NAN;
    x[1700] = 7.0;
    cases.push(("NaN never wins".into(), x, 1700));
    let prev = g.buffer_from("prev", &[0u32], MemoryIntent::Upload).unwrap();
    for (what, x, want) in &cases {
        let lb = g.buffer_from("logits", x, MemoryIntent::Upload).unwrap();
        // Greedy ignores top-k, top-p and the seed.
        let ps = [SampleParams::default(), SampleParams { top_k: 3, top_p: 0.5, seed: 99, ..SampleParams::default() }];
        let got = run(&k, &lb, x.len() as u32, &prev, 0, &ps);
        assert_eq!(got, vec![*want; 2], "greedy {what}");
        assert_eq!(sample_ref(x, &[], &ps[0]).0, *want, "CPU reference, {what}");
        // The logits are only read.
        assert_eq!(
            lb.read_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "logits untouched, {what}"
        );
    }
    assert_clean(g);
}

#[test]
fn matches_cpu_reference_with_same_rng() {
    let k = kernels();
    let g = k.gpu();
    let d = SampleParams::default();
    let configs = [
        SampleParams { temperature: 0.7, ..d },
        SampleParams { temperature: 1.0, top_k: 40, top_p: 0.9, ..d },
        SampleParams { temperature: 0.8, top_p: 0.5, ..d },
        SampleParams { temperature: 1.3, top_k: 1024, top_p: 0.95, repetition_penalty: 1.3, ..d },
        SampleParams { temperature: 2.0, top_k: 7, repetition_penalty: 0.8, ..d },
        SampleParams { temperature: 1.0, top_k: 1, ..d },
    ];
    let (mut checked, mut skipped) = (0usize, 0usize);
    // (vocab, draws per configuration, logits rounded to a few levels: ties at the top-k threshold,
    // where the lowest indices are kept)
    let sets = [
        (10usize, 40u32, false),
        (1000, 40, false),
        (20_000, 3, false),
        (152_064, 1, false),
        (1000, 20, true),
        (152_064, 1, true),
    ];
    for (vi, &(vocab, draws, tied)) in sets.iter().enumerate() {
        let mut rng = Rng::new(800 + vi as u64);
        let mut logits = rng.vec(vocab, 4.0);
        if tied {
            logits.iter_mut().for_each(|v| *v = (*v * 2.0).round() / 2.0);
        }
        let prev: Vec<u32> = (0..24)
            .map(|j| if j % 6 == 5 { vocab as u32 + 3 } else { (rng.next_u64() % vocab as u64) as u32 })
            .collect();
        let lb = g.buffer_from("logits", &logits, MemoryIntent::Upload).unwrap();
        let pb = g.buffer_from("prev", &prev, MemoryIntent::Upload).unwrap();
        let mut ps = Vec::new();
        for (ci, c) in configs.iter().enumerate() {
            for s in 0..draws {
                let seed = (rng.next_u64() >> (s % 3 * 16)) ^ ci as u64;
                ps.push(SampleParams { seed, step: s * 7 + ci as u32, ..*c });
            }
        }
        let got = run(&k, &lb, vocab as u32, &pb, prev.len() as u32, &ps);
        for (p, &t) in ps.iter().zip(&got) {
            let (want, margin) = sample_ref(&logits, &prev, p);
            if margin < 1e-5 {
                skipped += 1;
                continue;
            }
            checked += 1;
            assert_eq!(t, want, "vocab {vocab}, {p:?}: GPU token {t}, reference {want} (margin {margin:.2e})");
        }
    }
    println!("checked {checked} draws, skipped {skipped} within 1e-5 of a boundary");
    assert!(skipped * 20 <= checked, "too many draws near a boundary: {skipped} of {}", checked + skipped);
    assert_clean(g);
}

/// Empirical frequencies over 2000 seeds against the renormalised kept probabilities.
fn frequencies(k: &Kernels, logits: &[f32], p: SampleParams) -> Vec<f64> {
    let g = k.gpu();
    let lb = g.buffer_from("logits", logits, MemoryIntent::Upload).unwrap();
    let prev = g.buffer_from("prev", &[0u32], MemoryIntent::Upload).unwrap();
    let n = 2000u64;
    let ps: Vec<SampleParams> =
        (0..n).map(|s| SampleParams { seed: s * 0x1_0000_0001 + 5, step: s as u32 % 3, ..p }).collect();
    let got = run(k, &lb, logits.len() as u32, &prev, 0, &ps);
    let mut f = vec![0.0; logits.len()];
    for (p, &t) in ps.iter().zip(&got) {
        assert_eq!(t, sample_ref(logits, &[], p).0, "{p:?}");
        f[t as usize] += 1.0 / n as f64;
    }
    f
}

#[test]
fn top_k_and_top_p_frequencies() {
    let k = kernels();
    let logits = [0.5f32, 2.0, -1.0, 1.5, 0.0, 1.0, -0.5, -1.5];
    let e: Vec<f64> = logits.iter().map(|&l| (l as f64).exp()).collect();
    let d = SampleParams { temperature: 1.0, ..SampleParams::default() };
    // top_k = 3 keeps ids 1, 3, 5; top_p = 0.6 keeps 1, 3 (0.40 + 0.24 ≥ 0.6).
    for (what, p, kept) in [
        ("top_k 3", SampleParams { top_k: 3, ..d }, vec![1usize, 3, 5]),
        ("top_p 0.6", SampleParams { top_p: 0.6, ..d }, vec![1, 3]),
    ] {
        let f = frequencies(&k, &logits, p);
        let mass: f64 = kept.iter().map(|&i| e[i]).sum();
        for (i, &fi) in f.iter().enumerate() {
            if kept.contains(&i) {
                let want = e[i] / mass;
                assert!((fi - want).abs() < 0.035, "{what}: id {i} frequency {fi:.3}, expected {want:.3}");
            } else {
                assert_eq!(fi, 0.0, "{what}: id {i} is outside the kept set");
            }
        }
    }
    assert_clean(k.gpu());
}

#[test]
fn repetition_penalty_and_suppress() {
    let k = kernels();
    let g = k.gpu();
    let d = SampleParams { repetition_penalty: 1.5, ..SampleParams::default() };
    // (logits, previous ids, expected greedy token)
    let cases: Vec<(Vec<f32>, Vec<u32>, u32)> = vec![
        // 2.0 / 1.5 = 1.33 < 1.5: the repeated best loses.
        (vec![1.0, 2.0, 1.5, -0.5], vec![1, 1, 3], 2),
        // Negative logits are multiplied: -0.9 · 1.5 = -1.35 < -1.0.
        (vec![-1.0, -0.9, -2.0], vec![1], 0),
        // Once per distinct id: 1.6 / 1.5 = 1.067 still beats 1.0 (1.6 / 2.25 would not).
        (vec![1.0, 1.6], vec![1, 1, 1, 1], 1),
        // Ids past the vocabulary are ignored.
        (vec![1.0, 1.6], vec![7, 100], 1),
    ];
    for (i, (x, prev, want)) in cases.iter().enumerate() {
        let lb = g.buffer_from("logits", x, MemoryIntent::Upload).unwrap();
        let pb = g.buffer_from("prev", prev, MemoryIntent::Upload).unwrap();
        // Greedy, and sampling restricted to one candidate: both see the penalised logits.
        let ps = [d, SampleParams { temperature: 0.9, top_k: 1, seed: 3, ..d }];
        let got = run(&k, &lb, x.len() as u32, &pb, prev.len() as u32, &ps);
        assert_eq!(got, vec![*want; 2], "case {i}");
        assert_eq!(sample_ref(x, prev, &d).0, *want, "CPU reference, case {i}");
        let none = run(&k, &lb, x.len() as u32, &pb, prev.len() as u32, &[SampleParams::default()]);
        assert_eq!(none[0], sample_ref(x, &[], &SampleParams::default()).0, "penalty 1 is off, case {i}");
    }
    // The Talker's rule: ids 2048..3072 never, except 2150 (its end of speech).
    let vocab = 3072usize;
    let mut x = Rng::new(900).vec(vocab, 1.0);
    x[2100] = 9.0; // suppressed best
    x[2150] = 8.0; // allowed
    x[17] = 7.0;
    let lb = g.buffer_from("logits", &x, MemoryIntent::Upload).unwrap();
    let pb = g.buffer_from("prev", &[2150u32], MemoryIntent::Upload).unwrap();
    let sup = Some(Suppress { start: 2048, end: 3072, allow: Some(2150) });
    let greedy = run(&k, &lb, vocab as u32, &pb, 0, &[SampleParams { suppress: sup, ..SampleParams::default() }]);
    assert_eq!(greedy[0], 2150);
    let all = Some(Suppress { start: 2048, end: 3072, allow: None });
    let greedy = run(&k, &lb, vocab as u32, &pb, 0, &[SampleParams { suppress: all, ..SampleParams::default() }]);
    assert_eq!(greedy[0], 17);
    let ps: Vec<SampleParams> = (0..200)
        .map(|s| SampleParams {
            temperature: 3.0,
            top_k: 50,
            repetition_penalty: 2.0,
            seed: s,
            suppress: sup,
            ..SampleParams::default()
        })
        .collect();
    let got = run(&k, &lb, vocab as u32, &pb, 1, &ps);
    for (p, &t) in ps.iter().zip(&got) {
        assert!(t < 2048 || t == 2150, "suppressed id {t} drawn");
        let (want, margin) = sample_ref(&x, &[2150], p);
        if margin >= 1e-5 {
            assert_eq!(t, want, "{p:?}");
        }
    }
    assert_clean(g);
}

#[test]
fn bad_arguments_name_the_parameter() {
    let k = kernels();
    let g = k.gpu();
    let lb = g.buffer_from("logits", &[0.5f32; 16], MemoryIntent::Upload).unwrap();
    let pb = g.buffer_from("prev", &[0u32], MemoryIntent::Upload).unwrap();
    let sb = g.buffer("scratch", Kernels::sample_scratch_bytes(16), MemoryIntent::Scratch).unwrap();
    let ob = g.buffer("token", 4, MemoryIntent::Readback).unwrap();
    let d = SampleParams { temperature: 1.0, ..SampleParams::default() };
    let cases: Vec<(SampleParams, u32, &str)> = vec![
        (SampleParams { top_p: 0.0, ..d }, 16, "top_p"),
        (SampleParams { top_p: -0.1, ..d }, 16, "top_p"),
        (SampleParams { top_p: 1.5, ..d }, 16, "top_p"),
        (SampleParams { top_p: f32::NAN, ..d }, 16, "top_p"),
        (SampleParams { temperature: -0.5, ..d }, 16, "temperature"),
        (SampleParams { temperature: f32::NAN, ..d }, 16, "temperature"),
        (SampleParams { top_k: SAMPLE_MAX_K + 1, ..d }, 16, "top_k"),
        (SampleParams { repetition_penalty: 0.0, ..d }, 16, "repetition_penalty"),
        (SampleParams { suppress: Some(Suppress { start: 10, end: 20, allow: None }), ..d }, 16, "suppress"),
        (d, 0, "vocab"),
    ];
    let mut rec = g.recorder(false).unwrap();
    for (p, vocab, name) in &cases {
        let e = k
            .sample(
                &mut rec,
                SampleArgs { logits: &lb, vocab: *vocab, prev: &pb, n_prev: 0, scratch: &sb, out: &ob },
                p,
            )
            .expect_err(name)
            .to_string();
        assert!(e.contains(name), "error for {name} does not name it: {e}");
    }
    drop(rec);
    assert_clean(g);
}

/// GPU time per dispatch of the sampler at the Thinker's vocabulary (no validation layer, for the
/// NVIDIA machine): `cargo test --test sample -- --ignored --nocapture`.
#[test]
#[ignore]
fn gpu_timing() {
    use qwen3_omni_vk::vk_runtime::{Gpu, GpuOptions};
    let g = Gpu::new(&GpuOptions { validation: false, ..GpuOptions::default() }).expect("a Vulkan device");
    let k = Kernels::new(g);
    let g = k.gpu();
    println!("device: {}", g.caps().name);
    let vocab = 152_064u32;
    let mut rng = Rng::new(1);
    let logits = rng.vec(vocab as usize, 6.0);
    let prev: Vec<u32> = (0..256).map(|_| (rng.next_u64() % vocab as u64) as u32).collect();
    let lb = g.buffer_from("logits", &logits, MemoryIntent::Upload).unwrap();
    let pb = g.buffer_from("prev", &prev, MemoryIntent::Upload).unwrap();
    let sb = g.buffer("scratch", Kernels::sample_scratch_bytes(vocab), MemoryIntent::Scratch).unwrap();
    let ob = g.buffer("token", 4, MemoryIntent::Readback).unwrap();
    let d = SampleParams::default();
    let cases = [
        ("greedy", d, 0u32),
        ("greedy + penalty (256 ids)", SampleParams { repetition_penalty: 1.1, ..d }, 256),
        (
            "T 0.7, top_k 40, top_p 0.9 + penalty",
            SampleParams { temperature: 0.7, top_k: 40, top_p: 0.9, repetition_penalty: 1.1, ..d },
            256,
        ),
        ("T 1.0, top_k 0 (1024), top_p 0.95", SampleParams { temperature: 1.0, top_p: 0.95, ..d }, 0),
    ];
    for (what, p, n_prev) in cases {
        let reps = 50u32;
        let mut rec = g.recorder(true).unwrap();
        for s in 0..reps {
            k.sample(
                &mut rec,
                SampleArgs { logits: &lb, vocab, prev: &pb, n_prev, scratch: &sb, out: &ob },
                &SampleParams { step: s, ..p },
            )
            .unwrap();
        }
        let mut batch = rec.finish().unwrap();
        let mut per: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        let mut totals = Vec::new();
        for _ in 0..5 {
            let prof = batch.submit().unwrap();
            totals.push(prof.total_ns.unwrap_or(0.0) / reps as f64);
            for t in prof.kernels {
                per.entry(t.name).or_default().push(t.ns);
            }
        }
        totals.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut line = format!("{what}: {:.1} µs per token;", totals[2] / 1e3);
        for (name, mut v) in per {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            line += &format!(" {name} {:.1} µs", v[v.len() / 2] / 1e3);
        }
        println!("{line}");
    }
}

/// `sample_stepped` (RNG step = push step + a GPU-held value): one recorded batch replayed with
/// different step values draws exactly the tokens `sample` draws with the summed steps.
#[test]
fn stepped_replay_equals_pushed_steps() {
    let k = kernels();
    let g = k.gpu();
    let vocab = 2048u32;
    let logits = Rng::new(901).vec(vocab as usize, 3.0);
    let lb = g.buffer_from("logits", &logits, MemoryIntent::Upload).unwrap();
    let prev = g.buffer_from("prev", &[5u32, 9, 5], MemoryIntent::Upload).unwrap();
    let sb = g.buffer("sample scratch", Kernels::sample_scratch_bytes(vocab), MemoryIntent::Scratch).unwrap();
    let step = g.buffer("step", 4, MemoryIntent::Upload).unwrap();
    let out = g.buffer("token", 4, MemoryIntent::Readback).unwrap();
    let p = SampleParams {
        temperature: 1.0,
        top_k: 50,
        top_p: 0.8,
        repetition_penalty: 1.05,
        seed: 77,
        step: 3,
        ..SampleParams::default()
    };
    let mut rec = g.recorder(false).unwrap();
    k.sample_stepped(
        &mut rec,
        SampleArgs { logits: &lb, vocab, prev: &prev, n_prev: 3, scratch: &sb, out: &out },
        &p,
        &step,
    )
    .unwrap();
    let mut batch = rec.finish().unwrap();
    let values = [0u32, 1, 17, 1000, 123_456];
    let mut replayed = Vec::new();
    for &v in &values {
        step.write_slice(0, &[v]).unwrap();
        batch.submit().unwrap();
        replayed.push(out.read_vec::<u32>().unwrap()[0]);
    }
    drop(batch);
    let ps: Vec<SampleParams> = values.iter().map(|&v| SampleParams { step: p.step + v, ..p }).collect();
    let pushed = run(&k, &lb, vocab, &prev, 3, &ps);
    assert_eq!(replayed, pushed);
    assert!(replayed.iter().any(|&t| t != replayed[0]), "the draws should differ across steps: {replayed:?}");
    assert_clean(g);
}
