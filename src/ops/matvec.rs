//! Matrix × vector: planar Q8_0 (float or int-dot path), F16, F32; and Q8_1 activation quantisation.

use bytemuck::{Pod, Zeroable};
use vk_runtime::{Binding, Buffer, Recorder, Result, SpecConst};

use super::{grid, kerr, push_bytes, stride_grid, Matrix, PushKMG, Rope, WType};
use crate::kernels::names;
use crate::kernels::{Kernels, MatvecPath, Q8_1Scratch};
use crate::options::CacheType;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushBlocks {
    n_blocks: u32,
}
const _: () = assert!(std::mem::size_of::<PushBlocks>() == 4);
crate::push_layout!(PushBlocks { n_blocks });

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushFused {
    k: u32,
    m: u32,
    grid_x: u32,
    eps: f32,
}
const _: () = assert!(std::mem::size_of::<PushFused>() == 16);
crate::push_layout!(PushFused { k, m, grid_x, eps });

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushHead {
    k: u32,
    m: u32,
    grid_x: u32,
    eps: f32,
    mode: u32,
    theta: f32,
    section_h: u32,
    section_w: u32,
    max_len: u32,
}
crate::push_layout!(PushHead { k, m, grid_x, eps, mode, theta, section_h, section_w, max_len });

/// Where [`Kernels::matvec_head`] puts a finished head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadOut {
    /// Per-head RMSNorm (weights `hw`) and RoPE, into y `[rows]` (decode q).
    Query,
    /// The same, into the K cache `[max_len, rows]` at position cache_len[0] (decode k).
    Key,
    /// The rows as they are, into the V cache `[max_len, rows]` at position cache_len[0] (decode v).
    Value,
}

/// Arguments of [`Kernels::matvec_head`] besides the RoPE: the matrix, x and its RMSNorm
/// (`(weights, eps)`), where the heads go (`out`), the per-head norm weights `hw`, the positions
/// `pos`, the cache length `cache_len` (u32), the destination `y`, the cache capacity `max_len`
/// and element type `cache_type` (Key / Value; ignored for Query), and `head_dim`.
#[derive(Clone, Copy)]
pub struct MatvecHead<'a> {
    pub w: Matrix<'a>,
    pub x: &'a Buffer,
    pub norm: (&'a Buffer, f32),
    pub out: HeadOut,
    pub hw: &'a Buffer,
    pub pos: &'a Buffer,
    pub cache_len: &'a Buffer,
    pub y: &'a Buffer,
    pub max_len: u32,
    pub cache_type: CacheType,
    pub head_dim: u32,
}

impl Kernels {
    /// Decode q / k / v with their per-head epilogue (`matvec_q8_0p.comp` HEAD): y = W ·
    /// rmsnorm(x) as [`Kernels::matvec_fused`] with a norm, one workgroup per head of `head_dim`
    /// rows, then per `out`: the head's RMSNorm (`hw`, `eps`) and (M)RoPE at `pos` into `y`
    /// (Query), the same into the K cache `y` at position cache_len[0] (Key), or the rows into the V
    /// cache (Value); cache positions ≥ `max_len` are dropped. Does rope_qk_norm_store's work
    /// without its dispatch.
    pub fn matvec_head<'a>(&self, rec: &mut Recorder<'a>, args: MatvecHead<'a>, rope: Rope) -> Result<()> {
        let MatvecHead { w, x, norm, out, hw, pos, cache_len, y, max_len, cache_type, head_dim } = args;
        let Rope { theta, mrope_section } = rope;
        let intdot = self.matvec_path() == MatvecPath::IntDot;
        // q is f32 whatever the cache holds.
        let ty = if out == HeadOut::Query { CacheType::F32 } else { cache_type };
        let name = if intdot {
            super::attention::kv_kernel(ty, names::MV_Q8_0P_Q8_1_HEAD, names::MV_Q8_0P_Q8_1_HEAD_KV_F16)?
        } else {
            super::attention::kv_kernel(ty, names::MV_Q8_0P_F32_HEAD, names::MV_Q8_0P_F32_HEAD_KV_F16)?
        };
        if w.wtype != WType::Q8_0Planar {
            return Err(kerr(name, format!("{:?} weights: needs planar Q8_0", w.wtype)));
        }
        w.check(name)?;
        let k = w.cols as u64;
        let max_k = if intdot { 8192 } else { 4096 };
        if k > max_k {
            return Err(kerr(name, format!("{k} columns: the fused prologue holds at most {max_k}")));
        }
        if head_dim == 0 || head_dim > 256 || head_dim % 2 != 0 || w.rows % head_dim != 0 {
            return Err(kerr(
                name,
                format!("{} rows in heads of {head_dim}: need an even head_dim ≤ 256 dividing the rows", w.rows),
            ));
        }
        if out != HeadOut::Query && max_len == 0 {
            return Err(kerr(name, "a cache of 0 positions".into()));
        }
        super::attention::check_rope(name, head_dim, theta, mrope_section)?;
        let caps = self.gpu().caps();
        let t = self.tuning();
        // Big workgroups: a head's rows are all its workgroup's work.
        let wg = if t.head_wg > 0 { t.head_wg } else { 1024 }.min(caps.max_workgroup_invocations);
        let spec = [
            SpecConst { id: 0, value: wg },
            SpecConst { id: 1, value: t.mv_rows },
            SpecConst { id: 2, value: head_dim },
        ];
        let heads = w.rows / head_dim;
        let (dims, grid_x) = grid(heads, caps.max_workgroup_count[0]);
        let mode = match out {
            HeadOut::Query => 0,
            HeadOut::Key => 1,
            HeadOut::Value => 2,
        };
        let push = PushHead {
            k: w.cols,
            m: w.rows,
            grid_x,
            eps: norm.1,
            mode,
            theta,
            section_h: mrope_section[1],
            section_w: mrope_section[2],
            max_len,
        };
        let l = crate::layout::PlanarLayout::new(w.rows as u64, k);
        let y_len =
            if out == HeadOut::Query { w.rows as u64 * 4 } else { max_len as u64 * ty.row_bytes(w.rows as u64) };
        let p = self.pipeline::<PushHead>(name, &spec)?;
        let b = [
            Binding::read(w.buf).range(w.offset, l.qs_bytes),
            Binding::read(w.buf).range(w.offset + l.d_offset, l.d_bytes),
            Binding::read(x).range(0, k * 4),
            Binding::read(norm.0).range(0, k * 4),
            Binding::write(y).range(0, y_len),
            Binding::read(hw).range(0, head_dim as u64 * 4),
            Binding::read(pos).range(0, 12),
            Binding::read(cache_len).range(0, 4),
        ];
        rec.dispatch(&p, &b, push_bytes(&push), dims)
    }

    /// y[0..rows) = W · x[0..cols). With a planar Q8_0 matrix on the int-dot path, `scratch` (≥ cols
    /// values) receives x quantised to Q8_1 first; it is unused otherwise.
    pub fn matvec<'a>(
        &self,
        rec: &mut Recorder<'a>,
        w: Matrix<'a>,
        x: &'a Buffer,
        y: &'a Buffer,
        scratch: Option<&'a Q8_1Scratch>,
    ) -> Result<()> {
        self.matvec_impl(rec, w, x, y, scratch, true, None)
    }

    /// Like [`Kernels::matvec`] on the int-dot path, with `scratch` already holding x quantised
    /// by [`Kernels::quantize_q8_1`] (one quantisation shared by several matrices, e.g. q/k/v).
    /// On the float path it is exactly `matvec`.
    pub fn matvec_prequantized<'a>(
        &self,
        rec: &mut Recorder<'a>,
        w: Matrix<'a>,
        x: &'a Buffer,
        y: &'a Buffer,
        scratch: &'a Q8_1Scratch,
    ) -> Result<()> {
        self.matvec_impl(rec, w, x, y, Some(scratch), false, None)
    }

    /// y = residual + W · x for a planar Q8_0 matrix: a decoder layer's output projection with
    /// its residual add fused (one dispatch fewer). `residual` (≥ rows floats) must not be `y`.
    pub fn matvec_residual<'a>(
        &self,
        rec: &mut Recorder<'a>,
        w: Matrix<'a>,
        x: &'a Buffer,
        residual: &'a Buffer,
        y: &'a Buffer,
        scratch: Option<&'a Q8_1Scratch>,
    ) -> Result<()> {
        self.matvec_impl(rec, w, x, y, scratch, true, Some(residual))
    }

    /// Decode fusion: y = W · prep(x) (+ `residual`), where every workgroup prepares x itself:
    /// with `norm = Some((w, eps))` RMSNorm x / sqrt(mean(x²) + eps) · w, and on the int-dot path
    /// Q8_1 quantisation into shared memory. Replaces an `rms_norm` and/or a `quantize_q8_1`
    /// dispatch and their barriers. Planar Q8_0 (norm xor residual) or F32 (norm only) weights; x
    /// at most 8192 (int-dot) / 4096 (float) columns. Without norm and residual it is `matvec`.
    pub fn matvec_fused<'a>(
        &self,
        rec: &mut Recorder<'a>,
        w: Matrix<'a>,
        x: &'a Buffer,
        norm: Option<(&'a Buffer, f32)>,
        residual: Option<&'a Buffer>,
        y: &'a Buffer,
    ) -> Result<()> {
        let intdot = w.wtype == WType::Q8_0Planar && self.matvec_path() == MatvecPath::IntDot;
        let name = match (w.wtype, intdot, norm.is_some(), residual.is_some()) {
            (WType::Q8_0Planar, true, true, false) => names::MV_Q8_0P_Q8_1_NQ,
            (WType::Q8_0Planar, true, false, true) => names::MV_Q8_0P_Q8_1_PQ_RES,
            (WType::Q8_0Planar, false, true, false) => names::MV_Q8_0P_F32_N,
            (WType::Q8_0Planar, false, false, true) => return self.matvec_impl(rec, w, x, y, None, false, residual),
            (WType::F32, _, true, false) => names::MV_F32_F32_NORM,
            (wt, _, n, r) => {
                return Err(kerr(
                    "matvec_fused",
                    format!("{wt:?} weights with norm {n} and residual {r}: no such fused kernel"),
                ))
            }
        };
        w.check(name)?;
        let k = w.cols as u64;
        let max_k = if intdot { 8192 } else { 4096 };
        if w.wtype == WType::Q8_0Planar && k > max_k {
            return Err(kerr(name, format!("{k} columns: the fused prologue holds at most {max_k}")));
        }
        let eps = norm.map(|n| n.1).unwrap_or(0.0);
        let push = PushFused { k: w.cols, m: w.rows, grid_x: 0, eps };
        let yb = Binding::write(y).range(0, w.rows as u64 * 4);
        let xb = Binding::read(x).range(0, k * 4);
        let nb = norm.map(|(nw, _)| Binding::read(nw).range(0, k * 4));
        let t = self.tuning();
        if w.wtype == WType::F32 {
            let spec = [SpecConst { id: 0, value: t.mv_wg }, SpecConst { id: 1, value: t.mv_rows }];
            let (dims, grid_x) = grid(w.rows.div_ceil(t.mv_rows), self.gpu().caps().max_workgroup_count[0]);
            let p = self.pipeline::<PushFused>(name, &spec)?;
            let b = [Binding::read(w.buf).range(w.offset, w.bytes()), xb, yb, nb.expect("norm")];
            return rec.dispatch(&p, &b, push_bytes(&PushFused { grid_x, ..push }), dims);
        }
        let l = crate::layout::PlanarLayout::new(w.rows as u64, k);
        let min_sg = self.subgroup_floor();
        let base = (t.fused_wg / min_sg).max(1) * t.mv_rows;
        // Every workgroup pays for the prologue: size them so there are about `fused_groups`.
        let rows_wg = base * (w.rows / (base * t.fused_groups)).max(1);
        let spec = [
            SpecConst { id: 0, value: t.fused_wg },
            SpecConst { id: 1, value: t.mv_rows },
            SpecConst { id: 2, value: rows_wg },
        ];
        let (dims, grid_x) = grid(w.rows.div_ceil(rows_wg), self.gpu().caps().max_workgroup_count[0]);
        let p = self.pipeline::<PushFused>(name, &spec)?;
        let mut b = vec![
            Binding::read(w.buf).range(w.offset, l.qs_bytes),
            Binding::read(w.buf).range(w.offset + l.d_offset, l.d_bytes),
            xb,
        ];
        b.extend(nb);
        b.push(yb);
        b.extend(residual.map(|r| Binding::read(r).range(0, w.rows as u64 * 4)));
        rec.dispatch(&p, &b, push_bytes(&PushFused { grid_x, ..push }), dims)
    }

    #[allow(clippy::too_many_arguments)]
    fn matvec_impl<'a>(
        &self,
        rec: &mut Recorder<'a>,
        w: Matrix<'a>,
        x: &'a Buffer,
        y: &'a Buffer,
        scratch: Option<&'a Q8_1Scratch>,
        quantize: bool,
        residual: Option<&'a Buffer>,
    ) -> Result<()> {
        let intdot = w.wtype == WType::Q8_0Planar && self.matvec_path() == MatvecPath::IntDot;
        let name = match (w.wtype, intdot, residual.is_some()) {
            (WType::Q8_0Planar, true, true) => names::MV_Q8_0P_Q8_1_RES,
            (WType::Q8_0Planar, false, true) => names::MV_Q8_0P_F32_RES,
            (_, _, true) => {
                return Err(kerr(
                    "matvec_residual",
                    format!("{:?} weights: the fused residual needs planar Q8_0", w.wtype),
                ))
            }
            (WType::Q8_0Planar, true, _) => names::MV_Q8_0P_Q8_1,
            (WType::Q8_0Planar, false, _) => names::MV_Q8_0P_F32,
            (WType::F16, _, _) => names::MV_F16_F32,
            (WType::F32, _, _) => names::MV_F32_F32,
        };
        w.check(name)?;
        let t = self.tuning();
        let spec = [SpecConst { id: 0, value: t.mv_wg }, SpecConst { id: 1, value: t.mv_rows }];
        let groups = w.rows.div_ceil(t.mv_rows);
        let (dims, grid_x) = grid(groups, self.gpu().caps().max_workgroup_count[0]);
        let push = PushKMG { k: w.cols, m: w.rows, grid_x };
        let yb = Binding::write(y).range(0, w.rows as u64 * 4);
        if w.wtype == WType::Q8_0Planar {
            let l = crate::layout::PlanarLayout::new(w.rows as u64, w.cols as u64);
            let qs = Binding::read(w.buf).range(w.offset, l.qs_bytes);
            let d = Binding::read(w.buf).range(w.offset + l.d_offset, l.d_bytes);
            // Rows per workgroup from the smallest subgroup the device may use, so every
            // subgroup has rows to do; the kernel strides over them whatever the real size.
            let min_sg = self.subgroup_floor();
            let rows_wg = (t.mv_wg / min_sg).max(1) * t.mv_rows;
            let spec = [
                SpecConst { id: 0, value: t.mv_wg },
                SpecConst { id: 1, value: t.mv_rows },
                SpecConst { id: 2, value: rows_wg },
            ];
            let (dims, grid_x) = grid(w.rows.div_ceil(rows_wg), self.gpu().caps().max_workgroup_count[0]);
            let push = PushKMG { k: w.cols, m: w.rows, grid_x };
            let p = self.pipeline::<PushKMG>(name, &spec)?;
            let n = w.cols as u64;
            if intdot {
                let s = scratch.ok_or_else(|| kerr(name, "the int-dot path needs a Q8_1 scratch".into()))?;
                if quantize {
                    self.quantize_q8_1(rec, x, n, s)?;
                }
                let mut b =
                    vec![qs, d, Binding::read(&s.xq).range(0, n), Binding::read(&s.xd).range(0, n / 32 * 8), yb];
                b.extend(residual.map(|r| Binding::read(r).range(0, w.rows as u64 * 4)));
                return rec.dispatch(&p, &b, push_bytes(&push), dims);
            }
            let mut b = vec![qs, d, Binding::read(x).range(0, n * 4), yb];
            b.extend(residual.map(|r| Binding::read(r).range(0, w.rows as u64 * 4)));
            return rec.dispatch(&p, &b, push_bytes(&push), dims);
        }
        let wb = Binding::read(w.buf).range(w.offset, w.bytes());
        let p = self.pipeline::<PushKMG>(name, &spec)?;
        rec.dispatch(&p, &[wb, Binding::read(x).range(0, w.cols as u64 * 4), yb], push_bytes(&push), dims)
    }

    /// Quantises `n` floats of `x` (a multiple of 32) into `s` as Q8_1.
    pub fn quantize_q8_1<'a>(&self, rec: &mut Recorder<'a>, x: &'a Buffer, n: u64, s: &'a Q8_1Scratch) -> Result<()> {
        let name = names::QUANTIZE_Q8_1;
        if n == 0 || n % 32 != 0 || n > s.values {
            return Err(kerr(
                name,
                format!("{n} values: need a positive multiple of 32 within the scratch's {}", s.values),
            ));
        }
        let wg = 64;
        let p = self.pipeline::<PushBlocks>(name, &[SpecConst { id: 0, value: wg }])?;
        let nb = n / 32;
        rec.dispatch(
            &p,
            &[
                Binding::read(x).range(0, n * 4),
                Binding::write(&s.xq).range(0, n),
                Binding::write(&s.xd).range(0, nb * 8),
            ],
            push_bytes(&PushBlocks { n_blocks: nb as u32 }),
            stride_grid(nb, wg),
        )
    }
}
