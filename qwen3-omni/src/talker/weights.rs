//! Talker and code-predictor weights on the GPU: Q8_0 matrices repacked into the planar layout
//! while copied (as the Thinker's), routed experts of one projection stacked in one buffer, the
//! shared expert as a one-expert stack, routers / shared-expert gates / norms / biases in f32.

use quantizer::gguf::GgmlType;
use qwen3_omni_vk::layout::PlanarLayout;
use qwen3_omni_vk::vk_runtime::{Buffer, Gpu, MemoryIntent};

use super::{DecoderConfig, TalkerConfig};
use crate::model_file::{ModelError, ModelFile, TensorRef};
use crate::thinker::expert_stride;

/// Attention weights of one layer.
pub struct AttnWeights {
    pub attn_norm: Buffer,
    pub q: Buffer,
    pub k: Buffer,
    pub v: Buffer,
    pub o: Buffer,
    pub q_norm: Buffer,
    pub k_norm: Buffer,
    pub ffn_norm: Buffer,
}

/// A Talker layer's MoE block.
pub struct MoeWeights {
    /// Router `[n_experts, hidden]` f32.
    pub router: Buffer,
    /// Stacked planar experts (expert e at `e * expert_stride(rows, cols)`).
    pub gate: Buffer,
    pub up: Buffer,
    pub down: Buffer,
    /// The shared expert, planar (a one-expert stack for the MoE kernels).
    pub sh_gate: Buffer,
    pub sh_up: Buffer,
    pub sh_down: Buffer,
    /// `shared_expert_gate` `[1, hidden]` f32.
    pub sh_w: Buffer,
}

/// A code-predictor layer's dense SwiGLU MLP (planar).
pub struct DenseWeights {
    pub gate: Buffer,
    pub up: Buffer,
    pub down: Buffer,
}

/// text_projection / hidden_projection: planar fc1 `[inter, thinker_hidden]`, fc2 `[hidden, inter]`,
/// f32 biases.
pub struct ProjWeights {
    pub w1: Buffer,
    pub b1: Buffer,
    pub w2: Buffer,
    pub b2: Buffer,
}

pub struct TalkerWeights {
    pub layers: Vec<(AttnWeights, MoeWeights)>,
    pub norm: Buffer,
    /// `[vocab, hidden]` planar: the codec embedding C(·) and the codec head.
    pub codec_embed: Buffer,
    pub codec_head: Buffer,
    pub text_proj: ProjWeights,
    pub hidden_proj: ProjWeights,
    pub cp_layers: Vec<(AttnWeights, DenseWeights)>,
    pub cp_norm: Buffer,
    /// `[cp_vocab, hidden]` planar, groups − 1 of each: CP_j and lm_head.j.
    pub cp_embed: Vec<Buffer>,
    pub cp_head: Vec<Buffer>,
}

fn fill_planar(buf: &mut Buffer, offset: u64, t: &TensorRef<'_>, rows: u64, cols: u64) -> Result<(), ModelError> {
    let total = PlanarLayout::new(rows, cols).total() as usize;
    if let Some(mapped) = buf.mapped_mut() {
        t.repack_planar_into(rows, cols, &mut mapped[offset as usize..offset as usize + total])?;
    } else {
        let mut tmp = vec![0u8; total];
        t.repack_planar_into(rows, cols, &mut tmp)?;
        buf.write(offset, &tmp)?;
    }
    Ok(())
}

fn q8(gpu: &Gpu, m: &ModelFile, name: &str, rows: u64, cols: u64) -> Result<Buffer, ModelError> {
    let t = m.tensor_typed(name, &[rows, cols], &[GgmlType::Q8_0])?;
    let mut buf = gpu.buffer(name, PlanarLayout::new(rows, cols).total(), MemoryIntent::Weights)?;
    fill_planar(&mut buf, 0, &t, rows, cols)?;
    Ok(buf)
}

fn f32v(gpu: &Gpu, m: &ModelFile, name: &str, shape: &[u64]) -> Result<Buffer, ModelError> {
    let t = m.tensor_typed(name, shape, &[GgmlType::F32])?;
    Ok(gpu.buffer_from(name, t.data, MemoryIntent::Weights)?)
}

fn experts(gpu: &Gpu, m: &ModelFile, p: &str, proj: &str, n: u32, rows: u64, cols: u64) -> Result<Buffer, ModelError> {
    let stride = expert_stride(rows, cols);
    let mut buf = gpu.buffer(&format!("{p}.mlp.experts.*.{proj}.weight"), stride * n as u64, MemoryIntent::Weights)?;
    for e in 0..n {
        let t = m.tensor_typed(&format!("{p}.mlp.experts.{e}.{proj}.weight"), &[rows, cols], &[GgmlType::Q8_0])?;
        fill_planar(&mut buf, e as u64 * stride, &t, rows, cols)?;
    }
    Ok(buf)
}

fn attn(gpu: &Gpu, m: &ModelFile, p: &str, d: &DecoderConfig) -> Result<AttnWeights, ModelError> {
    let (h, hd) = (d.hidden as u64, d.head_dim as u64);
    let (qd, kvd) = ((d.n_heads * d.head_dim) as u64, (d.n_kv_heads * d.head_dim) as u64);
    let n = |s: &str| format!("{p}.{s}");
    Ok(AttnWeights {
        attn_norm: f32v(gpu, m, &n("input_layernorm.weight"), &[h])?,
        q: q8(gpu, m, &n("self_attn.q_proj.weight"), qd, h)?,
        k: q8(gpu, m, &n("self_attn.k_proj.weight"), kvd, h)?,
        v: q8(gpu, m, &n("self_attn.v_proj.weight"), kvd, h)?,
        o: q8(gpu, m, &n("self_attn.o_proj.weight"), h, qd)?,
        q_norm: f32v(gpu, m, &n("self_attn.q_norm.weight"), &[hd])?,
        k_norm: f32v(gpu, m, &n("self_attn.k_norm.weight"), &[hd])?,
        ffn_norm: f32v(gpu, m, &n("post_attention_layernorm.weight"), &[h])?,
    })
}

fn proj(gpu: &Gpu, m: &ModelFile, p: &str, input: u64, inter: u64, out: u64) -> Result<ProjWeights, ModelError> {
    Ok(ProjWeights {
        w1: q8(gpu, m, &format!("{p}.linear_fc1.weight"), inter, input)?,
        b1: f32v(gpu, m, &format!("{p}.linear_fc1.bias"), &[inter])?,
        w2: q8(gpu, m, &format!("{p}.linear_fc2.weight"), out, inter)?,
        b2: f32v(gpu, m, &format!("{p}.linear_fc2.bias"), &[out])?,
    })
}

impl TalkerWeights {
    /// Device bytes the Talker's weights take (planar Q8_0, f32 vectors).
    pub fn device_bytes(c: &TalkerConfig) -> u64 {
        let p = |r: u64, k: u64| PlanarLayout::new(r, k).total();
        let attn = |d: &DecoderConfig| {
            let (h, hd, qd, kvd) = (
                d.hidden as u64,
                d.head_dim as u64,
                (d.n_heads * d.head_dim) as u64,
                (d.n_kv_heads * d.head_dim) as u64,
            );
            4 * (2 * h + 2 * hd) + p(qd, h) + 2 * p(kvd, h) + p(h, qd)
        };
        let (t, cp) = (&c.talker, &c.predictor);
        let h = t.hidden as u64;
        let moe = t.n_experts as u64
            * (4 * h + 2 * expert_stride(t.moe_inter as u64, h) + expert_stride(h, t.moe_inter as u64))
            + 3 * p(t.shared_inter as u64, h)
            + 4 * h;
        let dense = 3 * p(cp.inter as u64, h);
        let th = c.thinker_hidden as u64;
        let projs = 2 * (p(t.inter as u64, th) + p(h, t.inter as u64) + 4 * (t.inter as u64 + h));
        t.layers as u64 * (attn(t) + moe)
            + cp.layers as u64 * (attn(cp) + dense)
            + 2 * p(t.vocab as u64, h)
            + 2 * (c.groups as u64 - 1) * p(cp.vocab as u64, h)
            + projs
            + 8 * h
    }

    /// Uploads every Talker and code-predictor tensor, calling `progress(done, total)` per layer.
    pub fn load(
        gpu: &Gpu,
        m: &ModelFile,
        c: &TalkerConfig,
        mut progress: impl FnMut(u32, u32),
    ) -> Result<TalkerWeights, ModelError> {
        let (t, cp) = (&c.talker, &c.predictor);
        let h = t.hidden as u64;
        let total = t.layers + cp.layers;
        let mut layers = Vec::with_capacity(t.layers as usize);
        for l in 0..t.layers {
            let p = format!("talker.model.layers.{l}");
            let (mi, si) = (t.moe_inter as u64, t.shared_inter as u64);
            let moe = MoeWeights {
                router: f32v(gpu, m, &format!("{p}.mlp.gate.weight"), &[t.n_experts as u64, h])?,
                gate: experts(gpu, m, &p, "gate_proj", t.n_experts, mi, h)?,
                up: experts(gpu, m, &p, "up_proj", t.n_experts, mi, h)?,
                down: experts(gpu, m, &p, "down_proj", t.n_experts, h, mi)?,
                sh_gate: q8(gpu, m, &format!("{p}.mlp.shared_expert.gate_proj.weight"), si, h)?,
                sh_up: q8(gpu, m, &format!("{p}.mlp.shared_expert.up_proj.weight"), si, h)?,
                sh_down: q8(gpu, m, &format!("{p}.mlp.shared_expert.down_proj.weight"), h, si)?,
                sh_w: f32v(gpu, m, &format!("{p}.mlp.shared_expert_gate.weight"), &[1, h])?,
            };
            layers.push((attn(gpu, m, &p, t)?, moe));
            progress(l + 1, total);
        }
        let mut cp_layers = Vec::with_capacity(cp.layers as usize);
        for l in 0..cp.layers {
            let p = format!("talker.code_predictor.model.layers.{l}");
            let i = cp.inter as u64;
            let dense = DenseWeights {
                gate: q8(gpu, m, &format!("{p}.mlp.gate_proj.weight"), i, h)?,
                up: q8(gpu, m, &format!("{p}.mlp.up_proj.weight"), i, h)?,
                down: q8(gpu, m, &format!("{p}.mlp.down_proj.weight"), h, i)?,
            };
            cp_layers.push((attn(gpu, m, &p, cp)?, dense));
            progress(t.layers + l + 1, total);
        }
        let g = c.groups - 1;
        let cv = cp.vocab as u64;
        let th = c.thinker_hidden as u64;
        Ok(TalkerWeights {
            layers,
            norm: f32v(gpu, m, "talker.model.norm.weight", &[h])?,
            codec_embed: q8(gpu, m, "talker.model.codec_embedding.weight", t.vocab as u64, h)?,
            codec_head: q8(gpu, m, "talker.codec_head.weight", t.vocab as u64, h)?,
            text_proj: proj(gpu, m, "talker.text_projection", th, t.inter as u64, h)?,
            hidden_proj: proj(gpu, m, "talker.hidden_projection", th, t.inter as u64, h)?,
            cp_layers,
            cp_norm: f32v(gpu, m, "talker.code_predictor.model.norm.weight", &[h])?,
            cp_embed: (0..g)
                .map(|j| q8(gpu, m, &format!("talker.code_predictor.model.codec_embedding.{j}.weight"), cv, h))
                .collect::<Result<_, _>>()?,
            cp_head: (0..g)
                .map(|j| q8(gpu, m, &format!("talker.code_predictor.lm_head.{j}.weight"), cv, h))
                .collect::<Result<_, _>>()?,
        })
    }
}
