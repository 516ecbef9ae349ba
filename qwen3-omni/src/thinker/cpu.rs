//! The Thinker on the CPU in f32, straight from the spec (§5.1–§5.4): a slow, simple oracle. Tests
//! use it to check the model file, the config and the weight orientation against transformers'
//! fixtures, and the GPU forward can be compared with it layer by layer when debugging.

use super::ThinkerConfig;
use crate::model_file::{ModelError, ModelFile};

struct Layer {
    attn_norm: Vec<f32>,
    wq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    wo: Vec<f32>,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    router: Vec<f32>,
    gate: Vec<Vec<f32>>,
    up: Vec<Vec<f32>>,
    down: Vec<Vec<f32>>,
}

/// The whole Thinker, dequantised to f32.
pub struct CpuThinker {
    pub config: ThinkerConfig,
    embed: Vec<f32>,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    lm_head: Vec<f32>,
}

/// What one forward over a sequence returns.
pub struct CpuForward {
    /// Logits of the last position.
    pub logits: Vec<f32>,
    /// `hidden[k]` as transformers' `output_hidden_states` (spec §5.4): 0 = embeddings, k = after
    /// layer k − 1, last = final normed output; each `[len, hidden]` row-major.
    pub hidden: Vec<Vec<f32>>,
}

fn load(m: &ModelFile, name: &str, shape: &[u64]) -> Result<Vec<f32>, ModelError> {
    m.tensor_f32(name, shape)
}

fn matvec(w: &[f32], x: &[f32]) -> Vec<f32> {
    w.chunks_exact(x.len()).map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
}

fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let s = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, g)| v * s * g).collect()
}

/// Rotate-half RoPE of one head at position `pos` (t = h = w, so MRoPE is 1-D RoPE: §5.2).
fn rope(x: &mut [f32], pos: u32, theta: f32) {
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

fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

impl CpuThinker {
    pub fn load(m: &ModelFile, c: &ThinkerConfig) -> Result<CpuThinker, ModelError> {
        let (h, v, hd) = (c.hidden as u64, c.vocab as u64, c.head_dim as u64);
        let (qd, kvd, inter) =
            ((c.n_heads * c.head_dim) as u64, (c.n_kv_heads * c.head_dim) as u64, c.moe_inter as u64);
        let mut layers = Vec::new();
        for l in 0..c.layers {
            let n = |s: &str| format!("thinker.model.layers.{l}.{s}");
            let e = |p: &str, shape: &[u64]| -> Result<Vec<Vec<f32>>, ModelError> {
                (0..c.n_experts).map(|i| load(m, &n(&format!("mlp.experts.{i}.{p}.weight")), shape)).collect()
            };
            layers.push(Layer {
                attn_norm: load(m, &n("input_layernorm.weight"), &[h])?,
                wq: load(m, &n("self_attn.q_proj.weight"), &[qd, h])?,
                wk: load(m, &n("self_attn.k_proj.weight"), &[kvd, h])?,
                wv: load(m, &n("self_attn.v_proj.weight"), &[kvd, h])?,
                wo: load(m, &n("self_attn.o_proj.weight"), &[h, qd])?,
                q_norm: load(m, &n("self_attn.q_norm.weight"), &[hd])?,
                k_norm: load(m, &n("self_attn.k_norm.weight"), &[hd])?,
                ffn_norm: load(m, &n("post_attention_layernorm.weight"), &[h])?,
                router: load(m, &n("mlp.gate.weight"), &[c.n_experts as u64, h])?,
                gate: e("gate_proj", &[inter, h])?,
                up: e("up_proj", &[inter, h])?,
                down: e("down_proj", &[h, inter])?,
            });
        }
        Ok(CpuThinker {
            config: c.clone(),
            embed: load(m, "thinker.model.embed_tokens.weight", &[v, h])?,
            layers,
            norm: load(m, "thinker.model.norm.weight", &[h])?,
            lm_head: load(m, "thinker.lm_head.weight", &[v, h])?,
        })
    }

    /// Runs the whole sequence `ids` (positions 0..len) with causal attention.
    pub fn forward(&self, ids: &[u32]) -> CpuForward {
        self.forward_embeds(self.embed_rows(ids))
    }

    /// The input embeddings of `ids`, one row per token.
    pub fn embed_rows(&self, ids: &[u32]) -> Vec<Vec<f32>> {
        let h = self.config.hidden as usize;
        ids.iter().map(|&t| self.embed[t as usize * h..(t as usize + 1) * h].to_vec()).collect()
    }

    /// [`CpuThinker::forward`] from input embeddings (e.g. with audio rows scattered in, spec §4.4).
    pub fn forward_embeds(&self, x: Vec<Vec<f32>>) -> CpuForward {
        let c = &self.config;
        let hd = c.head_dim as usize;
        let (nh, nkv) = (c.n_heads as usize, c.n_kv_heads as usize);
        let group = nh / nkv;
        let mut x = x;
        let mut hidden = vec![x.concat()];
        for l in &self.layers {
            let mut ks = Vec::new();
            let mut vs = Vec::new();
            let mut qs = Vec::new();
            for (p, xt) in x.iter().enumerate() {
                let y = rms_norm(xt, &l.attn_norm, c.rms_eps);
                let mut q = matvec(&l.wq, &y);
                let mut k = matvec(&l.wk, &y);
                for head in q.chunks_exact_mut(hd) {
                    let n = rms_norm(head, &l.q_norm, c.rms_eps);
                    head.copy_from_slice(&n);
                    rope(head, p as u32, c.rope_theta);
                }
                for head in k.chunks_exact_mut(hd) {
                    let n = rms_norm(head, &l.k_norm, c.rms_eps);
                    head.copy_from_slice(&n);
                    rope(head, p as u32, c.rope_theta);
                }
                qs.push(q);
                ks.push(k);
                vs.push(matvec(&l.wv, &y));
            }
            for (p, xt) in x.iter_mut().enumerate() {
                let mut o = vec![0.0f32; nh * hd];
                for head in 0..nh {
                    let kvh = head / group;
                    let q = &qs[p][head * hd..(head + 1) * hd];
                    let scores: Vec<f32> = (0..=p)
                        .map(|j| {
                            q.iter().zip(&ks[j][kvh * hd..(kvh + 1) * hd]).map(|(a, b)| a * b).sum::<f32>()
                                / (hd as f32).sqrt()
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let e: Vec<f32> = scores.iter().map(|s| (s - m).exp()).collect();
                    let sum: f32 = e.iter().sum();
                    for (j, w) in e.iter().enumerate() {
                        for d in 0..hd {
                            o[head * hd + d] += w / sum * vs[j][kvh * hd + d];
                        }
                    }
                }
                for (a, b) in xt.iter_mut().zip(matvec(&l.wo, &o)) {
                    *a += b;
                }
                let y = rms_norm(xt, &l.ffn_norm, c.rms_eps);
                let r = matvec(&l.router, &y);
                let m = r.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let p_: Vec<f32> = r.iter().map(|v| (v - m).exp()).collect();
                let s: f32 = p_.iter().sum();
                let mut order: Vec<usize> = (0..p_.len()).collect();
                order.sort_by(|&a, &b| p_[b].partial_cmp(&p_[a]).unwrap().then(a.cmp(&b)));
                let top = &order[..c.top_k as usize];
                let tw: f32 = top.iter().map(|&e| p_[e] / s).sum();
                for &e in top {
                    let w = if c.norm_topk { p_[e] / s / tw } else { p_[e] / s };
                    let g = matvec(&l.gate[e], &y);
                    let u = matvec(&l.up[e], &y);
                    let hmid: Vec<f32> = g.iter().zip(&u).map(|(a, b)| silu(*a) * b).collect();
                    for (a, b) in xt.iter_mut().zip(matvec(&l.down[e], &hmid)) {
                        *a += w * b;
                    }
                }
            }
            hidden.push(x.concat());
        }
        let normed: Vec<Vec<f32>> = x.iter().map(|t| rms_norm(t, &self.norm, c.rms_eps)).collect();
        let logits = matvec(&self.lm_head, normed.last().expect("a non-empty sequence"));
        hidden.push(normed.concat());
        CpuForward { logits, hidden }
    }

    /// `n` greedy tokens after `prompt` (ties → lowest id), re-running the sequence each step.
    pub fn greedy(&self, prompt: &[u32], n: usize) -> Vec<u32> {
        let mut ids = prompt.to_vec();
        let mut out = Vec::new();
        for _ in 0..n {
            let l = self.forward(&ids).logits;
            let best =
                l.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0
                    as u32;
            out.push(best);
            ids.push(best);
        }
        out
    }
}
