//! The Talker and its code predictor on the CPU in f32, straight from the spec (§6): a slow,
//! simple oracle with KV caches. Tests check it against transformers' fixtures; the GPU version
//! is checked against both.

use quantizer::codec::dequantize_q8_0;
use quantizer::gguf::GgmlType;

use super::prompt::{Row, TextSide};
use super::{DecoderConfig, TalkerConfig};
use crate::model_file::{ModelError, ModelFile};

/// A tensor of `m` dequantised to f32 (Q8_0, F16 or F32).
pub fn load_f32(m: &ModelFile, name: &str, shape: &[u64]) -> Result<Vec<f32>, ModelError> {
    m.tensor_f32(name, shape)
}

/// Row `id` of the Thinker's input embedding (`E(id)`, spec §6.1), dequantised on the CPU from the
/// memory-mapped file: what text_projection reads, without the Thinker's GPU state.
pub fn thinker_embedding(m: &ModelFile, id: u32) -> Result<Vec<f32>, ModelError> {
    let name = "thinker.model.embed_tokens.weight";
    let info = m
        .gguf
        .header
        .tensor(name)
        .ok_or_else(|| ModelError::MissingTensor { path: m.path().to_path_buf(), name: name.into() })?;
    let shape: Vec<u64> = info.dims.iter().rev().copied().collect();
    let t = m.tensor_typed(name, &shape, &[GgmlType::Q8_0])?;
    let (rows, cols) = (shape[0], shape.get(1).copied().unwrap_or(0));
    if id as u64 >= rows || cols % 32 != 0 {
        return Err(m.config_err(name, &format!("token {id} is outside the embedding's {rows} rows")));
    }
    let row = (cols / 32 * 34) as usize;
    let e = dequantize_q8_0(&t.data[id as usize * row..(id as usize + 1) * row]);
    if e.iter().any(|x| !x.is_finite()) {
        return Err(ModelError::NonFinite {
            path: m.path().to_path_buf(),
            name: name.into(),
            what: format!("row {id} has a Q8_0 block with a non-finite scale"),
        });
    }
    Ok(e)
}

pub(crate) fn matvec(w: &[f32], x: &[f32]) -> Vec<f32> {
    w.chunks_exact(x.len()).map(|r| r.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
}

fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let s = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, g)| v * s * g).collect()
}

/// Rotate-half RoPE of one head at `pos` (text/audio: t = h = w, so MRoPE is 1-D RoPE: §5.2).
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

fn swiglu(gate: &[f32], up: &[f32], down: &[f32], y: &[f32]) -> Vec<f32> {
    let g = matvec(gate, y);
    let u = matvec(up, y);
    let h: Vec<f32> = g.iter().zip(&u).map(|(a, b)| silu(*a) * b).collect();
    matvec(down, &h)
}

/// `P(x) = W2 · silu(W1·x + b1) + b2` (text_projection / hidden_projection, §6.1).
pub struct ResizeMlp {
    w1: Vec<f32>,
    b1: Vec<f32>,
    w2: Vec<f32>,
    b2: Vec<f32>,
}

impl ResizeMlp {
    fn load(m: &ModelFile, p: &str, input: u64, inter: u64, out: u64) -> Result<ResizeMlp, ModelError> {
        Ok(ResizeMlp {
            w1: load_f32(m, &format!("{p}.linear_fc1.weight"), &[inter, input])?,
            b1: load_f32(m, &format!("{p}.linear_fc1.bias"), &[inter])?,
            w2: load_f32(m, &format!("{p}.linear_fc2.weight"), &[out, inter])?,
            b2: load_f32(m, &format!("{p}.linear_fc2.bias"), &[out])?,
        })
    }

    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        let h: Vec<f32> = matvec(&self.w1, x).iter().zip(&self.b1).map(|(a, b)| silu(a + b)).collect();
        matvec(&self.w2, &h).iter().zip(&self.b2).map(|(a, b)| a + b).collect()
    }
}

enum Mlp {
    Moe {
        router: Vec<f32>,
        gate: Vec<Vec<f32>>,
        up: Vec<Vec<f32>>,
        down: Vec<Vec<f32>>,
        sh_gate: Vec<f32>,
        sh_up: Vec<f32>,
        sh_down: Vec<f32>,
        sh_w: Vec<f32>,
    },
    Dense {
        gate: Vec<f32>,
        up: Vec<f32>,
        down: Vec<f32>,
    },
}

struct Layer {
    attn_norm: Vec<f32>,
    wq: Vec<f32>,
    wk: Vec<f32>,
    wv: Vec<f32>,
    wo: Vec<f32>,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    mlp: Mlp,
}

/// A Qwen3 decoder stack (MoE with shared expert for the Talker, dense for the code predictor).
pub struct Decoder {
    c: DecoderConfig,
    layers: Vec<Layer>,
    norm: Vec<f32>,
}

/// Per-layer K and V rows, position-major.
#[derive(Default, Clone)]
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Decoder {
    fn load(m: &ModelFile, prefix: &str, c: &DecoderConfig) -> Result<Decoder, ModelError> {
        let (h, hd) = (c.hidden as u64, c.head_dim as u64);
        let (qd, kvd) = ((c.n_heads * c.head_dim) as u64, (c.n_kv_heads * c.head_dim) as u64);
        let mut layers = Vec::new();
        for l in 0..c.layers {
            let n = |s: &str| format!("{prefix}.layers.{l}.{s}");
            let mlp = if c.n_experts > 0 {
                let inter = c.moe_inter as u64;
                let e = |p: &str, shape: &[u64]| -> Result<Vec<Vec<f32>>, ModelError> {
                    (0..c.n_experts).map(|i| load_f32(m, &n(&format!("mlp.experts.{i}.{p}.weight")), shape)).collect()
                };
                let si = c.shared_inter as u64;
                Mlp::Moe {
                    router: load_f32(m, &n("mlp.gate.weight"), &[c.n_experts as u64, h])?,
                    gate: e("gate_proj", &[inter, h])?,
                    up: e("up_proj", &[inter, h])?,
                    down: e("down_proj", &[h, inter])?,
                    sh_gate: load_f32(m, &n("mlp.shared_expert.gate_proj.weight"), &[si, h])?,
                    sh_up: load_f32(m, &n("mlp.shared_expert.up_proj.weight"), &[si, h])?,
                    sh_down: load_f32(m, &n("mlp.shared_expert.down_proj.weight"), &[h, si])?,
                    sh_w: load_f32(m, &n("mlp.shared_expert_gate.weight"), &[1, h])?,
                }
            } else {
                let inter = c.inter as u64;
                Mlp::Dense {
                    gate: load_f32(m, &n("mlp.gate_proj.weight"), &[inter, h])?,
                    up: load_f32(m, &n("mlp.up_proj.weight"), &[inter, h])?,
                    down: load_f32(m, &n("mlp.down_proj.weight"), &[h, inter])?,
                }
            };
            layers.push(Layer {
                attn_norm: load_f32(m, &n("input_layernorm.weight"), &[h])?,
                wq: load_f32(m, &n("self_attn.q_proj.weight"), &[qd, h])?,
                wk: load_f32(m, &n("self_attn.k_proj.weight"), &[kvd, h])?,
                wv: load_f32(m, &n("self_attn.v_proj.weight"), &[kvd, h])?,
                wo: load_f32(m, &n("self_attn.o_proj.weight"), &[h, qd])?,
                q_norm: load_f32(m, &n("self_attn.q_norm.weight"), &[hd])?,
                k_norm: load_f32(m, &n("self_attn.k_norm.weight"), &[hd])?,
                ffn_norm: load_f32(m, &n("post_attention_layernorm.weight"), &[h])?,
                mlp,
            });
        }
        Ok(Decoder { c: c.clone(), layers, norm: load_f32(m, &format!("{prefix}.norm.weight"), &[h])? })
    }

    /// One token `x` at the next position of `cache` (positions 0, 1, … — the Talker's and code
    /// predictor's inputs are text/codec only, so MRoPE is 1-D RoPE); returns the final normed hidden.
    pub fn step(&self, x: &[f32], cache: &mut KvCache) -> Vec<f32> {
        let c = &self.c;
        let (hd, nh, nkv) = (c.head_dim as usize, c.n_heads as usize, c.n_kv_heads as usize);
        let group = nh / nkv;
        if cache.k.is_empty() {
            cache.k = vec![Vec::new(); self.layers.len()];
            cache.v = vec![Vec::new(); self.layers.len()];
        }
        let pos = cache.k[0].len() / (nkv * hd);
        let mut x = x.to_vec();
        for (li, l) in self.layers.iter().enumerate() {
            let y = rms_norm(&x, &l.attn_norm, c.rms_eps);
            let mut q = matvec(&l.wq, &y);
            let mut k = matvec(&l.wk, &y);
            for head in q.chunks_exact_mut(hd) {
                let n = rms_norm(head, &l.q_norm, c.rms_eps);
                head.copy_from_slice(&n);
                rope(head, pos as u32, c.rope_theta);
            }
            for head in k.chunks_exact_mut(hd) {
                let n = rms_norm(head, &l.k_norm, c.rms_eps);
                head.copy_from_slice(&n);
                rope(head, pos as u32, c.rope_theta);
            }
            cache.k[li].extend_from_slice(&k);
            cache.v[li].extend(matvec(&l.wv, &y));
            let (ks, vs) = (&cache.k[li], &cache.v[li]);
            let mut o = vec![0.0f32; nh * hd];
            for head in 0..nh {
                let kvh = head / group;
                let qh = &q[head * hd..(head + 1) * hd];
                let scores: Vec<f32> = (0..=pos)
                    .map(|j| {
                        let kr = &ks[(j * nkv + kvh) * hd..(j * nkv + kvh + 1) * hd];
                        qh.iter().zip(kr).map(|(a, b)| a * b).sum::<f32>() / (hd as f32).sqrt()
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = scores.iter().map(|s| (s - mx).exp()).collect();
                let sum: f32 = e.iter().sum();
                for (j, w) in e.iter().enumerate() {
                    let vr = &vs[(j * nkv + kvh) * hd..(j * nkv + kvh + 1) * hd];
                    for d in 0..hd {
                        o[head * hd + d] += w / sum * vr[d];
                    }
                }
            }
            for (a, b) in x.iter_mut().zip(matvec(&l.wo, &o)) {
                *a += b;
            }
            let y = rms_norm(&x, &l.ffn_norm, c.rms_eps);
            match &l.mlp {
                Mlp::Dense { gate, up, down } => {
                    for (a, b) in x.iter_mut().zip(swiglu(gate, up, down, &y)) {
                        *a += b;
                    }
                }
                Mlp::Moe { router, gate, up, down, sh_gate, sh_up, sh_down, sh_w } => {
                    let r = matvec(router, &y);
                    let mx = r.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let p: Vec<f32> = r.iter().map(|v| (v - mx).exp()).collect();
                    let s: f32 = p.iter().sum();
                    let mut order: Vec<usize> = (0..p.len()).collect();
                    order.sort_by(|&a, &b| p[b].partial_cmp(&p[a]).unwrap().then(a.cmp(&b)));
                    let top = &order[..c.top_k as usize];
                    let tw: f32 = top.iter().map(|&e| p[e] / s).sum();
                    for &e in top {
                        let w = if c.norm_topk { p[e] / s / tw } else { p[e] / s };
                        for (a, b) in x.iter_mut().zip(swiglu(&gate[e], &up[e], &down[e], &y)) {
                            *a += w * b;
                        }
                    }
                    let g = 1.0 / (1.0 + (-matvec(sh_w, &y)[0]).exp());
                    for (a, b) in x.iter_mut().zip(swiglu(sh_gate, sh_up, sh_down, &y)) {
                        *a += g * b;
                    }
                }
            }
        }
        rms_norm(&x, &self.norm, c.rms_eps)
    }
}

/// Code-0 logits → the greedy code (spec §6.4 without temperature): repetition penalty over the
/// distinct previously generated codes, suppression of `[start, vocab)` except EOS; ties → lowest id.
pub fn greedy_code0(logits: &[f32], prev: &[u32], penalty: f32, suppress_start: u32, eos: u32) -> u32 {
    let mut z = logits.to_vec();
    let mut seen = std::collections::BTreeSet::new();
    for &p in prev {
        if (p as usize) < z.len() && seen.insert(p) {
            let l = &mut z[p as usize];
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
    for (i, v) in z.iter_mut().enumerate().skip(suppress_start as usize) {
        if i as u32 != eos {
            *v = f32::NEG_INFINITY;
        }
    }
    argmax(&z)
}

fn argmax(z: &[f32]) -> u32 {
    z.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0 as u32
}

/// The whole Talker, dequantised to f32.
pub struct CpuTalker {
    pub config: TalkerConfig,
    talker: Decoder,
    predictor: Decoder,
    codec_embed: Vec<f32>,
    codec_head: Vec<f32>,
    text_proj: ResizeMlp,
    hidden_proj: ResizeMlp,
    cp_embed: Vec<Vec<f32>>,
    cp_head: Vec<Vec<f32>>,
}

/// What a greedy run returns (shapes as transformers' fixture).
#[derive(Debug, Clone, Default)]
pub struct CpuRun {
    /// Code 0 of every Talker step (prefill first), EOS included if reached.
    pub code0: Vec<u32>,
    /// Codes 1..groups of every frame (frames whose code 0 is not EOS).
    pub residual: Vec<Vec<u32>>,
    /// Logits of code 0 after the prefill.
    pub code0_logits_first: Vec<f32>,
    /// The Talker's final normed hidden of each step.
    pub hidden: Vec<Vec<f32>>,
    /// Code-predictor logits of each group of the first frame.
    pub cp_logits_first: Vec<Vec<f32>>,
}

impl CpuTalker {
    pub fn load(m: &ModelFile, c: &TalkerConfig) -> Result<CpuTalker, ModelError> {
        let (t, p) = (&c.talker, &c.predictor);
        let (h, th) = (t.hidden as u64, c.thinker_hidden as u64);
        let g = c.groups as usize - 1;
        Ok(CpuTalker {
            config: c.clone(),
            talker: Decoder::load(m, "talker.model", t)?,
            predictor: Decoder::load(m, "talker.code_predictor.model", p)?,
            codec_embed: load_f32(m, "talker.model.codec_embedding.weight", &[t.vocab as u64, h])?,
            codec_head: load_f32(m, "talker.codec_head.weight", &[t.vocab as u64, h])?,
            text_proj: ResizeMlp::load(m, "talker.text_projection", th, t.inter as u64, h)?,
            hidden_proj: ResizeMlp::load(m, "talker.hidden_projection", th, t.inter as u64, h)?,
            cp_embed: (0..g)
                .map(|j| {
                    load_f32(
                        m,
                        &format!("talker.code_predictor.model.codec_embedding.{j}.weight"),
                        &[p.vocab as u64, h],
                    )
                })
                .collect::<Result<_, _>>()?,
            cp_head: (0..g)
                .map(|j| load_f32(m, &format!("talker.code_predictor.lm_head.{j}.weight"), &[p.vocab as u64, h]))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn text_projection(&self, x: &[f32]) -> Vec<f32> {
        self.text_proj.apply(x)
    }

    pub fn hidden_projection(&self, x: &[f32]) -> Vec<f32> {
        self.hidden_proj.apply(x)
    }

    /// `C(id)`: a row of the Talker's codec embedding.
    pub fn codec_embedding(&self, id: u32) -> &[f32] {
        let h = self.config.talker.hidden as usize;
        &self.codec_embed[id as usize * h..(id as usize + 1) * h]
    }

    /// The Talker-space vector of a text side: `embed(id)` gives the Thinker's E(id) and
    /// `hidden(pos)` its hs[accept] at a prompt position.
    pub fn text_side(
        &self,
        t: TextSide,
        embed: &dyn Fn(u32) -> Vec<f32>,
        hidden: &dyn Fn(usize) -> Vec<f32>,
    ) -> Vec<f32> {
        let i = &self.config.ids;
        match t {
            TextSide::Token(id) => self.text_projection(&embed(id)),
            TextSide::Hidden(p) => self.hidden_projection(&hidden(p)),
            TextSide::Pad => self.text_projection(&embed(i.tts_pad)),
            TextSide::Bos => self.text_projection(&embed(i.tts_bos)),
            TextSide::Eos => self.text_projection(&embed(i.tts_eos)),
            TextSide::Zero => vec![0.0; self.config.talker.hidden as usize],
        }
    }

    /// A prompt row's Talker input: text side + C(codec).
    pub fn row(&self, r: &Row, embed: &dyn Fn(u32) -> Vec<f32>, hidden: &dyn Fn(usize) -> Vec<f32>) -> Vec<f32> {
        let mut x = self.text_side(r.text, embed, hidden);
        if let Some(c) = r.codec {
            for (a, b) in x.iter_mut().zip(self.codec_embedding(c)) {
                *a += b;
            }
        }
        x
    }

    /// Codes 1..groups of one frame (spec §6.5), greedy; also the logits of every group.
    pub fn predict_frame(&self, hidden: &[f32], code0: u32) -> (Vec<u32>, Vec<Vec<f32>>, Vec<f32>) {
        let mut cache = KvCache::default();
        self.predictor.step(hidden, &mut cache);
        let mut x = self.codec_embedding(code0).to_vec();
        let mut sum = x.clone();
        let (mut codes, mut logits) = (Vec::new(), Vec::new());
        for j in 0..self.cp_head.len() {
            let hn = self.predictor.step(&x, &mut cache);
            let l = matvec(&self.cp_head[j], &hn);
            let c = argmax(&l);
            codes.push(c);
            logits.push(l);
            let h = self.config.predictor.hidden as usize;
            x = self.cp_embed[j][c as usize * h..(c as usize + 1) * h].to_vec();
            for (a, b) in sum.iter_mut().zip(&x) {
                *a += b;
            }
        }
        (codes, logits, sum)
    }

    /// Greedy generation (spec §6.6) from prompt rows (Talker space, `[L][hidden]`) with the text
    /// side of each decode step from `text(t)`, for at most `max_steps` Talker steps; the last code 0
    /// of a run stopped by the cap gets no residual codes (as transformers).
    pub fn generate_greedy(
        &self,
        prompt: &[Vec<f32>],
        text: &dyn Fn(usize) -> Vec<f32>,
        max_steps: usize,
        penalty: f32,
    ) -> CpuRun {
        let c = &self.config;
        let mut cache = KvCache::default();
        let mut hn = Vec::new();
        for x in prompt {
            hn = self.talker.step(x, &mut cache);
        }
        let mut run = CpuRun::default();
        for t in 0..max_steps {
            let logits = matvec(&self.codec_head, &hn);
            let c0 = greedy_code0(&logits, &run.code0, penalty, c.suppress_start(), c.ids.codec_eos);
            if t == 0 {
                run.code0_logits_first = logits;
            }
            run.code0.push(c0);
            run.hidden.push(hn.clone());
            if c0 == c.ids.codec_eos || t + 1 == max_steps {
                break;
            }
            let (codes, cpl, mut x) = self.predict_frame(&hn, c0);
            if t == 0 {
                run.cp_logits_first = cpl;
            }
            run.residual.push(codes);
            for (a, b) in x.iter_mut().zip(text(t)) {
                *a += b;
            }
            hn = self.talker.step(&x, &mut cache);
        }
        run
    }
}
