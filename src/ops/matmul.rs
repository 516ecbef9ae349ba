//! Planar Q8_0 matrix × matrix with int8 dot products (prefill): Y[n, m] = Σ_k W[m, k] · X[n, k].

use bytemuck::{Pod, Zeroable};
use vk_runtime::{Binding, Buffer, Recorder, Result};

use super::{kerr, push_bytes, Matrix, WType};
use crate::kernels::names;
use crate::kernels::{Kernels, Q8_1Scratch};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushKMN {
    k: u32,
    m: u32,
    n: u32,
}
const _: () = assert!(std::mem::size_of::<PushKMN>() == 12);
crate::push_layout!(PushKMN { k, m, n });

const TILE: u32 = 64;

impl Kernels {
    /// Y (`[n, rows]` floats) = X (`[n, cols]` floats) · Wᵀ for planar Q8_0 weights. X is
    /// quantised to Q8_1 into `scratch` (≥ n·cols values) first.
    pub fn matmul_q8_0<'a>(
        &self,
        rec: &mut Recorder<'a>,
        w: Matrix<'a>,
        x: &'a Buffer,
        n: u32,
        y: &'a Buffer,
        scratch: &'a Q8_1Scratch,
    ) -> Result<()> {
        self.quantize_q8_1(rec, x, n as u64 * w.cols as u64, scratch)?;
        self.matmul_q8_0_prequantized(rec, w, n, y, scratch)
    }

    /// Like [`Kernels::matmul_q8_0`] with `scratch` already holding the n rows of X quantised by
    /// [`Kernels::quantize_q8_1`] (one quantisation shared by q, k and v).
    pub fn matmul_q8_0_prequantized<'a>(
        &self,
        rec: &mut Recorder<'a>,
        w: Matrix<'a>,
        n: u32,
        y: &'a Buffer,
        scratch: &'a Q8_1Scratch,
    ) -> Result<()> {
        let name = names::MM_Q8_0P_Q8_1;
        w.check(name)?;
        if w.wtype != WType::Q8_0Planar {
            return Err(kerr(name, format!("weights are {:?}; this kernel takes planar Q8_0", w.wtype)));
        }
        if !self.gpu().caps().int_dot {
            return Err(kerr(name, "the device has no shaderIntegerDotProduct".into()));
        }
        if n == 0 {
            return Err(kerr(name, "no activation rows".into()));
        }
        let values = n as u64 * w.cols as u64;
        if values > scratch.values() {
            return Err(kerr(
                name,
                format!("{values} activation values exceed the Q8_1 scratch's {}", scratch.values()),
            ));
        }
        let p = self.pipeline::<PushKMN>(name, &[])?;
        let push = PushKMN { k: w.cols, m: w.rows, n };
        let groups = [w.rows.div_ceil(TILE), n.div_ceil(TILE), 1];
        let max = self.gpu().caps().max_workgroup_count;
        if groups[0] > max[0] || groups[1] > max[1] {
            return Err(kerr(
                name,
                format!("{}×{} tiles exceed the device's workgroup count limit", groups[0], groups[1]),
            ));
        }
        let xq = Binding::read(&scratch.xq).range(0, values);
        let xd = Binding::read(&scratch.xd).range(0, values / 32 * 8);
        let yb = Binding::write(y).range(0, n as u64 * w.rows as u64 * 4);
        let l = crate::layout::PlanarLayout::new(w.rows as u64, w.cols as u64);
        let qs = Binding::read(w.buf).range(w.offset, l.qs_bytes);
        let d = Binding::read(w.buf).range(w.offset + l.d_offset, l.d_bytes);
        rec.dispatch(&p, &[qs, d, xq, xd, yb], push_bytes(&push), groups)
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushKMNG {
    k: u32,
    m: u32,
    n: u32,
    grid_x: u32,
}
const _: () = assert!(std::mem::size_of::<PushKMNG>() == 16);
crate::push_layout!(PushKMNG { k, m, n, grid_x });

/// Largest K of `mm_f32` (its activation row is staged in shared memory).
pub const MM_F32_MAX_K: u32 = 4096;

impl Kernels {
    /// Y (`[n, rows]`) = X (`[n, cols]`) · Wᵀ with W in f32 (`cols` ≤ 4096): the MoE routers over
    /// many tokens.
    pub fn matmul_f32<'a>(
        &self,
        rec: &mut Recorder<'a>,
        w: Matrix<'a>,
        x: &'a Buffer,
        n: u32,
        y: &'a Buffer,
    ) -> Result<()> {
        let name = names::MM_F32_F32;
        w.check(name)?;
        if w.wtype != WType::F32 || w.cols > MM_F32_MAX_K || n == 0 {
            return Err(kerr(
                name,
                format!(
                    "{:?} [{}, {}] × {n} rows: needs F32 weights, 1 ≤ cols ≤ {MM_F32_MAX_K}, n ≥ 1",
                    w.wtype, w.rows, w.cols
                ),
            ));
        }
        let wg = 128;
        let p = self.pipeline::<PushKMNG>(name, &[vk_runtime::SpecConst { id: 0, value: wg }])?;
        let (dims, grid_x) = super::grid(n, self.gpu().caps().max_workgroup_count[0]);
        let push = PushKMNG { k: w.cols, m: w.rows, n, grid_x };
        rec.dispatch(
            &p,
            &[
                Binding::read(w.buf).range(w.offset, w.bytes()),
                Binding::read(x).range(0, n as u64 * w.cols as u64 * 4),
                Binding::write(y).range(0, n as u64 * w.rows as u64 * 4),
            ],
            push_bytes(&push),
            dims,
        )
    }
}
