//! The KV cache in f16 (and the other non-f32 types): every kernel that writes a cache (kv_store,
//! kv_append, the q/k norm + RoPE store, the fused decode attention's prologue, matvec_head's k / v
//! epilogues) stores what the CPU's rounding of the f32 result gives (within one unit in the last
//! place: the device's f32 → f16 conversion may round differently at a tie), and every kernel that
//! reads one (split / GQA decode attention, replayed or not, the fused decode attention, prefill)
//! matches an f64 reference over the values the cache holds, read back. Random (never zero) data,
//! ragged sizes, the validation layer on.

mod common;

use common::{assert_clean, kernels};
use half::f16;
use qwen3_omni_vk::reference::{self as r, Rng};
use qwen3_omni_vk::vk_runtime::{Buffer, Gpu, MemoryIntent};
use qwen3_omni_vk::{
    AttnDecode, AttnDecodeAt, AttnDecodeFused, AttnPrefill, CacheType, HeadOut, Heads, Kernels, KvAppend, KvCache,
    KvStore, KvWrite, Matrix, MatvecHead, MatvecPath, QkNormRope, Rope, WType,
};

/// The cache types other than f32 that the kernels store.
const TYPES: [CacheType; 1] = [CacheType::F16];

/// The bytes a cache of type `ty` holds for the f32 values `v` (round to nearest even).
fn encode(ty: CacheType, v: &[f32]) -> Vec<u8> {
    match ty {
        CacheType::F32 => bytemuck::cast_slice(v).to_vec(),
        CacheType::F16 => v.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect(),
        CacheType::Q8_0 => unimplemented!("q8_0 cache encoding"),
    }
}

/// The values a cache of type `ty` holds.
fn decode(ty: CacheType, b: &[u8]) -> Vec<f32> {
    match ty {
        CacheType::F32 => bytemuck::cast_slice(b).to_vec(),
        CacheType::F16 => b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        CacheType::Q8_0 => unimplemented!("q8_0 cache decoding"),
    }
}

/// How far the stored cache `got` is from the CPU's rounding of `want` (f32 values): the largest
/// difference in units of the last place (f16) — 0 or 1 from a different rounding at a tie.
fn max_ulps(ty: CacheType, got: &[u8], want: &[f32]) -> u32 {
    let w = encode(ty, want);
    assert_eq!(got.len(), w.len(), "{ty}: cache sizes");
    match ty {
        CacheType::F16 => got
            .chunks_exact(2)
            .zip(w.chunks_exact(2))
            .map(|(a, b)| {
                let (a, b) = (f16::from_le_bytes([a[0], a[1]]), f16::from_le_bytes([b[0], b[1]]));
                if a == b {
                    0
                } else if a.is_sign_negative() != b.is_sign_negative() {
                    u32::MAX
                } else {
                    (a.to_bits() as i32 - b.to_bits() as i32).unsigned_abs()
                }
            })
            .max()
            .unwrap_or(0),
        _ => u32::from(*got != w[..]) * u32::MAX,
    }
}

fn upload(g: &Gpu, name: &str, bytes: &[u8]) -> Buffer {
    g.buffer_from(name, bytes, MemoryIntent::Upload).unwrap()
}

fn read_bytes(b: &Buffer) -> Vec<u8> {
    b.read_vec::<u8>().unwrap()
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

/// kv_append (fixed position) and kv_store (position read from the GPU, one past the cache
/// dropped) round each value once and write nothing else.
#[test]
fn kv_store_and_append_round_once() {
    let k = kernels();
    let g = k.gpu();
    for ty in TYPES {
        for (ci, &(n, n_kv, hd, p0, p1, cap)) in
            [(3usize, 2usize, 128usize, 4usize, 9usize, 12usize), (5, 4, 32, 0, 7, 12), (1, 1, 64, 2, 6, 6)]
                .iter()
                .enumerate()
        {
            let mut rng = Rng::new(1100 + ci as u64);
            let row = n_kv * hd;
            let cache = rng.vec(cap * row, 1.0);
            let (kc, vc) = (upload(g, "K", &encode(ty, &cache)), upload(g, "V", &encode(ty, &cache)));
            let (ka, va, ks, vs) =
                (rng.vec(n * row, 3.0), rng.vec(n * row, 3.0), rng.vec(n * row, 3.0), rng.vec(n * row, 3.0));
            let up = |name: &str, d: &[f32]| g.buffer_from(name, d, MemoryIntent::Upload).unwrap();
            let (kab, vab, ksb, vsb) = (up("k a", &ka), up("v a", &va), up("k s", &ks), up("v s", &vs));
            let lb = g.buffer_from("cache_len", &[p1 as u32], MemoryIntent::Upload).unwrap();
            let kv = KvCache { k: &kc, v: &vc, ty };
            let (nu, nkv, d) = (n as u32, n_kv as u32, hd as u32);
            let mut rec = g.recorder(false).unwrap();
            k.kv_append(
                &mut rec,
                KvAppend { k_new: &kab, v_new: &vab, n: nu, n_kv: nkv, head_dim: d, p0: p0 as u32 },
                kv,
            )
            .unwrap();
            let max_len = cap as u32;
            let store = KvStore { k_new: &ksb, v_new: &vsb, cache_len: &lb, n: nu, n_kv: nkv, head_dim: d, max_len };
            k.kv_store(&mut rec, store, kv).unwrap();
            rec.submit().unwrap();
            // The CPU's picture: the cache as stored (decoded), the new rows rounded.
            let mut wk = decode(ty, &encode(ty, &cache));
            let mut wv = wk.clone();
            wk[p0 * row..(p0 + n) * row].copy_from_slice(&ka);
            wv[p0 * row..(p0 + n) * row].copy_from_slice(&va);
            let kept = (cap - p1).min(n) * row; // rows at or past the capacity are dropped
            wk[p1 * row..p1 * row + kept].copy_from_slice(&ks[..kept]);
            wv[p1 * row..p1 * row + kept].copy_from_slice(&vs[..kept]);
            let (ek, ev) = (max_ulps(ty, &read_bytes(&kc), &wk), max_ulps(ty, &read_bytes(&vc), &wv));
            assert!(ek <= 1 && ev <= 1, "{ty} case {ci}: K {ek} ulps, V {ev} ulps from the CPU's rounding");
        }
    }
    assert_clean(g);
}

/// Decode attention (GQA-shared and per-head split kernels) over a cache of each type.
#[test]
fn attn_decode_reads_the_cache_type() {
    let k = kernels();
    let g = k.gpu();
    // (query tokens, heads, kv heads, head_dim, kv_len): GQA-shared; > 16 heads per KV head and a
    // head_dim not a multiple of 4 take the split kernels (vec4 and scalar).
    let cases = [
        (1usize, 16usize, 2usize, 128usize, 1000usize),
        (5, 4, 2, 32, 131),
        (1, 8, 4, 16, 4100),
        (1, 34, 1, 8, 70),
        (1, 2, 1, 6, 50),
    ];
    for ty in TYPES {
        for (ci, &(n_q, heads, n_kv, hd, kv_len)) in cases.iter().enumerate() {
            let mut rng = Rng::new(1200 + ci as u64);
            let max_len = kv_len + 19;
            let q = rng.vec(n_q * heads * hd, 2.0);
            let (kc, vc) = (rng.vec(max_len * n_kv * hd, 1.0), rng.vec(max_len * n_kv * hd, 1.0));
            let (kb, vb) = (upload(g, "K", &encode(ty, &kc)), upload(g, "V", &encode(ty, &vc)));
            let qb = g.buffer_from("q", &q, MemoryIntent::Upload).unwrap();
            let ob = g.buffer("out", (n_q * heads * hd) as u64 * 4, MemoryIntent::Readback).unwrap();
            let scratch = Kernels::attn_decode_scratch_bytes(n_q as u32, heads as u32, hd as u32, max_len as u32);
            let sb = g.buffer("scratch", scratch, MemoryIntent::Scratch).unwrap();
            let mut rec = g.recorder(false).unwrap();
            k.attn_decode(
                &mut rec,
                AttnDecode { q: &qb, out: &ob, scratch: &sb, n_q: n_q as u32, kv_len: kv_len as u32 },
                KvCache { k: &kb, v: &vb, ty },
                Heads { n_heads: heads as u32, n_kv: n_kv as u32, head_dim: hd as u32 },
            )
            .unwrap();
            rec.submit().unwrap();
            let (kd, vd) = (decode(ty, &encode(ty, &kc)), decode(ty, &encode(ty, &vc)));
            let want = attn_ref(&q, &kd, &vd, n_q, heads, n_kv, hd, kv_len - n_q);
            let what = format!("{ty} attn_decode case {ci} (n_q {n_q}, {heads}/{n_kv} heads, hd {hd}, kv {kv_len})");
            r::check_close(&what, &ob.read_vec::<f32>().unwrap(), &want, 2e-6, 1e-5).unwrap();
        }
    }
    assert_clean(g);
}

/// kv_store + attn_decode_at recorded once and replayed at several GPU-read cache lengths.
#[test]
fn attn_decode_at_replays_over_the_cache_type() {
    let k = kernels();
    let g = k.gpu();
    for ty in TYPES {
        for (ci, &(n_q, heads, n_kv, hd, cap)) in
            [(1usize, 8usize, 2usize, 64usize, 300usize), (2, 4, 4, 32, 1000)].iter().enumerate()
        {
            let mut rng = Rng::new(1300 + ci as u64);
            let row = n_kv * hd;
            let init = rng.vec(cap * row, 1.0);
            let (kb, vb) = (upload(g, "K", &encode(ty, &init)), upload(g, "V", &encode(ty, &init)));
            let qb = g.buffer("q", (n_q * heads * hd) as u64 * 4, MemoryIntent::Upload).unwrap();
            let knb = g.buffer("k new", (n_q * row) as u64 * 4, MemoryIntent::Upload).unwrap();
            let vnb = g.buffer("v new", (n_q * row) as u64 * 4, MemoryIntent::Upload).unwrap();
            let lenb = g.buffer_from("cache length", &[0u32], MemoryIntent::Upload).unwrap();
            let ob = g.buffer("out", (n_q * heads * hd) as u64 * 4, MemoryIntent::Readback).unwrap();
            let scratch = Kernels::attn_decode_scratch_bytes(n_q as u32, heads as u32, hd as u32, cap as u32);
            let sb = g.buffer("scratch", scratch, MemoryIntent::Scratch).unwrap();
            let (nq, h, nkv, d, c) = (n_q as u32, heads as u32, n_kv as u32, hd as u32, cap as u32);
            let kv = KvCache { k: &kb, v: &vb, ty };
            let mut rec = g.recorder(false).unwrap();
            let store =
                KvStore { k_new: &knb, v_new: &vnb, cache_len: &lenb, n: nq, n_kv: nkv, head_dim: d, max_len: c };
            k.kv_store(&mut rec, store, kv).unwrap();
            let at = AttnDecodeAt { q: &qb, out: &ob, scratch: &sb, cache_len: &lenb, n_q: nq, kv_cap: c };
            k.attn_decode_at(&mut rec, at, kv, Heads { n_heads: h, n_kv: nkv, head_dim: d }).unwrap();
            let mut batch = rec.finish().unwrap();
            let mut wk = decode(ty, &encode(ty, &init));
            let mut wv = wk.clone();
            for p0 in [0, 7, cap / 2 + 3, cap - n_q] {
                let (q, kn, vn) = (rng.vec(n_q * heads * hd, 2.0), rng.vec(n_q * row, 1.0), rng.vec(n_q * row, 1.0));
                qb.write_slice(0, &q).unwrap();
                knb.write_slice(0, &kn).unwrap();
                vnb.write_slice(0, &vn).unwrap();
                lenb.write_slice(0, &[p0 as u32]).unwrap();
                batch.submit().unwrap();
                wk[p0 * row..(p0 + n_q) * row].copy_from_slice(&kn);
                wv[p0 * row..(p0 + n_q) * row].copy_from_slice(&vn);
                let (kg, vg) = (read_bytes(&kb), read_bytes(&vb));
                let (ek, ev) = (max_ulps(ty, &kg, &wk), max_ulps(ty, &vg, &wv));
                assert!(ek <= 1 && ev <= 1, "{ty} case {ci} at {p0}: K {ek} ulps, V {ev} ulps");
                let want = attn_ref(&q, &decode(ty, &kg), &decode(ty, &vg), n_q, heads, n_kv, hd, p0);
                let what = format!("{ty} replayed attn_decode_at case {ci} at {p0}");
                r::check_close(&what, &ob.read_vec::<f32>().unwrap(), &want, 2e-6, 1e-5).unwrap();
            }
        }
    }
    assert_clean(g);
}

/// kv_append + the tiled prefill attention (vec4 and scalar kernels) over a cache of each type.
#[test]
fn attn_prefill_reads_the_cache_type() {
    let k = kernels();
    let g = k.gpu();
    // (query tokens, heads, kv heads, head_dim, p0)
    let cases =
        [(37usize, 4usize, 2usize, 64usize, 13usize), (70, 8, 2, 128, 50), (33, 4, 4, 16, 100), (20, 2, 1, 24, 7)];
    for ty in TYPES {
        for (ci, &(n, heads, n_kv, hd, p0)) in cases.iter().enumerate() {
            let mut rng = Rng::new(1400 + ci as u64);
            let max_len = p0 + n + 11;
            let row = n_kv * hd;
            let q = rng.vec(n * heads * hd, 2.0);
            let init = rng.vec(max_len * row, 1.0);
            let (kn, vn) = (rng.vec(n * row, 1.0), rng.vec(n * row, 1.0));
            let (kb, vb) = (upload(g, "K", &encode(ty, &init)), upload(g, "V", &encode(ty, &init)));
            let up = |name: &str, d: &[f32]| g.buffer_from(name, d, MemoryIntent::Upload).unwrap();
            let (qb, knb, vnb) = (up("q", &q), up("k new", &kn), up("v new", &vn));
            let ob = g.buffer("out", (n * heads * hd) as u64 * 4, MemoryIntent::Readback).unwrap();
            let kv = KvCache { k: &kb, v: &vb, ty };
            let (nu, nkv, d, p) = (n as u32, n_kv as u32, hd as u32, p0 as u32);
            let mut rec = g.recorder(false).unwrap();
            k.kv_append(&mut rec, KvAppend { k_new: &knb, v_new: &vnb, n: nu, n_kv: nkv, head_dim: d, p0: p }, kv)
                .unwrap();
            let heads_ = Heads { n_heads: heads as u32, n_kv: nkv, head_dim: d };
            k.attn_prefill(&mut rec, AttnPrefill { q: &qb, out: &ob, n: nu, p0: p }, kv, heads_).unwrap();
            rec.submit().unwrap();
            let mut wk = decode(ty, &encode(ty, &init));
            let mut wv = wk.clone();
            wk[p0 * row..(p0 + n) * row].copy_from_slice(&kn);
            wv[p0 * row..(p0 + n) * row].copy_from_slice(&vn);
            let (kg, vg) = (read_bytes(&kb), read_bytes(&vb));
            assert!(max_ulps(ty, &kg, &wk) <= 1 && max_ulps(ty, &vg, &wv) <= 1, "{ty} case {ci}: appended rows");
            let want = attn_ref(&q, &decode(ty, &kg), &decode(ty, &vg), n, heads, n_kv, hd, p0);
            let what = format!("{ty} attn_prefill case {ci} (n {n}, {heads}/{n_kv} heads, hd {hd}, p0 {p0})");
            r::check_close(&what, &ob.read_vec::<f32>().unwrap(), &want, 2e-6, 1e-5).unwrap();
        }
    }
    assert_clean(g);
}

/// The replayable q/k norm + RoPE + store writes the f32 path's keys and values, rounded; q is
/// the same; and the one-dispatch decode attention (merge in place or by attn_reduce) stores the
/// same caches and gives the three-dispatch path's output (each reading the rounded new key).
#[test]
fn norm_rope_store_and_fused_decode_round_like_f32() {
    let k = kernels();
    let g = k.gpu();
    for ty in TYPES {
        for (ci, &(hq, hk, hd, cap)) in [(8usize, 2usize, 128usize, 300u32), (16, 1, 32, 200)].iter().enumerate() {
            let mut rng = Rng::new(1500 + ci as u64);
            let row = hk * hd;
            let init = rng.vec(cap as usize * row, 1.0);
            let up = |name: &str, d: &[f32]| g.buffer_from(name, d, MemoryIntent::Upload).unwrap();
            let (qw, kw) = (up("q_norm", &rng.vec(hd, 1.5)), up("k_norm", &rng.vec(hd, 1.5)));
            let (kf, vf) = (up("K f32", &init), up("V f32", &init));
            let caches: Vec<(Buffer, Buffer)> =
                (0..3).map(|_| (upload(g, "K", &encode(ty, &init)), upload(g, "V", &encode(ty, &init)))).collect();
            let raw = |name: &str, n: usize| g.buffer(name, (n * 4) as u64, MemoryIntent::Upload).unwrap();
            let (q0, k0, v0) = (raw("q raw", hq * hd), raw("k raw", row), raw("v raw", row));
            let (qa, ka, qb, kb) = (raw("qa", hq * hd), raw("ka", row), raw("qb", hq * hd), raw("kb", row));
            let (pb, lb) = (raw("pos", 3), raw("cache_len", 1));
            let scratch_len = Kernels::attn_decode_scratch_bytes(1, hq as u32, hd as u32, cap);
            let scratch: Vec<Buffer> =
                (0..3).map(|_| g.buffer("scratch", scratch_len, MemoryIntent::Scratch).unwrap()).collect();
            let outs: Vec<Buffer> =
                (0..3).map(|_| g.buffer("out", (hq * hd * 4) as u64, MemoryIntent::Readback).unwrap()).collect();
            let cnt = g.buffer_from("counters", &vec![0u32; hk], MemoryIntent::Upload).unwrap();
            let heads = Heads { n_heads: hq as u32, n_kv: hk as u32, head_dim: hd as u32 };
            let (eps, hd32) = (1e-6f32, hd as u32);
            let rope = Rope { theta: 1e6, mrope_section: [hd32 / 8, hd32 / 8, hd32 / 8] };
            let norm = |q, k| QkNormRope { q, k, q_w: &qw, k_w: &kw, pos: &pb, n_tokens: 1, eps };
            // a: f32 store; b: the type's store, then its split attention; c, d: fused.
            let mut ra = g.recorder(false).unwrap();
            for (q, kk, kc, vc, t) in [(&qa, &ka, &kf, &vf, CacheType::F32), (&qb, &kb, &caches[0].0, &caches[0].1, ty)]
            {
                ra.copy(&q0, 0, q, 0, (hq * hd * 4) as u64).unwrap();
                ra.copy(&k0, 0, kk, 0, (row * 4) as u64).unwrap();
                let w = KvWrite { v: &v0, k_cache: kc, v_cache: vc, cache_len: &lb, max_len: cap, ty: t };
                k.qk_norm_rope_store(&mut ra, norm(q, kk), w, heads, rope).unwrap();
            }
            let kv0 = KvCache { k: &caches[0].0, v: &caches[0].1, ty };
            let at = AttnDecodeAt { q: &qb, out: &outs[0], scratch: &scratch[0], cache_len: &lb, n_q: 1, kv_cap: cap };
            k.attn_decode_at(&mut ra, at, kv0, heads).unwrap();
            for (i, merge_here) in [(1usize, true), (2, false)] {
                let args = AttnDecodeFused {
                    q: &q0,
                    k: &k0,
                    v: &v0,
                    q_w: &qw,
                    k_w: &kw,
                    pos: &pb,
                    out: &outs[i],
                    scratch: &scratch[i],
                    counters: &cnt,
                    cache_len: &lb,
                    kv_cap: cap,
                    eps,
                    merge_here,
                };
                let kv = KvCache { k: &caches[i].0, v: &caches[i].1, ty };
                k.attn_decode_fused(&mut ra, args, kv, heads, rope).unwrap();
            }
            let mut batch = ra.finish().unwrap();
            for p in [0u32, 31, 128, cap - 1, cap] {
                q0.write_slice(0, &rng.vec(hq * hd, 3.0)).unwrap();
                k0.write_slice(0, &rng.vec(row, 3.0)).unwrap();
                v0.write_slice(0, &rng.vec(row, 3.0)).unwrap();
                pb.write_slice(0, &[p, p, p]).unwrap();
                lb.write_slice(0, &[p]).unwrap();
                batch.submit().unwrap();
                assert_eq!(qa.read_vec::<f32>().unwrap(), qb.read_vec::<f32>().unwrap(), "{ty} case {ci} p {p}: q");
                let (kwant, vwant) = (kf.read_vec::<f32>().unwrap(), vf.read_vec::<f32>().unwrap());
                for (i, (kc, vc)) in caches.iter().enumerate() {
                    let (ek, ev) = (max_ulps(ty, &read_bytes(kc), &kwant), max_ulps(ty, &read_bytes(vc), &vwant));
                    assert!(ek <= 1 && ev <= 1, "{ty} case {ci} p {p}: cache {i}: K {ek} ulps, V {ev} ulps");
                }
                let want: Vec<f64> = outs[0].read_vec::<f32>().unwrap().iter().map(|&v| v as f64).collect();
                for o in &outs[1..] {
                    let e = r::rel_l2(&o.read_vec::<f32>().unwrap(), &want);
                    assert!(e < 1e-4, "{ty} case {ci} p {p}: fused output differs by {e:e}");
                }
                assert_eq!(cnt.read_vec::<u32>().unwrap(), vec![0u32; hk], "counters not reset");
            }
        }
    }
    assert_clean(g);
}

/// matvec_head's k / v epilogues store what the f32 epilogue stores, rounded.
#[test]
fn matvec_head_stores_the_cache_type() {
    let mut k = kernels();
    let g = k.gpu().clone();
    let (hk, hd, h, cap) = (2usize, 64usize, 96usize, 20u32);
    let mut rng = Rng::new(1600);
    let up = |n: &str, d: &[f32]| g.buffer_from(n, d, MemoryIntent::Upload).unwrap();
    let planar = |rows: usize, rng: &mut Rng| {
        let (bytes, _) = r::quantize_matrix_q8_0(&rng.vec(rows * h, 0.5), h);
        let p = qwen3_omni_vk::layout::repack_q8_0_planar(&bytes, rows, h).unwrap();
        g.buffer_from("w", &p, MemoryIntent::Weights).unwrap()
    };
    let row = hk * hd;
    let (wk, wv) = (planar(row, &mut rng), planar(row, &mut rng));
    let (x, an, kw) = (up("x", &rng.vec(h, 2.0)), up("attn_norm", &rng.vec(h, 1.5)), up("k_norm", &rng.vec(hd, 1.5)));
    let init = rng.vec(cap as usize * row, 1.0);
    let (pb, lb) =
        (g.buffer("pos", 12, MemoryIntent::Upload).unwrap(), g.buffer("len", 4, MemoryIntent::Upload).unwrap());
    let rope = Rope { theta: 1e6, mrope_section: [8, 8, 8] };
    for ty in TYPES {
        for path in [MatvecPath::Float, MatvecPath::IntDot] {
            k.set_matvec_path(path).unwrap();
            let (kf, vf) = (up("K f32", &init), up("V f32", &init));
            let (kt, vt) = (upload(&g, "K", &encode(ty, &init)), upload(&g, "V", &encode(ty, &init)));
            let mut rec = g.recorder(false).unwrap();
            for (kc, vc, t) in [(&kf, &vf, CacheType::F32), (&kt, &vt, ty)] {
                for (w, out, y) in [(&wk, HeadOut::Key, kc), (&wv, HeadOut::Value, vc)] {
                    let args = MatvecHead {
                        w: Matrix::new(w, WType::Q8_0Planar, row as u32, h as u32),
                        x: &x,
                        norm: (&an, 1e-6),
                        out,
                        hw: &kw,
                        pos: &pb,
                        cache_len: &lb,
                        y,
                        max_len: cap,
                        cache_type: t,
                        head_dim: hd as u32,
                    };
                    k.matvec_head(&mut rec, args, rope).unwrap();
                }
            }
            let mut b = rec.finish().unwrap();
            for p in [0u32, 5, cap - 1, cap] {
                pb.write_slice(0, &[p, p + 1, p + 2]).unwrap();
                lb.write_slice(0, &[p]).unwrap();
                b.submit().unwrap();
                let ek = max_ulps(ty, &read_bytes(&kt), &kf.read_vec::<f32>().unwrap());
                let ev = max_ulps(ty, &read_bytes(&vt), &vf.read_vec::<f32>().unwrap());
                assert!(ek <= 1 && ev <= 1, "{ty} {path:?} p {p}: K {ek} ulps, V {ev} ulps");
            }
        }
    }
    assert_clean(&g);
}
