//! Thinker weights on the GPU. Q8_0 matrices are repacked into the planar layout
//! (`qwen3_omni_vk::layout`) while they are copied: on UMA and full-BAR devices straight from the
//! memory-mapped GGUF into mapped device memory, so no second resident copy exists; elsewhere one
//! tensor at a time through a staging buffer. Experts of one projection share one buffer.

use quantizer::gguf::GgmlType;
use qwen3_omni_vk::layout::PlanarLayout;
use qwen3_omni_vk::vk_runtime::{Buffer, Gpu, MemoryIntent};

use super::ThinkerConfig;
use crate::model_file::{ModelError, ModelFile, TensorRef};

/// One decoder layer.
pub struct LayerWeights {
    pub attn_norm: Buffer,
    pub q: Buffer,
    pub k: Buffer,
    pub v: Buffer,
    pub o: Buffer,
    pub q_norm: Buffer,
    pub k_norm: Buffer,
    pub ffn_norm: Buffer,
    /// Router `[n_experts, hidden]` f32.
    pub router: Buffer,
    /// All experts' gate / up (`[moe_inter, hidden]` each) and down (`[hidden, moe_inter]`),
    /// planar Q8_0, expert e at `e * expert_stride(rows, cols)`.
    pub gate: Buffer,
    pub up: Buffer,
    pub down: Buffer,
    /// The router folded into the o-projection stage (`router_fold.comp`): f32
    /// `[n_experts, hidden + q width]`; `None` where the shapes do not allow it or
    /// `QWEN3VK_NO_ROUTER_FOLD` is set.
    pub router_fold: Option<Buffer>,
}

/// The whole Thinker.
pub struct ThinkerWeights {
    pub embed: Buffer,
    pub layers: Vec<LayerWeights>,
    pub norm: Buffer,
    pub lm_head: Buffer,
}

/// Byte stride between experts in a stacked planar buffer (a valid binding offset everywhere).
pub fn expert_stride(rows: u64, cols: u64) -> u64 {
    PlanarLayout::new(rows, cols).total().div_ceil(256) * 256
}

pub(crate) fn q8_planar(gpu: &Gpu, m: &ModelFile, name: &str, rows: u64, cols: u64) -> Result<Buffer, ModelError> {
    let t = m.tensor_typed(name, &[rows, cols], &[GgmlType::Q8_0])?;
    let l = PlanarLayout::new(rows, cols);
    let mut buf = gpu.buffer(name, l.total(), MemoryIntent::Weights)?;
    fill_planar(&mut buf, 0, &t, rows, cols)?;
    Ok(buf)
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

pub(crate) fn f32_vec(gpu: &Gpu, m: &ModelFile, name: &str, shape: &[u64]) -> Result<Buffer, ModelError> {
    let t = m.tensor_typed(name, shape, &[GgmlType::F32])?;
    Ok(gpu.buffer_from(name, t.data, MemoryIntent::Weights)?)
}

fn experts(
    gpu: &Gpu,
    m: &ModelFile,
    layer: u32,
    proj: &str,
    n: u32,
    rows: u64,
    cols: u64,
) -> Result<Buffer, ModelError> {
    let stride = expert_stride(rows, cols);
    let name = format!("thinker.model.layers.{layer}.mlp.experts.*.{proj}.weight");
    let mut buf = gpu.buffer(&name, stride * n as u64, MemoryIntent::Weights)?;
    for e in 0..n {
        let tn = format!("thinker.model.layers.{layer}.mlp.experts.{e}.{proj}.weight");
        let t = m.tensor_typed(&tn, &[rows, cols], &[GgmlType::Q8_0])?;
        fill_planar(&mut buf, e as u64 * stride, &t, rows, cols)?;
    }
    Ok(buf)
}

/// Layer l's folded router matrix on the GPU (see [`qwen3_omni_vk::router_fold_matrix`]).
fn router_fold(gpu: &Gpu, m: &ModelFile, c: &ThinkerConfig, l: u32) -> Result<Buffer, ModelError> {
    let (h, qd) = (c.hidden as u64, (c.n_heads * c.head_dim) as u64);
    let n = |s: &str| format!("thinker.model.layers.{l}.{s}");
    let wr = m.tensor_typed(&n("mlp.gate.weight"), &[c.n_experts as u64, h], &[GgmlType::F32])?.to_f32()?;
    let g = m.tensor_typed(&n("post_attention_layernorm.weight"), &[h], &[GgmlType::F32])?.to_f32()?;
    let wo = m.tensor_typed(&n("self_attn.o_proj.weight"), &[h, qd], &[GgmlType::Q8_0])?;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(32);
    let name = n("router_fold");
    let r = qwen3_omni_vk::router_fold_matrix(&wr, &g, wo.data, h as usize, qd as usize, threads)
        .map_err(|what| qwen3_omni_vk::Error::Kernel { kernel: name.clone(), what })?;
    Ok(gpu.buffer_from(&name, &r, MemoryIntent::Weights)?)
}

impl ThinkerWeights {
    /// Whether the router is folded into the o-projection stage (decode steps: one dependent
    /// dispatch fewer per layer): widths that are multiples of 4, where `allowed`
    /// (`ThinkerOptions::router_fold`; `QWEN3VK_NO_ROUTER_FOLD` turns it off).
    pub fn router_fold_wanted(c: &ThinkerConfig, allowed: bool) -> bool {
        allowed && c.hidden % 4 == 0 && (c.n_heads * c.head_dim) % 4 == 0
    }

    /// Device bytes the Thinker's weights take.
    pub fn device_bytes(c: &ThinkerConfig, router_fold: bool) -> u64 {
        let p = |r: u64, k: u64| PlanarLayout::new(r, k).total();
        let (h, hd, qd, kvd) =
            (c.hidden as u64, c.head_dim as u64, (c.n_heads * c.head_dim) as u64, (c.n_kv_heads * c.head_dim) as u64);
        let layer = 4 * (2 * h + 2 * hd)
            + p(qd, h)
            + 2 * p(kvd, h)
            + p(h, qd)
            + c.n_experts as u64
                * (4 * h + 2 * expert_stride(c.moe_inter as u64, h) + expert_stride(h, c.moe_inter as u64))
            + if Self::router_fold_wanted(c, router_fold) { c.n_experts as u64 * (h + qd) * 4 } else { 0 };
        2 * p(c.vocab as u64, h) + 4 * h + c.layers as u64 * layer
    }

    /// Checks the model fits the device, then uploads every Thinker tensor, calling
    /// `progress(done_layers, total_layers)` as it goes.
    pub fn load(
        gpu: &Gpu,
        m: &ModelFile,
        c: &ThinkerConfig,
        progress: impl FnMut(u32, u32),
    ) -> Result<ThinkerWeights, ModelError> {
        Self::load_with(gpu, m, c, true, progress)
    }

    /// [`ThinkerWeights::load`] with the router fold allowed or not (`ThinkerOptions::router_fold`).
    pub fn load_with(
        gpu: &Gpu,
        m: &ModelFile,
        c: &ThinkerConfig,
        allow_fold: bool,
        mut progress: impl FnMut(u32, u32),
    ) -> Result<ThinkerWeights, ModelError> {
        let (h, v) = (c.hidden as u64, c.vocab as u64);
        let (hd, qd, kvd) = (c.head_dim as u64, (c.n_heads * c.head_dim) as u64, (c.n_kv_heads * c.head_dim) as u64);
        let embed = q8_planar(gpu, m, "thinker.model.embed_tokens.weight", v, h)?;
        let fold = Self::router_fold_wanted(c, allow_fold);
        let mut layers = Vec::with_capacity(c.layers as usize);
        for l in 0..c.layers {
            let n = |s: &str| format!("thinker.model.layers.{l}.{s}");
            layers.push(LayerWeights {
                attn_norm: f32_vec(gpu, m, &n("input_layernorm.weight"), &[h])?,
                q: q8_planar(gpu, m, &n("self_attn.q_proj.weight"), qd, h)?,
                k: q8_planar(gpu, m, &n("self_attn.k_proj.weight"), kvd, h)?,
                v: q8_planar(gpu, m, &n("self_attn.v_proj.weight"), kvd, h)?,
                o: q8_planar(gpu, m, &n("self_attn.o_proj.weight"), h, qd)?,
                q_norm: f32_vec(gpu, m, &n("self_attn.q_norm.weight"), &[hd])?,
                k_norm: f32_vec(gpu, m, &n("self_attn.k_norm.weight"), &[hd])?,
                ffn_norm: f32_vec(gpu, m, &n("post_attention_layernorm.weight"), &[h])?,
                router: f32_vec(gpu, m, &n("mlp.gate.weight"), &[c.n_experts as u64, h])?,
                gate: experts(gpu, m, l, "gate_proj", c.n_experts, c.moe_inter as u64, h)?,
                up: experts(gpu, m, l, "up_proj", c.n_experts, c.moe_inter as u64, h)?,
                down: experts(gpu, m, l, "down_proj", c.n_experts, h, c.moe_inter as u64)?,
                router_fold: if fold { Some(router_fold(gpu, m, c, l)?) } else { None },
            });
            progress(l + 1, c.layers);
        }
        Ok(ThinkerWeights {
            embed,
            layers,
            norm: f32_vec(gpu, m, "thinker.model.norm.weight", &[h])?,
            lm_head: q8_planar(gpu, m, "thinker.lm_head.weight", v, h)?,
        })
    }
}
