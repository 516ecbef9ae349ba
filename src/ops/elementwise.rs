//! RMSNorm, softmax, add / multiply (with broadcast), SiLU-gated multiply, streaming copy / read.

use bytemuck::{Pod, Zeroable};
use vk_runtime::{Binding, Buffer, Recorder, Result, SpecConst};

use super::{grid, kerr, push_bytes, stride_grid};
use crate::kernels::names;
use crate::kernels::Kernels;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushRows {
    n: u32,
    rows: u32,
    f: f32,
    grid_x: u32,
}
const _: () = assert!(std::mem::size_of::<PushRows>() == 16);
crate::push_layout!(PushRows { n, rows, f, grid_x });

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
struct PushN {
    n: u32,
}
const _: () = assert!(std::mem::size_of::<PushN>() == 4);
crate::push_layout!(PushN { n });

const WG: u32 = 256;

fn check_u32(kernel: &str, what: &str, v: u64) -> Result<u32> {
    u32::try_from(v).map_err(|_| kerr(kernel, format!("{what} = {v} exceeds 2^32 - 1")))
}

impl Kernels {
    fn row_kernel<'a>(
        &self,
        rec: &mut Recorder<'a>,
        name: &'static str,
        bufs: &[Binding<'a>],
        n: u32,
        rows: u32,
        f: f32,
    ) -> Result<()> {
        if n == 0 || rows == 0 {
            return Err(kerr(name, format!("empty input ({rows} rows of {n})")));
        }
        let p = self.pipeline::<PushRows>(name, &[SpecConst { id: 0, value: WG }])?;
        let (dims, grid_x) = grid(rows, self.gpu().caps().max_workgroup_count[0]);
        rec.dispatch(&p, bufs, push_bytes(&PushRows { n, rows, f, grid_x }), dims)
    }

    /// y[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) · w, for `rows` rows of `n`.
    pub fn rms_norm<'a>(
        &self,
        rec: &mut Recorder<'a>,
        x: &'a Buffer,
        w: &'a Buffer,
        y: &'a Buffer,
        n: u32,
        rows: u32,
        eps: f32,
    ) -> Result<()> {
        let total = n as u64 * rows as u64 * 4;
        let b = [
            Binding::read(x).range(0, total),
            Binding::read(w).range(0, n as u64 * 4),
            Binding::write(y).range(0, total),
        ];
        self.row_kernel(rec, names::RMS_NORM_F32, &b, n, rows, eps)
    }

    /// y[r, :] = softmax(scale · x[r, :]), for `rows` rows of `n`.
    pub fn softmax<'a>(
        &self,
        rec: &mut Recorder<'a>,
        x: &'a Buffer,
        y: &'a Buffer,
        n: u32,
        rows: u32,
        scale: f32,
    ) -> Result<()> {
        let total = n as u64 * rows as u64 * 4;
        let b = [Binding::read(x).range(0, total), Binding::write(y).range(0, total)];
        self.row_kernel(rec, names::SOFTMAX_F32, &b, n, rows, scale)
    }

    fn binary<'a>(
        &self,
        rec: &mut Recorder<'a>,
        name: &'static str,
        a: &'a Buffer,
        b: &'a Buffer,
        y: &'a Buffer,
        n: u64,
        b_len: u64,
    ) -> Result<()> {
        if n == 0 || b_len == 0 || b_len > n {
            return Err(kerr(name, format!("n = {n}, b_len = {b_len}: need 0 < b_len ≤ n")));
        }
        let push = PushBinary { n: check_u32(name, "n", n)?, b_len: check_u32(name, "b_len", b_len)? };
        let p = self.pipeline::<PushBinary>(name, &[SpecConst { id: 0, value: WG }])?;
        rec.dispatch(
            &p,
            &[
                Binding::read(a).range(0, n * 4),
                Binding::read(b).range(0, b_len * 4),
                Binding::write(y).range(0, n * 4),
            ],
            push_bytes(&push),
            stride_grid(n, WG),
        )
    }

    /// y[i] = a[i] + b[i mod b_len].
    pub fn add<'a>(
        &self,
        rec: &mut Recorder<'a>,
        a: &'a Buffer,
        b: &'a Buffer,
        y: &'a Buffer,
        n: u64,
        b_len: u64,
    ) -> Result<()> {
        self.binary(rec, names::ADD_F32, a, b, y, n, b_len)
    }

    /// y[i] = a[i] · b[i mod b_len].
    pub fn mul<'a>(
        &self,
        rec: &mut Recorder<'a>,
        a: &'a Buffer,
        b: &'a Buffer,
        y: &'a Buffer,
        n: u64,
        b_len: u64,
    ) -> Result<()> {
        self.binary(rec, names::MUL_F32, a, b, y, n, b_len)
    }

    /// y[i] = silu(gate[i]) · up[i].
    pub fn silu_mul<'a>(
        &self,
        rec: &mut Recorder<'a>,
        gate: &'a Buffer,
        up: &'a Buffer,
        y: &'a Buffer,
        n: u64,
    ) -> Result<()> {
        self.binary(rec, names::SILU_MUL_F32, gate, up, y, n, n)
    }

    /// Streaming copy of `bytes` (a multiple of 16) from `src` to `dst`.
    pub fn stream_copy<'a>(&self, rec: &mut Recorder<'a>, src: &'a Buffer, dst: &'a Buffer, bytes: u64) -> Result<()> {
        self.stream(rec, names::COPY_VEC4, src, dst, bytes)
    }

    /// Streaming read of `bytes` (a multiple of 16) of `src`; `sink` must hold as many bytes as
    /// `src` (it is almost never written).
    pub fn stream_read<'a>(&self, rec: &mut Recorder<'a>, src: &'a Buffer, sink: &'a Buffer, bytes: u64) -> Result<()> {
        self.stream(rec, names::READ_VEC4, src, sink, bytes)
    }

    fn stream<'a>(
        &self,
        rec: &mut Recorder<'a>,
        name: &'static str,
        src: &'a Buffer,
        dst: &'a Buffer,
        bytes: u64,
    ) -> Result<()> {
        if bytes == 0 || bytes % 16 != 0 {
            return Err(kerr(name, format!("{bytes} bytes is not a positive multiple of 16")));
        }
        let n = check_u32(name, "vec4 count", bytes / 16)?;
        let p = self.pipeline::<PushN>(name, &[SpecConst { id: 0, value: WG }])?;
        // Enough workgroups to fill a large GPU, each looping over the rest.
        let groups = (n as u64).div_ceil(WG as u64 * 4).clamp(1, 65535);
        rec.dispatch(
            &p,
            &[Binding::read(src).range(0, bytes), Binding::write(dst).range(0, bytes)],
            push_bytes(&PushN { n }),
            [groups as u32, 1, 1],
        )
    }
}
