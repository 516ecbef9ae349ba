//! Sampling on the GPU, so that only the token id is read back. Greedy: argmax with ties to the
//! lowest index, in two passes (per-workgroup partials, then one workgroup).

use bytemuck::{Pod, Zeroable};
use vk_runtime::{Binding, Buffer, Recorder, Result, SpecConst};

use super::{kerr, push_bytes};
use crate::kernels::names;
use crate::kernels::Kernels;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushArgmax {
    n: u32,
    span: u32,
}
const _: () = assert!(std::mem::size_of::<PushArgmax>() == 8);
crate::push_layout!(PushArgmax { n, span });

const WG: u32 = 256;
/// Items each first-pass workgroup reduces.
const SPAN: u32 = WG * 4;

impl Kernels {
    /// Bytes of scratch [`Kernels::argmax`] needs for a vector of `n` floats.
    pub fn argmax_scratch_bytes(n: u32) -> u64 {
        n.div_ceil(SPAN).max(1) as u64 * 8
    }

    /// out[0] (u32) = index of the largest of the `n` floats of `x`, the lowest index on ties;
    /// NaN never wins (an all-NaN vector gives 0). `scratch` holds at least
    /// [`Kernels::argmax_scratch_bytes`] bytes.
    pub fn argmax<'a>(
        &self,
        rec: &mut Recorder<'a>,
        x: &'a Buffer,
        n: u32,
        scratch: &'a Buffer,
        out: &'a Buffer,
    ) -> Result<()> {
        let name = names::ARGMAX_F32;
        if n == 0 {
            return Err(kerr(name, "empty vector".into()));
        }
        let groups = n.div_ceil(SPAN);
        if groups > self.gpu().caps().max_workgroup_count[0] {
            return Err(kerr(name, format!("{n} values need {groups} workgroups, over the device limit")));
        }
        let part = groups as u64 * 8;
        let spec = [SpecConst { id: 0, value: WG }];
        let p = self.pipeline::<PushArgmax>(name, &spec)?;
        rec.dispatch(
            &p,
            &[Binding::read(x).range(0, n as u64 * 4), Binding::write(scratch).range(0, part)],
            push_bytes(&PushArgmax { n, span: SPAN }),
            [groups, 1, 1],
        )?;
        let p = self.pipeline::<PushArgmax>(names::ARGMAX_FINAL_F32, &spec)?;
        rec.dispatch(
            &p,
            &[Binding::read(scratch).range(0, part), Binding::write(out).range(0, 4)],
            push_bytes(&PushArgmax { n: groups, span: 0 }),
            [1, 1, 1],
        )
    }
}
