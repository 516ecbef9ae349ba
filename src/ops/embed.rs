//! Embedding gather from a planar Q8_0 table for token ids held in a GPU buffer.

use bytemuck::{Pod, Zeroable};
use vk_runtime::{Binding, Buffer, Recorder, Result, SpecConst};

use super::{grid, kerr, push_bytes, Matrix, WType};
use crate::kernels::names;
use crate::kernels::Kernels;
use crate::layout::PlanarLayout;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushEmbed {
    cols: u32,
    n: u32,
    rows: u32,
    grid_x: u32,
}
const _: () = assert!(std::mem::size_of::<PushEmbed>() == 16);
crate::push_layout!(PushEmbed { cols, n, rows, grid_x });

const WG: u32 = 256;

impl Kernels {
    /// y[t, :] (`[n, cols]` f32) = row `ids[t]` of `table` (planar Q8_0 `[rows, cols]`),
    /// dequantised; `ids` holds `n` u32 token ids on the GPU. An id ≥ rows yields a row of zeros.
    pub fn embed_q8_0p<'a>(
        &self,
        rec: &mut Recorder<'a>,
        table: Matrix<'a>,
        ids: &'a Buffer,
        n: u32,
        y: &'a Buffer,
    ) -> Result<()> {
        let name = names::EMBED_Q8_0P_F32;
        table.check(name)?;
        if table.wtype != WType::Q8_0Planar {
            return Err(kerr(name, format!("the table is {:?}; this kernel takes planar Q8_0", table.wtype)));
        }
        if n == 0 {
            return Err(kerr(name, "no token ids".into()));
        }
        let l = PlanarLayout::new(table.rows as u64, table.cols as u64);
        let p = self.pipeline::<PushEmbed>(name, &[SpecConst { id: 0, value: WG }])?;
        let (dims, grid_x) = grid(n, self.gpu().caps().max_workgroup_count[0]);
        let push = PushEmbed { cols: table.cols, n, rows: table.rows, grid_x };
        rec.dispatch(
            &p,
            &[
                Binding::read(ids).range(0, n as u64 * 4),
                Binding::read(table.buf).range(table.offset, l.qs_bytes),
                Binding::read(table.buf).range(table.offset + l.d_offset, l.d_bytes),
                Binding::write(y).range(0, n as u64 * table.cols as u64 * 4),
            ],
            push_bytes(&push),
            dims,
        )
    }
}
