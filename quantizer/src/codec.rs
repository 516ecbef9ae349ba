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
    // ggml's MAX(amax, fabsf(v)) = amax > |v| ? amax : |v|.
    let amax = x.iter().fold(0.0f32, |m, v| if m > v.abs() { m } else { v.abs() });
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0i8; QK8_0];
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = roundf_small(v * id) as i8;
    }
    BlockQ8_0 { d: f16::from_f32(d).to_bits(), qs }
}

/// C `roundf` (half away from zero) for |x| < 2^31, in a form the compiler can vectorise
/// (`f32::round` is a libm call). The truncating cast is exact and `a - t` is exact for
/// |a| < 2^23; NaN maps to 0 (saturating cast).
#[inline(always)]
fn roundf_small(x: f32) -> i32 {
    let a = x.abs();
    let t = a as i32;
    let r = t + ((a - t as f32) >= 0.5) as i32;
    if x < 0.0 {
        -r
    } else {
        r
    }
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

#[inline(always)]
fn q8_0_blocks_from<const B: usize>(bytes: &[u8], out: &mut Vec<u8>, dec: impl Fn(&[u8; B]) -> [f32; QK8_0]) {
    let nb = bytes.len() / B;
    let start = out.len();
    out.resize(start + nb * Q8_0_BLOCK_BYTES, 0);
    for (bi, bo) in bytes.chunks_exact(B).zip(out[start..].chunks_exact_mut(Q8_0_BLOCK_BYTES)) {
        // chunks_exact guarantees the length, so the conversion cannot fail.
        let Ok(bi) = <&[u8; B]>::try_from(bi) else { continue };
        let b = quantize_block_q8_0(&dec(bi));
        bo[..2].copy_from_slice(&b.d.to_le_bytes());
        bo[2..].copy_from_slice(bytemuck::cast_slice(&b.qs));
    }
}

#[inline(always)]
fn dec_bf16(b: &[u8; 64]) -> [f32; QK8_0] {
    std::array::from_fn(|j| f32::from_bits(((b[2 * j] as u32) << 16) | ((b[2 * j + 1] as u32) << 24)))
}

#[inline(always)]
fn dec_f16(b: &[u8; 64]) -> [f32; QK8_0] {
    std::array::from_fn(|j| f16::from_bits(u16::from_le_bytes([b[2 * j], b[2 * j + 1]])).to_f32())
}

#[inline(always)]
fn dec_f32(b: &[u8; 128]) -> [f32; QK8_0] {
    std::array::from_fn(|j| f32::from_le_bytes([b[4 * j], b[4 * j + 1], b[4 * j + 2], b[4 * j + 3]]))
}

/// Quantise source elements (a multiple of 32) straight from their bytes into Q8_0, appending
/// to `out`. Same result as decoding to f32 and calling [`quantize_q8_0_into`].
pub fn quantize_q8_0_from(src: SrcType, bytes: &[u8], out: &mut Vec<u8>) {
    match src {
        SrcType::BF16 => q8_0_blocks_from::<64>(bytes, out, dec_bf16),
        SrcType::F16 => q8_0_blocks_from::<64>(bytes, out, dec_f16),
        SrcType::F32 => q8_0_blocks_from::<128>(bytes, out, dec_f32),
    }
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
        SrcType::BF16 => {
            out.extend(bytes.chunks_exact(2).map(|b| bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()))
        }
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

/// Encode f32 as little-endian bf16 (round to nearest even), appending to `out`.
pub fn encode_bf16_into(x: &[f32], out: &mut Vec<u8>) {
    out.reserve(x.len() * 2);
    for &v in x {
        out.extend_from_slice(&bf16::from_f32(v).to_bits().to_le_bytes());
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
    fn roundf_small_matches_round() {
        let mut v: Vec<f32> = vec![0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, 0.49999997, -0.49999997, 126.5, -127.5, 127.0];
        let mut x = 1u32;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            v.push((x as f32 / u32::MAX as f32 - 0.5) * 300.0);
            v.push(((x % 512) as f32 - 256.0) * 0.5); // exact .5 ties
        }
        for &f in &v {
            assert_eq!(roundf_small(f), f.round() as i32, "{f}");
        }
    }

    #[test]
    fn direct_path_matches_decode_then_quantize() {
        let x: Vec<f32> = (0..32 * 64).map(|i| ((i * 7919 % 1000) as f32 - 500.0) * 1e-3).collect();
        let bf: Vec<u8> = x.iter().flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes()).collect();
        let h: Vec<u8> = x.iter().flat_map(|v| f16::from_f32(*v).to_bits().to_le_bytes()).collect();
        let f: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        for (src, bytes) in [(SrcType::BF16, &bf), (SrcType::F16, &h), (SrcType::F32, &f)] {
            let mut dec = Vec::new();
            decode_into(src, bytes, &mut dec);
            let mut direct = Vec::new();
            quantize_q8_0_from(src, bytes, &mut direct);
            assert_eq!(direct, quantize_q8_0(&dec), "{src:?}");
        }
    }

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
