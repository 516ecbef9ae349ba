//! The stacked expert layout (`ExpertLayout`, `ExpertMatrix`, the repacking) and the folded
//! router (`router_fold_matrix` on the host, `Kernels::moe_router_fold` on the GPU).

use super::*;
use crate::kernels::names;

/// Byte layout of `n_experts` stacked planar Q8_0 `[rows, cols]` matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpertLayout {
    pub n_experts: u64,
    /// One expert's planar layout (offsets relative to the expert's start).
    pub matrix: PlanarLayout,
    /// Bytes from one expert to the next (a multiple of 256).
    pub stride: u64,
}

impl ExpertLayout {
    pub fn new(n_experts: u64, rows: u64, cols: u64) -> Self {
        let matrix = PlanarLayout::new(rows, cols);
        ExpertLayout { n_experts, matrix, stride: matrix.total().div_ceil(256) * 256 }
    }
    /// Bytes of the whole stack.
    pub fn total(&self) -> u64 {
        self.n_experts * self.stride
    }
}

/// Repacks ggml Q8_0 bytes of `[n_experts, rows, cols]` (expert-major, as GGUF stores `*_exps`)
/// into `out` in the stacked planar layout (`ExpertLayout::total()` bytes; padding left as is).
pub fn repack_experts_q8_0_planar_into(
    ggml: &[u8],
    n_experts: usize,
    rows: usize,
    cols: usize,
    out: &mut [u8],
) -> std::result::Result<(), String> {
    let l = ExpertLayout::new(n_experts as u64, rows as u64, cols as u64);
    let per = rows * cols / 32 * 34;
    if cols % 32 != 0 || ggml.len() != n_experts * per || (out.len() as u64) < l.total() {
        return Err(format!(
            "Q8_0 experts [{n_experts}, {rows}, {cols}]: {} input bytes (need {}), {} output bytes (need {})",
            ggml.len(),
            n_experts * per,
            out.len(),
            l.total()
        ));
    }
    let stride = l.stride as usize;
    for (e, src) in ggml.chunks_exact(per).enumerate() {
        repack_q8_0_planar_into(src, rows, cols, &mut out[e * stride..(e + 1) * stride])?;
    }
    Ok(())
}

/// Repacks into a new vector (zero padding between experts).
pub fn repack_experts_q8_0_planar(
    ggml: &[u8],
    n_experts: usize,
    rows: usize,
    cols: usize,
) -> std::result::Result<Vec<u8>, String> {
    let mut out = vec![0u8; ExpertLayout::new(n_experts as u64, rows as u64, cols as u64).total() as usize];
    repack_experts_q8_0_planar_into(ggml, n_experts, rows, cols, &mut out)?;
    Ok(out)
}

/// All experts of one projection: `n_experts` planar Q8_0 `[rows, cols]` matrices stacked from
/// `offset` of `buf` (see [`ExpertLayout`]). Made by [`Matrix::experts`].
#[derive(Debug, Clone, Copy)]
pub struct ExpertMatrix<'a> {
    pub buf: &'a Buffer,
    pub offset: u64,
    pub n_experts: u32,
    pub rows: u32,
    pub cols: u32,
}

impl<'a> Matrix<'a> {
    /// This matrix (planar Q8_0, `offset` at the first expert) as the first of `n_experts` stacked
    /// experts of the same shape.
    pub fn experts(self, n_experts: u32) -> ExpertMatrix<'a> {
        ExpertMatrix { buf: self.buf, offset: self.offset, n_experts, rows: self.rows, cols: self.cols }
    }

    /// [`ExpertLayout::new`]`(n_experts, rows, cols).stride`: bytes between stacked experts.
    pub fn expert_stride(rows: u32, cols: u32) -> u64 {
        ExpertLayout::new(1, rows as u64, cols as u64).stride
    }

    /// [`repack_experts_q8_0_planar`]: ggml Q8_0 `[n_experts, rows, cols]` → stacked planar experts.
    pub fn repack_experts_q8_0_planar(
        ggml: &[u8],
        n_experts: usize,
        rows: usize,
        cols: usize,
    ) -> std::result::Result<Vec<u8>, String> {
        repack_experts_q8_0_planar(ggml, n_experts, rows, cols)
    }
}

impl<'a> ExpertMatrix<'a> {
    pub fn layout(&self) -> ExpertLayout {
        ExpertLayout::new(self.n_experts as u64, self.rows as u64, self.cols as u64)
    }

    pub(crate) fn check(&self, kernel: &str) -> Result<()> {
        if self.n_experts == 0 {
            return Err(kerr(kernel, "no experts".into()));
        }
        Matrix::new(self.buf, WType::Q8_0Planar, self.rows, self.cols).check(kernel)?;
        let l = self.layout();
        if l.stride / 16 > u32::MAX as u64 || l.total() / 2 > u32::MAX as u64 {
            return Err(kerr(kernel, format!("{} bytes of experts exceed the kernel's 32-bit indexing", l.total())));
        }
        Ok(())
    }

    /// The quants view (binding of uvec4) and the scales view (binding of uint16), both from the
    /// first expert's start so that the kernel indexes experts by stride.
    pub(crate) fn bindings(&self) -> [Binding<'a>; 2] {
        let l = self.layout();
        let before_last = (self.n_experts as u64 - 1) * l.stride;
        [
            Binding::read(self.buf).range(self.offset, before_last + l.matrix.qs_bytes),
            Binding::read(self.buf).range(self.offset, before_last + l.matrix.total()),
        ]
    }
}

/// Arguments of [`Kernels::moe_router_fold`]: R f32 `[rows, k1 + k2]`, x `[k1]`, a `[k2]`, u
/// `[rows]` out.
#[derive(Clone, Copy)]
pub struct RouterFold<'a> {
    pub r: &'a Buffer,
    pub rows: u32,
    pub x: &'a Buffer,
    pub k1: u32,
    pub a: &'a Buffer,
    pub k2: u32,
    pub u: &'a Buffer,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushFold {
    k1: u32,
    k2: u32,
    rows: u32,
    grid_x: u32,
}
crate::push_layout!(PushFold { k1, k2, rows, grid_x });

/// The folded router's matrix (see `router_fold.comp`): R = [W_r diag g | W_r diag g W_o], f32
/// `[n_experts, hidden + o_cols]`, from the router `w_r` (f32 `[n_experts, hidden]`), the
/// post-attention RMSNorm weight `g` (`[hidden]`) and the o-projection as ggml Q8_0 bytes
/// (`[hidden, o_cols]`, dequantised exactly as the kernels read it). Uses up to `threads` threads.
pub fn router_fold_matrix(
    w_r: &[f32],
    g: &[f32],
    w_o_q8_0: &[u8],
    hidden: usize,
    o_cols: usize,
    threads: usize,
) -> std::result::Result<Vec<f32>, String> {
    let n_experts = if hidden == 0 { 0 } else { w_r.len() / hidden };
    if hidden == 0 || o_cols % 32 != 0 || w_r.len() != n_experts * hidden || g.len() != hidden || n_experts == 0 {
        return Err(format!("router fold: router of {} values, norm of {}, hidden {hidden}", w_r.len(), g.len()));
    }
    let row_bytes = o_cols / 32 * 34;
    if w_o_q8_0.len() != hidden * row_bytes {
        return Err(format!(
            "router fold: o-projection of {} bytes, need {} for [{hidden}, {o_cols}] Q8_0",
            w_o_q8_0.len(),
            hidden * row_bytes
        ));
    }
    let width = hidden + o_cols;
    let mut out = vec![0f32; n_experts * width];
    let threads = threads.clamp(1, n_experts);
    let per = n_experts.div_ceil(threads);
    // Each thread owns `per` rows of R; it walks W_o row by row (dequantised into a small buffer)
    // and adds a[e, i] · W_o[i, :] into each of its rows, so W_o is streamed once per thread.
    std::thread::scope(|sc| {
        for (chunk, rows) in out.chunks_mut(per * width).enumerate() {
            sc.spawn(move || {
                let n = rows.len() / width;
                for (i, row) in w_o_q8_0.chunks_exact(row_bytes).enumerate() {
                    let wrow = crate::reference::dequantize_q8_0(bytemuck::cast_slice(row));
                    for r in 0..n {
                        let e = chunk * per + r;
                        let a = w_r[e * hidden + i] * g[i];
                        let dst = &mut rows[r * width..(r + 1) * width];
                        dst[i] = a;
                        if a != 0.0 {
                            for (m, &w) in dst[hidden..].iter_mut().zip(&wrow) {
                                *m += a * w;
                            }
                        }
                    }
                }
            });
        }
    });
    Ok(out)
}

impl Kernels {
    /// y = R · [x ; a] for the folded router (`router_fold.comp`): R f32 `[rows, k1 + k2]`
    /// ([`router_fold_matrix`] builds it), x `[k1]`, a `[k2]`, u `[rows]`; on the int-dot path a is
    /// taken as its Q8_1 value, as the o-projection sees it. Reads only x and a, so it needs no
    /// barrier against an o-projection that reads the same.
    pub fn moe_router_fold<'a>(&self, rec: &mut Recorder<'a>, args: RouterFold<'a>) -> Result<()> {
        let RouterFold { r, rows, x, k1, a, k2, u } = args;
        // On the int-dot path the o-projection sees a as Q8_1: so does the fold.
        let quant = self.matvec_path() == MatvecPath::IntDot;
        let name = if quant { names::ROUTER_FOLD_Q8_1_F32 } else { names::ROUTER_FOLD_F32 };
        let wg = 256.min(self.gpu().caps().max_workgroup_invocations);
        let shared = if quant { k2 * 4 } else { 0 } + wg * 4;
        if rows == 0 || k1 == 0 || k2 == 0 || k1 % 4 != 0 || k2 % 4 != 0 || (quant && k2 % 32 != 0) {
            return Err(kerr(
                name,
                format!(
                    "{rows} rows of {k1} + {k2}: need non-empty widths, multiples of 4 (int-dot: k2 a multiple of 32)"
                ),
            ));
        }
        if shared > self.gpu().caps().max_shared_memory {
            return Err(kerr(
                name,
                format!(
                    "{k2} attention outputs need {shared} bytes of shared memory, the device has {}",
                    self.gpu().caps().max_shared_memory
                ),
            ));
        }
        let (dims, grid_x) = grid(rows, self.gpu().caps().max_workgroup_count[0]);
        if dims[1] > self.gpu().caps().max_workgroup_count[1] {
            return Err(kerr(name, format!("{rows} rows exceed the device's grid")));
        }
        let spec = [SpecConst { id: 0, value: wg }, SpecConst { id: 1, value: if quant { k2 / 4 } else { 1 } }];
        let p = self.pipeline::<PushFold>(name, &spec)?;
        let kk = (k1 + k2) as u64;
        let b = [
            Binding::read(r).range(0, rows as u64 * kk * 4),
            Binding::read(x).range(0, k1 as u64 * 4),
            Binding::read(a).range(0, k2 as u64 * 4),
            Binding::write(u).range(0, rows as u64 * 4),
        ];
        rec.dispatch(&p, &b, push_bytes(&PushFold { k1, k2, rows, grid_x }), dims)
    }
}
