//! The AudioTower's own kernels (spec §4.2; its LayerNorm is `layer_norm` in code2wav.rs): bias + exact-erf GELU, the stride-2 3×3
//! conv stem (with GELU, optionally writing the flattened layout conv_out reads), and
//! bidirectional attention inside fixed token windows.

use bytemuck::{Pod, Zeroable};
use vk_runtime::{Binding, Buffer, Recorder, Result, SpecConst};

use super::{grid, kerr, push_bytes, stride_grid, Matrix, WType};
use crate::kernels::names;
use crate::kernels::Kernels;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushBinary {
    n: u32,
    b_len: u32,
}
const _: () = assert!(std::mem::size_of::<PushBinary>() == 8);
crate::push_layout!(PushBinary { n, b_len });

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushConv {
    n: u32,
    cin: u32,
    hin: u32,
    win: u32,
    cout: u32,
    hout: u32,
    wout: u32,
    flat_out: u32,
}
const _: () = assert!(std::mem::size_of::<PushConv>() == 32);
crate::push_layout!(PushConv { n, cin, hin, win, cout, hout, wout, flat_out });

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushWindow {
    n_tok: u32,
    heads: u32,
    head_dim: u32,
    window: u32,
    scale: f32,
    grid_x: u32,
}
const _: () = assert!(std::mem::size_of::<PushWindow>() == 24);
crate::push_layout!(PushWindow { n_tok, heads, head_dim, window, scale, grid_x });

/// Largest attention window of [`Kernels::attn_bidir_window`] (its scores live in shared memory).
pub const ATTN_WINDOW_MAX: u32 = 1024;
/// Largest head dimension of [`Kernels::attn_bidir_window`].
pub const ATTN_WINDOW_MAX_HEAD_DIM: u32 = 128;

/// Shape of a stride-2, padding-1, 3×3 convolution: `[n, cin, hin, win]` → `[n, cout, hout, wout]`
/// with `hout = ceil(hin / 2)`, `wout = ceil(win / 2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dShape {
    pub n: u32,
    pub cin: u32,
    pub hin: u32,
    pub win: u32,
    pub cout: u32,
}

impl Conv2dShape {
    pub fn hout(&self) -> u32 {
        self.hin.div_ceil(2)
    }
    pub fn wout(&self) -> u32 {
        self.win.div_ceil(2)
    }
    pub fn out_len(&self) -> u64 {
        self.n as u64 * self.cout as u64 * self.hout() as u64 * self.wout() as u64
    }
    pub fn in_len(&self) -> u64 {
        self.n as u64 * self.cin as u64 * self.hin as u64 * self.win as u64
    }
}

/// Arguments of [`Kernels::attn_bidir_window`]: q, k, v, o for `n_tok` rows of `heads` heads of
/// `head_dim`, the `window` and the score `scale`.
#[derive(Clone, Copy)]
pub struct AttnBidirWindow<'a> {
    pub q: &'a Buffer,
    pub k: &'a Buffer,
    pub v: &'a Buffer,
    pub o: &'a Buffer,
    pub n_tok: u32,
    pub heads: u32,
    pub head_dim: u32,
    pub window: u32,
    pub scale: f32,
}

impl Kernels {
    /// y[i] = gelu(a[i] + b[i mod b_len]) with the exact (erf) GELU; y may be a.
    pub fn add_gelu<'a>(
        &self,
        rec: &mut Recorder<'a>,
        a: &'a Buffer,
        b: &'a Buffer,
        y: &'a Buffer,
        n: u64,
        b_len: u64,
    ) -> Result<()> {
        let name = names::ADD_GELU_F32;
        if n == 0 || b_len == 0 || b_len > n || n > u32::MAX as u64 {
            return Err(kerr(name, format!("n = {n}, b_len = {b_len}: need 0 < b_len ≤ n < 2^32")));
        }
        let wg = 256;
        let p = self.pipeline::<PushBinary>(name, &[SpecConst { id: 0, value: wg }])?;
        rec.dispatch(
            &p,
            &[
                Binding::read(a).range(0, n * 4),
                Binding::read(b).range(0, b_len * 4),
                Binding::write(y).range(0, n * 4),
            ],
            push_bytes(&PushBinary { n: n as u32, b_len: b_len as u32 }),
            stride_grid(n, wg),
        )
    }

    /// 3×3, stride 2, padding 1 convolution with bias, then exact GELU. `x` is `[n, cin, hin, win]`,
    /// `w` f32 `[cout, cin, 3, 3]`, `bias` `[cout]`. With `flat` the output is written as
    /// `[n, wout, cout·hout]` (feature `co·hout + ho`: the AudioTower's flatten), else
    /// `[n, cout, hout, wout]`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d_s2_gelu<'a>(
        &self,
        rec: &mut Recorder<'a>,
        s: Conv2dShape,
        x: &'a Buffer,
        w: &'a Buffer,
        bias: &'a Buffer,
        y: &'a Buffer,
        flat: bool,
    ) -> Result<()> {
        let name = names::CONV2D_S2_GELU_F32;
        if s.n == 0 || s.cin == 0 || s.hin == 0 || s.win == 0 || s.cout == 0 {
            return Err(kerr(name, format!("empty shape {s:?}")));
        }
        if s.out_len() > u32::MAX as u64 || s.in_len() > u32::MAX as u64 {
            return Err(kerr(name, format!("{s:?} exceeds 2^32 values; convolve fewer chunks at a time")));
        }
        // Many input channels: the tiled implicit-GEMM kernel (64×64 output tiles); one input
        // channel (the first conv): one invocation per output.
        let tiled = s.cin * 9 >= 64 && !self.tuning().conv_naive;
        let name = if tiled { names::CONV2D_S2_GELU_TILED_F32 } else { name };
        let wg = 256;
        let p = if tiled {
            self.pipeline::<PushConv>(name, &[])?
        } else {
            self.pipeline::<PushConv>(name, &[SpecConst { id: 0, value: wg }])?
        };
        let push = PushConv {
            n: s.n,
            cin: s.cin,
            hin: s.hin,
            win: s.win,
            cout: s.cout,
            hout: s.hout(),
            wout: s.wout(),
            flat_out: flat as u32,
        };
        let dims = if tiled {
            let positions = s.n as u64 * s.hout() as u64 * s.wout() as u64;
            let g = [positions.div_ceil(64), (s.cout as u64).div_ceil(64)];
            let max = self.gpu().caps().max_workgroup_count;
            if g[0] > max[0] as u64 || g[1] > max[1] as u64 {
                return Err(kerr(name, format!("{g:?} tiles exceed the device's workgroup count limit")));
            }
            [g[0] as u32, g[1] as u32, 1]
        } else {
            stride_grid(s.out_len(), wg)
        };
        rec.dispatch(
            &p,
            &[
                Binding::read(x).range(0, s.in_len() * 4),
                Binding::read(w).range(0, s.cout as u64 * s.cin as u64 * 9 * 4),
                Binding::read(bias).range(0, s.cout as u64 * 4),
                Binding::write(y).range(0, s.out_len() * 4),
            ],
            push_bytes(&push),
            dims,
        )
    }

    /// Bidirectional attention within consecutive windows of `window` tokens (the last one
    /// shorter): `q`, `k`, `v`, `o` are `[n_tok, heads, head_dim]`.
    pub fn attn_bidir_window<'a>(&self, rec: &mut Recorder<'a>, args: AttnBidirWindow<'a>) -> Result<()> {
        let AttnBidirWindow { q, k, v, o, n_tok, heads, head_dim, window, scale } = args;
        let name = names::ATTN_BIDIR_WINDOW_F32;
        if n_tok == 0 || heads == 0 || head_dim == 0 || head_dim > ATTN_WINDOW_MAX_HEAD_DIM {
            return Err(kerr(
                name,
                format!("{n_tok} tokens × {heads} heads × {head_dim}: need ≥ 1 of each, head_dim ≤ 128"),
            ));
        }
        if window == 0 || window > ATTN_WINDOW_MAX {
            return Err(kerr(name, format!("window {window} is not within 1..={ATTN_WINDOW_MAX}")));
        }
        let groups = n_tok as u64 * heads as u64;
        if groups > u32::MAX as u64 {
            return Err(kerr(name, format!("{groups} (token, head) pairs exceed 2^32")));
        }
        let wg = 128;
        let p = self.pipeline::<PushWindow>(name, &[SpecConst { id: 0, value: wg }])?;
        let (dims, grid_x) = grid(groups as u32, self.gpu().caps().max_workgroup_count[0]);
        let len = groups * head_dim as u64 * 4;
        rec.dispatch(
            &p,
            &[
                Binding::read(q).range(0, len),
                Binding::read(k).range(0, len),
                Binding::read(v).range(0, len),
                Binding::write(o).range(0, len),
            ],
            push_bytes(&PushWindow { n_tok, heads, head_dim, window, scale, grid_x }),
            dims,
        )
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushKMN {
    k: u32,
    m: u32,
    n: u32,
}
const _: () = assert!(std::mem::size_of::<PushKMN>() == 12);
crate::push_layout!(PushKMN { k, m, n });

impl Kernels {
    /// Y (`[n, rows]`) = X (`[n, cols]` floats) · Wᵀ for planar Q8_0 weights, in f32 (no
    /// activation quantisation; works without int8 dot products).
    pub fn matmul_q8_0_float<'a>(
        &self,
        rec: &mut Recorder<'a>,
        w: Matrix<'a>,
        x: &'a Buffer,
        n: u32,
        y: &'a Buffer,
    ) -> Result<()> {
        let name = names::MM_Q8_0P_F32;
        w.check(name)?;
        if w.wtype != WType::Q8_0Planar || n == 0 {
            return Err(kerr(name, format!("{:?} weights × {n} rows: needs planar Q8_0 and n ≥ 1", w.wtype)));
        }
        let groups = [w.rows.div_ceil(64), n.div_ceil(64), 1];
        let max = self.gpu().caps().max_workgroup_count;
        if groups[0] > max[0] || groups[1] > max[1] {
            return Err(kerr(
                name,
                format!("{}×{} tiles exceed the device's workgroup count limit", groups[0], groups[1]),
            ));
        }
        let p = self.pipeline::<PushKMN>(name, &[])?;
        let l = crate::layout::PlanarLayout::new(w.rows as u64, w.cols as u64);
        rec.dispatch(
            &p,
            &[
                Binding::read(w.buf).range(w.offset, l.qs_bytes),
                Binding::read(w.buf).range(w.offset + l.d_offset, l.d_bytes),
                Binding::read(x).range(0, n as u64 * w.cols as u64 * 4),
                Binding::write(y).range(0, n as u64 * w.rows as u64 * 4),
            ],
            push_bytes(&PushKMN { k: w.cols, m: w.rows, n }),
            groups,
        )
    }
}
