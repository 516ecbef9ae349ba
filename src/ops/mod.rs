//! Typed launchers: one per kernel family. Each computes its dispatch geometry, binds exact byte
//! ranges (so a too-small buffer is an error, not a GPU fault) and records into a `Recorder`.

mod attention;
mod audio;
pub mod code2wav;
mod elementwise;
mod embed;
mod matmul;
mod matvec;
mod moe;
pub(crate) mod sample;
mod sampling;

pub use attention::{
    AttnDecode, AttnDecodeAt, AttnDecodeFused, AttnPrefill, Heads, KvAppend, KvCache, KvStore, KvWrite, QkNormRope,
    Rope, RopeRows,
};
pub use audio::{AttnBidirWindow, Conv2dShape, ATTN_WINDOW_MAX, ATTN_WINDOW_MAX_HEAD_DIM};
use bytemuck::{Pod, Zeroable};
pub use matvec::{HeadOut, MatvecHead};
pub use moe::{
    router_fold_matrix, MoeDown, MoeDownGrouped, MoeGateUp, MoeGateUpGrouped, MoeRoute, MoeRouteGateUp, MoeSharedGate,
    RouterFold, DOWN_KSPLIT, MOE_MAX_K, MOE_ROUTE_MAX_EXPERTS,
};
use vk_runtime::{Buffer, Error, Result};

/// Storage type of a weight matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WType {
    /// ggml's Q8_0 numbers (per block of 32 weights an f16 scale and 32 int8 quants) in planar
    /// layout: all quants, then all scales (see `layout`; the loader repacks ggml's blocks).
    Q8_0Planar,
    F16,
    F32,
}

impl WType {
    /// Bytes of one row of `cols` weights.
    pub fn row_bytes(self, cols: u64) -> u64 {
        match self {
            WType::Q8_0Planar => cols / 32 * 34,
            WType::F16 => cols * 2,
            WType::F32 => cols * 4,
        }
    }
}

/// A row-major weight matrix `[rows, cols]` (PyTorch Linear layout: y = W·x) in a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    pub buf: &'a Buffer,
    pub offset: u64,
    pub wtype: WType,
    pub rows: u32,
    pub cols: u32,
}

impl<'a> Matrix<'a> {
    pub fn new(buf: &'a Buffer, wtype: WType, rows: u32, cols: u32) -> Self {
        Matrix { buf, offset: 0, wtype, rows, cols }
    }
    /// Bytes the matrix occupies in its buffer.
    pub fn bytes(&self) -> u64 {
        match self.wtype {
            WType::Q8_0Planar => crate::layout::PlanarLayout::new(self.rows as u64, self.cols as u64).total(),
            w => w.row_bytes(self.cols as u64) * self.rows as u64,
        }
    }
    pub(crate) fn check(&self, kernel: &str) -> Result<()> {
        if self.rows == 0 || self.cols == 0 {
            return Err(kerr(kernel, format!("empty matrix {}×{}", self.rows, self.cols)));
        }
        if self.wtype == WType::Q8_0Planar && self.cols % 32 != 0 {
            return Err(kerr(kernel, format!("Q8_0 rows need a multiple of 32 columns, got {}", self.cols)));
        }
        Ok(())
    }
}

pub(crate) fn kerr(kernel: &str, what: String) -> Error {
    Error::Kernel { kernel: kernel.into(), what }
}

/// Splits `groups` workgroups into a 2-D grid within the device's per-axis limit; returns the
/// dispatch size and its x extent (kernels rebuild the linear index as y * grid_x + x).
pub(crate) fn grid(groups: u32, max_x: u32) -> ([u32; 3], u32) {
    let max_x = max_x.clamp(1, 65535);
    if groups <= max_x {
        ([groups.max(1), 1, 1], groups.max(1))
    } else {
        let y = groups.div_ceil(max_x);
        ([max_x, y, 1], max_x)
    }
}

/// Grid-stride kernels: enough workgroups to cover `n` items, capped (they loop).
pub(crate) fn stride_grid(n: u64, wg: u32) -> [u32; 3] {
    let groups = n.div_ceil(wg as u64).clamp(1, 65535 * 8) as u32;
    grid(groups, 65535).0
}

pub(crate) fn push_bytes<P: Pod>(p: &P) -> &[u8] {
    bytemuck::bytes_of(p)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct PushKMG {
    pub k: u32,
    pub m: u32,
    pub grid_x: u32,
}
const _: () = assert!(std::mem::size_of::<PushKMG>() == 12);
crate::push_layout!(PushKMG { k, m, grid_x });
