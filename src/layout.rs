//! Weight layouts on the device. ggml's Q8_0 blocks are 34 bytes, so quants are only 2-byte
//! aligned; the planar layout holds the same numbers as two planes (all int8 quants row-major, then
//! all f16 scales) so kernels load quants as aligned 16-byte vectors. Loaders repack while they copy
//! weights to the device (on UMA, straight from the memory map into mapped device memory).

/// Byte layout of a `[rows, cols]` Q8_0 matrix in planar form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanarLayout {
    /// Quants: `rows * cols` int8 at offset 0.
    pub qs_bytes: u64,
    /// Scales: `rows * cols / 32` f16 at this offset (quants rounded up to 256 bytes, a valid
    /// storage-buffer offset alignment everywhere).
    pub d_offset: u64,
    pub d_bytes: u64,
}

impl PlanarLayout {
    pub fn new(rows: u64, cols: u64) -> Self {
        let qs_bytes = rows * cols;
        PlanarLayout { qs_bytes, d_offset: qs_bytes.div_ceil(256) * 256, d_bytes: rows * (cols / 32) * 2 }
    }
    pub fn total(&self) -> u64 {
        self.d_offset + self.d_bytes
    }
}

/// Why a Q8_0 matrix could not be repacked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RepackError {
    #[error("Q8_0 [{rows}, {cols}]: {got_in} input bytes (need {need_in}), {got_out} output bytes (need {need_out})")]
    Size { rows: usize, cols: usize, got_in: usize, need_in: usize, got_out: usize, need_out: usize },
    /// A block's f16 scale is NaN or infinite: every value of the block would be non-finite.
    #[error("Q8_0 block {block} (row {row}, columns {col}..{}) has the non-finite scale {scale}", col + 32)]
    NonFiniteScale { block: usize, row: usize, col: usize, scale: f32 },
}

/// Repacks ggml Q8_0 blocks of a `[rows, cols]` matrix into `out` (planar layout, `total()` bytes),
/// refusing a block whose scale is NaN or infinite (checked as it is copied: one compare per block).
pub fn repack_q8_0_planar_checked(ggml: &[u8], rows: usize, cols: usize, out: &mut [u8]) -> Result<(), RepackError> {
    let l = PlanarLayout::new(rows as u64, cols as u64);
    let nblocks = rows * cols / 32;
    if cols % 32 != 0 || ggml.len() != nblocks * 34 || out.len() < l.total() as usize {
        return Err(RepackError::Size {
            rows,
            cols,
            got_in: ggml.len(),
            need_in: nblocks * 34,
            got_out: out.len(),
            need_out: l.total() as usize,
        });
    }
    let (qs, rest) = out.split_at_mut(l.d_offset as usize);
    let d = &mut rest[..l.d_bytes as usize];
    for (i, blk) in ggml.chunks_exact(34).enumerate() {
        // f16: exponent bits all ones is an infinity or a NaN.
        if blk[1] & 0x7C == 0x7C {
            let scale = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            let per_row = cols / 32;
            return Err(RepackError::NonFiniteScale { block: i, row: i / per_row, col: i % per_row * 32, scale });
        }
        d[2 * i..2 * i + 2].copy_from_slice(&blk[..2]);
        qs[32 * i..32 * i + 32].copy_from_slice(&blk[2..]);
    }
    Ok(())
}

/// [`repack_q8_0_planar_checked`] with the error as text.
pub fn repack_q8_0_planar_into(ggml: &[u8], rows: usize, cols: usize, out: &mut [u8]) -> Result<(), String> {
    repack_q8_0_planar_checked(ggml, rows, cols, out).map_err(|e| e.to_string())
}

/// Repacks into a new vector.
pub fn repack_q8_0_planar(ggml: &[u8], rows: usize, cols: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; PlanarLayout::new(rows as u64, cols as u64).total() as usize];
    repack_q8_0_planar_into(ggml, rows, cols, &mut out)?;
    Ok(out)
}
