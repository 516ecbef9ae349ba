//! Code2Wav's kernels (conv1d in its conv / transposed-conv / Linear forms with every epilogue,
//! SnakeBeta, depthwise conv, LayerNorm, row RoPE, sliding-window attention) against f64 CPU
//! references on random data with ragged sizes, validation on.

mod common;

use common::{assert_clean, kernels};
use qwen3_omni_vk::reference::{check_close, Rng};
use qwen3_omni_vk::vk_runtime::{Buffer, MemoryIntent};
use qwen3_omni_vk::{repack_conv, repack_trans_conv, ConvEpilogue, ConvShape, ConvWeights, Kernels};
use qwen3_omni_vk::{AttnWindow, ConvIo, DwConv, Heads, LayerNorm, RopeSpan, SnakeBeta};

fn up(k: &Kernels, name: &str, v: &[f32]) -> Buffer {
    k.gpu().buffer_from(name, v, MemoryIntent::Upload).unwrap()
}

fn out(k: &Kernels, name: &str, v: &[f32]) -> Buffer {
    let b = k.gpu().buffer(name, v.len() as u64 * 4, MemoryIntent::Readback).unwrap();
    b.write_slice(0, v).unwrap();
    b
}

fn erf64(x: f64) -> f64 {
    // Series / continued fraction free: integrate with high-order Simpson (reference only).
    let n = 2000;
    let h = x / n as f64;
    let f = |t: f64| (-t * t).exp();
    let mut s = f(0.0) + f(x);
    for i in 1..n {
        s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn conv1d_causal_dilated_matches_reference() {
    let k = kernels();
    let mut rng = Rng::new(7);
    for &(cin, cout, kk, d, n, hist_extra) in
        &[(20usize, 70usize, 7usize, 3usize, 37usize, 2usize), (96, 1, 7, 1, 130, 0), (33, 65, 1, 1, 5, 0)]
    {
        let hist = (kk - 1) * d + hist_extra;
        let x = rng.vec((hist + n) * cin, 1.0);
        let w = rng.vec(cout * cin * kk, 0.3);
        let b = rng.vec(cout, 0.5);
        let y0 = rng.vec((3 + n) * cout, 1.0);
        let mut want: Vec<f64> = y0.iter().map(|v| *v as f64).collect();
        for t in 0..n {
            for co in 0..cout {
                let mut s = b[co] as f64;
                for j in 0..kk {
                    for ci in 0..cin {
                        s += w[(co * cin + ci) * kk + j] as f64 * x[(hist + t - (kk - 1 - j) * d) * cin + ci] as f64;
                    }
                }
                // Residual epilogue into rows 3.. of y.
                want[(3 + t) * cout + co] += s;
            }
        }
        let (xb, wb, bb) = (up(&k, "x", &x), up(&k, "w", &repack_conv(&w, cout, cin, kk)), up(&k, "b", &b));
        let yb = out(&k, "y", &y0);
        let sh = ConvShape {
            n_in: n as u32,
            cin: cin as u32,
            cout: cout as u32,
            s: 1,
            m: kk as u32,
            d: d as u32,
            x_off: hist as u32,
            y_off: 3,
            skip: 0,
        };
        let mut rec = k.gpu().recorder(false).unwrap();
        k.conv1d(
            &mut rec,
            sh,
            ConvWeights::F32(&wb),
            ConvIo { x: &xb, bias: Some(&bb), epilogue: ConvEpilogue::Residual, scale: None, y: &yb },
        )
        .unwrap();
        rec.submit().unwrap();
        let got: Vec<f32> = yb.read_vec().unwrap();
        check_close(&format!("conv {cin}→{cout} k{kk} d{d}"), &got, &want, 1e-4, 1e-4).unwrap();
    }
    assert_clean(k.gpu());
}

#[test]
fn conv1d_transposed_with_trimming_matches_reference() {
    let k = kernels();
    let mut rng = Rng::new(8);
    // (cin, cout, stride, taps m (kernel m·s), input rows n, skip)
    for &(cin, cout, s, m, n, skip) in
        &[(24usize, 12usize, 5usize, 2usize, 9usize, 5usize), (32, 32, 2, 1, 67, 0), (70, 35, 3, 2, 4, 0)]
    {
        let kk = m * s;
        let hist = m - 1;
        let x = rng.vec((hist + n) * cin, 1.0);
        let w = rng.vec(cin * cout * kk, 0.3);
        let b = rng.vec(cout, 0.5);
        // Full ConvTranspose1d of the hist + n rows, then the rows the kernel computes are those of
        // the n new inputs' positions: full index (hist + i)·s + p gets x[hist+i−u] · Wt[.., p + u·s].
        let rows = n * s - skip;
        let mut want = vec![0f64; rows * cout];
        for i in 0..n {
            for p in 0..s {
                let t = i * s + p;
                if t < skip {
                    continue;
                }
                for co in 0..cout {
                    let mut acc = b[co] as f64;
                    for u in 0..m {
                        for ci in 0..cin {
                            acc += x[(hist + i - u) * cin + ci] as f64 * w[(ci * cout + co) * kk + p + u * s] as f64;
                        }
                    }
                    want[(t - skip) * cout + co] = acc;
                }
            }
        }
        let (xb, bb) = (up(&k, "x", &x), up(&k, "b", &b));
        let wb = up(&k, "w", &repack_trans_conv(&w, cin, cout, kk, s));
        let yb = out(&k, "y", &vec![0.0; rows * cout]);
        let sh = ConvShape {
            n_in: n as u32,
            cin: cin as u32,
            cout: cout as u32,
            s: s as u32,
            m: m as u32,
            d: 1,
            x_off: hist as u32,
            y_off: 0,
            skip: skip as u32,
        };
        let mut rec = k.gpu().recorder(false).unwrap();
        k.conv1d(
            &mut rec,
            sh,
            ConvWeights::F32(&wb),
            ConvIo { x: &xb, bias: Some(&bb), epilogue: ConvEpilogue::Store, scale: None, y: &yb },
        )
        .unwrap();
        rec.submit().unwrap();
        let got: Vec<f32> = yb.read_vec().unwrap();
        check_close(&format!("tconv {cin}→{cout} s{s} m{m}"), &got, &want, 1e-4, 1e-4).unwrap();
    }
    assert_clean(k.gpu());
}

#[test]
fn conv1d_linear_epilogues_match_reference() {
    let k = kernels();
    let mut rng = Rng::new(9);
    // The tiled kernel (cout > 16) and the one-row-per-invocation one.
    for (n, cin, cout) in [(45usize, 96usize, 130usize), (70, 40, 9)] {
        let x = rng.vec(n * cin, 1.0);
        let w = rng.vec(cout * cin, 0.2);
        let b = rng.vec(cout, 0.5);
        let sc = rng.vec(cout, 1.0);
        let y0 = rng.vec(n * cout, 1.0);
        let lin: Vec<f64> = (0..n * cout)
            .map(|i| {
                let (t, co) = (i / cout, i % cout);
                (0..cin).map(|c| x[t * cin + c] as f64 * w[co * cin + c] as f64).sum::<f64>()
            })
            .collect();
        let (xb, wb, bb, sb) = (up(&k, "x", &x), up(&k, "w", &w), up(&k, "b", &b), up(&k, "scale", &sc));
        let sh = ConvShape::linear(n as u32, cin as u32, cout as u32);
        for ep in [ConvEpilogue::Gelu, ConvEpilogue::ScaledResidual, ConvEpilogue::Clamp, ConvEpilogue::Store] {
            let with_bias = ep != ConvEpilogue::Store;
            let want: Vec<f64> = lin
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let co = i % cout;
                    let v = v + if with_bias { b[co] as f64 } else { 0.0 };
                    match ep {
                        ConvEpilogue::Gelu => 0.5 * v * (1.0 + erf64(v / 2f64.sqrt())),
                        ConvEpilogue::ScaledResidual => y0[i] as f64 + sc[co] as f64 * v,
                        ConvEpilogue::Clamp => v.clamp(-1.0, 1.0),
                        _ => v,
                    }
                })
                .collect();
            let yb = out(&k, "y", &y0);
            let mut rec = k.gpu().recorder(false).unwrap();
            k.conv1d(
                &mut rec,
                sh,
                ConvWeights::F32(&wb),
                ConvIo { x: &xb, bias: with_bias.then_some(&bb), epilogue: ep, scale: Some(&sb), y: &yb },
            )
            .unwrap();
            rec.submit().unwrap();
            let got: Vec<f32> = yb.read_vec().unwrap();
            check_close(&format!("linear {cin}→{cout} {ep:?}"), &got, &want, 1e-4, 1e-4).unwrap();
        }
    }
    assert_clean(k.gpu());
}

#[test]
fn snake_dwconv_layernorm_match_reference() {
    let k = kernels();
    let mut rng = Rng::new(10);
    let (n, c, kk, hist) = (29usize, 77usize, 7usize, 8usize);
    let x = rng.vec((hist + n) * c, 2.0);
    // SnakeBeta with log-space params.
    let (al, be) = (rng.vec(c, 0.5), rng.vec(c, 0.5));
    let prm: Vec<f32> = al.iter().map(|a| a.exp()).chain(be.iter().map(|b| 1.0 / (b.exp() + 1e-9))).collect();
    let want: Vec<f64> = (0..n * c)
        .map(|i| {
            let (ch, v) = (i % c, x[2 * c + i] as f64);
            let s = ((al[ch] as f64).exp() * v).sin();
            v + 1.0 / ((be[ch] as f64).exp() + 1e-9) * s * s
        })
        .collect();
    let (xb, pb) = (up(&k, "x", &x), up(&k, "snake params", &prm));
    let yb = out(&k, "y", &vec![0.0; (1 + n) * c]);
    let mut rec = k.gpu().recorder(false).unwrap();
    k.snake_beta(&mut rec, SnakeBeta { x: &xb, x_off: 2, params: &pb, y: &yb, y_off: 1, n: n as u32, c: c as u32 })
        .unwrap();
    rec.submit().unwrap();
    let got: Vec<f32> = yb.read_vec().unwrap();
    check_close("snake", &got[c..], &want, 1e-5, 1e-5).unwrap();

    // Depthwise causal conv reading k − 1 history rows.
    let w = rng.vec(c * kk, 0.5);
    let b = rng.vec(c, 0.5);
    let want: Vec<f64> = (0..n * c)
        .map(|i| {
            let (t, ch) = (i / c, i % c);
            b[ch] as f64
                + (0..kk).map(|j| w[ch * kk + j] as f64 * x[(hist + t + j + 1 - kk) * c + ch] as f64).sum::<f64>()
        })
        .collect();
    let (wb, bb) = (up(&k, "w", &w), up(&k, "b", &b));
    let yb = out(&k, "y", &vec![0.0; n * c]);
    let mut rec = k.gpu().recorder(false).unwrap();
    k.dwconv(
        &mut rec,
        DwConv { x: &xb, x_off: hist as u32, w: &wb, b: &bb, y: &yb, n: n as u32, c: c as u32, k: kk as u32 },
    )
    .unwrap();
    rec.submit().unwrap();
    let got: Vec<f32> = yb.read_vec().unwrap();
    check_close("dwconv", &got, &want, 1e-5, 1e-5).unwrap();

    // LayerNorm per row.
    let (lw, lb) = (rng.vec(c, 1.0), rng.vec(c, 1.0));
    let (lwr, lbr) = (&lw, &lb);
    let want: Vec<f64> = x
        .chunks_exact(c)
        .flat_map(|r| {
            let mean = r.iter().map(|v| *v as f64).sum::<f64>() / c as f64;
            let var = r.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
            let inv = 1.0 / (var + 1e-6).sqrt();
            r.iter()
                .enumerate()
                .map(move |(i, v)| (*v as f64 - mean) * inv * lwr[i] as f64 + lbr[i] as f64)
                .collect::<Vec<_>>()
        })
        .collect();
    let (lwb, lbb) = (up(&k, "ln w", &lw), up(&k, "ln b", &lb));
    let yb = out(&k, "y", &vec![0.0; x.len()]);
    let mut rec = k.gpu().recorder(false).unwrap();
    k.layer_norm(
        &mut rec,
        LayerNorm { x: &xb, w: &lwb, b: &lbb, y: &yb, n: c as u32, rows: (hist + n) as u32, eps: 1e-6 },
    )
    .unwrap();
    rec.submit().unwrap();
    let got: Vec<f32> = yb.read_vec().unwrap();
    check_close("layer norm", &got, &want, 1e-5, 1e-5).unwrap();
    assert_clean(k.gpu());
}

#[test]
fn rope_rows_and_window_attention_match_reference() {
    let k = kernels();
    let mut rng = Rng::new(11);
    let (heads, kvh, hd, win) = (4usize, 2usize, 24usize, 6usize);
    for &(n, hist, valid, pos0) in &[(9usize, 5usize, 3usize, 3u32), (4, 5, 0, 0), (13, 5, 5, 40)] {
        let q = rng.vec(n * heads * hd, 1.0);
        let kv = rng.vec((hist + n) * kvh * hd, 1.0);
        let v = rng.vec((hist + n) * kvh * hd, 1.0);
        // RoPE reference on rows hist.. of kv (positions pos0..).
        let theta = 1e4f64;
        let rope = |x: &[f32], pos: u32| -> Vec<f64> {
            let half = hd / 2;
            let mut y: Vec<f64> = x.iter().map(|v| *v as f64).collect();
            for j in 0..half {
                let a = pos as f64 * theta.powf(-2.0 * j as f64 / hd as f64);
                let (s, c) = (a.sin(), a.cos());
                y[j] = x[j] as f64 * c - x[j + half] as f64 * s;
                y[j + half] = x[j + half] as f64 * c + x[j] as f64 * s;
            }
            y
        };
        let mut kr: Vec<f64> = kv.iter().map(|v| *v as f64).collect();
        for t in 0..n {
            for h in 0..kvh {
                let o = ((hist + t) * kvh + h) * hd;
                kr[o..o + hd].copy_from_slice(&rope(&kv[o..o + hd], pos0 + t as u32));
            }
        }
        let kb = out(&k, "k", &kv);
        let mut rec = k.gpu().recorder(false).unwrap();
        k.rope_rows(
            &mut rec,
            RopeSpan {
                x: &kb,
                row_off: hist as u32,
                n: n as u32,
                heads: kvh as u32,
                head_dim: hd as u32,
                pos0,
                theta: 1e4,
            },
        )
        .unwrap();
        rec.submit().unwrap();
        let got: Vec<f32> = kb.read_vec().unwrap();
        check_close("rope rows", &got, &kr, 1e-4, 1e-4).unwrap();

        // Attention over the roped keys.
        let kf = got;
        let mut want = vec![0f64; n * heads * hd];
        for t in 0..n {
            let me = hist + t;
            let lo = (hist - valid).max((me + 1).saturating_sub(win));
            for h in 0..heads {
                let kh = h / (heads / kvh);
                let qv = &q[(t * heads + h) * hd..(t * heads + h + 1) * hd];
                let sc: Vec<f64> = (lo..=me)
                    .map(|j| {
                        let kr = &kf[(j * kvh + kh) * hd..(j * kvh + kh + 1) * hd];
                        qv.iter().zip(kr).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let mx = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = sc.iter().map(|s| (s - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, ej) in (lo..=me).zip(&e) {
                    for d in 0..hd {
                        want[(t * heads + h) * hd + d] += ej / z * v[(j * kvh + kh) * hd + d] as f64;
                    }
                }
            }
        }
        let (qb, vb) = (up(&k, "q", &q), up(&k, "v", &v));
        let ob = out(&k, "o", &vec![0.0; n * heads * hd]);
        let mut rec = k.gpu().recorder(false).unwrap();
        k.attn_window(
            &mut rec,
            AttnWindow {
                q: &qb,
                k: &kb,
                v: &vb,
                o: &ob,
                n: n as u32,
                hist: hist as u32,
                valid: valid as u32,
                window: win as u32,
            },
            Heads { n_heads: heads as u32, n_kv: kvh as u32, head_dim: hd as u32 },
        )
        .unwrap();
        rec.submit().unwrap();
        let got: Vec<f32> = ob.read_vec().unwrap();
        check_close(&format!("window attention n{n} valid{valid}"), &got, &want, 1e-5, 1e-4).unwrap();
    }
    assert_clean(k.gpu());
}

#[test]
fn conv1d_linear_q8_0_planar_matches_reference() {
    let k = kernels();
    let mut rng = Rng::new(12);
    for (n, cin, cout) in [(37usize, 96usize, 130usize), (70, 64, 9)] {
        let x = rng.vec(n * cin, 1.0);
        let w = rng.vec(cout * cin, 0.2);
        let (ggml, deq) = qwen3_omni_vk::reference::quantize_matrix_q8_0(&w, cin);
        let planar = qwen3_omni_vk::layout::repack_q8_0_planar(&ggml, cout, cin).unwrap();
        let b = rng.vec(cout, 0.5);
        let sc = rng.vec(cout, 1.0);
        let y0 = rng.vec(n * cout, 1.0);
        let want: Vec<f64> = (0..n * cout)
            .map(|i| {
                let (t, co) = (i / cout, i % cout);
                let v = b[co] as f64 + (0..cin).map(|c| x[t * cin + c] as f64 * deq[co * cin + c] as f64).sum::<f64>();
                y0[i] as f64 + sc[co] as f64 * v
            })
            .collect();
        let wb = k.gpu().buffer_from("w planar", &planar, MemoryIntent::Upload).unwrap();
        let (xb, bb, sb) = (up(&k, "x", &x), up(&k, "b", &b), up(&k, "scale", &sc));
        let yb = out(&k, "y", &y0);
        let mut rec = k.gpu().recorder(false).unwrap();
        let sh = ConvShape::linear(n as u32, cin as u32, cout as u32);
        k.conv1d(
            &mut rec,
            sh,
            ConvWeights::Q8_0Planar(&wb),
            ConvIo { x: &xb, bias: Some(&bb), epilogue: ConvEpilogue::ScaledResidual, scale: Some(&sb), y: &yb },
        )
        .unwrap();
        rec.submit().unwrap();
        let got: Vec<f32> = yb.read_vec().unwrap();
        check_close(&format!("q8_0 planar linear {cin}→{cout}"), &got, &want, 1e-4, 1e-4).unwrap();
    }
    // Planar weights are for Linears only.
    let wb = k.gpu().buffer("w", 4096, MemoryIntent::Upload).unwrap();
    let mut rec = k.gpu().recorder(false).unwrap();
    let sh = ConvShape { m: 2, x_off: 1, ..ConvShape::linear(4, 32, 32) };
    assert!(k
        .conv1d(
            &mut rec,
            sh,
            ConvWeights::Q8_0Planar(&wb),
            ConvIo { x: &wb, bias: None, epilogue: ConvEpilogue::Store, scale: None, y: &wb }
        )
        .is_err());
    drop(rec);
    assert_clean(k.gpu());
}
