//! The attention-side kernels (embedding gather, RoPE / MRoPE, KV append, decode and prefill
//! attention, argmax) against f64 CPU references on random (never zero) data, ragged sizes
//! included, with the validation layer on.

mod common;

use common::{assert_clean, kernels};
use qwen3_omni_vk::reference::{self as r, Rng};
use qwen3_omni_vk::vk_runtime::MemoryIntent;
use qwen3_omni_vk::MatvecHead;
use qwen3_omni_vk::{
    AttnDecode, AttnDecodeAt, AttnDecodeFused, AttnPrefill, Heads, KvAppend, KvCache, KvStore, KvWrite, QkNormRope,
    Rope, RopeRows,
};
use qwen3_omni_vk::{CacheType, HeadOut, Kernels, Matrix, MatvecPath, WType};

/// The validation-layer GPU of `common` (always in CI); `QWEN3VK_TEST_NO_VALIDATION=1` runs the
/// same checks on a machine without the layer (the NVIDIA test machine).
fn test_kernels() -> Kernels {
    if std::env::var_os("QWEN3VK_TEST_NO_VALIDATION").is_some() {
        use qwen3_omni_vk::vk_runtime::{Gpu, GpuOptions};
        Kernels::new(Gpu::new(&GpuOptions::default()).unwrap())
    } else {
        kernels()
    }
}

/// `assert_clean` wherever the validation layer is on.
fn check_clean(g: &qwen3_omni_vk::vk_runtime::Gpu) {
    if g.validation().is_some() || std::env::var_os("QWEN3VK_TEST_NO_VALIDATION").is_none() {
        assert_clean(g);
    }
}

#[test]
fn embed_q8_0p_gathers_rows() {
    let k = test_kernels();
    let g = k.gpu();
    for (i, &(rows, cols, n)) in
        [(1usize, 32usize, 1usize), (7, 96, 5), (50, 2048, 3), (300, 64, 257)].iter().enumerate()
    {
        let mut rng = Rng::new(100 + i as u64);
        let w = rng.vec(rows * cols, 1.5);
        let (bytes, deq) = r::quantize_matrix_q8_0(&w, cols);
        let planar = qwen3_omni_vk::layout::repack_q8_0_planar(&bytes, rows, cols).unwrap();
        // The table sits 256 bytes into its buffer (behind random bytes) to exercise the offset.
        let mut buf: Vec<u8> = (0..256).map(|_| rng.next_u64() as u8).collect();
        buf.extend_from_slice(&planar);
        // Ids: random rows, plus out-of-range ids (→ zero rows) where there are enough tokens.
        let ids: Vec<u32> =
            (0..n)
                .map(|t| {
                    if n > 2 && t % 5 == 2 {
                        rows as u32 + (t as u32) * 3
                    } else {
                        (rng.next_u64() % rows as u64) as u32
                    }
                })
                .collect();
        let tb = g.buffer_from("table", &buf, MemoryIntent::Weights).unwrap();
        let ib = g.buffer_from("ids", &ids, MemoryIntent::Upload).unwrap();
        let yb = g.buffer("y", (n * cols) as u64 * 4, MemoryIntent::Readback).unwrap();
        let table = Matrix { buf: &tb, offset: 256, wtype: WType::Q8_0Planar, rows: rows as u32, cols: cols as u32 };
        let mut rec = g.recorder(false).unwrap();
        k.embed_q8_0p(&mut rec, table, &ib, n as u32, &yb).unwrap();
        rec.submit().unwrap();
        let deq = &deq;
        let want: Vec<f64> = ids
            .iter()
            .flat_map(|&id| {
                let id = id as usize;
                (0..cols).map(move |c| if id < rows { deq[id * cols + c] as f64 } else { 0.0 })
            })
            .collect();
        r::check_close(&format!("embed {rows}×{cols} n={n}"), &yb.read_vec::<f32>().unwrap(), &want, 0.0, 1e-7)
            .unwrap();
    }
    check_clean(g);
}

/// f64 rotate-half MRoPE; `pos` is `[3, n]` (t row, h row, w row).
fn rope_ref(x: &[f32], pos: &[u32], n: usize, heads: usize, hd: usize, theta: f64, sec: [u32; 3]) -> Vec<f64> {
    let half = hd / 2;
    let mut y: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for t in 0..n {
        for h in 0..heads {
            let o = (t * heads + h) * hd;
            for j in 0..half {
                let axis = if j % 3 == 1 && j < 3 * sec[1] as usize {
                    1
                } else if j % 3 == 2 && j < 3 * sec[2] as usize {
                    2
                } else {
                    0
                };
                let a = pos[axis * n + t] as f64 * theta.powf(-2.0 * j as f64 / hd as f64);
                let (s, c) = a.sin_cos();
                let (x0, x1) = (x[o + j] as f64, x[o + j + half] as f64);
                y[o + j] = x0 * c - x1 * s;
                y[o + j + half] = x1 * c + x0 * s;
            }
        }
    }
    y
}

#[test]
fn rope_mrope_matches_f64() {
    let k = test_kernels();
    let g = k.gpu();
    // (tokens, heads, head_dim, section, same position on all axes, largest position)
    #[allow(clippy::type_complexity)]
    let cases: &[(usize, usize, usize, [u32; 3], bool, u32)] = &[
        (1, 1, 128, [24, 20, 20], true, 5),
        (7, 3, 128, [24, 20, 20], true, 4096),
        (33, 4, 128, [24, 20, 20], false, 4096),
        (5, 2, 64, [8, 12, 12], false, 300),
        (9, 3, 16, [2, 3, 3], false, 1000),
        (4, 2, 32, [16, 0, 0], false, 2000),
        (3, 2, 40, [4, 6, 6], false, 60000),
    ];
    let theta = 1.0e6f32;
    for (ci, &(n, heads, hd, sec, same, pmax)) in cases.iter().enumerate() {
        let mut rng = Rng::new(200 + ci as u64);
        let x = rng.vec(n * heads * hd, 2.0);
        let mut pos: Vec<u32> = (0..3 * n).map(|_| (rng.next_u64() % (pmax as u64 + 1)) as u32).collect();
        if same {
            let t: Vec<u32> = pos[..n].to_vec();
            for a in 1..3 {
                pos[a * n..(a + 1) * n].copy_from_slice(&t);
            }
        }
        let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
        let x1d = g.buffer_from("x 1-D", &x, MemoryIntent::Upload).unwrap();
        let pb = g.buffer_from("pos", &pos, MemoryIntent::Upload).unwrap();
        let mut rec = g.recorder(false).unwrap();
        k.rope(
            &mut rec,
            RopeRows { x: &xb, pos: &pb, n_tokens: n as u32, n_heads: heads as u32, head_dim: hd as u32 },
            Rope { theta, mrope_section: sec },
        )
        .unwrap();
        k.rope(
            &mut rec,
            RopeRows { x: &x1d, pos: &pb, n_tokens: n as u32, n_heads: heads as u32, head_dim: hd as u32 },
            Rope { theta, mrope_section: [hd as u32 / 2, 0, 0] },
        )
        .unwrap();
        rec.submit().unwrap();
        let got: Vec<f32> = xb.read_vec().unwrap();
        let got1d: Vec<f32> = x1d.read_vec().unwrap();
        let want = rope_ref(&x, &pos, n, heads, hd, theta as f64, sec);
        let want1d = rope_ref(&x, &pos, n, heads, hd, theta as f64, [hd as u32 / 2, 0, 0]);
        // The f32 angle p·inv_freq carries a relative error of a few 1e-7, so the absolute angle
        // error grows with the position: allow (2e-6 + 4e-7·p) of the pair's size. A wrong
        // convention, frequency or axis is off by O(|x|).
        let half = hd / 2;
        let mut worst = 0.0f64;
        for (label, got, want) in [("mrope", &got, &want), ("1-D", &got1d, &want1d)] {
            for (i, (&gv, &wv)) in got.iter().zip(want.iter()).enumerate() {
                let (row, d) = (i / hd, i % hd);
                let j = d % half;
                let t = row / heads;
                let p = (0..3).map(|a| pos[a * n + t]).max().unwrap() as f64;
                let pair = x[row * hd + j].abs() as f64 + x[row * hd + j + half].abs() as f64;
                let err = (gv as f64 - wv).abs();
                let tol = pair * (2e-6 + 4e-7 * p) + 1e-6;
                worst = worst.max(err / tol);
                assert!(err <= tol, "rope {label} case {ci} ({n}×{heads}×{hd}, {sec:?}): [{i}] got {gv} want {wv} (err {err:e}, tol {tol:e})");
            }
        }
        eprintln!("rope case {ci} ({n}×{heads}×{hd}, {sec:?}, p ≤ {pmax}): worst error / tolerance {worst:.3}");
        if same {
            // t = h = w: interleaved MRoPE is exactly 1-D RoPE.
            assert_eq!(got, got1d, "MRoPE with equal axes differs from 1-D RoPE");
        }
    }
    check_clean(g);
}

#[test]
fn qk_norm_rope_matches_f64() {
    let k = test_kernels();
    let g = k.gpu();
    // (tokens, q heads, kv heads, head_dim, section, largest position)
    #[allow(clippy::type_complexity)]
    let cases: &[(usize, usize, usize, usize, [u32; 3], u32)] = &[
        (1, 32, 4, 128, [24, 20, 20], 4000),
        (7, 4, 2, 128, [24, 20, 20], 300),
        (5, 6, 3, 64, [8, 12, 12], 1000),
        (3, 2, 1, 16, [8, 0, 0], 50),
        (2, 3, 3, 300, [50, 50, 50], 20),
    ];
    let (theta, eps) = (1.0e6f32, 1e-6f32);
    for (ci, &(n, hq, hk, hd, sec, pmax)) in cases.iter().enumerate() {
        let mut rng = Rng::new(800 + ci as u64);
        let q = rng.vec(n * hq * hd, 3.0);
        let kx = rng.vec(n * hk * hd, 3.0);
        let qw = rng.vec(hd, 1.5);
        let kw = rng.vec(hd, 1.5);
        let pos: Vec<u32> = (0..3 * n).map(|_| (rng.next_u64() % (pmax as u64 + 1)) as u32).collect();
        let qb = g.buffer_from("q", &q, MemoryIntent::Upload).unwrap();
        let kb = g.buffer_from("k", &kx, MemoryIntent::Upload).unwrap();
        let qwb = g.buffer_from("q_norm", &qw, MemoryIntent::Weights).unwrap();
        let kwb = g.buffer_from("k_norm", &kw, MemoryIntent::Weights).unwrap();
        let pb = g.buffer_from("pos", &pos, MemoryIntent::Upload).unwrap();
        let mut rec = g.recorder(false).unwrap();
        let (n32, hq32, hk32, hd32) = (n as u32, hq as u32, hk as u32, hd as u32);
        k.qk_norm_rope(
            &mut rec,
            QkNormRope { q: &qb, k: &kb, q_w: &qwb, k_w: &kwb, pos: &pb, n_tokens: n32, eps },
            Heads { n_heads: hq32, n_kv: hk32, head_dim: hd32 },
            Rope { theta, mrope_section: sec },
        )
        .unwrap();
        rec.submit().unwrap();
        for (label, x, w, heads, buf) in [("q", &q, &qw, hq, &qb), ("k", &kx, &kw, hk, &kb)] {
            // f64 per-head RMSNorm, then the f64 RoPE reference on the normalised values.
            let normed: Vec<f64> = r::rms_norm(x, w, hd, eps);
            let normed32: Vec<f32> = normed.iter().map(|&v| v as f32).collect();
            let want = rope_ref(&normed32, &pos, n, heads, hd, theta as f64, sec);
            let got: Vec<f32> = buf.read_vec().unwrap();
            let half = hd / 2;
            for (i, (&gv, &wv)) in got.iter().zip(&want).enumerate() {
                let (row, d) = (i / hd, i % hd);
                let j = d % half;
                let t = row / heads;
                let p = (0..3).map(|a| pos[a * n + t]).max().unwrap() as f64;
                let pair = normed[row * hd + j].abs() + normed[row * hd + j + half].abs();
                let err = (gv as f64 - wv).abs();
                let tol = pair * (4e-6 + 4e-7 * p) + 1e-6;
                assert!(
                    err <= tol,
                    "qk_norm_rope {label} case {ci}: [{i}] got {gv} want {wv} (err {err:e}, tol {tol:e})"
                );
            }
        }
    }
    check_clean(g);
}

/// The replayable decode's fused q/k norm + RoPE + KV store writes exactly what qk_norm_rope
/// followed by kv_store writes (same arithmetic), at the GPU-read cache length, and drops a
/// position past the cache.
#[test]
fn qk_norm_rope_store_matches_unfused() {
    let k = test_kernels();
    let g = k.gpu();
    for (ci, &(hq, hk, hd, p0, max_len)) in
        [(8usize, 2usize, 128usize, 5u32, 9u32), (6, 3, 64, 3, 4), (4, 4, 16, 4, 4)].iter().enumerate()
    {
        let mut rng = Rng::new(860 + ci as u64);
        let q = rng.vec(hq * hd, 3.0);
        let kx = rng.vec(hk * hd, 3.0);
        let v = rng.vec(hk * hd, 3.0);
        let qw = rng.vec(hd, 1.5);
        let kw = rng.vec(hd, 1.5);
        let cache = rng.vec(max_len as usize * hk * hd, 1.0);
        let pos = [p0, p0 + 1, p0 + 2];
        let up = |n: &str, d: &[f32]| g.buffer_from(n, d, MemoryIntent::Upload).unwrap();
        let (qa, ka, qb, kb, vb) = (up("qa", &q), up("ka", &kx), up("qb", &q), up("kb", &kx), up("v", &v));
        let (qwb, kwb) = (up("q_norm", &qw), up("k_norm", &kw));
        let pb = g.buffer_from("pos", &pos, MemoryIntent::Upload).unwrap();
        let lb = g.buffer_from("cache_len", &[p0], MemoryIntent::Upload).unwrap();
        let (kca, vca, kcb, vcb) = (up("kca", &cache), up("vca", &cache), up("kcb", &cache), up("vcb", &cache));
        let (hq32, hk32, hd32) = (hq as u32, hk as u32, hd as u32);
        let (eps, theta, sec) = (1e-6f32, 1e6f32, [hd32 / 8, hd32 / 8, hd32 / 8]);
        let mut rec = g.recorder(false).unwrap();
        k.qk_norm_rope(
            &mut rec,
            QkNormRope { q: &qa, k: &ka, q_w: &qwb, k_w: &kwb, pos: &pb, n_tokens: 1, eps },
            Heads { n_heads: hq32, n_kv: hk32, head_dim: hd32 },
            Rope { theta, mrope_section: sec },
        )
        .unwrap();
        k.kv_store(
            &mut rec,
            KvStore { k_new: &ka, v_new: &vb, cache_len: &lb, n: 1, n_kv: hk32, head_dim: hd32, max_len },
            KvCache { k: &kca, v: &vca, ty: CacheType::F32 },
        )
        .unwrap();
        k.qk_norm_rope_store(
            &mut rec,
            QkNormRope { q: &qb, k: &kb, q_w: &qwb, k_w: &kwb, pos: &pb, n_tokens: 1, eps },
            KvWrite { v: &vb, k_cache: &kcb, v_cache: &vcb, cache_len: &lb, max_len, ty: CacheType::F32 },
            Heads { n_heads: hq32, n_kv: hk32, head_dim: hd32 },
            Rope { theta, mrope_section: sec },
        )
        .unwrap();
        rec.submit().unwrap();
        let rd = |b: &qwen3_omni_vk::vk_runtime::Buffer| b.read_vec::<f32>().unwrap();
        assert_eq!(rd(&qa), rd(&qb), "case {ci}: q");
        assert_eq!(rd(&kca), rd(&kcb), "case {ci}: K cache");
        assert_eq!(rd(&vca), rd(&vcb), "case {ci}: V cache");
        let row = hk * hd;
        if p0 < max_len {
            let p = p0 as usize;
            assert_ne!(rd(&kcb)[p * row..(p + 1) * row], cache[p * row..(p + 1) * row], "case {ci}: nothing stored");
            assert_eq!(rd(&vcb)[p * row..(p + 1) * row], v[..], "case {ci}: V row");
        } else {
            assert_eq!(rd(&kcb), cache, "case {ci}: a position past the cache was written");
        }
    }
    check_clean(g);
}

/// The one-dispatch decode attention (q/k norm + RoPE + KV store + split attention + merge) and
/// its two-dispatch form (the same prologue, the merge by attn_reduce) against the three-dispatch
/// path, replayed from one recorded batch at several cache lengths (chunk boundaries, the last
/// position, one past the cache): same output and caches, counters left zero.
#[test]
fn attn_decode_fused_matches_three_dispatches() {
    let k = test_kernels();
    let g = k.gpu();
    for (ci, &(hq, hk, hd, cap)) in
        [(8usize, 2usize, 128usize, 300u32), (4, 4, 64, 40), (16, 1, 32, 1000)].iter().enumerate()
    {
        let t0 = std::time::Instant::now();
        let mut rng = Rng::new(900 + ci as u64);
        let row = hk * hd;
        let cache = rng.vec(cap as usize * row, 1.0);
        let (qw, kw) = (rng.vec(hd, 1.5), rng.vec(hd, 1.5));
        let up = |n: &str, d: &[f32]| g.buffer_from(n, d, MemoryIntent::Upload).unwrap();
        let (kca, vca, kcb, vcb) = (up("kca", &cache), up("vca", &cache), up("kcb", &cache), up("vcb", &cache));
        let (kcc, vcc) = (up("kcc", &cache), up("vcc", &cache));
        let (qwb, kwb) = (up("q_norm", &qw), up("k_norm", &kw));
        let q0 = g.buffer("q raw", (hq * hd * 4) as u64, MemoryIntent::Upload).unwrap();
        let k0 = g.buffer("k raw", (row * 4) as u64, MemoryIntent::Upload).unwrap();
        let v0 = g.buffer("v raw", (row * 4) as u64, MemoryIntent::Upload).unwrap();
        let (qa, ka) = (
            g.buffer("qa", (hq * hd * 4) as u64, MemoryIntent::Upload).unwrap(),
            g.buffer("ka", (row * 4) as u64, MemoryIntent::Upload).unwrap(),
        );
        let pb = g.buffer("pos", 12, MemoryIntent::Upload).unwrap();
        let lb = g.buffer("cache_len", 4, MemoryIntent::Upload).unwrap();
        let scratch_len = Kernels::attn_decode_scratch_bytes(1, hq as u32, hd as u32, cap);
        let sa = g.buffer("scratch a", scratch_len, MemoryIntent::Scratch).unwrap();
        let sb = g.buffer("scratch b", scratch_len, MemoryIntent::Scratch).unwrap();
        let cnt = g.buffer_from("counters", &vec![0u32; hk], MemoryIntent::Upload).unwrap();
        let oa = g.buffer("out a", (hq * hd * 4) as u64, MemoryIntent::Readback).unwrap();
        let ob = g.buffer("out b", (hq * hd * 4) as u64, MemoryIntent::Readback).unwrap();
        let oc = g.buffer("out c", (hq * hd * 4) as u64, MemoryIntent::Readback).unwrap();
        let sc = g.buffer("scratch c", scratch_len, MemoryIntent::Scratch).unwrap();
        let (hq32, hk32, hd32) = (hq as u32, hk as u32, hd as u32);
        let (eps, theta, sec) = (1e-6f32, 1e6f32, [hd32 / 8, hd32 / 8, hd32 / 8]);
        let mut ra = g.recorder(false).unwrap();
        ra.copy(&q0, 0, &qa, 0, (hq * hd * 4) as u64).unwrap();
        ra.copy(&k0, 0, &ka, 0, (row * 4) as u64).unwrap();
        k.qk_norm_rope_store(
            &mut ra,
            QkNormRope { q: &qa, k: &ka, q_w: &qwb, k_w: &kwb, pos: &pb, n_tokens: 1, eps },
            KvWrite { v: &v0, k_cache: &kca, v_cache: &vca, cache_len: &lb, max_len: cap, ty: CacheType::F32 },
            Heads { n_heads: hq32, n_kv: hk32, head_dim: hd32 },
            Rope { theta, mrope_section: sec },
        )
        .unwrap();
        k.attn_decode_at(
            &mut ra,
            AttnDecodeAt { q: &qa, out: &oa, scratch: &sa, cache_len: &lb, n_q: 1, kv_cap: cap },
            KvCache { k: &kca, v: &vca, ty: CacheType::F32 },
            Heads { n_heads: hq32, n_kv: hk32, head_dim: hd32 },
        )
        .unwrap();
        let mut a = ra.finish().unwrap();
        let mut rb = g.recorder(false).unwrap();
        k.attn_decode_fused(
            &mut rb,
            AttnDecodeFused {
                q: &q0,
                k: &k0,
                v: &v0,
                q_w: &qwb,
                k_w: &kwb,
                pos: &pb,
                out: &ob,
                scratch: &sb,
                counters: &cnt,
                cache_len: &lb,
                kv_cap: cap,
                eps,
                merge_here: true,
            },
            KvCache { k: &kcb, v: &vcb, ty: CacheType::F32 },
            Heads { n_heads: hq32, n_kv: hk32, head_dim: hd32 },
            Rope { theta, mrope_section: sec },
        )
        .unwrap();
        let mut b = rb.finish().unwrap();
        let mut rc = g.recorder(false).unwrap();
        k.attn_decode_fused(
            &mut rc,
            AttnDecodeFused {
                q: &q0,
                k: &k0,
                v: &v0,
                q_w: &qwb,
                k_w: &kwb,
                pos: &pb,
                out: &oc,
                scratch: &sc,
                counters: &cnt,
                cache_len: &lb,
                kv_cap: cap,
                eps,
                merge_here: false,
            },
            KvCache { k: &kcc, v: &vcc, ty: CacheType::F32 },
            Heads { n_heads: hq32, n_kv: hk32, head_dim: hd32 },
            Rope { theta, mrope_section: sec },
        )
        .unwrap();
        let mut c = rc.finish().unwrap();
        eprintln!("case {ci}: recorded after {:?}", t0.elapsed());
        for p in [0u32, 5, 31, 32, 127, 128, cap - 1, cap] {
            q0.write_slice(0, &rng.vec(hq * hd, 3.0)).unwrap();
            k0.write_slice(0, &rng.vec(row, 3.0)).unwrap();
            v0.write_slice(0, &rng.vec(row, 3.0)).unwrap();
            pb.write_slice(0, &[p, p, p]).unwrap();
            lb.write_slice(0, &[p]).unwrap();
            a.submit().unwrap();
            b.submit().unwrap();
            c.submit().unwrap();
            let rd = |x: &qwen3_omni_vk::vk_runtime::Buffer| x.read_vec::<f32>().unwrap();
            let want: Vec<f64> = rd(&oa).iter().map(|&v| v as f64).collect();
            let e = r::rel_l2(&rd(&ob), &want);
            assert!(e < 1e-5, "case {ci} p {p}: fused output differs by {e:e}");
            let kwant: Vec<f64> = rd(&kca).iter().map(|&v| v as f64).collect();
            let ek = r::rel_l2(&rd(&kcb), &kwant);
            assert!(ek < 1e-6, "case {ci} p {p}: K caches differ by {ek:e}");
            assert_eq!(rd(&vca), rd(&vcb), "case {ci} p {p}: V caches");
            assert_eq!(cnt.read_vec::<u32>().unwrap(), vec![0u32; hk], "case {ci} p {p}: counters not reset");
            let ec = r::rel_l2(&rd(&oc), &want);
            assert!(ec < 1e-5, "case {ci} p {p}: two-dispatch output differs by {ec:e}");
            assert!(r::rel_l2(&rd(&kcc), &kwant) < 1e-6, "case {ci} p {p}: two-dispatch K cache");
            assert_eq!(rd(&vca), rd(&vcc), "case {ci} p {p}: two-dispatch V cache");
        }
        eprintln!("case {ci}: done after {:?}", t0.elapsed());
    }
    check_clean(g);
}

/// f64 causal GQA attention: queries at positions p0 + i against keys 0 ..= p0 + i.
#[allow(clippy::too_many_arguments)]
fn attn_ref(q: &[f32], kc: &[f32], vc: &[f32], n: usize, heads: usize, n_kv: usize, hd: usize, p0: usize) -> Vec<f64> {
    let grp = heads / n_kv;
    let scale = 1.0 / (hd as f64).sqrt();
    let mut out = vec![0.0; n * heads * hd];
    for i in 0..n {
        for h in 0..heads {
            let kvh = h / grp;
            let qv = &q[(i * heads + h) * hd..][..hd];
            let seen = p0 + i + 1;
            let s: Vec<f64> = (0..seen)
                .map(|kk| {
                    let kr = &kc[(kk * n_kv + kvh) * hd..][..hd];
                    qv.iter().zip(kr).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
            let l: f64 = e.iter().sum();
            for d in 0..hd {
                out[(i * heads + h) * hd + d] =
                    (0..seen).map(|kk| e[kk] * vc[(kk * n_kv + kvh) * hd + d] as f64).sum::<f64>() / l;
            }
        }
    }
    out
}

#[test]
fn attn_decode_matches_f64() {
    let k = test_kernels();
    let g = k.gpu();
    // (query tokens, heads, kv heads, head_dim, kv_len)
    let cases = [
        (1usize, 4usize, 2usize, 128usize, 1usize),
        (1, 8, 2, 64, 37),
        (3, 6, 3, 16, 300),
        (1, 4, 1, 128, 2500),
        (2, 2, 2, 32, 700),
        (1, 3, 1, 40, 100),
        (1, 2, 1, 6, 50),
        // GQA-shared path: Thinker-like groups of 8, chunks some queries do not see (n_q 5 at
        // kv 131), MHA; and a group of 34 (> 16) taking the split path. Short caches get 32-key
        // chunks; 8 KV heads at 4200 keys get 128-key chunks, 4 KV heads at 4100 keys 64.
        (1, 16, 2, 128, 1000),
        (5, 4, 2, 32, 131),
        (2, 6, 6, 64, 260),
        (1, 34, 1, 8, 70),
        (1, 16, 8, 32, 4200),
        (1, 8, 4, 16, 4100),
    ];
    for (ci, &(n_q, heads, n_kv, hd, kv_len)) in cases.iter().enumerate() {
        let mut rng = Rng::new(300 + ci as u64);
        let max_len = kv_len + 19; // entries past kv_len hold garbage the kernel must not read
        let q = rng.vec(n_q * heads * hd, 2.0);
        let kc = rng.vec(max_len * n_kv * hd, 1.0);
        let vc = rng.vec(max_len * n_kv * hd, 1.0);
        let qb = g.buffer_from("q", &q, MemoryIntent::Upload).unwrap();
        let kb = g.buffer_from("k cache", &kc, MemoryIntent::Upload).unwrap();
        let vb = g.buffer_from("v cache", &vc, MemoryIntent::Upload).unwrap();
        let ob = g.buffer("out", (n_q * heads * hd) as u64 * 4, MemoryIntent::Readback).unwrap();
        let sb = g
            .buffer(
                "scratch",
                Kernels::attn_decode_scratch_bytes(n_q as u32, heads as u32, hd as u32, max_len as u32),
                MemoryIntent::Scratch,
            )
            .unwrap();
        let mut rec = g.recorder(false).unwrap();
        k.attn_decode(
            &mut rec,
            AttnDecode { q: &qb, out: &ob, scratch: &sb, n_q: n_q as u32, kv_len: kv_len as u32 },
            KvCache { k: &kb, v: &vb, ty: CacheType::F32 },
            Heads { n_heads: heads as u32, n_kv: n_kv as u32, head_dim: hd as u32 },
        )
        .unwrap();
        rec.submit().unwrap();
        let want = attn_ref(&q, &kc, &vc, n_q, heads, n_kv, hd, kv_len - n_q);
        let what = format!("attn_decode case {ci} (n_q {n_q}, {heads}/{n_kv} heads, hd {hd}, kv {kv_len})");
        let got: Vec<f32> = ob.read_vec().unwrap();
        eprintln!("{what}: rel L2 {:.3e}", r::rel_l2(&got, &want));
        r::check_close(&what, &got, &want, 2e-6, 1e-5).unwrap();
    }
    check_clean(g);
}

#[test]
fn attn_prefill_with_kv_append_matches_f64() {
    let k = test_kernels();
    let g = k.gpu();
    // (query tokens, heads, kv heads, head_dim, p0 = entries already cached)
    let cases = [
        (1usize, 2usize, 1usize, 16usize, 0usize),
        (5, 4, 2, 32, 0),
        (37, 4, 2, 64, 13),
        (70, 8, 2, 128, 50),
        (16, 2, 2, 128, 0),
        (33, 4, 4, 16, 100),
        (20, 2, 1, 24, 7),
    ];
    for (ci, &(n, heads, n_kv, hd, p0)) in cases.iter().enumerate() {
        let mut rng = Rng::new(400 + ci as u64);
        let max_len = p0 + n + 11;
        let q = rng.vec(n * heads * hd, 2.0);
        // The cache holds random history before p0 and garbage from p0 on; kv_append writes the
        // n new tokens at p0.
        let mut kc = rng.vec(max_len * n_kv * hd, 1.0);
        let mut vc = rng.vec(max_len * n_kv * hd, 1.0);
        let k_new = rng.vec(n * n_kv * hd, 1.0);
        let v_new = rng.vec(n * n_kv * hd, 1.0);
        let qb = g.buffer_from("q", &q, MemoryIntent::Upload).unwrap();
        let kb = g.buffer_from("k cache", &kc, MemoryIntent::Upload).unwrap();
        let vb = g.buffer_from("v cache", &vc, MemoryIntent::Upload).unwrap();
        let knb = g.buffer_from("k new", &k_new, MemoryIntent::Upload).unwrap();
        let vnb = g.buffer_from("v new", &v_new, MemoryIntent::Upload).unwrap();
        let ob = g.buffer("out", (n * heads * hd) as u64 * 4, MemoryIntent::Readback).unwrap();
        let mut rec = g.recorder(false).unwrap();
        k.kv_append(
            &mut rec,
            KvAppend { k_new: &knb, v_new: &vnb, n: n as u32, n_kv: n_kv as u32, head_dim: hd as u32, p0: p0 as u32 },
            KvCache { k: &kb, v: &vb, ty: CacheType::F32 },
        )
        .unwrap();
        k.attn_prefill(
            &mut rec,
            AttnPrefill { q: &qb, out: &ob, n: n as u32, p0: p0 as u32 },
            KvCache { k: &kb, v: &vb, ty: CacheType::F32 },
            Heads { n_heads: heads as u32, n_kv: n_kv as u32, head_dim: hd as u32 },
        )
        .unwrap();
        rec.submit().unwrap();
        let row = n_kv * hd;
        kc[p0 * row..(p0 + n) * row].copy_from_slice(&k_new);
        vc[p0 * row..(p0 + n) * row].copy_from_slice(&v_new);
        let want = attn_ref(&q, &kc, &vc, n, heads, n_kv, hd, p0);
        let what = format!("attn_prefill case {ci} (n {n}, {heads}/{n_kv} heads, hd {hd}, p0 {p0})");
        let got: Vec<f32> = ob.read_vec().unwrap();
        eprintln!("{what}: rel L2 {:.3e}", r::rel_l2(&got, &want));
        r::check_close(&what, &got, &want, 2e-6, 1e-5).unwrap();
    }
    check_clean(g);
}

#[test]
fn argmax_lowest_index_on_ties() {
    let k = test_kernels();
    let g = k.gpu();
    let n_max = 152_064usize;
    let sb = g.buffer("scratch", Kernels::argmax_scratch_bytes(n_max as u32), MemoryIntent::Scratch).unwrap();
    let mut cases: Vec<(String, Vec<f32>, u32)> = Vec::new();
    for (i, &n) in [1usize, 7, 1000, 1025, 4099, n_max].iter().enumerate() {
        let mut rng = Rng::new(500 + i as u64);
        let x = rng.vec(n, 10.0);
        let want = x.iter().enumerate().fold(0, |b, (j, &v)| if v > x[b] { j } else { b }) as u32;
        cases.push((format!("random n={n}"), x, want));
    }
    // Ties: the maximum at several indices (within a subgroup, across subgroups, across workgroups).
    let mut rng = Rng::new(600);
    let mut x = rng.vec(n_max, 1.0);
    for &j in &[151_000usize, 77_777, 5_000, 1_029, 1_027] {
        x[j] = 3.5;
    }
    cases.push(("ties across workgroups".into(), x, 1_027));
    let mut x = rng.vec(300, 1.0);
    for &j in &[299usize, 64, 9, 8] {
        x[j] = 2.0;
    }
    cases.push(("ties within a workgroup".into(), x, 8));
    cases.push(("all equal".into(), vec![0.25; 5000], 0));
    cases.push(("all -inf".into(), vec![f32::NEG_INFINITY; 2000], 0));
    let mut x = rng.vec(3000, 1.0);
    x[10] = f32::NAN;
    x[2500] = f32::NAN;
    x[1700] = 7.0;
    cases.push(("NaN never wins".into(), x, 1700));
    let mut x = vec![f32::NAN; 1500];
    x[1400] = -3.0;
    cases.push(("one number among NaN".into(), x, 1400));

    let bufs: Vec<_> = cases
        .iter()
        .map(|(_, x, _)| {
            (
                g.buffer_from("x", x, MemoryIntent::Upload).unwrap(),
                g.buffer("argmax", 4, MemoryIntent::Readback).unwrap(),
            )
        })
        .collect();
    let mut rec = g.recorder(false).unwrap();
    for ((_, x, _), (xb, ob)) in cases.iter().zip(&bufs) {
        k.argmax(&mut rec, xb, x.len() as u32, &sb, ob).unwrap();
    }
    rec.submit().unwrap();
    for ((what, _, want), (_, ob)) in cases.iter().zip(&bufs) {
        let got: Vec<u32> = ob.read_vec().unwrap();
        assert_eq!(got[0], *want, "argmax {what}");
    }
    check_clean(g);
}

#[test]
fn attn_decode_replay_reads_cache_length_from_gpu() {
    let k = test_kernels();
    let g = k.gpu();
    // (query tokens, heads, kv heads, head_dim, cache capacity): one recorded batch (kv_store +
    // attn_decode_at) replayed at several cache lengths written by the host between submits.
    let cases = [(1usize, 8usize, 2usize, 64usize, 300usize), (2, 4, 4, 32, 1000), (1, 16, 8, 32, 5000)];
    for (ci, &(n_q, heads, n_kv, hd, cap)) in cases.iter().enumerate() {
        let mut rng = Rng::new(700 + ci as u64);
        let row = n_kv * hd;
        let mut kc = rng.vec(cap * row, 1.0);
        let mut vc = rng.vec(cap * row, 1.0);
        let kb = g.buffer_from("k cache", &kc, MemoryIntent::Upload).unwrap();
        let vb = g.buffer_from("v cache", &vc, MemoryIntent::Upload).unwrap();
        let qb = g.buffer("q", (n_q * heads * hd) as u64 * 4, MemoryIntent::Upload).unwrap();
        let knb = g.buffer("k new", (n_q * row) as u64 * 4, MemoryIntent::Upload).unwrap();
        let vnb = g.buffer("v new", (n_q * row) as u64 * 4, MemoryIntent::Upload).unwrap();
        let lenb = g.buffer_from("cache length", &[0u32], MemoryIntent::Upload).unwrap();
        let ob = g.buffer("out", (n_q * heads * hd) as u64 * 4, MemoryIntent::Readback).unwrap();
        let scratch = Kernels::attn_decode_scratch_bytes(n_q as u32, heads as u32, hd as u32, cap as u32);
        let sb = g.buffer("scratch", scratch, MemoryIntent::Scratch).unwrap();
        let (nq, h, nkv, d, c) = (n_q as u32, heads as u32, n_kv as u32, hd as u32, cap as u32);
        let mut rec = g.recorder(false).unwrap();
        k.kv_store(
            &mut rec,
            KvStore { k_new: &knb, v_new: &vnb, cache_len: &lenb, n: nq, n_kv: nkv, head_dim: d, max_len: c },
            KvCache { k: &kb, v: &vb, ty: CacheType::F32 },
        )
        .unwrap();
        k.attn_decode_at(
            &mut rec,
            AttnDecodeAt { q: &qb, out: &ob, scratch: &sb, cache_len: &lenb, n_q: nq, kv_cap: c },
            KvCache { k: &kb, v: &vb, ty: CacheType::F32 },
            Heads { n_heads: h, n_kv: nkv, head_dim: d },
        )
        .unwrap();
        let mut batch = rec.finish().unwrap();
        for p0 in [0, 7, cap / 2 + 3, cap - n_q, 130.min(cap - n_q)] {
            let q = rng.vec(n_q * heads * hd, 2.0);
            let k_new = rng.vec(n_q * row, 1.0);
            let v_new = rng.vec(n_q * row, 1.0);
            qb.write_slice(0, &q).unwrap();
            knb.write_slice(0, &k_new).unwrap();
            vnb.write_slice(0, &v_new).unwrap();
            lenb.write_slice(0, &[p0 as u32]).unwrap();
            batch.submit().unwrap();
            kc[p0 * row..(p0 + n_q) * row].copy_from_slice(&k_new);
            vc[p0 * row..(p0 + n_q) * row].copy_from_slice(&v_new);
            let want = attn_ref(&q, &kc, &vc, n_q, heads, n_kv, hd, p0);
            let what = format!(
                "replayed attn_decode_at case {ci} (n_q {n_q}, {heads}/{n_kv} heads, hd {hd}, cap {cap}) at {p0}"
            );
            r::check_close(&what, &ob.read_vec::<f32>().unwrap(), &want, 2e-6, 1e-5).unwrap();
        }
        // The caches hold exactly what the host expects (stores landed at the GPU-read lengths).
        assert_eq!(kb.read_vec::<f32>().unwrap(), kc, "K cache after replays");
        assert_eq!(vb.read_vec::<f32>().unwrap(), vc, "V cache after replays");
    }
    check_clean(g);
}

/// Decode q/k/v with the per-head epilogue (`matvec_head`: norm, RoPE, KV store in the matrix ×
/// vector's workgroup per head) against the tested two-step path (`matvec_fused` with the RMSNorm
/// prologue, then `qk_norm_rope_store`), on both matrix × vector paths, at several positions
/// including the last one and one past the cache (dropped).
#[test]
fn matvec_head_matches_norm_rope_store() {
    let mut k = test_kernels();
    let g = k.gpu().clone();
    for (ci, &(hq, hk, hd, h, cap)) in
        [(4usize, 2usize, 64usize, 96usize, 40u32), (8, 1, 128, 256, 17)].iter().enumerate()
    {
        let mut rng = Rng::new(700 + ci as u64);
        let up = |n: &str, d: &[f32]| g.buffer_from(n, d, MemoryIntent::Upload).unwrap();
        let planar = |rows: usize, rng: &mut Rng| {
            let (bytes, _) = r::quantize_matrix_q8_0(&rng.vec(rows * h, 0.5), h);
            let p = qwen3_omni_vk::layout::repack_q8_0_planar(&bytes, rows, h).unwrap();
            g.buffer_from("w", &p, MemoryIntent::Weights).unwrap()
        };
        let (wq, wk, wv) = (planar(hq * hd, &mut rng), planar(hk * hd, &mut rng), planar(hk * hd, &mut rng));
        let (x, an) = (up("x", &rng.vec(h, 2.0)), up("attn_norm", &rng.vec(h, 1.5)));
        let (qw, kw) = (up("q_norm", &rng.vec(hd, 1.5)), up("k_norm", &rng.vec(hd, 1.5)));
        let row = hk * hd;
        let cache = rng.vec(cap as usize * row, 1.0);
        let bufs = |tag: &str| {
            (
                g.buffer(&format!("q {tag}"), (hq * hd * 4) as u64, MemoryIntent::Readback).unwrap(),
                up(&format!("K {tag}"), &cache),
                up(&format!("V {tag}"), &cache),
            )
        };
        let (qa, kca, vca) = bufs("a");
        let (qb, kcb, vcb) = bufs("b");
        let kraw = g.buffer("k raw", (row * 4) as u64, MemoryIntent::Scratch).unwrap();
        let vraw = g.buffer("v raw", (row * 4) as u64, MemoryIntent::Scratch).unwrap();
        let pb = g.buffer("pos", 12, MemoryIntent::Upload).unwrap();
        let lb = g.buffer("cache_len", 4, MemoryIntent::Upload).unwrap();
        let (eps, theta, sec) = (1e-6f32, 1e6f32, [hd as u32 / 8, hd as u32 / 8, hd as u32 / 8]);
        for path in [MatvecPath::Float, MatvecPath::IntDot] {
            k.set_matvec_path(path).unwrap();
            let m = |b, rows: usize| Matrix::new(b, WType::Q8_0Planar, rows as u32, h as u32);
            let norm = Some((&an, eps));
            let mut ra = g.recorder(false).unwrap();
            k.matvec_fused(&mut ra, m(&wq, hq * hd), &x, norm, None, &qa).unwrap();
            k.matvec_fused(&mut ra, m(&wk, row), &x, norm, None, &kraw).unwrap();
            k.matvec_fused(&mut ra, m(&wv, row), &x, norm, None, &vraw).unwrap();
            let (hq32, hk32, hd32) = (hq as u32, hk as u32, hd as u32);
            k.qk_norm_rope_store(
                &mut ra,
                QkNormRope { q: &qa, k: &kraw, q_w: &qw, k_w: &kw, pos: &pb, n_tokens: 1, eps },
                KvWrite { v: &vraw, k_cache: &kca, v_cache: &vca, cache_len: &lb, max_len: cap, ty: CacheType::F32 },
                Heads { n_heads: hq32, n_kv: hk32, head_dim: hd32 },
                Rope { theta, mrope_section: sec },
            )
            .unwrap();
            let mut a = ra.finish().unwrap();
            let n = (&an, eps);
            let mut rb = g.recorder(false).unwrap();
            let (wqm, wkm, wvm) = (m(&wq, hq * hd), m(&wk, row), m(&wv, row));
            k.matvec_head(
                &mut rb,
                MatvecHead {
                    w: wqm,
                    x: &x,
                    norm: n,
                    out: HeadOut::Query,
                    hw: &qw,
                    pos: &pb,
                    cache_len: &lb,
                    y: &qb,
                    max_len: cap,
                    cache_type: CacheType::F32,
                    head_dim: hd32,
                },
                Rope { theta, mrope_section: sec },
            )
            .unwrap();
            k.matvec_head(
                &mut rb,
                MatvecHead {
                    w: wkm,
                    x: &x,
                    norm: n,
                    out: HeadOut::Key,
                    hw: &kw,
                    pos: &pb,
                    cache_len: &lb,
                    y: &kcb,
                    max_len: cap,
                    cache_type: CacheType::F32,
                    head_dim: hd32,
                },
                Rope { theta, mrope_section: sec },
            )
            .unwrap();
            k.matvec_head(
                &mut rb,
                MatvecHead {
                    w: wvm,
                    x: &x,
                    norm: n,
                    out: HeadOut::Value,
                    hw: &kw,
                    pos: &pb,
                    cache_len: &lb,
                    y: &vcb,
                    max_len: cap,
                    cache_type: CacheType::F32,
                    head_dim: hd32,
                },
                Rope { theta, mrope_section: sec },
            )
            .unwrap();
            let mut b = rb.finish().unwrap();
            for p in [0u32, 3, cap - 1, cap] {
                pb.write_slice(0, &[p, p + 1, p + 2]).unwrap();
                lb.write_slice(0, &[p]).unwrap();
                a.submit().unwrap();
                b.submit().unwrap();
                let rd = |x: &qwen3_omni_vk::vk_runtime::Buffer| x.read_vec::<f32>().unwrap();
                let want = |x| rd(x).iter().map(|&v| v as f64).collect::<Vec<f64>>();
                let eq = r::rel_l2(&rd(&qb), &want(&qa));
                let ek = r::rel_l2(&rd(&kcb), &want(&kca));
                let ev = r::rel_l2(&rd(&vcb), &want(&vca));
                assert!(eq < 1e-5 && ek < 1e-5 && ev < 1e-5, "case {ci} {path:?} p {p}: q {eq:e}, K {ek:e}, V {ev:e}");
            }
        }
    }
    // A head that does not divide the rows is an error naming the kernel.
    let w = g.buffer("w", 1 << 16, MemoryIntent::Scratch).unwrap();
    let mut rec = g.recorder(false).unwrap();
    let e = k
        .matvec_head(
            &mut rec,
            MatvecHead {
                w: Matrix::new(&w, WType::Q8_0Planar, 100, 64),
                x: &w,
                norm: (&w, 1e-6),
                out: HeadOut::Query,
                hw: &w,
                pos: &w,
                cache_len: &w,
                y: &w,
                max_len: 4,
                cache_type: CacheType::F32,
                head_dim: 64,
            },
            Rope { theta: 1e6, mrope_section: [0, 0, 0] },
        )
        .unwrap_err();
    assert!(e.to_string().contains("_head"), "{e}");
    drop(rec);
    check_clean(&g);
}
