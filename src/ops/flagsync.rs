//! Experiment: chained dispatches ordered by in-shader flags instead of pipeline barriers
//! (`flag_chain.comp`; `bench-thinker` with `QWEN3VK_FLAG_CHAIN=1`).

use bytemuck::{Pod, Zeroable};
use vk_runtime::{Binding, Buffer, Recorder, Result, SpecConst};

use super::{kerr, push_bytes};
use crate::kernels::Kernels;
use crate::layout::PlanarLayout;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushFlag {
    n: u32,
    stage: u32,
    target: u32,
    flags: u32,
    stride: u32,
    backoff: u32,
}

/// Arrive on this stage's counter after the writes.
pub const FLAG_ARRIVE: u32 = 1;
/// (MV) load the first weights before waiting.
pub const FLAG_PREFETCH: u32 = 2;

const ADD_WG: u32 = 64;
const MV_WG: u32 = 256;
const MV_ROWS: u32 = 16;

impl Kernels {
    /// One link of a flag-ordered chain: y = x + 1 (`w` None) or y = tanh(W·x) (`w` Some: a planar
    /// Q8_0 `[n, n]` matrix). Waits for `target` arrivals of stage `stage - 1` (0: none) in `sync`
    /// (`[0]` error word, `[(1 + s) * stride]` stage s; `backoff` multiply-adds between polls). Returns the workgroup count (the next stage's target).
    #[allow(clippy::too_many_arguments)]
    pub fn flag_chain<'a>(
        &self,
        rec: &mut Recorder<'a>,
        w: Option<&'a Buffer>,
        coherent: bool,
        x: &'a Buffer,
        y: &'a Buffer,
        sync: &'a Buffer,
        n: u32,
        stage: u32,
        target: u32,
        flags: u32,
        stride: u32,
        backoff: u32,
    ) -> Result<u32> {
        let push = PushFlag { n, stage, target, flags, stride, backoff };
        let sync_b = Binding::read_write(sync).range(0, ((stage as u64 + 1) * stride as u64 + 1) * 4);
        match w {
            None => {
                let name = if coherent { "flag_add_coh_f32" } else { "flag_add_f32" };
                if n % 4 != 0 {
                    return Err(kerr(name, format!("n = {n} is not a multiple of 4")));
                }
                let p = self.pipeline::<PushFlag>(name, &[SpecConst { id: 0, value: ADD_WG }])?;
                let groups = (n / 4).div_ceil(ADD_WG);
                let b = [Binding::read(x).range(0, n as u64 * 4), Binding::write(y).range(0, n as u64 * 4), sync_b];
                rec.dispatch(&p, &b, push_bytes(&push), [groups, 1, 1])?;
                Ok(groups)
            }
            Some(w) => {
                let name = if coherent { "flag_mv_coh_q8_0p_f32" } else { "flag_mv_q8_0p_f32" };
                if n % 32 != 0 || n > 4096 {
                    return Err(kerr(name, format!("n = {n}: need a multiple of 32, at most 4096")));
                }
                let l = PlanarLayout::new(n as u64, n as u64);
                let spec = [SpecConst { id: 0, value: MV_WG }, SpecConst { id: 1, value: MV_ROWS }];
                let p = self.pipeline::<PushFlag>(name, &spec)?;
                let groups = n.div_ceil(MV_ROWS);
                let b = [
                    Binding::read(x).range(0, n as u64 * 4),
                    Binding::write(y).range(0, n as u64 * 4),
                    sync_b,
                    Binding::read(w).range(0, l.qs_bytes),
                    Binding::read(w).range(l.d_offset, l.d_bytes),
                ];
                rec.dispatch(&p, &b, push_bytes(&push), [groups, 1, 1])?;
                Ok(groups)
            }
        }
    }
}
