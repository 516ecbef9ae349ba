//! The AudioTower on the CPU in f32, written from the spec (§4.2): the oracle the GPU version and
//! the model file are checked against.

use super::config::{positional_table, AudioConfig, LN_EPS};
use crate::model_file::{ModelError, ModelFile};

struct Layer {
    ln1: (Vec<f32>, Vec<f32>),
    q: (Vec<f32>, Vec<f32>),
    k: (Vec<f32>, Vec<f32>),
    v: (Vec<f32>, Vec<f32>),
    o: (Vec<f32>, Vec<f32>),
    ln2: (Vec<f32>, Vec<f32>),
    fc1: (Vec<f32>, Vec<f32>),
    fc2: (Vec<f32>, Vec<f32>),
}

/// The AudioTower, dequantised to f32.
pub struct CpuAudioTower {
    pub config: AudioConfig,
    conv: [(Vec<f32>, Vec<f32>); 3],
    conv_out: Vec<f32>,
    layers: Vec<Layer>,
    ln_post: (Vec<f32>, Vec<f32>),
    proj1: (Vec<f32>, Vec<f32>),
    proj2: (Vec<f32>, Vec<f32>),
}

pub(crate) fn load_f32(m: &ModelFile, name: &str, shape: &[u64]) -> Result<Vec<f32>, ModelError> {
    m.tensor_f32(name, shape)
}

/// erf in f64 (series below 2.5, continued fraction above), for the exact GELU.
pub fn gelu(x: f32) -> f32 {
    qwen3_omni_vk::reference::gelu(x as f64) as f32
}

fn linear(x: &[f32], n: usize, w: &[f32], b: Option<&[f32]>, out: usize) -> Vec<f32> {
    let k = x.len() / n;
    let mut y = vec![0f32; n * out];
    for t in 0..n {
        let xr = &x[t * k..(t + 1) * k];
        for o in 0..out {
            let wr = &w[o * k..(o + 1) * k];
            let s: f32 = wr.iter().zip(xr).map(|(a, c)| a * c).sum();
            y[t * out + o] = s + b.map_or(0.0, |b| b[o]);
        }
    }
    y
}

fn layer_norm(x: &[f32], d: usize, p: &(Vec<f32>, Vec<f32>)) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    for (r, row) in x.chunks_exact(d).enumerate() {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let s = 1.0 / (var + LN_EPS).sqrt();
        for i in 0..d {
            y[r * d + i] = (row[i] - mean) * s * p.0[i] + p.1[i];
        }
    }
    y
}

/// 3×3 stride-2 pad-1 conv + bias + GELU: x `[cin, h, w]` → `[cout, ceil(h/2), ceil(w/2)]`.
fn conv(x: &[f32], cin: usize, h: usize, w: usize, p: &(Vec<f32>, Vec<f32>)) -> (Vec<f32>, usize, usize) {
    let cout = p.1.len();
    let (ho, wo) = (h.div_ceil(2), w.div_ceil(2));
    let mut y = vec![0f32; cout * ho * wo];
    for co in 0..cout {
        for oh in 0..ho {
            for ow in 0..wo {
                let mut acc = p.1[co];
                for ci in 0..cin {
                    for kh in 0..3 {
                        let ih = (2 * oh + kh) as isize - 1;
                        if ih < 0 || ih >= h as isize {
                            continue;
                        }
                        for kw in 0..3 {
                            let iw = (2 * ow + kw) as isize - 1;
                            if iw < 0 || iw >= w as isize {
                                continue;
                            }
                            acc +=
                                p.0[((co * cin + ci) * 3 + kh) * 3 + kw] * x[(ci * h + ih as usize) * w + iw as usize];
                        }
                    }
                }
                y[(co * ho + oh) * wo + ow] = gelu(acc);
            }
        }
    }
    (y, ho, wo)
}

impl CpuAudioTower {
    pub fn load(m: &ModelFile) -> Result<CpuAudioTower, ModelError> {
        let c = AudioConfig::from_model(m)?;
        let p = "thinker.audio_tower";
        let (d, ds, ffn) = (c.d_model as u64, c.conv_channels as u64, c.ffn as u64);
        let wb = |name: &str, shape: &[u64]| -> Result<(Vec<f32>, Vec<f32>), ModelError> {
            Ok((
                load_f32(m, &format!("{p}.{name}.weight"), shape)?,
                load_f32(m, &format!("{p}.{name}.bias"), &[shape[0]])?,
            ))
        };
        let conv = [wb("conv2d1", &[ds, 1, 3, 3])?, wb("conv2d2", &[ds, ds, 3, 3])?, wb("conv2d3", &[ds, ds, 3, 3])?];
        let conv_out = load_f32(m, &format!("{p}.conv_out.weight"), &[d, c.flat_features() as u64])?;
        let mut layers = Vec::new();
        for l in 0..c.layers {
            let n = |s: &str| format!("layers.{l}.{s}");
            layers.push(Layer {
                ln1: wb(&n("self_attn_layer_norm"), &[d])?,
                q: wb(&n("self_attn.q_proj"), &[d, d])?,
                k: wb(&n("self_attn.k_proj"), &[d, d])?,
                v: wb(&n("self_attn.v_proj"), &[d, d])?,
                o: wb(&n("self_attn.out_proj"), &[d, d])?,
                ln2: wb(&n("final_layer_norm"), &[d])?,
                fc1: wb(&n("fc1"), &[ffn, d])?,
                fc2: wb(&n("fc2"), &[d, ffn])?,
            });
        }
        Ok(CpuAudioTower {
            conv,
            conv_out,
            layers,
            ln_post: wb("ln_post", &[d])?,
            proj1: wb("proj1", &[d, d])?,
            proj2: wb("proj2", &[c.out_dim as u64, d])?,
            config: c,
        })
    }

    /// mel `[n_mels, frames]` → Thinker embeddings `[tokens, out_dim]`.
    pub fn forward(&self, mel: &[f32], frames: usize) -> Vec<f32> {
        let c = &self.config;
        let (nm, d, ds) = (c.n_mels as usize, c.d_model as usize, c.conv_channels as usize);
        let plan = c.plan(frames as u32);
        let lmax = plan.lmax as usize;
        let pe = positional_table(plan.conv_t, c.d_model);
        let mut h: Vec<f32> = Vec::new();
        for (j, &len) in plan.lens.iter().enumerate() {
            // Chunk j, zero-padded to lmax frames.
            let mut x = vec![0f32; nm * lmax];
            for b in 0..nm {
                for t in 0..len as usize {
                    x[b * lmax + t] = mel[b * frames + j * plan.chunk as usize + t];
                }
            }
            let (y1, h1, w1) = conv(&x, 1, nm, lmax, &self.conv[0]);
            let (y2, h2, w2) = conv(&y1, ds, h1, w1, &self.conv[1]);
            let (y3, h3, w3) = conv(&y2, ds, h2, w2, &self.conv[2]);
            // Flatten: per time step, feature c·h3 + f.
            let mut flat = vec![0f32; w3 * ds * h3];
            for t in 0..w3 {
                for ch in 0..ds {
                    for f in 0..h3 {
                        flat[t * ds * h3 + ch * h3 + f] = y3[(ch * h3 + f) * w3 + t];
                    }
                }
            }
            let mut e = linear(&flat, w3, &self.conv_out, None, d);
            for (i, v) in e.iter_mut().enumerate() {
                *v += pe[i];
            }
            let keep = super::config::conv_len(len) as usize;
            h.extend_from_slice(&e[..keep * d]);
        }
        let n = plan.tokens as usize;
        let (hd, nh) = (c.head_dim as usize, c.heads as usize);
        let scale = 1.0 / (hd as f32).sqrt();
        let w = plan.window as usize;
        for l in &self.layers {
            let y = layer_norm(&h, d, &l.ln1);
            let q = linear(&y, n, &l.q.0, Some(&l.q.1), d);
            let k = linear(&y, n, &l.k.0, Some(&l.k.1), d);
            let v = linear(&y, n, &l.v.0, Some(&l.v.1), d);
            let mut o = vec![0f32; n * d];
            for t in 0..n {
                let (w0, w1) = (t / w * w, (t / w * w + w).min(n));
                for hh in 0..nh {
                    let qs = &q[t * d + hh * hd..t * d + (hh + 1) * hd];
                    let s: Vec<f32> = (w0..w1)
                        .map(|j| qs.iter().zip(&k[j * d + hh * hd..]).map(|(a, b)| a * b).sum::<f32>() * scale)
                        .collect();
                    let m = s.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let e: Vec<f32> = s.iter().map(|x| (x - m).exp()).collect();
                    let z: f32 = e.iter().sum();
                    for dd in 0..hd {
                        o[t * d + hh * hd + dd] =
                            (w0..w1).zip(&e).map(|(j, p)| p * v[j * d + hh * hd + dd]).sum::<f32>() / z;
                    }
                }
            }
            let a = linear(&o, n, &l.o.0, Some(&l.o.1), d);
            h.iter_mut().zip(&a).for_each(|(x, y)| *x += y);
            let y = layer_norm(&h, d, &l.ln2);
            let mut f = linear(&y, n, &l.fc1.0, Some(&l.fc1.1), c.ffn as usize);
            f.iter_mut().for_each(|v| *v = gelu(*v));
            let a = linear(&f, n, &l.fc2.0, Some(&l.fc2.1), d);
            h.iter_mut().zip(&a).for_each(|(x, y)| *x += y);
        }
        let y = layer_norm(&h, d, &self.ln_post);
        let mut p = linear(&y, n, &self.proj1.0, Some(&self.proj1.1), d);
        p.iter_mut().for_each(|v| *v = gelu(*v));
        linear(&p, n, &self.proj2.0, Some(&self.proj2.1), c.out_dim as usize)
    }
}
