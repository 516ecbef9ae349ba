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

/// Byte layout of `n_experts` stacked planar Q8_0 `[rows, cols]` matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpertLayout {
    pub n_experts: u64,
    /// One expert's planar layout (offsets relative to the expert's start).
    pub matrix: PlanarLayout,
    /// Bytes from one expert to the next (a multiple of 256).
    pub stride: u64,
}

impl ExpertLayout {
    pub fn new(n_experts: u64, rows: u64, cols: u64) -> Self {
        let matrix = PlanarLayout::new(rows, cols);
        ExpertLayout { n_experts, matrix, stride: matrix.total().div_ceil(256) * 256 }
    }
    /// Bytes of the whole stack.
    pub fn total(&self) -> u64 {
        self.n_experts * self.stride
    }
}

/// Repacks ggml Q8_0 bytes of `[n_experts, rows, cols]` (expert-major, as GGUF stores `*_exps`)
/// into `out` in the stacked planar layout (`ExpertLayout::total()` bytes; padding left as is).
pub fn repack_experts_q8_0_planar_into(
    ggml: &[u8],
    n_experts: usize,
    rows: usize,
    cols: usize,
    out: &mut [u8],
) -> std::result::Result<(), String> {
    let l = ExpertLayout::new(n_experts as u64, rows as u64, cols as u64);
    let per = rows * cols / 32 * 34;
    if cols % 32 != 0 || ggml.len() != n_experts * per || (out.len() as u64) < l.total() {
        return Err(format!(
            "Q8_0 experts [{n_experts}, {rows}, {cols}]: {} input bytes (need {}), {} output bytes (need {})",
            ggml.len(),
            n_experts * per,
            out.len(),
            l.total()
        ));
    }
    let stride = l.stride as usize;
    for (e, src) in ggml.chunks_exact(per).enumerate() {
        repack_q8_0_planar_into(src, rows, cols, &mut out[e * stride..(e + 1) * stride])?;
    }
    Ok(())
}

/// Repacks into a new vector (zero padding between experts).
pub fn repack_experts_q8_0_planar(
    ggml: &[u8],
    n_experts: usize,
    rows: usize,
    cols: usize,
) -> std::result::Result<Vec<u8>, String> {
    let mut out = vec![0u8; ExpertLayout::new(n_experts as u64, rows as u64, cols as u64).total() as usize];
    repack_experts_q8_0_planar_into(ggml, n_experts, rows, cols, &mut out)?;
    Ok(out)
}

/// All experts of one projection: `n_experts` planar Q8_0 `[rows, cols]` matrices stacked from
/// `offset` of `buf` (see [`ExpertLayout`]). Made by [`Matrix::experts`].
#[derive(Debug, Clone, Copy)]
pub struct ExpertMatrix<'a> {
    pub buf: &'a Buffer,
    pub offset: u64,
    pub n_experts: u32,
    pub rows: u32,
    pub cols: u32,
}

impl<'a> Matrix<'a> {
    /// This matrix (planar Q8_0, `offset` at the first expert) as the first of `n_experts` stacked
    /// experts of the same shape.
    pub fn experts(self, n_experts: u32) -> ExpertMatrix<'a> {
        ExpertMatrix { buf: self.buf, offset: self.offset, n_experts, rows: self.rows, cols: self.cols }
    }

    /// [`ExpertLayout::new`]`(n_experts, rows, cols).stride`: bytes between stacked experts.
    pub fn expert_stride(rows: u32, cols: u32) -> u64 {
        ExpertLayout::new(1, rows as u64, cols as u64).stride
    }

    /// [`repack_experts_q8_0_planar`]: ggml Q8_0 `[n_experts, rows, cols]` → stacked planar experts.
    pub fn repack_experts_q8_0_planar(
        ggml: &[u8],
        n_experts: usize,
        rows: usize,
        cols: usize,
    ) -> std::result::Result<Vec<u8>, String> {
        repack_experts_q8_0_planar(ggml, n_experts, rows, cols)
    }
}

impl<'a> ExpertMatrix<'a> {
    pub fn layout(&self) -> ExpertLayout {
        ExpertLayout::new(self.n_experts as u64, self.rows as u64, self.cols as u64)
    }

    pub(crate) fn check(&self, kernel: &str) -> Result<()> {
        if self.n_experts == 0 {
            return Err(kerr(kernel, "no experts".into()));
        }
        Matrix::new(self.buf, WType::Q8_0Planar, self.rows, self.cols).check(kernel)?;
        let l = self.layout();
        if l.stride / 16 > u32::MAX as u64 || l.total() / 2 > u32::MAX as u64 {
            return Err(kerr(kernel, format!("{} bytes of experts exceed the kernel's 32-bit indexing", l.total())));
        }
        Ok(())
    }

    /// The quants view (binding of uvec4) and the scales view (binding of uint16), both from the
    /// first expert's start so that the kernel indexes experts by stride.
    pub(crate) fn bindings(&self) -> [Binding<'a>; 2] {
        let l = self.layout();
        let before_last = (self.n_experts as u64 - 1) * l.stride;
        [
            Binding::read(self.buf).range(self.offset, before_last + l.matrix.qs_bytes),
            Binding::read(self.buf).range(self.offset, before_last + l.matrix.total()),
        ]
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushFold {
    k1: u32,
    k2: u32,
    rows: u32,
    grid_x: u32,
}
crate::push_layout!(PushFold { k1, k2, rows, grid_x });

/// The folded router's matrix (see `router_fold.comp`): R = [W_r diag g | W_r diag g W_o], f32
/// `[n_experts, hidden + o_cols]`, from the router `w_r` (f32 `[n_experts, hidden]`), the
/// post-attention RMSNorm weight `g` (`[hidden]`) and the o-projection as ggml Q8_0 bytes
/// (`[hidden, o_cols]`, dequantised exactly as the kernels read it). Uses up to `threads` threads.
pub fn router_fold_matrix(
    w_r: &[f32],
    g: &[f32],
    w_o_q8_0: &[u8],
    hidden: usize,
    o_cols: usize,
    threads: usize,
) -> std::result::Result<Vec<f32>, String> {
    let n_experts = if hidden == 0 { 0 } else { w_r.len() / hidden };
    if hidden == 0 || o_cols % 32 != 0 || w_r.len() != n_experts * hidden || g.len() != hidden || n_experts == 0 {
        return Err(format!("router fold: router of {} values, norm of {}, hidden {hidden}", w_r.len(), g.len()));
    }
    let row_bytes = o_cols / 32 * 34;
    if w_o_q8_0.len() != hidden * row_bytes {
        return Err(format!(
            "router fold: o-projection of {} bytes, need {} for [{hidden}, {o_cols}] Q8_0",
            w_o_q8_0.len(),
            hidden * row_bytes
        ));
    }
    let width = hidden + o_cols;
    let mut out = vec![0f32; n_experts * width];
    let threads = threads.clamp(1, n_experts);
    let per = n_experts.div_ceil(threads);
    // Each thread owns `per` rows of R; it walks W_o row by row (dequantised into a small buffer)
    // and adds a[e, i] · W_o[i, :] into each of its rows, so W_o is streamed once per thread.
    std::thread::scope(|sc| {
        for (chunk, rows) in out.chunks_mut(per * width).enumerate() {
            sc.spawn(move || {
                let n = rows.len() / width;
                for (i, row) in w_o_q8_0.chunks_exact(row_bytes).enumerate() {
                    let wrow = crate::reference::dequantize_q8_0(bytemuck::cast_slice(row));
                    for r in 0..n {
                        let e = chunk * per + r;
                        let a = w_r[e * hidden + i] * g[i];
                        let dst = &mut rows[r * width..(r + 1) * width];
                        dst[i] = a;
                        if a != 0.0 {
                            for (m, &w) in dst[hidden..].iter_mut().zip(&wrow) {
                                *m += a * w;
                            }
                        }
                    }
                }
            });
        }
    });
    Ok(out)
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushRoute {
    n_experts: u32,
    k: u32,
    n_tokens: u32,
    flags: u32,
    grid_x: u32,
}
const _: () = assert!(std::mem::size_of::<PushRoute>() == 20);
crate::push_layout!(PushRoute { n_experts, k, n_tokens, flags, grid_x });

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
const _: () = assert!(std::mem::size_of::<PushGateUp>() == 28);
crate::push_layout!(PushGateUp { k_cols, m_rows, k, n_experts, stride16, d_off2, flags });

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushGateUpNorm {
    base: PushGateUp,
    eps: f32,
}
const _: () = assert!(std::mem::size_of::<PushGateUpNorm>() == 32);
crate::push_layout!(PushGateUpNorm { base: PushGateUp, eps });

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
const _: () = assert!(std::mem::size_of::<PushDown>() == 32);
crate::push_layout!(PushDown { k_cols, m_rows, k, n_experts, stride16, d_off2, flags, grid_x });

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushSharedGate {
    n: u32,
    n_tokens: u32,
    grid_x: u32,
}
const _: () = assert!(std::mem::size_of::<PushSharedGate>() == 12);
crate::push_layout!(PushSharedGate { n, n_tokens, grid_x });

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushGroup {
    n_pairs: u32,
    n_experts: u32,
}
const _: () = assert!(std::mem::size_of::<PushGroup>() == 8);
crate::push_layout!(PushGroup { n_pairs, n_experts });

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushCombine {
    m: u32,
    k: u32,
    n: u32,
    flags: u32,
}
const _: () = assert!(std::mem::size_of::<PushCombine>() == 16);
crate::push_layout!(PushCombine { m, k, n, flags });

/// Most experts `moe_group` handles (its shared-memory counters).
pub const MOE_GROUP_MAX_EXPERTS: u32 = 1024;

const ROUTE_WG: u32 = 128;

impl Kernels {
    /// Routing for `n_tokens` rows of `n_experts` router logits (f32): softmax in f32, the `k`
    /// (1..=8) largest probabilities (ties → lower expert index) in descending order, then, with
    /// `renormalize` (norm_topk_prob), each divided by their sum. Writes `ids` (u32) and `weights`
    /// (f32), both `[n_tokens, k]`.
    #[allow(clippy::too_many_arguments)]
    pub fn moe_route<'a>(
        &self,
        rec: &mut Recorder<'a>,
        logits: &'a Buffer,
        ids: &'a Buffer,
        weights: &'a Buffer,
        n_experts: u32,
        k: u32,
        n_tokens: u32,
        renormalize: bool,
    ) -> Result<()> {
        let name = "moe_route_f32";
        if n_experts == 0 || n_tokens == 0 || k == 0 || k > MOE_MAX_K.min(n_experts) {
            return Err(kerr(
                name,
                format!("{n_tokens} tokens, {n_experts} experts, top-{k}: need k in 1..=min(8, experts)"),
            ));
        }
        if n_experts > MOE_ROUTE_MAX_EXPERTS {
            return Err(kerr(name, format!("{n_experts} experts: routing handles at most {MOE_ROUTE_MAX_EXPERTS}")));
        }
        let p = self.pipeline::<PushRoute>(name, &[SpecConst { id: 0, value: ROUTE_WG }])?;
        let (dims, grid_x) = grid(n_tokens, self.gpu().caps().max_workgroup_count[0]);
        let push = PushRoute { n_experts, k, n_tokens, flags: renormalize as u32, grid_x };
        let sel = n_tokens as u64 * k as u64 * 4;
        rec.dispatch(
            &p,
            &[
                Binding::read(logits).range(0, n_tokens as u64 * n_experts as u64 * 4),
                Binding::write(ids).range(0, sel),
                Binding::write(weights).range(0, sel),
            ],
            push_bytes(&push),
            dims,
        )
    }

    /// Gate of a shared expert (the Talker's `shared_expert_gate`, f32 `[1, hidden]`) written as a
    /// one-expert routing: ids[t] = 0, weights[t] = sigmoid(w_gate · x[t]) for `n_tokens` rows of x.
    /// With the shared expert as a one-expert stack (`Matrix::experts(1)`), `moe_gate_up` and
    /// `moe_down` (k = 1, residual = the routed sum) then add sigmoid(·) · shared(x).
    #[allow(clippy::too_many_arguments)]
    pub fn moe_shared_gate<'a>(
        &self,
        rec: &mut Recorder<'a>,
        x: &'a Buffer,
        w_gate: &'a Buffer,
        ids: &'a Buffer,
        weights: &'a Buffer,
        hidden: u32,
        n_tokens: u32,
    ) -> Result<()> {
        let name = "moe_shared_gate_f32";
        if hidden == 0 || n_tokens == 0 {
            return Err(kerr(name, format!("empty input ({n_tokens} tokens of {hidden})")));
        }
        let p = self.pipeline::<PushSharedGate>(name, &[SpecConst { id: 0, value: ROUTE_WG }])?;
        let (dims, grid_x) = grid(n_tokens, self.gpu().caps().max_workgroup_count[0]);
        let out = n_tokens as u64 * 4;
        rec.dispatch(
            &p,
            &[
                Binding::read(x).range(0, n_tokens as u64 * hidden as u64 * 4),
                Binding::read(w_gate).range(0, hidden as u64 * 4),
                Binding::write(ids).range(0, out),
                Binding::write(weights).range(0, out),
            ],
            push_bytes(&PushSharedGate { n: hidden, n_tokens, grid_x }),
            dims,
        )
    }

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

    /// h[t, j, :] = silu(gate_e · x[t]) ⊙ (up_e · x[t]) for e = ids[t, j], every token t <
    /// `n_tokens` and slot j < `k`, in one dispatch; `h` is `[n_tokens, k, gate.rows]` f32. The ids
    /// are read on the GPU. On the int-dot path x (`[n_tokens, gate.cols]`) is quantised to Q8_1
    /// into `scratch` first; it is unused on the float path.
    #[allow(clippy::too_many_arguments)]
    pub fn moe_gate_up<'a>(
        &self,
        rec: &mut Recorder<'a>,
        gate: ExpertMatrix<'a>,
        up: ExpertMatrix<'a>,
        x: &'a Buffer,
        ids: &'a Buffer,
        k: u32,
        n_tokens: u32,
        h: &'a Buffer,
        scratch: Option<&'a Q8_1Scratch>,
    ) -> Result<()> {
        self.moe_gate_up_impl(rec, gate, up, x, ids, k, n_tokens, h, scratch, true)
    }

    /// Like [`Kernels::moe_gate_up`] with `scratch` already holding x quantised by
    /// [`Kernels::quantize_q8_1`] (e.g. shared with the router); the float path ignores `scratch`.
    #[allow(clippy::too_many_arguments)]
    pub fn moe_gate_up_prequantized<'a>(
        &self,
        rec: &mut Recorder<'a>,
        gate: ExpertMatrix<'a>,
        up: ExpertMatrix<'a>,
        x: &'a Buffer,
        ids: &'a Buffer,
        k: u32,
        n_tokens: u32,
        h: &'a Buffer,
        scratch: &'a Q8_1Scratch,
    ) -> Result<()> {
        self.moe_gate_up_impl(rec, gate, up, x, ids, k, n_tokens, h, Some(scratch), false)
    }

    #[allow(clippy::too_many_arguments)]
    fn moe_gate_up_impl<'a>(
        &self,
        rec: &mut Recorder<'a>,
        gate: ExpertMatrix<'a>,
        up: ExpertMatrix<'a>,
        x: &'a Buffer,
        ids: &'a Buffer,
        k: u32,
        n_tokens: u32,
        h: &'a Buffer,
        scratch: Option<&'a Q8_1Scratch>,
        quantize: bool,
    ) -> Result<()> {
        let intdot = self.matvec_path() == MatvecPath::IntDot;
        let name = if intdot { "moe_gate_up_q8_0p_q8_1" } else { "moe_gate_up_q8_0p_f32" };
        gate.check(name)?;
        up.check(name)?;
        if (gate.n_experts, gate.rows, gate.cols) != (up.n_experts, up.rows, up.cols) {
            return Err(kerr(
                name,
                format!(
                    "gate is {}×[{}, {}], up is {}×[{}, {}]",
                    gate.n_experts, gate.rows, gate.cols, up.n_experts, up.rows, up.cols
                ),
            ));
        }
        let pairs = n_tokens as u64 * k as u64;
        let (spec, rows_wg) = self.moe_geometry();
        let (push, groups_x) = self.gate_up_grid(name, gate, k, n_tokens, rows_wg, 0)?;
        let [gq, gd] = gate.bindings();
        let [uq, ud] = up.bindings();
        let n = n_tokens as u64 * gate.cols as u64;
        let idb = Binding::read(ids).range(0, pairs * 4);
        let hb = Binding::write(h).range(0, pairs * gate.rows as u64 * 4);
        let p = self.pipeline::<PushGateUp>(name, &spec)?;
        let dims = [groups_x, pairs as u32, 1];
        if intdot {
            let s = scratch.ok_or_else(|| kerr(name, "the int-dot path needs a Q8_1 scratch".into()))?;
            if quantize {
                self.quantize_q8_1(rec, x, n, s)?;
            } else if n > s.values {
                return Err(kerr(name, format!("{n} activation values exceed the scratch's {}", s.values)));
            }
            let b =
                [gq, gd, uq, ud, Binding::read(&s.xq).range(0, n), Binding::read(&s.xd).range(0, n / 32 * 8), idb, hb];
            return rec.dispatch(&p, &b, push_bytes(&push), dims);
        }
        rec.dispatch(&p, &[gq, gd, uq, ud, Binding::read(x).range(0, n * 4), idb, hb], push_bytes(&push), dims)
    }

    /// Routing and gate/up fused for decode: one dispatch does [`Kernels::moe_route`] (each
    /// workgroup routes its token from the f32 router `logits` `[n_tokens, n_experts]`; the same
    /// selection and weights, written to `ids` and `weights` for [`Kernels::moe_down`]) and
    /// [`Kernels::moe_gate_up`] (on the int-dot path x is quantised to Q8_1 in shared memory, exactly
    /// as `quantize_q8_1` would; needs gate.cols ≤ 8192). No scratch. Saves two dependent
    /// dispatches though every workgroup redoes the routing: on an H200 (int-dot path) the decode
    /// MoE chain with it takes 31.7 µs against 34.3 µs at the Thinker's shape (128 experts, top-8,
    /// hidden 2048, 768 rows per expert) and 19.5 against 22.0 µs at the Talker's (top-6, 1024, 384).
    #[allow(clippy::too_many_arguments)]
    pub fn moe_route_gate_up<'a>(
        &self,
        rec: &mut Recorder<'a>,
        logits: &'a Buffer,
        gate: ExpertMatrix<'a>,
        up: ExpertMatrix<'a>,
        x: &'a Buffer,
        ids: &'a Buffer,
        weights: &'a Buffer,
        k: u32,
        n_tokens: u32,
        renormalize: bool,
        h: &'a Buffer,
    ) -> Result<()> {
        self.moe_route_gate_up_norm(rec, logits, gate, up, x, None, ids, weights, k, n_tokens, renormalize, h)
    }

    /// [`Kernels::moe_route_gate_up`] with the layer's RMSNorm fused in front: with `norm =
    /// Some((w, eps))`, x is the raw residual stream and each workgroup normalises it itself
    /// (one `rms_norm` dispatch and barrier fewer per MoE block).
    #[allow(clippy::too_many_arguments)]
    pub fn moe_route_gate_up_norm<'a>(
        &self,
        rec: &mut Recorder<'a>,
        logits: &'a Buffer,
        gate: ExpertMatrix<'a>,
        up: ExpertMatrix<'a>,
        x: &'a Buffer,
        norm: Option<(&'a Buffer, f32)>,
        ids: &'a Buffer,
        weights: &'a Buffer,
        k: u32,
        n_tokens: u32,
        renormalize: bool,
        h: &'a Buffer,
    ) -> Result<()> {
        self.moe_route_gate_up_impl(rec, logits, gate, up, x, norm, false, ids, weights, k, n_tokens, renormalize, h)
    }

    /// [`Kernels::moe_route_gate_up_norm`] for one token with the norm always fused; with
    /// `folded`, the router logits were computed without the norm's RMS factor (by
    /// [`Kernels::moe_router_fold`]) and each workgroup scales them by 1/rms(x), which it computes
    /// for the norm anyway.
    #[allow(clippy::too_many_arguments)]
    pub fn moe_route_gate_up_decode<'a>(
        &self,
        rec: &mut Recorder<'a>,
        logits: &'a Buffer,
        folded: bool,
        gate: ExpertMatrix<'a>,
        up: ExpertMatrix<'a>,
        x: &'a Buffer,
        norm: (&'a Buffer, f32),
        ids: &'a Buffer,
        weights: &'a Buffer,
        k: u32,
        renormalize: bool,
        h: &'a Buffer,
    ) -> Result<()> {
        self.moe_route_gate_up_impl(rec, logits, gate, up, x, Some(norm), folded, ids, weights, k, 1, renormalize, h)
    }

    /// y = R · [x ; a] for the folded router (`router_fold.comp`): R f32 `[rows, k1 + k2]`
    /// ([`router_fold_matrix`] builds it), x `[k1]`, a `[k2]`, u `[rows]`; on the int-dot path a is
    /// taken as its Q8_1 value, as the o-projection sees it. Reads only x and a, so it needs no
    /// barrier against an o-projection that reads the same.
    #[allow(clippy::too_many_arguments)]
    pub fn moe_router_fold<'a>(
        &self,
        rec: &mut Recorder<'a>,
        r: &'a Buffer,
        rows: u32,
        x: &'a Buffer,
        k1: u32,
        a: &'a Buffer,
        k2: u32,
        u: &'a Buffer,
    ) -> Result<()> {
        // On the int-dot path the o-projection sees a as Q8_1: so does the fold.
        let quant = self.matvec_path() == MatvecPath::IntDot;
        let name = if quant { "router_fold_q8_1_f32" } else { "router_fold_f32" };
        let wg = 256.min(self.gpu().caps().max_workgroup_invocations);
        let shared = if quant { k2 * 4 } else { 0 } + wg * 4;
        if rows == 0 || k1 == 0 || k2 == 0 || k1 % 4 != 0 || k2 % 4 != 0 || (quant && k2 % 32 != 0) {
            return Err(kerr(
                name,
                format!(
                    "{rows} rows of {k1} + {k2}: need non-empty widths, multiples of 4 (int-dot: k2 a multiple of 32)"
                ),
            ));
        }
        if shared > self.gpu().caps().max_shared_memory {
            return Err(kerr(
                name,
                format!(
                    "{k2} attention outputs need {shared} bytes of shared memory, the device has {}",
                    self.gpu().caps().max_shared_memory
                ),
            ));
        }
        let (dims, grid_x) = grid(rows, self.gpu().caps().max_workgroup_count[0]);
        if dims[1] > self.gpu().caps().max_workgroup_count[1] {
            return Err(kerr(name, format!("{rows} rows exceed the device's grid")));
        }
        let spec = [SpecConst { id: 0, value: wg }, SpecConst { id: 1, value: if quant { k2 / 4 } else { 1 } }];
        let p = self.pipeline::<PushFold>(name, &spec)?;
        let kk = (k1 + k2) as u64;
        let b = [
            Binding::read(r).range(0, rows as u64 * kk * 4),
            Binding::read(x).range(0, k1 as u64 * 4),
            Binding::read(a).range(0, k2 as u64 * 4),
            Binding::write(u).range(0, rows as u64 * 4),
        ];
        rec.dispatch(&p, &b, push_bytes(&PushFold { k1, k2, rows, grid_x }), dims)
    }

    #[allow(clippy::too_many_arguments)]
    fn moe_route_gate_up_impl<'a>(
        &self,
        rec: &mut Recorder<'a>,
        logits: &'a Buffer,
        gate: ExpertMatrix<'a>,
        up: ExpertMatrix<'a>,
        x: &'a Buffer,
        norm: Option<(&'a Buffer, f32)>,
        folded: bool,
        ids: &'a Buffer,
        weights: &'a Buffer,
        k: u32,
        n_tokens: u32,
        renormalize: bool,
        h: &'a Buffer,
    ) -> Result<()> {
        let intdot = self.matvec_path() == MatvecPath::IntDot;
        let name = match (intdot, norm.is_some()) {
            (true, false) => "moe_route_gate_up_q8_0p_q8_1",
            (false, false) => "moe_route_gate_up_q8_0p_f32",
            (true, true) => "moe_route_gate_up_norm_q8_0p_q8_1",
            (false, true) => "moe_route_gate_up_norm_q8_0p_f32",
        };
        gate.check(name)?;
        up.check(name)?;
        if (gate.n_experts, gate.rows, gate.cols) != (up.n_experts, up.rows, up.cols) {
            return Err(kerr(
                name,
                format!(
                    "gate is {}×[{}, {}], up is {}×[{}, {}]",
                    gate.n_experts, gate.rows, gate.cols, up.n_experts, up.rows, up.cols
                ),
            ));
        }
        if k == 0 || k > MOE_MAX_K.min(gate.n_experts) {
            return Err(kerr(name, format!("top-{k} of {} experts: need k in 1..=min(8, experts)", gate.n_experts)));
        }
        if gate.n_experts > MOE_ROUTE_MAX_EXPERTS {
            return Err(kerr(
                name,
                format!("{} experts: routing handles at most {MOE_ROUTE_MAX_EXPERTS}", gate.n_experts),
            ));
        }
        if intdot && gate.cols > MOE_FUSED_MAX_X {
            return Err(kerr(
                name,
                format!("{} columns: the fused int-dot kernel quantises at most {MOE_FUSED_MAX_X}", gate.cols),
            ));
        }
        let pairs = n_tokens as u64 * k as u64;
        let (spec, rows_wg) = self.moe_fused_geometry(0);
        let flags = renormalize as u32 | if folded { 2 } else { 0 };
        let (push, groups_x) = self.gate_up_grid(name, gate, k, n_tokens, rows_wg, flags)?;
        let [gq, gd] = gate.bindings();
        let [uq, ud] = up.bindings();
        let b = [
            gq,
            gd,
            uq,
            ud,
            Binding::read(x).range(0, n_tokens as u64 * gate.cols as u64 * 4),
            Binding::read(logits).range(0, n_tokens as u64 * gate.n_experts as u64 * 4),
            Binding::write(ids).range(0, pairs * 4),
            Binding::write(weights).range(0, pairs * 4),
            Binding::write(h).range(0, pairs * gate.rows as u64 * 4),
        ];
        if let Some((nw, eps)) = norm {
            let mut b = b.to_vec();
            b.push(Binding::read(nw).range(0, gate.cols as u64 * 4));
            let p = self.pipeline::<PushGateUpNorm>(name, &spec)?;
            let push = PushGateUpNorm { base: push, eps };
            return rec.dispatch(&p, &b, push_bytes(&push), [groups_x, pairs as u32, 1]);
        }
        let p = self.pipeline::<PushGateUp>(name, &spec)?;
        rec.dispatch(&p, &b, push_bytes(&push), [groups_x, pairs as u32, 1])
    }

    /// y[t, :] = residual[t, :] (if given) + Σ_j weights[t, j] · down_e · h[t, j, :], e = ids[t, j],
    /// for `n_tokens` tokens and `k` (≤ 16) slots, in one dispatch (routing weight in the epilogue, the sum
    /// over k in the kernel). `h` is `[n_tokens, k, down.cols]`, y and residual `[n_tokens,
    /// down.rows]`; `residual` may be `y` itself (in-place add to the residual stream). On the
    /// int-dot path each workgroup quantises its token's h to Q8_1 in shared memory when k·down.cols
    /// ≤ 16384 (`scratch` unused); beyond, h is quantised into `scratch` (≥ n_tokens·k·down.cols
    /// values) by a `quantize_q8_1` dispatch first.
    #[allow(clippy::too_many_arguments)]
    pub fn moe_down<'a>(
        &self,
        rec: &mut Recorder<'a>,
        down: ExpertMatrix<'a>,
        h: &'a Buffer,
        ids: &'a Buffer,
        weights: &'a Buffer,
        k: u32,
        n_tokens: u32,
        residual: Option<&'a Buffer>,
        y: &'a Buffer,
        scratch: Option<&'a Q8_1Scratch>,
    ) -> Result<()> {
        let intdot = self.matvec_path() == MatvecPath::IntDot;
        self.moe_down_impl(rec, down, h, ids, weights, k, n_tokens, residual, y, scratch, intdot)
    }

    /// [`Kernels::moe_down`] on the float path whatever [`Kernels::matvec_path`] says (h read as
    /// f32, no quantisation): the more exact down projection. On an H200 it is the slower one
    /// (Thinker shape: 5.1 against 4.5 µs; decode MoE chain 39.1 against 34.3 µs;
    /// tests/moe.rs `moe_decode_timing`).
    #[allow(clippy::too_many_arguments)]
    pub fn moe_down_float<'a>(
        &self,
        rec: &mut Recorder<'a>,
        down: ExpertMatrix<'a>,
        h: &'a Buffer,
        ids: &'a Buffer,
        weights: &'a Buffer,
        k: u32,
        n_tokens: u32,
        residual: Option<&'a Buffer>,
        y: &'a Buffer,
    ) -> Result<()> {
        self.moe_down_impl(rec, down, h, ids, weights, k, n_tokens, residual, y, None, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn moe_down_impl<'a>(
        &self,
        rec: &mut Recorder<'a>,
        down: ExpertMatrix<'a>,
        h: &'a Buffer,
        ids: &'a Buffer,
        weights: &'a Buffer,
        k: u32,
        n_tokens: u32,
        residual: Option<&'a Buffer>,
        y: &'a Buffer,
        scratch: Option<&'a Q8_1Scratch>,
        intdot: bool,
    ) -> Result<()> {
        let fused = intdot && k as u64 * down.cols as u64 <= MOE_FUSED_MAX_H;
        let name = match (intdot, fused) {
            (true, true) => "moe_down_q8_0p_q8_1_fused",
            (true, false) => "moe_down_q8_0p_q8_1",
            _ => "moe_down_q8_0p_f32",
        };
        down.check(name)?;
        let pairs = n_tokens as u64 * k as u64;
        let (spec, rows_wg) = if fused { self.moe_fused_geometry(1) } else { self.moe_geometry() };
        // KSPLIT subgroups per row group: 1/KSPLIT of the rows per workgroup, more workgroups. For
        // one token (decode, latency-bound); a batch has workgroups enough, and each would repeat
        // the Q8_1 prologue.
        let ks = if fused && n_tokens == 1 { self.tuning().down_ksplit } else { 1 };
        let rows_wg = (rows_wg / ks).max(spec[1].value);
        let smallest = self.subgroup_floor().min(self.gpu().caps().min_subgroup_size.max(1));
        if ks > 1 && spec[1].value > smallest {
            // The split loop writes a row group's rows from lanes 0..RPS (moe_down.comp).
            return Err(kerr(
                name,
                format!(
                    "{} rows per subgroup step with KSPLIT {ks} need subgroups of at least that many lanes (this device: {})",
                    spec[1].value, smallest
                ),
            ));
        }
        let spec = [spec[0], spec[1], SpecConst { id: 2, value: rows_wg }, SpecConst { id: 3, value: ks }];
        let max = self.gpu().caps().max_workgroup_count;
        if k == 0 || k > MOE_DOWN_MAX_K || n_tokens == 0 || n_tokens > max[2] {
            return Err(kerr(
                name,
                format!(
                    "{n_tokens} tokens × top-{k}: need k in 1..={MOE_DOWN_MAX_K} and tokens within the device's grid"
                ),
            ));
        }
        let (dims, grid_x) = grid(down.rows.div_ceil(rows_wg), max[0]);
        if dims[1] > max[1] {
            return Err(kerr(name, format!("{} rows exceed the device's grid", down.rows)));
        }
        let l = down.layout();
        let push = PushDown {
            k_cols: down.cols,
            m_rows: down.rows,
            k,
            n_experts: down.n_experts,
            stride16: (l.stride / 16) as u32,
            d_off2: (l.matrix.d_offset / 2) as u32,
            flags: residual.is_some() as u32,
            grid_x,
        };
        let [q, d] = down.bindings();
        let out = n_tokens as u64 * down.rows as u64 * 4;
        // Without a residual the kernel never reads binding `res`; y's range stands in for it.
        let res = Binding::read(residual.unwrap_or(y)).range(0, out);
        let idb = Binding::read(ids).range(0, pairs * 4);
        let wb = Binding::read(weights).range(0, pairs * 4);
        let yb = Binding::write(y).range(0, out);
        let n = pairs * down.cols as u64;
        let p = self.pipeline::<PushDown>(name, &spec)?;
        let dims = [dims[0], dims[1], n_tokens];
        if intdot && !fused {
            let s = scratch
                .ok_or_else(|| kerr(name, "the int-dot path needs a Q8_1 scratch when k·cols > 16384".into()))?;
            self.quantize_q8_1(rec, h, n, s)?;
            let b =
                [q, d, Binding::read(&s.xq).range(0, n), Binding::read(&s.xd).range(0, n / 32 * 8), idb, wb, res, yb];
            return rec.dispatch(&p, &b, push_bytes(&push), dims);
        }
        rec.dispatch(&p, &[q, d, Binding::read(h).range(0, n * 4), idb, wb, res, yb], push_bytes(&push), dims)
    }

    /// Prefill: groups the `n_pairs` (token, slot) pairs of `ids` by expert for the grouped
    /// kernels: `offsets` (u32 `[n_experts + 1]`) delimit each expert's run in `order` (u32
    /// `[n_pairs]`, pair indices t·k + j). The order within a run may vary from run to run (shared
    /// atomics); the grouped kernels' results do not depend on it.
    pub fn moe_group<'a>(
        &self,
        rec: &mut Recorder<'a>,
        ids: &'a Buffer,
        n_pairs: u32,
        n_experts: u32,
        offsets: &'a Buffer,
        order: &'a Buffer,
    ) -> Result<()> {
        let name = "moe_group_u32";
        if n_pairs == 0 || n_experts == 0 || n_experts > MOE_GROUP_MAX_EXPERTS {
            return Err(kerr(
                name,
                format!("{n_pairs} pairs, {n_experts} experts: need pairs > 0 and 1..={MOE_GROUP_MAX_EXPERTS} experts"),
            ));
        }
        let wg = 1024u32.min(self.gpu().caps().max_workgroup_invocations);
        let p = self.pipeline::<PushGroup>(name, &[SpecConst { id: 0, value: wg }])?;
        rec.dispatch(
            &p,
            &[
                Binding::read(ids).range(0, n_pairs as u64 * 4),
                Binding::write(offsets).range(0, (n_experts as u64 + 1) * 4),
                Binding::write(order).range(0, n_pairs as u64 * 4),
            ],
            push_bytes(&PushGroup { n_pairs, n_experts }),
            [1, 1, 1],
        )
    }

    /// Records one grouped expert kernel: `out[p, :]` for every pair p grouped by `moe_group`.
    #[allow(clippy::too_many_arguments)]
    fn moe_grouped<'a>(
        &self,
        rec: &mut Recorder<'a>,
        name: &'static str,
        mats: &[ExpertMatrix<'a>],
        act: [Binding<'a>; 2],
        intdot: bool,
        k: u32,
        n_pairs: u64,
        offsets: &'a Buffer,
        order: &'a Buffer,
        out: &'a Buffer,
    ) -> Result<()> {
        let m = mats[0];
        let (spec, rows_wg) = self.moe_geometry();
        let max = self.gpu().caps().max_workgroup_count;
        let groups_x = m.rows.div_ceil(rows_wg);
        if groups_x > max[0] || m.n_experts > max[1] {
            return Err(kerr(name, format!("{groups_x}×{} workgroups exceed the device's grid", m.n_experts)));
        }
        let l = m.layout();
        let push = PushGateUp {
            k_cols: m.cols,
            m_rows: m.rows,
            k,
            n_experts: m.n_experts,
            stride16: (l.stride / 16) as u32,
            d_off2: (l.matrix.d_offset / 2) as u32,
            flags: 0,
        };
        let mut b: Vec<Binding<'a>> = Vec::with_capacity(9);
        for mat in mats {
            b.extend(mat.bindings());
        }
        b.push(act[0]);
        if intdot {
            b.push(act[1]);
        }
        b.push(Binding::read(offsets).range(0, (m.n_experts as u64 + 1) * 4));
        b.push(Binding::read(order).range(0, n_pairs * 4));
        b.push(Binding::write(out).range(0, n_pairs * m.rows as u64 * 4));
        let p = self.pipeline::<PushGateUp>(name, &spec)?;
        rec.dispatch(&p, &b, push_bytes(&push), [groups_x, m.n_experts, 1])
    }

    /// Prefill gate/up grouped by expert: h[p, :] = silu(gate_e · x[t]) ⊙ (up_e · x[t]) for every
    /// pair p = t·k + j routed to e, from `moe_group`'s `offsets` and `order`; each weight load
    /// serves up to 8 pairs of its expert. H200, 512 tokens at the Thinker's shape, int-dot: the
    /// MoE block takes 3.1 ms grouped against 4.6 ms with the per-pair kernels (`moe_gate_up` /
    /// `moe_down` with n_tokens > 1); no gain on the float path or at the Talker's shape. On the int-dot path x (`[n_tokens, gate.cols]`) is
    /// quantised into `scratch` first.
    #[allow(clippy::too_many_arguments)]
    pub fn moe_gate_up_grouped<'a>(
        &self,
        rec: &mut Recorder<'a>,
        gate: ExpertMatrix<'a>,
        up: ExpertMatrix<'a>,
        x: &'a Buffer,
        k: u32,
        n_tokens: u32,
        offsets: &'a Buffer,
        order: &'a Buffer,
        h: &'a Buffer,
        scratch: Option<&'a Q8_1Scratch>,
    ) -> Result<()> {
        let intdot = self.matvec_path() == MatvecPath::IntDot;
        let name = if intdot { "moe_gate_up_grouped_q8_0p_q8_1" } else { "moe_gate_up_grouped_q8_0p_f32" };
        gate.check(name)?;
        up.check(name)?;
        if (gate.n_experts, gate.rows, gate.cols) != (up.n_experts, up.rows, up.cols) {
            return Err(kerr(name, "gate and up differ in shape".into()));
        }
        if k == 0 || n_tokens == 0 {
            return Err(kerr(name, "no pairs".into()));
        }
        let n = n_tokens as u64 * gate.cols as u64;
        let act = if intdot {
            let s = scratch.ok_or_else(|| kerr(name, "the int-dot path needs a Q8_1 scratch".into()))?;
            self.quantize_q8_1(rec, x, n, s)?;
            [Binding::read(&s.xq).range(0, n), Binding::read(&s.xd).range(0, n / 32 * 8)]
        } else {
            let xb = Binding::read(x).range(0, n * 4);
            [xb, xb]
        };
        self.moe_grouped(rec, name, &[gate, up], act, intdot, k, n_tokens as u64 * k as u64, offsets, order, h)
    }

    /// Prefill down projection grouped by expert: o[p, :] = down_e · h[p, :] (`o` scratch of
    /// `[n_tokens·k, down.rows]` f32), then y[t, :] = residual[t, :] (if given; may be y) +
    /// Σ_j weights[t, j] · o[t·k + j, :]. On the int-dot path h is quantised into `scratch` first.
    #[allow(clippy::too_many_arguments)]
    pub fn moe_down_grouped<'a>(
        &self,
        rec: &mut Recorder<'a>,
        down: ExpertMatrix<'a>,
        h: &'a Buffer,
        weights: &'a Buffer,
        k: u32,
        n_tokens: u32,
        offsets: &'a Buffer,
        order: &'a Buffer,
        o: &'a Buffer,
        residual: Option<&'a Buffer>,
        y: &'a Buffer,
        scratch: Option<&'a Q8_1Scratch>,
    ) -> Result<()> {
        let intdot = self.matvec_path() == MatvecPath::IntDot;
        let name = if intdot { "moe_down_grouped_q8_0p_q8_1" } else { "moe_down_grouped_q8_0p_f32" };
        down.check(name)?;
        if k == 0 || n_tokens == 0 {
            return Err(kerr(name, "no pairs".into()));
        }
        let pairs = n_tokens as u64 * k as u64;
        let n = pairs * down.cols as u64;
        let act = if intdot {
            let s = scratch.ok_or_else(|| kerr(name, "the int-dot path needs a Q8_1 scratch".into()))?;
            self.quantize_q8_1(rec, h, n, s)?;
            [Binding::read(&s.xq).range(0, n), Binding::read(&s.xd).range(0, n / 32 * 8)]
        } else {
            let hb = Binding::read(h).range(0, n * 4);
            [hb, hb]
        };
        self.moe_grouped(rec, name, &[down], act, intdot, k, pairs, offsets, order, o)?;
        let cname = "moe_combine_f32";
        let total = n_tokens as u64 * down.rows as u64;
        let total32 = u32::try_from(total).map_err(|_| kerr(cname, format!("{total} outputs exceed 2^32 - 1")))?;
        let wg = 256;
        let p = self.pipeline::<PushCombine>(cname, &[SpecConst { id: 0, value: wg }])?;
        let out = total * 4;
        rec.dispatch(
            &p,
            &[
                Binding::read(o).range(0, pairs * down.rows as u64 * 4),
                Binding::read(weights).range(0, pairs * 4),
                Binding::read(residual.unwrap_or(y)).range(0, out),
                Binding::write(y).range(0, out),
            ],
            push_bytes(&PushCombine { m: down.rows, k, n: total32, flags: residual.is_some() as u32 }),
            super::stride_grid(total, wg),
        )
    }
}
