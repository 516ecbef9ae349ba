//! Mixture of experts: routing (softmax → top-k → renormalise) and the expert projections that read
//! the chosen ids from a GPU buffer (gate and up in one dispatch; down with the routing weights, the
//! sum over the k experts and an optional residual fused), on stacked planar Q8_0 expert weights.
//!
//! Expert layout: all experts of one projection in one buffer, expert e's planar Q8_0 `[rows, cols]`
//! block (`layout::PlanarLayout`) at `e * stride`, `stride` = the planar size rounded up to 256 bytes.

use bytemuck::{Pod, Zeroable};
use vk_runtime::{Binding, Buffer, Recorder, Result, SpecConst};

use super::{grid, kerr, push_bytes, Matrix, WType};
use crate::kernels::{Kernels, MatvecPath, Q8_1Scratch};
use crate::layout::{repack_q8_0_planar_into, PlanarLayout};

mod decode;
mod grouped;
mod layout;

pub use layout::*;

/// Largest k `moe_route` selects.
pub const MOE_MAX_K: u32 = 8;
/// Subgroups sharing each row of the fused decode down projection unless `QWEN3VK_DOWN_KSPLIT`
/// says otherwise (moe_down.comp KSPLIT).
pub const DOWN_KSPLIT: u32 = 4;

/// Most experts a routing workgroup stages in shared memory (moe_topk.glsl's MOE_MAX_E).
pub const MOE_ROUTE_MAX_EXPERTS: u32 = 512;
/// Largest k `moe_down` sums (its shared-memory staging of the token's ids and weights).
pub const MOE_DOWN_MAX_K: u32 = 16;
/// Largest K (hidden size) `moe_route_gate_up` quantises in shared memory on the int-dot path.
pub const MOE_FUSED_MAX_X: u32 = 8192;
/// Largest k·K (values of h per token) `moe_down` quantises in shared memory on the int-dot path;
/// beyond it, a `quantize_q8_1` dispatch into the scratch precedes.
pub const MOE_FUSED_MAX_H: u64 = 16384;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushRoute {
    n_experts: u32,
    k: u32,
    n_tokens: u32,
    flags: u32,
    grid_x: u32,
}
crate::push_layout!(PushRoute { n_experts, k, n_tokens, flags, grid_x });
const _: () = assert!(std::mem::size_of::<PushRoute>() == 20);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushGateUp {
    k_cols: u32,
    m_rows: u32,
    k: u32,
    n_experts: u32,
    stride16: u32,
    d_off2: u32,
    flags: u32,
}
crate::push_layout!(PushGateUp { k_cols, m_rows, k, n_experts, stride16, d_off2, flags });
const _: () = assert!(std::mem::size_of::<PushGateUp>() == 28);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushGateUpNorm {
    base: PushGateUp,
    eps: f32,
}
crate::push_layout!(PushGateUpNorm { base: PushGateUp, eps });
const _: () = assert!(std::mem::size_of::<PushGateUpNorm>() == 32);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushDown {
    k_cols: u32,
    m_rows: u32,
    k: u32,
    n_experts: u32,
    stride16: u32,
    d_off2: u32,
    flags: u32,
    grid_x: u32,
}
crate::push_layout!(PushDown { k_cols, m_rows, k, n_experts, stride16, d_off2, flags, grid_x });
const _: () = assert!(std::mem::size_of::<PushDown>() == 32);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushSharedGate {
    n: u32,
    n_tokens: u32,
    grid_x: u32,
}
crate::push_layout!(PushSharedGate { n, n_tokens, grid_x });
const _: () = assert!(std::mem::size_of::<PushSharedGate>() == 12);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushGroup {
    n_pairs: u32,
    n_experts: u32,
}
crate::push_layout!(PushGroup { n_pairs, n_experts });
const _: () = assert!(std::mem::size_of::<PushGroup>() == 8);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushCombine {
    m: u32,
    k: u32,
    n: u32,
    flags: u32,
}
crate::push_layout!(PushCombine { m, k, n, flags });
const _: () = assert!(std::mem::size_of::<PushCombine>() == 16);

/// Arguments of [`Kernels::moe_route`]: `n_tokens` rows of `n_experts` f32 router `logits` in,
/// the top-`k` expert `ids` (u32) and routing `weights` (f32), both `[n_tokens, k]`, out.
#[derive(Clone, Copy)]
pub struct MoeRoute<'a> {
    pub logits: &'a Buffer,
    pub ids: &'a Buffer,
    pub weights: &'a Buffer,
    pub n_experts: u32,
    pub k: u32,
    pub n_tokens: u32,
    /// Divide the k probabilities by their sum (norm_topk_prob).
    pub renormalize: bool,
}

/// Arguments of [`Kernels::moe_shared_gate`]: x `[n_tokens, hidden]` and the gate `w_gate`
/// (`[hidden]`) in, a one-expert routing (`ids`, `weights`, `[n_tokens]`) out.
#[derive(Clone, Copy)]
pub struct MoeSharedGate<'a> {
    pub x: &'a Buffer,
    pub w_gate: &'a Buffer,
    pub ids: &'a Buffer,
    pub weights: &'a Buffer,
    pub hidden: u32,
    pub n_tokens: u32,
}

/// Arguments of [`Kernels::moe_gate_up`] and [`Kernels::moe_gate_up_prequantized`]: the gate and
/// up stacks, x `[n_tokens, gate.cols]`, the routed `ids` `[n_tokens, k]` and h
/// `[n_tokens, k, gate.rows]` out.
#[derive(Clone, Copy)]
pub struct MoeGateUp<'a> {
    pub gate: ExpertMatrix<'a>,
    pub up: ExpertMatrix<'a>,
    pub x: &'a Buffer,
    pub ids: &'a Buffer,
    pub k: u32,
    pub n_tokens: u32,
    pub h: &'a Buffer,
}

/// Arguments of [`Kernels::moe_route_gate_up`] and its `_norm` / `_decode` variants: the router
/// `logits` `[n_tokens, n_experts]`, the gate and up stacks, x, the routing written to `ids` and
/// `weights` (`[n_tokens, k]`) and h `[n_tokens, k, gate.rows]`.
#[derive(Clone, Copy)]
pub struct MoeRouteGateUp<'a> {
    pub logits: &'a Buffer,
    pub gate: ExpertMatrix<'a>,
    pub up: ExpertMatrix<'a>,
    pub x: &'a Buffer,
    pub ids: &'a Buffer,
    pub weights: &'a Buffer,
    pub k: u32,
    pub n_tokens: u32,
    pub renormalize: bool,
    pub h: &'a Buffer,
}

/// Arguments of [`Kernels::moe_down`] and [`Kernels::moe_down_float`]: the down stack, h
/// `[n_tokens, k, down.cols]`, the routing (`ids`, `weights`), an optional residual (may be `y`)
/// and y `[n_tokens, down.rows]`.
#[derive(Clone, Copy)]
pub struct MoeDown<'a> {
    pub down: ExpertMatrix<'a>,
    pub h: &'a Buffer,
    pub ids: &'a Buffer,
    pub weights: &'a Buffer,
    pub k: u32,
    pub n_tokens: u32,
    pub residual: Option<&'a Buffer>,
    pub y: &'a Buffer,
}

/// Arguments of [`Kernels::moe_gate_up_grouped`]: as [`MoeGateUp`] with the pairs grouped by
/// expert (`moe_group`'s `offsets` and `order`) in place of the ids.
#[derive(Clone, Copy)]
pub struct MoeGateUpGrouped<'a> {
    pub gate: ExpertMatrix<'a>,
    pub up: ExpertMatrix<'a>,
    pub x: &'a Buffer,
    pub k: u32,
    pub n_tokens: u32,
    pub offsets: &'a Buffer,
    pub order: &'a Buffer,
    pub h: &'a Buffer,
}

/// Arguments of [`Kernels::moe_down_grouped`]: as [`MoeDown`] with the pairs grouped by expert,
/// plus the per-pair output scratch `o` (`[n_tokens·k, down.rows]`).
#[derive(Clone, Copy)]
pub struct MoeDownGrouped<'a> {
    pub down: ExpertMatrix<'a>,
    pub h: &'a Buffer,
    pub weights: &'a Buffer,
    pub k: u32,
    pub n_tokens: u32,
    pub offsets: &'a Buffer,
    pub order: &'a Buffer,
    pub o: &'a Buffer,
    pub residual: Option<&'a Buffer>,
    pub y: &'a Buffer,
}

/// The pairs and output of one grouped expert kernel (`moe_grouped`).
#[derive(Clone, Copy)]
struct GroupedOut<'a> {
    k: u32,
    n_pairs: u64,
    offsets: &'a Buffer,
    order: &'a Buffer,
    out: &'a Buffer,
}

/// Most experts `moe_group` handles (its shared-memory counters).
pub const MOE_GROUP_MAX_EXPERTS: u32 = 1024;

const ROUTE_WG: u32 = 128;

impl Kernels {
    /// Spec constants and rows per workgroup of the planar expert kernels (as `matvec`'s planar path).
    fn moe_geometry(&self) -> ([SpecConst; 3], u32) {
        let t = self.tuning();
        self.moe_geometry_with(t.mv_wg, t.mv_rows)
    }

    /// Geometry of the kernels that do per-workgroup work before their rows (routing, Q8_1
    /// quantisation in shared memory): larger workgroups amortise it over more rows. Defaults from
    /// an H200 sweep of the decode MoE chain (tests/moe.rs `moe_decode_timing`, 128…1024):
    /// 256 for `moe_route_gate_up` (`which` 0), 512 for the fused int-dot `moe_down` (1), capped by
    /// the device; the tuning's `moe_wg` / `moe_rps` override them (sweeps).
    fn moe_fused_geometry(&self, which: usize) -> ([SpecConst; 3], u32) {
        let t = self.tuning();
        let wg = if t.moe_wg[which] > 0 { t.moe_wg[which] } else { [256, 512][which] };
        let rps = if t.moe_rps[which] > 0 { t.moe_rps[which] } else { t.mv_rows };
        self.moe_geometry_with(wg.min(self.gpu().caps().max_workgroup_invocations), rps)
    }

    /// The push constants and x extent of a gate/up launch (one workgroup row per token and slot),
    /// or an error when the grid is empty or beyond the device's limits.
    fn gate_up_grid(
        &self,
        name: &str,
        gate: ExpertMatrix<'_>,
        k: u32,
        n_tokens: u32,
        rows_wg: u32,
        flags: u32,
    ) -> Result<(PushGateUp, u32)> {
        let pairs = n_tokens as u64 * k as u64;
        let max = self.gpu().caps().max_workgroup_count;
        let groups_x = gate.rows.div_ceil(rows_wg);
        if k == 0 || n_tokens == 0 || pairs > max[1] as u64 || groups_x > max[0] {
            return Err(kerr(
                name,
                format!(
                    "{n_tokens} tokens × top-{k} ({groups_x}×{pairs} workgroups) is empty or beyond the device's grid"
                ),
            ));
        }
        let l = gate.layout();
        let push = PushGateUp {
            k_cols: gate.cols,
            m_rows: gate.rows,
            k,
            n_experts: gate.n_experts,
            stride16: (l.stride / 16) as u32,
            d_off2: (l.matrix.d_offset / 2) as u32,
            flags,
        };
        Ok((push, groups_x))
    }

    fn moe_geometry_with(&self, wg: u32, rps: u32) -> ([SpecConst; 3], u32) {
        let min_sg = self.subgroup_floor();
        let rows_wg = (wg / min_sg).max(1) * rps;
        (
            [SpecConst { id: 0, value: wg }, SpecConst { id: 1, value: rps }, SpecConst { id: 2, value: rows_wg }],
            rows_wg,
        )
    }
}
