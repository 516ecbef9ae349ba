//! Code2Wav's kernels (spec §7): the tiled causal / transposed conv1d that also runs its Linears,
//! SnakeBeta, the ConvNeXt depthwise conv and LayerNorm, RoPE on a row range, and causal
//! sliding-window attention over a key/value buffer with history. Activations are time-major
//! (`[rows, channels]`); history rows sit before row 0 of a conv's input (row offsets are push
//! constants, so every binding starts at offset 0).

use bytemuck::{Pod, Zeroable};
use vk_runtime::{Binding, Buffer, Recorder, Result, SpecConst};

use super::{grid, kerr, push_bytes, stride_grid, Heads};
use crate::kernels::names;
use crate::kernels::Kernels;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushConv {
    n_in: u32,
    cin: u32,
    cout: u32,
    s: u32,
    m: u32,
    d: u32,
    x_off: u32,
    y_off: u32,
    skip: u32,
    mode: u32,
}
const _: () = assert!(std::mem::size_of::<PushConv>() == 40);
crate::push_layout!(PushConv { n_in, cin, cout, s, m, d, x_off, y_off, skip, mode });

/// What [`Kernels::conv1d`] does with each output value v (bias already added when given).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConvEpilogue {
    /// y = v
    Store,
    /// y = gelu_erf(v)
    Gelu,
    /// y = y + v (in place)
    Residual,
    /// y = y + scale[co] · v (in place; layer scale / ConvNeXt gamma)
    ScaledResidual,
    /// y = clamp(v, −1, 1)
    Clamp,
}

/// Weights of a [`Kernels::conv1d`] call.
#[derive(Debug, Clone, Copy)]
pub enum ConvWeights<'a> {
    /// f32, repacked `W'[phase][tap][cout][cin]` (a Linear's `[out, in]` as is).
    F32(&'a Buffer),
    /// A Linear's `[cout, cin]` in planar Q8_0 (`layout::PlanarLayout`); s = m = d = 1 only.
    Q8_0Planar(&'a Buffer),
}

/// Geometry of one [`Kernels::conv1d`] call (see glsl/conv1d.comp).
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    /// Input rows to compute outputs for.
    pub n_in: u32,
    pub cin: u32,
    pub cout: u32,
    /// Output rows per input row (1 for convs and Linears, the stride for transposed convs).
    pub s: u32,
    /// Taps.
    pub m: u32,
    /// Dilation in input rows between taps.
    pub d: u32,
    /// Row of input 0 in x (≥ (m − 1)·d history rows before it).
    pub x_off: u32,
    /// Row of y that output row `skip` goes to.
    pub y_off: u32,
    /// Leading output rows dropped.
    pub skip: u32,
}

impl ConvShape {
    /// A Linear over `n` rows: y[n, cout] = x[n, cin] · Wᵀ.
    pub fn linear(n: u32, cin: u32, cout: u32) -> ConvShape {
        ConvShape { n_in: n, cin, cout, s: 1, m: 1, d: 1, x_off: 0, y_off: 0, skip: 0 }
    }
    /// Output rows written.
    pub fn out_rows(&self) -> u64 {
        (self.n_in as u64 * self.s as u64).saturating_sub(self.skip as u64)
    }
}

/// Repacks a Conv1d weight `[cout, cin, k]` for [`Kernels::conv1d`] (s = 1, m = k taps, tap u
/// reads u·d rows back, so it takes kernel index k − 1 − u).
pub fn repack_conv(w: &[f32], cout: usize, cin: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0.0; w.len()];
    for u in 0..k {
        for co in 0..cout {
            for ci in 0..cin {
                out[(u * cout + co) * cin + ci] = w[(co * cin + ci) * k + (k - 1 - u)];
            }
        }
    }
    out
}

/// Repacks a ConvTranspose1d weight `[cin, cout, m·s]` for [`Kernels::conv1d`] with stride s:
/// W'[p][u][co][ci] = Wt[ci][co][p + u·s].
pub fn repack_trans_conv(w: &[f32], cin: usize, cout: usize, k: usize, s: usize) -> Vec<f32> {
    let m = k / s;
    let mut out = vec![0.0; cin * cout * m * s];
    for p in 0..s {
        for u in 0..m {
            for co in 0..cout {
                for ci in 0..cin {
                    out[((p * m + u) * cout + co) * cin + ci] = w[(ci * cout + co) * k + p + u * s];
                }
            }
        }
    }
    out
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Push4 {
    n: u32,
    c: u32,
    a: u32,
    b: u32,
}
const _: () = assert!(std::mem::size_of::<Push4>() == 16);
crate::push_layout!(Push4 { n, c, a, b });

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushLn {
    n: u32,
    rows: u32,
    eps: f32,
    grid_x: u32,
}
crate::push_layout!(PushLn { n, rows, eps, grid_x });

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushRopeRows {
    n: u32,
    heads: u32,
    head_dim: u32,
    row_off: u32,
    pos0: u32,
    theta: f32,
}
const _: () = assert!(std::mem::size_of::<PushRopeRows>() == 24);
crate::push_layout!(PushRopeRows { n, heads, head_dim, row_off, pos0, theta });

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushAttnWindow {
    n: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    hist: u32,
    valid: u32,
    window: u32,
    scale: f32,
}
const _: () = assert!(std::mem::size_of::<PushAttnWindow>() == 32);
crate::push_layout!(PushAttnWindow { n, heads, kv_heads, head_dim, hist, valid, window, scale });

const WG: u32 = 256;

/// Output channels up to which [`Kernels::conv1d`] runs one invocation per output row.
pub const NARROW_MAX_COUT: u32 = 16;

fn rows_bytes(rows: u64, c: u32) -> u64 {
    rows * c as u64 * 4
}

/// The activations of [`Kernels::conv1d`]: x in, the optional bias, the epilogue and its
/// optional per-channel `scale`, y out.
#[derive(Clone, Copy)]
pub struct ConvIo<'a> {
    pub x: &'a Buffer,
    pub bias: Option<&'a Buffer>,
    pub epilogue: ConvEpilogue,
    pub scale: Option<&'a Buffer>,
    pub y: &'a Buffer,
}

/// Arguments of [`Kernels::snake_beta`]: x (from row `x_off`), the parameters, y (from row
/// `y_off`), `n` rows of `c` channels.
#[derive(Clone, Copy)]
pub struct SnakeBeta<'a> {
    pub x: &'a Buffer,
    pub x_off: u32,
    pub params: &'a Buffer,
    pub y: &'a Buffer,
    pub y_off: u32,
    pub n: u32,
    pub c: u32,
}

/// Arguments of [`Kernels::dwconv`]: x (from row `x_off`), the depthwise weights `w` and bias `b`,
/// y, `n` rows of `c` channels, kernel size `k`.
#[derive(Clone, Copy)]
pub struct DwConv<'a> {
    pub x: &'a Buffer,
    pub x_off: u32,
    pub w: &'a Buffer,
    pub b: &'a Buffer,
    pub y: &'a Buffer,
    pub n: u32,
    pub c: u32,
    pub k: u32,
}

/// Arguments of [`Kernels::layer_norm`]: x, weight `w`, bias `b`, y; `rows` rows of `n` values.
#[derive(Clone, Copy)]
pub struct LayerNorm<'a> {
    pub x: &'a Buffer,
    pub w: &'a Buffer,
    pub b: &'a Buffer,
    pub y: &'a Buffer,
    pub n: u32,
    pub rows: u32,
    pub eps: f32,
}

/// Arguments of [`Kernels::rope_rows`]: x from row `row_off`, `n` rows of `heads` heads of
/// `head_dim`, positions from `pos0`, base `theta`.
#[derive(Clone, Copy)]
pub struct RopeSpan<'a> {
    pub x: &'a Buffer,
    pub row_off: u32,
    pub n: u32,
    pub heads: u32,
    pub head_dim: u32,
    pub pos0: u32,
    pub theta: f32,
}

/// Arguments of [`Kernels::attn_window`] besides the head shape: q, k, v, o, `n` new rows after
/// `hist` history rows, `valid` rows holding keys, the `window`.
#[derive(Clone, Copy)]
pub struct AttnWindow<'a> {
    pub q: &'a Buffer,
    pub k: &'a Buffer,
    pub v: &'a Buffer,
    pub o: &'a Buffer,
    pub n: u32,
    pub hist: u32,
    pub valid: u32,
    pub window: u32,
}

impl Kernels {
    /// Tiled conv1d / transposed conv1d / Linear (glsl/conv1d.comp) with f32 weights repacked by
    /// [`repack_conv`] / [`repack_trans_conv`] (a Linear's `[out, in]` needs none), optional
    /// bias, and an epilogue. `scale` is read only by [`ConvEpilogue::ScaledResidual`].
    pub fn conv1d<'a>(&self, rec: &mut Recorder<'a>, sh: ConvShape, w: ConvWeights<'a>, io: ConvIo<'a>) -> Result<()> {
        let ConvIo { x, bias, epilogue, scale, y } = io;
        let narrow = sh.cout <= NARROW_MAX_COUT;
        let name = match (narrow, w) {
            (true, ConvWeights::F32(_)) => names::CONV1D_NARROW_F32,
            (false, ConvWeights::F32(_)) => names::CONV1D_F32,
            (true, ConvWeights::Q8_0Planar(_)) => names::CONV1D_NARROW_Q8_0P_F32,
            (false, ConvWeights::Q8_0Planar(_)) => names::CONV1D_Q8_0P_F32,
        };
        if let ConvWeights::Q8_0Planar(_) = w {
            if sh.s != 1 || sh.m != 1 || !sh.cin.is_multiple_of(32) {
                return Err(kerr(
                    name,
                    format!("{sh:?}: planar Q8_0 weights serve Linears (s = m = 1) of cin % 32 = 0"),
                ));
            }
        }
        if sh.cin == 0 || sh.cout == 0 || sh.s == 0 || sh.m == 0 || sh.d == 0 {
            return Err(kerr(name, format!("zero-sized geometry {sh:?}")));
        }
        if (sh.x_off as u64) < (sh.m as u64 - 1) * sh.d as u64 {
            return Err(kerr(name, format!("{sh:?}: x_off is less than the (m − 1)·d history rows the taps read")));
        }
        if sh.out_rows() == 0 {
            return Ok(()); // no input rows, or every output row trimmed: nothing to do
        }
        let x_rows = sh.x_off as u64 + sh.n_in as u64;
        let y_rows = sh.y_off as u64 + sh.out_rows();
        let w_len = sh.s as u64 * sh.m as u64 * sh.cout as u64 * sh.cin as u64 * 4;
        let wb = match w {
            ConvWeights::F32(b) | ConvWeights::Q8_0Planar(b) => b,
        };
        let mut mode = 0u32;
        if bias.is_some() {
            mode |= 1;
        }
        mode |= match epilogue {
            ConvEpilogue::Store => 0,
            ConvEpilogue::Gelu => 2,
            ConvEpilogue::Residual => 4,
            ConvEpilogue::ScaledResidual => 8,
            ConvEpilogue::Clamp => 16,
        };
        let scale_b = match (epilogue, scale) {
            (ConvEpilogue::ScaledResidual, Some(s)) => Binding::read(s).range(0, sh.cout as u64 * 4),
            (ConvEpilogue::ScaledResidual, None) => return Err(kerr(name, "a scaled residual needs a scale".into())),
            _ => Binding::read(wb).range(0, 4),
        };
        let bias_b = match bias {
            Some(b) => Binding::read(b).range(0, sh.cout as u64 * 4),
            None => Binding::read(wb).range(0, 4),
        };
        let yb = if matches!(epilogue, ConvEpilogue::Residual | ConvEpilogue::ScaledResidual) {
            Binding::read_write(y)
        } else {
            Binding::write(y)
        };
        let push = PushConv {
            n_in: sh.n_in,
            cin: sh.cin,
            cout: sh.cout,
            s: sh.s,
            m: sh.m,
            d: sh.d,
            x_off: sh.x_off,
            y_off: sh.y_off,
            skip: sh.skip,
            mode,
        };
        let groups = if narrow {
            let total = sh.n_in as u64 * sh.s as u64;
            let g = total.div_ceil(64);
            if g > self.gpu().caps().max_workgroup_count[0] as u64 {
                return Err(kerr(name, format!("{total} output rows exceed one dispatch")));
            }
            [g as u32, 1, 1]
        } else {
            [sh.cout.div_ceil(64), sh.n_in.div_ceil(64), sh.s]
        };
        let p = self.pipeline::<PushConv>(name, &[])?;
        let xb = Binding::read(x).range(0, rows_bytes(x_rows, sh.cin));
        let yb = yb.range(0, rows_bytes(y_rows, sh.cout));
        match w {
            ConvWeights::F32(w) => rec.dispatch(
                &p,
                &[xb, Binding::read(w).range(0, w_len), bias_b, scale_b, yb],
                push_bytes(&push),
                groups,
            ),
            ConvWeights::Q8_0Planar(w) => {
                let l = crate::layout::PlanarLayout::new(sh.cout as u64, sh.cin as u64);
                let qs = Binding::read(w).range(0, l.qs_bytes);
                let d = Binding::read(w).range(l.d_offset, l.d_bytes);
                rec.dispatch(&p, &[xb, qs, d, bias_b, scale_b, yb], push_bytes(&push), groups)
            }
        }
    }

    /// SnakeBeta: rows `y_off..y_off+n` of y = snake(rows `x_off..x_off+n` of x), `c` channels;
    /// `params` = [exp(alpha) (c), 1/(exp(beta) + 1e-9) (c)].
    pub fn snake_beta<'a>(&self, rec: &mut Recorder<'a>, args: SnakeBeta<'a>) -> Result<()> {
        let SnakeBeta { x, x_off, params, y, y_off, n, c } = args;
        let name = names::SNAKE_BETA_F32;
        if n == 0 || c == 0 {
            return Ok(());
        }
        let p = self.pipeline::<Push4>(name, &[SpecConst { id: 0, value: WG }])?;
        rec.dispatch(
            &p,
            &[
                Binding::read(x).range(0, rows_bytes(x_off as u64 + n as u64, c)),
                Binding::read(params).range(0, 2 * c as u64 * 4),
                Binding::write(y).range(0, rows_bytes(y_off as u64 + n as u64, c)),
            ],
            push_bytes(&Push4 { n, c, a: x_off, b: y_off }),
            stride_grid(n as u64 * c as u64, WG),
        )
    }

    /// Depthwise causal conv (`w` `[c, k]`, bias `b`): rows 0..n of y from rows
    /// `x_off − (k−1)..x_off+n` of x.
    pub fn dwconv<'a>(&self, rec: &mut Recorder<'a>, args: DwConv<'a>) -> Result<()> {
        let DwConv { x, x_off, w, b, y, n, c, k } = args;
        let name = names::DWCONV_F32;
        if k == 0 || x_off + 1 < k {
            return Err(kerr(name, format!("kernel {k} needs at least k − 1 history rows, x_off is {x_off}")));
        }
        if n == 0 || c == 0 {
            return Ok(());
        }
        let p = self.pipeline::<Push4>(name, &[SpecConst { id: 0, value: WG }])?;
        rec.dispatch(
            &p,
            &[
                Binding::read(x).range(0, rows_bytes(x_off as u64 + n as u64, c)),
                Binding::read(w).range(0, c as u64 * k as u64 * 4),
                Binding::read(b).range(0, c as u64 * 4),
                Binding::write(y).range(0, rows_bytes(n as u64, c)),
            ],
            push_bytes(&Push4 { n, c, a: k, b: x_off }),
            stride_grid(n as u64 * c as u64, WG),
        )
    }

    /// LayerNorm over each of `rows` rows of `n` (weight `w`, bias `b`).
    pub fn layer_norm<'a>(&self, rec: &mut Recorder<'a>, args: LayerNorm<'a>) -> Result<()> {
        let LayerNorm { x, w, b, y, n, rows, eps } = args;
        let name = names::LAYER_NORM_F32;
        if n == 0 || rows == 0 {
            return Err(kerr(name, format!("empty input ({rows} rows of {n})")));
        }
        let p = self.pipeline::<PushLn>(name, &[SpecConst { id: 0, value: WG }])?;
        let (dims, grid_x) = grid(rows, self.gpu().caps().max_workgroup_count[0]);
        let total = rows as u64 * n as u64 * 4;
        rec.dispatch(
            &p,
            &[
                Binding::read(x).range(0, total),
                Binding::read(w).range(0, n as u64 * 4),
                Binding::read(b).range(0, n as u64 * 4),
                Binding::write(y).range(0, total),
            ],
            push_bytes(&PushLn { n, rows, eps, grid_x }),
            dims,
        )
    }

    /// Rotate-half RoPE in place on rows `row_off..row_off+n` of x (`[rows, heads, head_dim]`),
    /// row `row_off + t` at position `pos0 + t`.
    pub fn rope_rows<'a>(&self, rec: &mut Recorder<'a>, args: RopeSpan<'a>) -> Result<()> {
        let RopeSpan { x, row_off, n, heads, head_dim, pos0, theta } = args;
        let name = names::ROPE_ROWS_F32;
        if heads == 0 || head_dim == 0 || !head_dim.is_multiple_of(2) || !(theta.is_finite() && theta > 1.0) {
            return Err(kerr(name, format!("{heads} heads × head_dim {head_dim}, theta {theta}")));
        }
        if n == 0 {
            return Ok(());
        }
        let p = self.pipeline::<PushRopeRows>(name, &[SpecConst { id: 0, value: WG }])?;
        let row = heads as u64 * head_dim as u64;
        rec.dispatch(
            &p,
            &[Binding::read_write(x).range(0, (row_off as u64 + n as u64) * row * 4)],
            push_bytes(&PushRopeRows { n, heads, head_dim, row_off, pos0, theta }),
            stride_grid(n as u64 * row / 2, WG),
        )
    }

    /// Causal sliding-window attention (glsl/attn_window.comp): o (`[n, heads, hd]`) from q and
    /// k / v buffers holding `hist` history rows (the last `valid` of them real) then n rows.
    pub fn attn_window<'a>(&self, rec: &mut Recorder<'a>, args: AttnWindow<'a>, shape: Heads) -> Result<()> {
        let AttnWindow { q, k, v, o, n, hist, valid, window } = args;
        let Heads { n_heads: heads, n_kv: kv_heads, head_dim } = shape;
        let name = names::ATTN_WINDOW_F32;
        if heads == 0
            || kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
            || head_dim == 0
            || head_dim > 128
            || window == 0
        {
            return Err(kerr(
                name,
                format!("{heads} heads / {kv_heads} kv heads × head_dim {head_dim} (≤ 128), window {window}"),
            ));
        }
        if valid > hist {
            return Err(kerr(name, format!("{valid} valid history rows of {hist}")));
        }
        if n == 0 {
            return Ok(());
        }
        let wg = 64;
        let p = self.pipeline::<PushAttnWindow>(name, &[SpecConst { id: 0, value: wg }])?;
        let (dims, _) = grid((n * heads).div_ceil(wg), self.gpu().caps().max_workgroup_count[0]);
        let qrow = heads as u64 * head_dim as u64 * 4;
        let krow = kv_heads as u64 * head_dim as u64 * 4;
        let push =
            PushAttnWindow { n, heads, kv_heads, head_dim, hist, valid, window, scale: 1.0 / (head_dim as f32).sqrt() };
        rec.dispatch(
            &p,
            &[
                Binding::read(q).range(0, n as u64 * qrow),
                Binding::read(k).range(0, (hist + n) as u64 * krow),
                Binding::read(v).range(0, (hist + n) as u64 * krow),
                Binding::write(o).range(0, n as u64 * qrow),
            ],
            push_bytes(&push),
            dims,
        )
    }
}
