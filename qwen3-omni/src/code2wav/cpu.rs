//! Code2Wav on the CPU in f32, straight from the spec (§7): the oracle the GPU version and the
//! fixtures are compared with.
//!
//! It is written as a *streaming* decoder: every causal conv keeps the last `(k−1)·d` input rows
//! it has seen, every transposed conv its previous input row (and drops the `k − s` left-trimmed
//! samples once, at the very start), and the pre-transformer keeps the last `window − 1` keys and
//! values of each layer with positions counting on. A full decode is one push of every frame into
//! a fresh stream; because Code2Wav is causal (spec §7.5), pushing the same frames in any pieces
//! yields exactly the same samples, and after T frames exactly the `output_len(T)` samples of the
//! full decode have been emitted (nothing is held back, so `finish` has nothing to add).
//!
//! Activations are time-major (`[time, channels]` row-major).

use super::weights::{Code2WavWeights, Snake, CONV_K};
use super::{check_codes, Code2WavConfig, Code2WavError};
use crate::model_file::{ModelError, ModelFile};

/// The whole Code2Wav, dequantised to f32.
pub struct CpuCode2Wav {
    pub config: Code2WavConfig,
    pub w: Code2WavWeights,
}

/// Keeps the last `rows` rows of a time-major stream of `c` channels (zeros before the start).
struct Hist {
    rows: usize,
    c: usize,
    data: Vec<f32>,
}

impl Hist {
    fn new(rows: usize, c: usize) -> Hist {
        Hist { rows, c, data: vec![0.0; rows * c] }
    }
    /// History followed by `x`; the history then becomes the last `rows` rows of that.
    fn extend(&mut self, x: &[f32]) -> Vec<f32> {
        let mut ext = std::mem::take(&mut self.data);
        ext.extend_from_slice(x);
        let keep = self.rows * self.c;
        self.data = ext[ext.len() - keep..].to_vec();
        ext
    }
}

/// `y[t, o] = b[o] + Σ_i W[o, i] x[t, i]` for W `[out, in]`.
pub fn linear(x: &[f32], w: &[f32], b: Option<&[f32]>, cin: usize, cout: usize) -> Vec<f32> {
    let n = x.len() / cin;
    let mut y = vec![0.0f32; n * cout];
    for t in 0..n {
        let xr = &x[t * cin..(t + 1) * cin];
        for o in 0..cout {
            let wr = &w[o * cin..(o + 1) * cin];
            let s: f32 = wr.iter().zip(xr).map(|(a, b)| a * b).sum();
            y[t * cout + o] = s + b.map_or(0.0, |b| b[o]);
        }
    }
    y
}

/// Causal conv (stride 1) over `ext` = `(k−1)·d` history rows then the new rows; W `[out, in, k]`.
pub fn causal_conv(ext: &[f32], w: &[f32], b: &[f32], cin: usize, cout: usize, k: usize, d: usize) -> Vec<f32> {
    let h = (k - 1) * d;
    let n = ext.len() / cin - h;
    let mut y = vec![0.0f32; n * cout];
    for t in 0..n {
        for o in 0..cout {
            let mut s = b[o];
            for j in 0..k {
                let xr = &ext[(t + j * d) * cin..(t + j * d + 1) * cin];
                for (i, xv) in xr.iter().enumerate() {
                    s += w[(o * cin + i) * k + j] * xv;
                }
            }
            y[t * cout + o] = s;
        }
    }
    y
}

/// Depthwise causal conv over `ext` (`k−1` history rows then the new rows); W `[c, 1, k]`.
pub fn depthwise_conv(ext: &[f32], w: &[f32], b: &[f32], c: usize, k: usize) -> Vec<f32> {
    let n = ext.len() / c - (k - 1);
    let mut y = vec![0.0f32; n * c];
    for t in 0..n {
        for ch in 0..c {
            let mut s = b[ch];
            for j in 0..k {
                s += w[ch * k + j] * ext[(t + j) * c + ch];
            }
            y[t * c + ch] = s;
        }
    }
    y
}

/// Transposed conv with k = m·s over `ext` = `m − 1` previous input rows then `n` new ones: the
/// `n·s` output samples the new inputs complete (before any trimming). W `[in, out, k]`.
pub fn trans_conv(ext: &[f32], w: &[f32], b: &[f32], cin: usize, cout: usize, k: usize, s: usize) -> Vec<f32> {
    let m = k / s;
    let n = ext.len() / cin - (m - 1);
    let mut y = vec![0.0f32; n * s * cout];
    for i in 0..n {
        for p in 0..s {
            let row = &mut y[(i * s + p) * cout..(i * s + p + 1) * cout];
            row.copy_from_slice(b);
            for u in 0..m {
                let xr = &ext[(i + m - 1 - u) * cin..(i + m - u) * cin];
                for (ci, xv) in xr.iter().enumerate() {
                    let wr = &w[ci * cout * k..(ci + 1) * cout * k];
                    for (o, yv) in row.iter_mut().enumerate() {
                        *yv += wr[o * k + p + u * s] * xv;
                    }
                }
            }
        }
    }
    y
}

/// SnakeBeta with log-space parameters: `x + 1/(e^β + 1e-9) · sin²(e^α · x)` per channel.
pub fn snake(x: &[f32], s: &Snake) -> Vec<f32> {
    let c = s.alpha.len();
    let a: Vec<f32> = s.alpha.iter().map(|v| v.exp()).collect();
    let ib: Vec<f32> = s.beta.iter().map(|v| 1.0 / (v.exp() + 1e-9)).collect();
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = i % c;
            let sn = (a[ch] * v).sin();
            v + ib[ch] * sn * sn
        })
        .collect()
}

pub fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let c = w.len();
    let mut y = Vec::with_capacity(x.len());
    for r in x.chunks_exact(c) {
        let ms = r.iter().map(|v| v * v).sum::<f32>() / c as f32;
        let s = 1.0 / (ms + eps).sqrt();
        y.extend(r.iter().zip(w).map(|(v, g)| v * s * g));
    }
    y
}

pub fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32) -> Vec<f32> {
    let c = w.len();
    let mut y = Vec::with_capacity(x.len());
    for r in x.chunks_exact(c) {
        let mean = r.iter().sum::<f32>() / c as f32;
        let var = r.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / c as f32;
        let s = 1.0 / (var + eps).sqrt();
        y.extend(r.iter().zip(w).zip(b).map(|((v, g), bb)| (v - mean) * s * g + bb));
    }
    y
}

/// erf(x) with a fractional error below 1.2e-7 (Chebyshev fit of erfc); the GPU kernels use the
/// same formula.
pub fn erf(x: f32) -> f32 {
    let z = x.abs() as f64;
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let erfc = t * p.exp();
    (if x >= 0.0 { 1.0 - erfc } else { erfc - 1.0 }) as f32
}

pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

/// Rotate-half RoPE of one head at position `pos`.
pub fn rope(x: &mut [f32], pos: u32, theta: f32) {
    let half = x.len() / 2;
    for j in 0..half {
        let inv = 1.0 / (theta as f64).powf(2.0 * j as f64 / x.len() as f64);
        let a = pos as f64 * inv;
        let (s, c) = (a.sin() as f32, a.cos() as f32);
        let (x0, x1) = (x[j], x[j + half]);
        x[j] = x0 * c - x1 * s;
        x[j + half] = x1 * c + x0 * s;
    }
}

impl CpuCode2Wav {
    pub fn load(m: &ModelFile) -> Result<CpuCode2Wav, ModelError> {
        let config = Code2WavConfig::from_model(m)?;
        let w = Code2WavWeights::load(m, &config)?;
        Ok(CpuCode2Wav { config, w })
    }

    /// Mean of each frame's code embeddings (spec §7.1); `codes` is `[T, num_quantizers]`.
    pub fn embed(&self, codes: &[u32]) -> Vec<f32> {
        let c = &self.config;
        let (h, q) = (c.hidden as usize, c.num_quantizers as usize);
        let mut x = vec![0.0f32; codes.len() / q * h];
        for (t, f) in codes.chunks_exact(q).enumerate() {
            let row = &mut x[t * h..(t + 1) * h];
            for (g, &code) in f.iter().enumerate() {
                let e = (g * c.codebook_size as usize + code as usize) * h;
                for (r, v) in row.iter_mut().zip(&self.w.embed[e..e + h]) {
                    *r += v;
                }
            }
            for r in row.iter_mut() {
                *r /= q as f32;
            }
        }
        x
    }

    /// A fresh stream.
    pub fn stream(&self) -> CpuStream<'_> {
        let c = &self.config;
        let h = c.hidden as usize;
        let kvd = (c.n_kv_heads * c.head_dim) as usize;
        let k = CONV_K as usize;
        CpuStream {
            m: self,
            pos: 0,
            kv: (0..c.layers).map(|_| (Vec::new(), Vec::new())).collect(),
            up: self.w.upsample.iter().map(|_| Hist::new(k - 1, h)).collect(),
            dec0: Hist::new(k - 1, h),
            blocks: self
                .w
                .blocks
                .iter()
                .map(|b| BlockState {
                    prev: Hist::new(1, b.cin as usize),
                    skip: b.rate as usize,
                    units: b.units.iter().map(|u| Hist::new((k - 1) * u.dilation as usize, b.cout as usize)).collect(),
                })
                .collect(),
            fin: Hist::new(k - 1, c.final_channels() as usize),
            _kvd: kvd,
        }
    }

    /// One full decode of `codes` (`[T, num_quantizers]`): `output_len(T)` samples in [−1, 1].
    pub fn decode(&self, codes: &[u32]) -> Result<Vec<f32>, Code2WavError> {
        self.stream().push(codes)
    }

    /// transformers' `chunked_decode` (spec §7.6): independent decodes of `chunk` frames with up to
    /// `left_context` frames of context, each emitted from the context's end (555 samples are lost
    /// at every chunk boundary of the real model).
    pub fn chunked_decode(&self, codes: &[u32], chunk: usize, left_context: usize) -> Result<Vec<f32>, Code2WavError> {
        let q = self.config.num_quantizers as usize;
        check_codes(&self.config, codes)?;
        let t = codes.len() / q;
        let spf = self.config.samples_per_frame() as usize;
        let mut out = Vec::new();
        let mut start = 0;
        while start < t {
            let end = (start + chunk.max(1)).min(t);
            let ctx = left_context.min(start);
            let wav = self.decode(&codes[(start - ctx) * q..end * q])?;
            out.extend_from_slice(&wav[(ctx * spf).min(wav.len())..]);
            start = end;
        }
        Ok(out)
    }
}

struct BlockState {
    prev: Hist,
    /// Left-trimmed samples of the transposed conv still to drop.
    skip: usize,
    units: Vec<Hist>,
}

/// A streaming decode: push frames, get every sample they determine.
pub struct CpuStream<'a> {
    m: &'a CpuCode2Wav,
    pos: u32,
    /// Per layer: keys and values of the last `window − 1` positions (rows of kv_dim).
    kv: Vec<(Vec<f32>, Vec<f32>)>,
    /// Per upsampling stage: the depthwise conv's history (its transposed conv has k = s and
    /// needs none).
    up: Vec<Hist>,
    dec0: Hist,
    blocks: Vec<BlockState>,
    fin: Hist,
    _kvd: usize,
}

impl CpuStream<'_> {
    /// Frames pushed so far.
    pub fn frames(&self) -> u32 {
        self.pos
    }

    /// Decodes `codes` (`[n, num_quantizers]`) after the frames already pushed; returns the
    /// samples they complete (`output_len(T + n) − output_len(T)`).
    pub fn push(&mut self, codes: &[u32]) -> Result<Vec<f32>, Code2WavError> {
        let m = self.m;
        let c = &m.config;
        check_codes(c, codes)?;
        if codes.is_empty() {
            return Ok(Vec::new());
        }
        let n = codes.len() / c.num_quantizers as usize;
        let h = c.hidden as usize;
        let (nh, nkv, hd) = (c.n_heads as usize, c.n_kv_heads as usize, c.head_dim as usize);
        let (qd, kvd) = (nh * hd, nkv * hd);
        let win = c.sliding_window as usize;
        let mut x = m.embed(codes);

        // Pre-transformer (spec §7.2).
        for (l, lw) in m.w.layers.iter().enumerate() {
            let y = rms_norm(&x, &lw.attn_norm, c.rms_eps);
            let mut q = linear(&y, &lw.q, None, h, qd);
            let mut k = linear(&y, &lw.k, None, h, kvd);
            let v = linear(&y, &lw.v, None, h, kvd);
            for t in 0..n {
                let p = self.pos + t as u32;
                for hh in 0..nh {
                    rope(&mut q[t * qd + hh * hd..t * qd + (hh + 1) * hd], p, c.rope_theta);
                }
                for hh in 0..nkv {
                    rope(&mut k[t * kvd + hh * hd..t * kvd + (hh + 1) * hd], p, c.rope_theta);
                }
            }
            let (kc, vc) = &mut self.kv[l];
            let past = kc.len() / kvd;
            kc.extend_from_slice(&k);
            vc.extend_from_slice(&v);
            let scale = 1.0 / (hd as f32).sqrt();
            let mut att = vec![0.0f32; n * qd];
            for t in 0..n {
                let qi = past + t; // row of this query's own key
                let lo = (qi + 1).saturating_sub(win);
                for hh in 0..nh {
                    let kh = hh / (nh / nkv);
                    let qv = &q[t * qd + hh * hd..t * qd + (hh + 1) * hd];
                    let scores: Vec<f32> = (lo..=qi)
                        .map(|j| {
                            let kr = &kc[j * kvd + kh * hd..j * kvd + (kh + 1) * hd];
                            kr.iter().zip(qv).map(|(a, b)| a * b).sum::<f32>() * scale
                        })
                        .collect();
                    let mx = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let e: Vec<f32> = scores.iter().map(|s| (s - mx).exp()).collect();
                    let sum: f32 = e.iter().sum();
                    let o = &mut att[t * qd + hh * hd..t * qd + (hh + 1) * hd];
                    for (j, ej) in (lo..=qi).zip(&e) {
                        let vr = &vc[j * kvd + kh * hd..j * kvd + (kh + 1) * hd];
                        for (ov, vv) in o.iter_mut().zip(vr) {
                            *ov += ej / sum * vv;
                        }
                    }
                }
            }
            let keep = (win - 1).min(kc.len() / kvd);
            let drop = kc.len() - keep * kvd;
            kc.drain(..drop);
            vc.drain(..drop);
            let o = linear(&att, &lw.o, None, qd, h);
            for (i, xv) in x.iter_mut().enumerate() {
                *xv += lw.attn_scale[i % h] * o[i];
            }
            let y = rms_norm(&x, &lw.ffn_norm, c.rms_eps);
            let g = linear(&y, &lw.gate, None, h, c.inter as usize);
            let u = linear(&y, &lw.up, None, h, c.inter as usize);
            let a: Vec<f32> = g.iter().zip(&u).map(|(g, u)| silu(*g) * u).collect();
            let d = linear(&a, &lw.down, None, c.inter as usize, h);
            for (i, xv) in x.iter_mut().enumerate() {
                *xv += lw.mlp_scale[i % h] * d[i];
            }
        }
        x = rms_norm(&x, &m.w.norm, c.rms_eps);
        self.pos += n as u32;

        // Upsampling (spec §7.3).
        let k = CONV_K as usize;
        for (uw, dw_hist) in m.w.upsample.iter().zip(self.up.iter_mut()) {
            let r = uw.ratio as usize;
            let up = trans_conv(&x, &uw.tconv_w, &uw.tconv_b, h, h, r, r);
            let ext = dw_hist.extend(&up);
            let y = depthwise_conv(&ext, &uw.dw_w, &uw.dw_b, h, k);
            let y = layer_norm(&y, &uw.ln_w, &uw.ln_b, 1e-6);
            let mut y = linear(&y, &uw.pw1_w, Some(&uw.pw1_b), h, 4 * h);
            for v in y.iter_mut() {
                *v = gelu(*v);
            }
            let y = linear(&y, &uw.pw2_w, Some(&uw.pw2_b), 4 * h, h);
            x = up.iter().enumerate().map(|(i, v)| v + uw.gamma[i % h] * y[i]).collect();
        }

        // Decoder (spec §7.4).
        let dd = c.decoder_dim as usize;
        let ext = self.dec0.extend(&x);
        x = causal_conv(&ext, &m.w.dec0_w, &m.w.dec0_b, h, dd, k, 1);
        for (bw, st) in m.w.blocks.iter().zip(self.blocks.iter_mut()) {
            let (cin, cout, r) = (bw.cin as usize, bw.cout as usize, bw.rate as usize);
            let a = snake(&x, &bw.act);
            let ext = st.prev.extend(&a);
            let mut y = trans_conv(&ext, &bw.tconv_w, &bw.tconv_b, cin, cout, 2 * r, r);
            let drop = st.skip.min(y.len() / cout);
            y.drain(..drop * cout);
            st.skip -= drop;
            x = y;
            for (uw, hist) in bw.units.iter().zip(st.units.iter_mut()) {
                let a = snake(&x, &uw.act1);
                let ext = hist.extend(&a);
                let b1 = causal_conv(&ext, &uw.conv1_w, &uw.conv1_b, cout, cout, k, uw.dilation as usize);
                let a2 = snake(&b1, &uw.act2);
                let b2 = causal_conv(&a2, &uw.conv2_w, &uw.conv2_b, cout, cout, 1, 1);
                for (xv, yv) in x.iter_mut().zip(&b2) {
                    *xv += yv;
                }
            }
        }
        let cf = c.final_channels() as usize;
        let a = snake(&x, &m.w.final_act);
        let ext = self.fin.extend(&a);
        let y = causal_conv(&ext, &m.w.final_w, &m.w.final_b, cf, 1, k, 1);
        Ok(y.into_iter().map(|v| v.clamp(-1.0, 1.0)).collect())
    }

    /// Ends the stream. Every sample the pushed frames determine was already returned by `push`
    /// (the decode is causal), so this returns nothing; it exists so callers need not know that.
    pub fn finish(self) -> Vec<f32> {
        Vec::new()
    }
}
