//! Planar Q8_0 matrix × matrix on cooperative matrices (VK_KHR_cooperative_matrix, 16×16×16
//! f16 × f16 → f32): the prefill GEMM for devices with matrix units (RDNA 3 / 3.5 through RADV,
//! NVIDIA). Same interface and result layout as [`Kernels::matmul_q8_0_float`]; the dequantised
//! weights (int8 · f16 scale) and the activations are rounded to f16, products summed in f32.

use bytemuck::{Pod, Zeroable};
use vk_runtime::{Binding, Buffer, Recorder, Result};

use super::{kerr, push_bytes, Matrix, WType};
use crate::kernels::names;
use crate::kernels::Kernels;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushKMN {
    k: u32,
    m: u32,
    n: u32,
}
const _: () = assert!(std::mem::size_of::<PushKMN>() == 12);
crate::push_layout!(PushKMN { k, m, n });

/// The workgroup's tile: 128 weight rows × 64 activation rows.
const TILE_M: u32 = 128;
const TILE_N: u32 = 64;
/// Subgroup sizes the kernel's tile split is written for (32 tiles over 256 / size subgroups, at
/// most 8 per subgroup).
const SUBGROUPS: std::ops::RangeInclusive<u32> = 8..=64;

impl Kernels {
    /// Whether [`Kernels::matmul_q8_0_coop`] can run here.
    pub fn has_coopmat(&self) -> bool {
        let c = self.gpu().caps();
        c.coopmat_f16 && SUBGROUPS.contains(&c.min_subgroup_size) && SUBGROUPS.contains(&c.max_subgroup_size)
    }

    /// Y (`[n, rows]`) = X (`[n, cols]` floats) · Wᵀ for planar Q8_0 weights on cooperative
    /// matrices (activations rounded to f16, f32 accumulation).
    pub fn matmul_q8_0_coop<'a>(
        &self,
        rec: &mut Recorder<'a>,
        w: Matrix<'a>,
        x: &'a Buffer,
        n: u32,
        y: &'a Buffer,
    ) -> Result<()> {
        let name = names::MM_Q8_0P_F16_COOP;
        w.check(name)?;
        if w.wtype != WType::Q8_0Planar || n == 0 {
            return Err(kerr(name, format!("{:?} weights × {n} rows: needs planar Q8_0 and n ≥ 1", w.wtype)));
        }
        let c = self.gpu().caps();
        if !c.coopmat_f16 {
            return Err(kerr(
                name,
                "the device offers no 16×16×16 f16 cooperative matrices (VK_KHR_cooperative_matrix)".into(),
            ));
        }
        if !self.has_coopmat() {
            return Err(kerr(
                name,
                format!(
                    "subgroups of {}–{} lanes: the kernel's tile split needs {}–{}",
                    c.min_subgroup_size,
                    c.max_subgroup_size,
                    SUBGROUPS.start(),
                    SUBGROUPS.end()
                ),
            ));
        }
        let groups = [w.rows.div_ceil(TILE_M), n.div_ceil(TILE_N), 1];
        let max = c.max_workgroup_count;
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
