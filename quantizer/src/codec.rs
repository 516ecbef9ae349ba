//! CPU codecs: Q8_0 (bit-identical to ggml's `quantize_row_q8_0_ref`), F16, BF16 and F32.

use half::{bf16, f16};

/// Elements per Q8_0 block.
pub const QK8_0: usize = 32;

/// One Q8_0 block: scale `d` (f16 bits) and 32 signed quants; value = d · q.
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: u16,
    pub qs: [i8; QK8_0],
}

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::align_of::<BlockQ8_0>() == 2);

/// Bytes of one encoded block (the struct has no padding).
pub const Q8_0_BLOCK_BYTES: usize = 34;

/// Quantise one block the way ggml's reference does: amax = max|x|, d = amax/127,
/// id = 1/d (0 when d = 0), q = roundf(x·id) (half away from zero), d stored as f16 (RNE).
#[inline]
pub fn quantize_block_q8_0(x: &[f32; QK8_0]) -> BlockQ8_0 {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0i8; QK8_0];
    for (q, &v) in qs.iter_mut().zip(x) {
        // f32::round rounds half away from zero like C's roundf; |v·id| <= 127 (+ rounding), and
        // `as` saturates, so NaN maps to 0 and no value wraps.
        *q = (v * id).round() as i8;
    }
    BlockQ8_0 { d: f16::from_f32(d).to_bits(), qs }
}

/// Quantise `x` (length a multiple of 32) and append the encoded blocks to `out`.
pub fn quantize_q8_0_into(x: &[f32], out: &mut Vec<u8>) {
    debug_assert!(x.len() % QK8_0 == 0);
    out.reserve(x.len() / QK8_0 * Q8_0_BLOCK_BYTES);
    for chunk in x.chunks_exact(QK8_0) {
        let mut a = [0f32; QK8_0];
        a.copy_from_slice(chunk);
        let b = quantize_block_q8_0(&a);
        out.extend_from_slice(&b.d.to_le_bytes());
        out.extend_from_slice(bytemuck::cast_slice(&b.qs));
    }
}

/// Quantise to a fresh byte vector.
pub fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    quantize_q8_0_into(x, &mut out);
    out
}

/// Dequantise encoded Q8_0 bytes (length a multiple of 34) into f32.
pub fn dequantize_q8_0(bytes: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len() / Q8_0_BLOCK_BYTES * QK8_0);
    for blk in bytes.chunks_exact(Q8_0_BLOCK_BYTES) {
        let d = f16::from_bits(u16::from_le_bytes([blk[0], blk[1]])).to_f32();
        out.extend(blk[2..].iter().map(|&q| d * (q as i8) as f32));
    }
    out
}

/// Element types a safetensors checkpoint may hold that the converter reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrcType {
    BF16,
    F16,
    F32,
}

impl SrcType {
    pub fn size(self) -> usize {
        match self {
            SrcType::BF16 | SrcType::F16 => 2,
            SrcType::F32 => 4,
        }
    }
}

/// Decode little-endian source elements into f32, appending to `out`.
pub fn decode_into(src: SrcType, bytes: &[u8], out: &mut Vec<f32>) {
    match src {
        SrcType::BF16 => out.extend(
            bytes.chunks_exact(2).map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
        ),
        SrcType::F16 => {
            out.extend(bytes.chunks_exact(2).map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()))
        }
        SrcType::F32 => out.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
    }
}

/// Encode f32 as little-endian f16 (round to nearest even), appending to `out`.
pub fn encode_f16_into(x: &[f32], out: &mut Vec<u8>) {
    out.reserve(x.len() * 2);
    for &v in x {
        out.extend_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
    }
}

/// Encode f32 as little-endian bytes, appending to `out`.
pub fn encode_f32_into(x: &[f32], out: &mut Vec<u8>) {
    out.reserve(x.len() * 4);
    for &v in x {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_block_has_zero_scale_and_quants() {
        let b = quantize_block_q8_0(&[0.0; 32]);
        assert_eq!(b.d, 0);
        assert_eq!(b.qs, [0; 32]);
    }

    #[test]
    fn extreme_value_maps_to_127() {
        let mut x = [0.5f32; 32];
        x[3] = -2.0;
        let b = quantize_block_q8_0(&x);
        assert_eq!(b.qs[3], -127);
        assert_eq!(b.qs[0], 32); // 0.5 * 127/2 = 31.75 -> 32
    }

    #[test]
    fn dequantize_error_is_within_half_a_step() {
        let x: Vec<f32> = (0..256).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let q = quantize_q8_0(&x);
        let y = dequantize_q8_0(&q);
        for (blk_x, blk_y) in x.chunks(32).zip(y.chunks(32)) {
            let amax = blk_x.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in blk_x.iter().zip(blk_y) {
                assert!((a - b).abs() <= amax / 127.0 * 0.5 + amax * 1e-3, "{a} vs {b}");
            }
        }
    }
}
