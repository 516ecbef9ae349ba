//! The decode step's work between two attentions as one persistent dispatch
//! (`decode_layer.comp`): o-projection + residual, router, routing + gate/up and down + residual
//! of layer l, then q/k/v of layer l + 1, separated by grid barriers instead of dispatch
//! boundaries. With attention as its own dispatch a layer costs two dependent dispatches instead of
//! six.
//!
//! The grid barrier needs every workgroup resident at once, which Vulkan does not promise: the
//! workgroup count comes from a probe of the pipeline itself ([`Kernels::decode_layer_probe`]:
//! the largest count, up to four per SM / CU, whose workgroups all pass a barrier), one on CPU
//! devices; `QWEN3VK_LAYER_GROUPS` overrides it, and a barrier that waits too long sets an error
//! word instead of hanging ([`Kernels::decode_layer_failed`]).

use bytemuck::{Pod, Zeroable};
use vk_runtime::{Binding, Buffer, DeviceKind, Recorder, Result, SpecConst};

use super::moe::{ExpertMatrix, MOE_MAX_K, MOE_ROUTE_MAX_EXPERTS};
use super::{kerr, push_bytes, Matrix, WType};
use crate::kernels::{Kernels, MatvecPath};
use crate::layout::PlanarLayout;

/// Invocations per workgroup (`QWEN3VK_LAYER_WG` overrides).
const LAYER_WG: u32 = 256;
/// Polls of the barrier word before a workgroup gives up (seconds on any GPU; a bad launch, not
/// a slow one, is what trips it).
const SPIN_CAP: u32 = 1 << 22;
/// Polls allowed while probing residency.
const PROBE_SPIN_CAP: u32 = 1 << 18;
/// u32 words of the sync buffer (count, generation and error 128 bytes apart).
const SYNC_WORDS: u64 = 96;

/// The part of layer l after its attention.
#[derive(Clone, Copy)]
pub struct LayerPost<'a> {
    pub o: Matrix<'a>,
    /// f32 `[n_experts, hidden]`.
    pub router: Matrix<'a>,
    pub gate: ExpertMatrix<'a>,
    pub up: ExpertMatrix<'a>,
    pub down: ExpertMatrix<'a>,
    pub ffn_norm: &'a Buffer,
}

/// The part of layer l + 1 before its attention.
#[derive(Clone, Copy)]
pub struct LayerPre<'a> {
    pub q: Matrix<'a>,
    pub k: Matrix<'a>,
    pub v: Matrix<'a>,
    pub attn_norm: &'a Buffer,
}

/// Shapes and constants.
#[derive(Debug, Clone, Copy)]
pub struct LayerShape {
    pub hidden: u32,
    /// Query heads × head_dim.
    pub q_dim: u32,
    /// KV heads × head_dim.
    pub kv_dim: u32,
    pub n_experts: u32,
    pub moe_inter: u32,
    pub top_k: u32,
    pub norm_topk: bool,
    pub eps: f32,
}

/// The activations: x `[hidden]` (updated in place), q/k/v written, o (attention output) read,
/// `act` of [`Kernels::decode_layer_act_bytes`], `sync` of [`Kernels::decode_layer_sync_bytes`]
/// (zero before the first use; left ready for the next).
pub struct LayerIo<'a> {
    pub x: &'a Buffer,
    pub q: &'a Buffer,
    pub k: &'a Buffer,
    pub v: &'a Buffer,
    pub o: &'a Buffer,
    pub act: &'a Buffer,
    pub sync: &'a Buffer,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushLayer {
    h: u32,
    qd: u32,
    kvd: u32,
    mi: u32,
    ne: u32,
    topk: u32,
    flags: u32,
    eps: f32,
    gu_stride16: u32,
    gu_doff2: u32,
    dn_stride16: u32,
    dn_doff2: u32,
    spin_cap: u32,
}

impl Kernels {
    /// Workgroups of the persistent layer kernel: set by [`Kernels::set_decode_layer_groups`],
    /// `QWEN3VK_LAYER_GROUPS`, or the probe; `None` before a probe on a GPU.
    pub fn decode_layer_groups(&self) -> Option<u32> {
        if let Some(n) = self.layer_groups {
            return Some(n);
        }
        if let Some(n) = std::env::var("QWEN3VK_LAYER_GROUPS").ok().and_then(|v| v.trim().parse::<u32>().ok()) {
            return (n > 0).then_some(n);
        }
        // lavapipe may run several workgroups of a dispatch as coroutines of one thread sharing
        // one copy of the shared memory: one workgroup there.
        if self.gpu().caps().kind == DeviceKind::Cpu {
            return Some(1);
        }
        None
    }

    /// Sets the persistent layer kernel's workgroup count (tests, tuning, the probe's result);
    /// `None` restores the default.
    pub fn set_decode_layer_groups(&mut self, n: Option<u32>) {
        self.layer_groups = n.map(|n| n.max(1));
    }

    /// Tests: polls of the grid-barrier word before a workgroup gives up (`None`: the default,
    /// seconds on any GPU). 0 makes any wait fail, to exercise the error path.
    pub fn set_decode_layer_spin_cap(&mut self, polls: Option<u32>) {
        self.layer_spin_cap = polls;
    }

    /// Bytes of the layer kernel's scratch (router logits and the experts' hidden values).
    pub fn decode_layer_act_bytes(&self, s: &LayerShape) -> u64 {
        (s.n_experts as u64).div_ceil(4) * 16 + s.top_k as u64 * s.moe_inter as u64 * 4
    }

    /// Bytes of the layer kernel's sync words (zero them once before the first use).
    pub fn decode_layer_sync_bytes(&self) -> u64 {
        SYNC_WORDS * 4
    }

    fn layer_geometry(
        &self,
        post: &LayerPost,
        pre: &LayerPre,
        s: &LayerShape,
    ) -> Result<(&'static str, [SpecConst; 2])> {
        let intdot = self.matvec_path() == MatvecPath::IntDot;
        let name = if intdot { "decode_layer_q8_0p_q8_1" } else { "decode_layer_q8_0p_f32" };
        let caps = self.gpu().caps();
        let (h, qd, kvd, mi, ne) = (s.hidden, s.q_dim, s.kv_dim, s.moe_inter, s.n_experts);
        for (m, rows, cols, what) in
            [(&pre.q, qd, h, "q"), (&pre.k, kvd, h, "k"), (&pre.v, kvd, h, "v"), (&post.o, h, qd, "o")]
        {
            m.check(name)?;
            if m.wtype != WType::Q8_0Planar || m.rows != rows || m.cols != cols {
                return Err(kerr(
                    name,
                    format!("{what}: need planar Q8_0 [{rows}, {cols}], got {:?} [{}, {}]", m.wtype, m.rows, m.cols),
                ));
            }
        }
        if post.router.wtype != WType::F32 || post.router.rows != ne || post.router.cols != h {
            return Err(kerr(name, format!("router: need f32 [{ne}, {h}]")));
        }
        for (e, rows, cols, what) in [(&post.gate, mi, h, "gate"), (&post.up, mi, h, "up"), (&post.down, h, mi, "down")]
        {
            e.check(name)?;
            if e.n_experts != ne || e.rows != rows || e.cols != cols {
                return Err(kerr(name, format!("{what} experts: need [{ne}, {rows}, {cols}]")));
            }
        }
        if h % 32 != 0 || qd % 32 != 0 || mi % 32 != 0 || kvd % 2 != 0 || kvd == 0 {
            return Err(kerr(name, format!("hidden {h}, q width {qd}, expert width {mi}: need multiples of 32")));
        }
        if s.top_k == 0 || s.top_k > MOE_MAX_K || ne == 0 || ne > MOE_ROUTE_MAX_EXPERTS || s.top_k > ne {
            return Err(kerr(
                name,
                format!("top-{} of {ne} experts: need 1 ≤ k ≤ {MOE_MAX_K}, experts ≤ {MOE_ROUTE_MAX_EXPERTS}", s.top_k),
            ));
        }
        let wg = std::env::var("QWEN3VK_LAYER_WG")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|v| v.is_power_of_two() && *v >= 64)
            .unwrap_or(LAYER_WG)
            .min(caps.max_workgroup_invocations);
        // Shared memory: the activation staging plus the reduction and routing arrays.
        let kh = s.top_k * mi;
        let words = if intdot {
            [h / 4 + h / 32, qd / 4 + qd / 32, kh / 4 + kh / 32, h].into_iter().max().unwrap_or(h)
        } else {
            h.max(qd).max(kh)
        };
        let shared = words * 4 + wg * 4 + MOE_ROUTE_MAX_EXPERTS * 4 + MOE_MAX_K * 8;
        if shared > caps.max_shared_memory {
            return Err(kerr(
                name,
                format!("needs {shared} bytes of shared memory, the device has {}", caps.max_shared_memory),
            ));
        }
        Ok((name, [SpecConst { id: 0, value: wg }, SpecConst { id: 1, value: words }]))
    }

    /// Whether the layer kernel runs this shape on this device (and why not).
    pub fn decode_layer_supported(&self, post: &LayerPost, pre: &LayerPre, s: &LayerShape) -> Result<()> {
        self.layer_geometry(post, pre, s).map(|_| ())
    }

    #[allow(clippy::too_many_arguments)]
    fn record_layer_n<'a>(
        &self,
        rec: &mut Recorder<'a>,
        post: &LayerPost<'a>,
        pre: &LayerPre<'a>,
        s: &LayerShape,
        io: &LayerIo<'a>,
        flags: u32,
        groups: u32,
        spin_cap: u32,
        mi: u32,
    ) -> Result<()> {
        let (name, spec) = self.layer_geometry(post, pre, s)?;
        if groups == 0 || groups > self.gpu().caps().max_workgroup_count[0] {
            return Err(kerr(name, format!("{groups} workgroups: outside the device's grid")));
        }
        let h = s.hidden as u64;
        let gl = post.gate.layout();
        let dl = post.down.layout();
        let push = PushLayer {
            h: s.hidden,
            qd: s.q_dim,
            kvd: s.kv_dim,
            mi,
            ne: s.n_experts,
            topk: s.top_k,
            flags: flags | s.norm_topk as u32,
            eps: s.eps,
            gu_stride16: (gl.stride / 16) as u32,
            gu_doff2: (gl.matrix.d_offset / 2) as u32,
            dn_stride16: (dl.stride / 16) as u32,
            dn_doff2: (dl.matrix.d_offset / 2) as u32,
            spin_cap,
        };
        let planar = |m: &Matrix<'a>| {
            let l = PlanarLayout::new(m.rows as u64, m.cols as u64);
            [
                Binding::read(m.buf).range(m.offset, l.qs_bytes),
                Binding::read(m.buf).range(m.offset + l.d_offset, l.d_bytes),
            ]
        };
        let [gq, gd] = post.gate.bindings();
        let [uq, ud] = post.up.bindings();
        let [dq, dd] = post.down.bindings();
        let mut b = Vec::with_capacity(24);
        b.extend(planar(&pre.q));
        b.extend(planar(&pre.k));
        b.extend(planar(&pre.v));
        b.extend(planar(&post.o));
        b.push(Binding::read(post.router.buf).range(post.router.offset, post.router.bytes()));
        b.extend([gq, gd, uq, ud, dq, dd]);
        b.push(Binding::read(pre.attn_norm).range(0, h * 4));
        b.push(Binding::read(post.ffn_norm).range(0, h * 4));
        b.push(Binding::read_write(io.x).range(0, h * 4));
        b.push(Binding::write(io.q).range(0, s.q_dim as u64 * 4));
        b.push(Binding::write(io.k).range(0, s.kv_dim as u64 * 4));
        b.push(Binding::write(io.v).range(0, s.kv_dim as u64 * 4));
        b.push(Binding::read(io.o).range(0, s.q_dim as u64 * 4));
        b.push(Binding::read_write(io.act).range(0, self.decode_layer_act_bytes(s)));
        b.push(Binding::read_write(io.sync).range(0, self.decode_layer_sync_bytes()));
        let p = self.pipeline::<PushLayer>(name, &spec)?;
        rec.dispatch(&p, &b, push_bytes(&push), [groups, 1, 1])
    }

    /// Records one persistent dispatch of a replayable decode step: with `post`, layer l's
    /// o-projection + residual, router, routing + gate/up and down + residual (x → x, reading the
    /// attention output `io.o`); with `pre`, then layer l + 1's q, k, v (into `io.q/k/v`) — for the
    /// first layer only `pre`, for the last only `post`. `shape_of` supplies the weights of the
    /// absent half (bound, never read).
    pub fn decode_layer<'a>(
        &self,
        rec: &mut Recorder<'a>,
        post: Option<&LayerPost<'a>>,
        pre: Option<&LayerPre<'a>>,
        fill: (&LayerPost<'a>, &LayerPre<'a>),
        s: &LayerShape,
        io: &LayerIo<'a>,
    ) -> Result<()> {
        let groups = self.decode_layer_groups().ok_or_else(|| {
            kerr("decode_layer", "no workgroup count yet: probe the device first (decode_layer_probe)".into())
        })?;
        let flags = if post.is_some() { 2 } else { 0 } | if pre.is_some() { 4 } else { 0 };
        if flags == 0 {
            return Ok(());
        }
        let spin = self.layer_spin_cap.unwrap_or(SPIN_CAP);
        self.record_layer_n(rec, post.unwrap_or(fill.0), pre.unwrap_or(fill.1), s, io, flags, groups, spin, s.moe_inter)
    }

    /// Finds how many workgroups of the layer kernel this device keeps resident at once: tries
    /// 1, 2, 3, 4 per SM / CU (the count the driver reports) with a barrier-only dispatch of the
    /// same pipeline, and returns the largest that passed (`None`: the device reports no count,
    /// or not even one per unit passed). Leaves `io.sync` zeroed.
    pub fn decode_layer_probe<'a>(
        &self,
        post: &LayerPost<'a>,
        pre: &LayerPre<'a>,
        s: &LayerShape,
        io: &LayerIo<'a>,
    ) -> Result<Option<u32>> {
        let units = self.gpu().caps().compute_units;
        if units == 0 {
            return Ok(None);
        }
        let zero = vec![0u8; self.decode_layer_sync_bytes() as usize];
        let mut best = None;
        for per in 1..=4u32 {
            io.sync.write(0, &zero)?;
            let mut rec = self.gpu().recorder(false)?;
            self.record_layer_n(&mut rec, post, pre, s, io, 8, units * per, PROBE_SPIN_CAP, 1)?;
            rec.finish()?.submit()?;
            if self.decode_layer_failed(io.sync)? {
                break;
            }
            best = Some(units * per);
        }
        io.sync.write(0, &zero)?;
        Ok(best)
    }

    /// Benchmarks: GPU µs per grid barrier of the layer pipeline with the current workgroup count
    /// (a dispatch of 1 barrier and one of `n + 1`, timed). Leaves `io.sync` zeroed.
    pub fn decode_layer_barrier_us<'a>(
        &self,
        post: &LayerPost<'a>,
        pre: &LayerPre<'a>,
        s: &LayerShape,
        io: &LayerIo<'a>,
        n: u32,
    ) -> Result<f64> {
        let groups = self.decode_layer_groups().unwrap_or(1);
        let zero = vec![0u8; self.decode_layer_sync_bytes() as usize];
        let mut t = [0.0f64; 2];
        for (i, count) in [1u32, n + 1].into_iter().enumerate() {
            io.sync.write(0, &zero)?;
            let mut rec = self.gpu().recorder(true)?;
            self.record_layer_n(&mut rec, post, pre, s, io, 8, groups, SPIN_CAP, count)?;
            t[i] = rec.finish()?.submit()?.total_ns.unwrap_or(0.0);
        }
        io.sync.write(0, &zero)?;
        Ok((t[1] - t[0]) / 1e3 / n.max(1) as f64)
    }

    /// Whether a layer dispatch gave up on a grid barrier (its workgroups were not all resident):
    /// reads the error word of `sync` after the work completed (through staging where it is not
    /// host visible).
    pub fn decode_layer_failed(&self, sync: &Buffer) -> Result<bool> {
        let mut w = [0u8; 4];
        sync.read(64 * 4, &mut w)?;
        Ok(u32::from_le_bytes(w) != 0)
    }
}
