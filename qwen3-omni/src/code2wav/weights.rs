//! Code2Wav weights read from the model file with shape and type checks, dequantised to f32 on
//! the host (Q8_0 and F16 values are exact in f32). The CPU oracle computes with them directly;
//! the GPU version repacks and uploads them.
//!
//! Types as the quantizer writes them (docs/quantizer.md): `code_embedding` and every Linear
//! (pre-transformer projections, ConvNeXt `pwconv1/2`) Q8_0 (F16/F32 also accepted, for
//! `--keep-f16`), conv and transposed-conv kernels F16 (or F32), norms, biases, scales, gammas
//! and SnakeBeta parameters F32.

use quantizer::gguf::GgmlType;

use super::Code2WavConfig;
use crate::model_file::{ModelError, ModelFile};

/// One pre-transformer layer (spec §7.2). Linears are `[out, in]` row-major.
pub struct PreLayer {
    pub attn_norm: Vec<f32>,
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub o: Vec<f32>,
    pub attn_scale: Vec<f32>,
    pub ffn_norm: Vec<f32>,
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    pub down: Vec<f32>,
    pub mlp_scale: Vec<f32>,
}

/// One upsampling stage (spec §7.3): transposed conv k = s = ratio, then a ConvNeXt block.
pub struct Upsample {
    pub ratio: u32,
    /// ConvTranspose1d `[C, C, ratio]` (in, out, k).
    pub tconv_w: Vec<f32>,
    pub tconv_b: Vec<f32>,
    /// Depthwise `[C, 1, 7]`.
    pub dw_w: Vec<f32>,
    pub dw_b: Vec<f32>,
    pub ln_w: Vec<f32>,
    pub ln_b: Vec<f32>,
    /// `[4C, C]`.
    pub pw1_w: Vec<f32>,
    pub pw1_b: Vec<f32>,
    /// `[C, 4C]`.
    pub pw2_w: Vec<f32>,
    pub pw2_b: Vec<f32>,
    pub gamma: Vec<f32>,
}

/// SnakeBeta parameters as stored (log space).
pub struct Snake {
    pub alpha: Vec<f32>,
    pub beta: Vec<f32>,
}

/// A residual unit of a decoder block.
pub struct ResUnit {
    pub dilation: u32,
    pub act1: Snake,
    /// `[C, C, 7]` (out, in, k).
    pub conv1_w: Vec<f32>,
    pub conv1_b: Vec<f32>,
    pub act2: Snake,
    /// `[C, C, 1]`.
    pub conv2_w: Vec<f32>,
    pub conv2_b: Vec<f32>,
}

/// A decoder block (spec §7.4).
pub struct Block {
    pub rate: u32,
    pub cin: u32,
    pub cout: u32,
    pub act: Snake,
    /// ConvTranspose1d `[cin, cout, 2·rate]`.
    pub tconv_w: Vec<f32>,
    pub tconv_b: Vec<f32>,
    pub units: Vec<ResUnit>,
}

/// All of Code2Wav in f32.
pub struct Code2WavWeights {
    /// `[num_quantizers · codebook_size, hidden]`.
    pub embed: Vec<f32>,
    pub layers: Vec<PreLayer>,
    pub norm: Vec<f32>,
    pub upsample: Vec<Upsample>,
    /// `[decoder_dim, hidden, 7]`.
    pub dec0_w: Vec<f32>,
    pub dec0_b: Vec<f32>,
    pub blocks: Vec<Block>,
    pub final_act: Snake,
    /// `[1, C, 7]`.
    pub final_w: Vec<f32>,
    pub final_b: Vec<f32>,
}

/// Kernel size of every non-transposed Code2Wav conv but the pointwise ones.
pub const CONV_K: u32 = 7;
/// Dilations of a decoder block's residual units.
pub const DILATIONS: [u32; 3] = [1, 3, 9];

fn linear(m: &ModelFile, name: &str, rows: u32, cols: u32) -> Result<Vec<f32>, ModelError> {
    let t = m.tensor_typed(name, &[rows as u64, cols as u64], &[GgmlType::Q8_0, GgmlType::F16, GgmlType::F32])?;
    t.to_f32()
}

fn conv(m: &ModelFile, name: &str, shape: [u32; 3]) -> Result<Vec<f32>, ModelError> {
    let s: Vec<u64> = shape.iter().map(|&v| v as u64).collect();
    let t = m.tensor_typed(name, &s, &[GgmlType::F16, GgmlType::F32])?;
    t.to_f32()
}

fn vec32(m: &ModelFile, name: &str, n: u32) -> Result<Vec<f32>, ModelError> {
    let t = m.tensor_typed(name, &[n as u64], &[GgmlType::F32])?;
    t.to_f32()
}

fn snake(m: &ModelFile, prefix: &str, c: u32) -> Result<Snake, ModelError> {
    Ok(Snake { alpha: vec32(m, &format!("{prefix}.alpha"), c)?, beta: vec32(m, &format!("{prefix}.beta"), c)? })
}

impl Code2WavWeights {
    /// Reads every `code2wav.*` tensor, checking names, shapes and types against `c`.
    pub fn load(m: &ModelFile, c: &Code2WavConfig) -> Result<Code2WavWeights, ModelError> {
        let h = c.hidden;
        let (qd, kvd) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        let embed = linear(m, "code2wav.code_embedding.weight", c.num_quantizers * c.codebook_size, h)?;
        let mut layers = Vec::with_capacity(c.layers as usize);
        for l in 0..c.layers {
            let n = |s: &str| format!("code2wav.pre_transformer.layers.{l}.{s}");
            layers.push(PreLayer {
                attn_norm: vec32(m, &n("input_layernorm.weight"), h)?,
                q: linear(m, &n("self_attn.q_proj.weight"), qd, h)?,
                k: linear(m, &n("self_attn.k_proj.weight"), kvd, h)?,
                v: linear(m, &n("self_attn.v_proj.weight"), kvd, h)?,
                o: linear(m, &n("self_attn.o_proj.weight"), h, qd)?,
                attn_scale: vec32(m, &n("self_attn_layer_scale.scale"), h)?,
                ffn_norm: vec32(m, &n("post_attention_layernorm.weight"), h)?,
                gate: linear(m, &n("mlp.gate_proj.weight"), c.inter, h)?,
                up: linear(m, &n("mlp.up_proj.weight"), c.inter, h)?,
                down: linear(m, &n("mlp.down_proj.weight"), h, c.inter)?,
                mlp_scale: vec32(m, &n("mlp_layer_scale.scale"), h)?,
            });
        }
        let norm = vec32(m, "code2wav.pre_transformer.norm.weight", h)?;
        let mut upsample = Vec::new();
        for (i, &r) in c.upsampling_ratios.iter().enumerate() {
            let n = |s: &str| format!("code2wav.upsample.{i}.{s}");
            upsample.push(Upsample {
                ratio: r,
                tconv_w: conv(m, &n("0.conv.weight"), [h, h, r])?,
                tconv_b: vec32(m, &n("0.conv.bias"), h)?,
                dw_w: conv(m, &n("1.dwconv.conv.weight"), [h, 1, CONV_K])?,
                dw_b: vec32(m, &n("1.dwconv.conv.bias"), h)?,
                ln_w: vec32(m, &n("1.norm.weight"), h)?,
                ln_b: vec32(m, &n("1.norm.bias"), h)?,
                pw1_w: linear(m, &n("1.pwconv1.weight"), 4 * h, h)?,
                pw1_b: vec32(m, &n("1.pwconv1.bias"), 4 * h)?,
                pw2_w: linear(m, &n("1.pwconv2.weight"), h, 4 * h)?,
                pw2_b: vec32(m, &n("1.pwconv2.bias"), h)?,
                gamma: vec32(m, &n("1.gamma"), h)?,
            });
        }
        let d = c.decoder_dim;
        let dec0_w = conv(m, "code2wav.decoder.0.conv.weight", [d, h, CONV_K])?;
        let dec0_b = vec32(m, "code2wav.decoder.0.conv.bias", d)?;
        let mut blocks = Vec::new();
        for (b, &r) in c.upsample_rates.iter().enumerate() {
            let (cin, cout) = (c.block_in(b), c.block_in(b) / 2);
            let p = format!("code2wav.decoder.{}.block", b + 1);
            let mut units = Vec::new();
            for (u, &dil) in DILATIONS.iter().enumerate() {
                let q = format!("{p}.{}", u + 2);
                units.push(ResUnit {
                    dilation: dil,
                    act1: snake(m, &format!("{q}.act1"), cout)?,
                    conv1_w: conv(m, &format!("{q}.conv1.conv.weight"), [cout, cout, CONV_K])?,
                    conv1_b: vec32(m, &format!("{q}.conv1.conv.bias"), cout)?,
                    act2: snake(m, &format!("{q}.act2"), cout)?,
                    conv2_w: conv(m, &format!("{q}.conv2.conv.weight"), [cout, cout, 1])?,
                    conv2_b: vec32(m, &format!("{q}.conv2.conv.bias"), cout)?,
                });
            }
            blocks.push(Block {
                rate: r,
                cin,
                cout,
                act: snake(m, &format!("{p}.0"), cin)?,
                tconv_w: conv(m, &format!("{p}.1.conv.weight"), [cin, cout, 2 * r])?,
                tconv_b: vec32(m, &format!("{p}.1.conv.bias"), cout)?,
                units,
            });
        }
        let last = c.upsample_rates.len() + 1;
        let cf = c.final_channels();
        Ok(Code2WavWeights {
            embed,
            layers,
            norm,
            upsample,
            dec0_w,
            dec0_b,
            blocks,
            final_act: snake(m, &format!("code2wav.decoder.{last}"), cf)?,
            final_w: conv(m, &format!("code2wav.decoder.{}.conv.weight", last + 1), [1, cf, CONV_K])?,
            final_b: vec32(m, &format!("code2wav.decoder.{}.conv.bias", last + 1), 1)?,
        })
    }
}
