//! Attention kernel timing at the Thinker's shapes (ignored; `--ignored --nocapture` on a GPU).

mod common;

use qwen3_omni_vk::reference::Rng;
use qwen3_omni_vk::vk_runtime::MemoryIntent;
use qwen3_omni_vk::{AttnDecode, AttnDecodeAt, AttnPrefill, Heads, KvCache, QkNormRope, Rope, RopeRows};
use qwen3_omni_vk::{CacheType, Kernels};

/// Timing of the attention kernels at Thinker shapes (32 query heads, 4 KV heads, head_dim 128) on
/// whatever device is present, without the validation layer: `cargo test --test attention_timing --
/// --ignored --nocapture bench_attention`. Prints µs per dispatch (profiled, median of 5).
#[test]
#[ignore]
fn bench_attention() {
    use qwen3_omni_vk::vk_runtime::{Gpu, GpuOptions};
    let k = Kernels::new(Gpu::new(&GpuOptions::default()).unwrap());
    let g = k.gpu();
    println!("device: {}", g.caps().name);
    let (heads, n_kv, hd) = (32usize, 4usize, 128usize);
    let cap = 16384usize;
    let mut rng = Rng::new(900);
    let kb = g.buffer_from("k cache", &rng.vec(cap * n_kv * hd, 1.0), MemoryIntent::Upload).unwrap();
    let vb = g.buffer_from("v cache", &rng.vec(cap * n_kv * hd, 1.0), MemoryIntent::Upload).unwrap();
    let n_max = 512usize;
    let qb = g.buffer_from("q", &rng.vec(n_max * heads * hd, 1.0), MemoryIntent::Upload).unwrap();
    let ob = g.buffer("out", (n_max * heads * hd) as u64 * 4, MemoryIntent::Scratch).unwrap();
    let sb = g
        .buffer(
            "scratch",
            Kernels::attn_decode_scratch_bytes(1, heads as u32, hd as u32, cap as u32),
            MemoryIntent::Scratch,
        )
        .unwrap();
    let lenb = g.buffer_from("len", &[0u32], MemoryIntent::Upload).unwrap();
    // Median over 5 profiled submits of each dispatch's µs.
    macro_rules! time {
        (|$rec:ident| $body:expr) => {{
            let mut runs: Vec<Vec<(String, f64)>> = Vec::new();
            for _ in 0..5 {
                let mut $rec = g.recorder(true).unwrap();
                $body;
                let p = $rec.submit().unwrap();
                runs.push(p.kernels.iter().map(|t| (t.name.clone(), t.ns / 1e3)).collect());
            }
            (0..runs[0].len())
                .map(|i| {
                    let mut v: Vec<f64> = runs.iter().map(|r| r[i].1).collect();
                    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
                    (runs[0][i].0.clone(), (v[2] * 10.0).round() / 10.0)
                })
                .collect::<Vec<_>>()
        }};
    }
    for kv in [512u32, 4096, 16384] {
        let t = time!(|rec| k
            .attn_decode(
                &mut rec,
                AttnDecode { q: &qb, out: &ob, scratch: &sb, n_q: 1, kv_len: kv },
                KvCache { k: &kb, v: &vb, ty: CacheType::F32 },
                Heads { n_heads: heads as u32, n_kv: n_kv as u32, head_dim: hd as u32 }
            )
            .unwrap());
        println!("decode kv {kv}: {t:?}");
        lenb.write_slice(0, &[kv - 1]).unwrap();
        let t = time!(|rec| k
            .attn_decode_at(
                &mut rec,
                AttnDecodeAt { q: &qb, out: &ob, scratch: &sb, cache_len: &lenb, n_q: 1, kv_cap: cap as u32 },
                KvCache { k: &kb, v: &vb, ty: CacheType::F32 },
                Heads { n_heads: heads as u32, n_kv: n_kv as u32, head_dim: hd as u32 }
            )
            .unwrap());
        println!("decode_at kv {kv} (capacity {cap}): {t:?}");
    }
    let wq = g.buffer_from("q_norm", &rng.vec(hd, 1.0), MemoryIntent::Weights).unwrap();
    let wk = g.buffer_from("k_norm", &rng.vec(hd, 1.0), MemoryIntent::Weights).unwrap();
    let posb = g.buffer_from("pos", &vec![7u32; 3 * n_max], MemoryIntent::Upload).unwrap();
    let kx = g.buffer_from("k", &rng.vec(n_max * n_kv * hd, 1.0), MemoryIntent::Upload).unwrap();
    let (h32, kv32, hd32) = (heads as u32, n_kv as u32, hd as u32);
    for n in [1u32, 512] {
        let t = time!(|rec| k
            .qk_norm_rope(
                &mut rec,
                QkNormRope { q: &qb, k: &kx, q_w: &wq, k_w: &wk, pos: &posb, n_tokens: n, eps: 1e-6 },
                Heads { n_heads: h32, n_kv: kv32, head_dim: hd32 },
                Rope { theta: 1e6, mrope_section: [24, 20, 20] }
            )
            .unwrap());
        println!("qk_norm_rope n {n}: {t:?}");
        let t = time!(|rec| {
            k.rms_norm(&mut rec, &qb, &wq, &ob, hd32, n * h32, 1e-6).unwrap();
            k.rms_norm(&mut rec, &kx, &wk, &sb, hd32, n * kv32, 1e-6).unwrap();
            k.rope(
                &mut rec,
                RopeRows { x: &ob, pos: &posb, n_tokens: n, n_heads: h32, head_dim: hd32 },
                Rope { theta: 1e6, mrope_section: [24, 20, 20] },
            )
            .unwrap();
            k.rope(
                &mut rec,
                RopeRows { x: &sb, pos: &posb, n_tokens: n, n_heads: kv32, head_dim: hd32 },
                Rope { theta: 1e6, mrope_section: [24, 20, 20] },
            )
            .unwrap();
        });
        println!("rms_norm ×2 + rope ×2 n {n}: {t:?}");
    }
    for (n, p0) in [(512u32, 0u32), (256, 0), (256, 3840)] {
        let t = time!(|rec| k
            .attn_prefill(
                &mut rec,
                AttnPrefill { q: &qb, out: &ob, n, p0 },
                KvCache { k: &kb, v: &vb, ty: CacheType::F32 },
                Heads { n_heads: heads as u32, n_kv: n_kv as u32, head_dim: hd as u32 }
            )
            .unwrap());
        println!("prefill n {n} at p0 {p0}: {t:?}");
    }
}
