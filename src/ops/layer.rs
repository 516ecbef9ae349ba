//! One decoder layer of a decode step as one persistent dispatch (`decode_layer.comp`): the six
//! stages of the fused decode path separated by grid barriers instead of dispatch boundaries.
//!
//! The grid barrier needs every workgroup resident at once, which Vulkan does not promise: the
//! launcher uses a workgroup count the device runs concurrently in practice (two per SM / CU where
//! the driver reports the count, one on CPU devices), `QWEN3VK_LAYER_GROUPS` overrides it, and a
//! barrier that waits too long sets an error word instead of hanging ([`Kernels::decode_layer_failed`]).

use bytemuck::{Pod, Zeroable};
use vk_runtime::{Binding, Buffer, DeviceKind, Recorder, Result, SpecConst};

use super::moe::{ExpertMatrix, MOE_MAX_K, MOE_ROUTE_MAX_EXPERTS};
use super::{kerr, push_bytes, Matrix, WType};
use crate::kernels::{Kernels, MatvecPath};
use crate::layout::PlanarLayout;

/// Invocations per workgroup.
const LAYER_WG: u32 = 256;
/// Keys per attention work item.
const LAYER_CHUNK: u32 = 128;
/// Most query heads per KV head.
const LAYER_MAX_G: u32 = 16;
/// Polls of the barrier word before a workgroup gives up (seconds on any GPU; a bad launch, not
/// a slow one, is what trips it).
const SPIN_CAP: u32 = 1 << 22;
/// u32 words of the sync buffer before the per-KV-head attention counters.
const SYNC_HEAD: u64 = 8;

/// The weights of one decoder layer (Thinker shape: GQA attention with per-head q/k RMSNorm and
/// (M)RoPE, top-k routed MoE without a shared expert).
#[derive(Clone, Copy)]
pub struct LayerWeights<'a> {
    pub q: Matrix<'a>,
    pub k: Matrix<'a>,
    pub v: Matrix<'a>,
    pub o: Matrix<'a>,
    /// f32 `[n_experts, hidden]`.
    pub router: Matrix<'a>,
    pub gate: ExpertMatrix<'a>,
    pub up: ExpertMatrix<'a>,
    pub down: ExpertMatrix<'a>,
    pub attn_norm: &'a Buffer,
    pub ffn_norm: &'a Buffer,
    pub q_norm: &'a Buffer,
    pub k_norm: &'a Buffer,
}

/// Shapes and constants of the layer.
#[derive(Debug, Clone, Copy)]
pub struct LayerShape {
    pub hidden: u32,
    pub n_heads: u32,
    pub n_kv: u32,
    pub head_dim: u32,
    pub top_k: u32,
    pub norm_topk: bool,
    pub eps: f32,
    pub theta: f32,
    pub mrope_section: [u32; 3],
}

/// The step's state the layer reads and writes.
pub struct LayerState<'a> {
    /// Residual stream `[hidden]`, updated in place.
    pub x: &'a Buffer,
    /// [`Kernels::decode_layer_act_bytes`] of scratch.
    pub act: &'a Buffer,
    pub k_cache: &'a Buffer,
    pub v_cache: &'a Buffer,
    pub kv_cap: u32,
    /// u32 `[3]`: the token's (t, h, w) positions.
    pub pos: &'a Buffer,
    /// u32 `[1]`: cache entries before this token (the token is stored there).
    pub cache_len: &'a Buffer,
    /// [`Kernels::decode_layer_sync_bytes`], zero before the first use; left ready for the next.
    pub sync: &'a Buffer,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushLayer {
    h: u32,
    nh: u32,
    nkv: u32,
    kv_cap: u32,
    nch: u32,
    mi: u32,
    ne: u32,
    topk: u32,
    flags: u32,
    eps: f32,
    theta: f32,
    section_h: u32,
    section_w: u32,
    scale: f32,
    gu_stride16: u32,
    gu_doff2: u32,
    dn_stride16: u32,
    dn_doff2: u32,
    spin_cap: u32,
}

fn act_floats(s: &LayerShape, n_experts: u32, moe_inter: u32, kv_cap: u32) -> u64 {
    let r4 = |v: u64| v.div_ceil(4) * 4;
    let (nh, nkv, hd) = (s.n_heads as u64, s.n_kv as u64, s.head_dim as u64);
    let nch = kv_cap.div_ceil(LAYER_CHUNK) as u64;
    2 * nh * hd + 2 * nkv * hd + r4(n_experts as u64) + r4(s.top_k as u64 * moe_inter as u64) + nh * nch * hd + nh * nch * 2
}

impl Kernels {
    /// Workgroups of the persistent layer kernel on this device, or `None` where it should not
    /// be used (the device does not report its SM / CU count and `QWEN3VK_LAYER_GROUPS` is unset).
    pub fn decode_layer_groups(&self) -> Option<u32> {
        if let Some(n) = self.layer_groups {
            return Some(n);
        }
        if let Some(n) = std::env::var("QWEN3VK_LAYER_GROUPS").ok().and_then(|v| v.trim().parse::<u32>().ok()) {
            return (n > 0).then_some(n);
        }
        let caps = self.gpu().caps();
        // lavapipe may run several workgroups of a dispatch as coroutines of one thread sharing
        // one copy of the shared memory: one workgroup there.
        if caps.kind == DeviceKind::Cpu {
            return Some(1);
        }
        (caps.compute_units > 0).then(|| caps.compute_units * 2)
    }

    /// Sets the persistent layer kernel's workgroup count (tests, tuning); `None` restores the
    /// device default.
    pub fn set_decode_layer_groups(&mut self, n: Option<u32>) {
        self.layer_groups = n.map(|n| n.max(1));
    }

    /// Tests: polls of the grid-barrier word before a workgroup gives up (`None`: the default,
    /// seconds on any GPU). 0 makes any wait fail, to exercise the error path.
    pub fn set_decode_layer_spin_cap(&mut self, polls: Option<u32>) {
        self.layer_spin_cap = polls;
    }

    /// Bytes of the layer kernel's activation scratch for a cache of `kv_cap` positions.
    pub fn decode_layer_act_bytes(&self, s: &LayerShape, n_experts: u32, moe_inter: u32, kv_cap: u32) -> u64 {
        act_floats(s, n_experts, moe_inter, kv_cap) * 4
    }

    /// Bytes of the layer kernel's sync words (zero them once before the first use).
    pub fn decode_layer_sync_bytes(&self, n_kv: u32) -> u64 {
        (SYNC_HEAD + n_kv as u64) * 4
    }

    /// Whether the layer kernel runs this shape on this device (and why not).
    pub fn decode_layer_supported(&self, w: &LayerWeights, s: &LayerShape, kv_cap: u32) -> Result<()> {
        self.layer_geometry(w, s, kv_cap).map(|_| ())
    }

    fn layer_geometry(&self, w: &LayerWeights, s: &LayerShape, kv_cap: u32) -> Result<(&'static str, [SpecConst; 5])> {
        let intdot = self.matvec_path() == MatvecPath::IntDot;
        let name = if intdot { "decode_layer_q8_0p_q8_1" } else { "decode_layer_q8_0p_f32" };
        let caps = self.gpu().caps();
        let (h, hd) = (s.hidden, s.head_dim);
        let qd = s.n_heads * hd;
        let kvd = s.n_kv * hd;
        for (m, rows, cols, what) in [
            (&w.q, qd, h, "q"),
            (&w.k, kvd, h, "k"),
            (&w.v, kvd, h, "v"),
            (&w.o, h, qd, "o"),
        ] {
            m.check(name)?;
            if m.wtype != WType::Q8_0Planar || m.rows != rows || m.cols != cols {
                return Err(kerr(name, format!("{what}: need planar Q8_0 [{rows}, {cols}], got {:?} [{}, {}]", m.wtype, m.rows, m.cols)));
            }
        }
        let (ne, mi) = (w.gate.n_experts, w.gate.rows);
        if w.router.wtype != WType::F32 || w.router.rows != ne || w.router.cols != h {
            return Err(kerr(name, format!("router: need f32 [{ne}, {h}]")));
        }
        for (e, rows, cols, what) in [(&w.gate, mi, h, "gate"), (&w.up, mi, h, "up"), (&w.down, h, mi, "down")] {
            e.check(name)?;
            if e.n_experts != ne || e.rows != rows || e.cols != cols {
                return Err(kerr(name, format!("{what} experts: need [{ne}, {rows}, {cols}]")));
            }
        }
        super::attention::check_heads(name, s.n_heads, s.n_kv, hd)?;
        super::attention::check_rope(name, hd, s.theta, s.mrope_section)?;
        let g = s.n_heads / s.n_kv;
        let wg = LAYER_WG.min(caps.max_workgroup_invocations);
        if hd % 4 != 0 || hd > wg || g > LAYER_MAX_G || wg % (hd / 4) != 0 || wg % g != 0 {
            return Err(kerr(name, format!("head_dim {hd} with {g} query heads per KV head: needs head_dim a multiple of 4 dividing into {wg} invocations, at most {LAYER_MAX_G} heads per KV head")));
        }
        if h % 32 != 0 || qd % 32 != 0 || mi % 32 != 0 || kvd % 2 != 0 {
            return Err(kerr(name, format!("hidden {h}, q width {qd}, expert width {mi}: need multiples of 32")));
        }
        if s.top_k == 0 || s.top_k > MOE_MAX_K || ne == 0 || ne > MOE_ROUTE_MAX_EXPERTS || s.top_k > ne {
            return Err(kerr(name, format!("top-{} of {ne} experts: need 1 ≤ k ≤ {MOE_MAX_K}, experts ≤ {MOE_ROUTE_MAX_EXPERTS}", s.top_k)));
        }
        if kv_cap == 0 {
            return Err(kerr(name, "a cache of 0 positions".into()));
        }
        // Shared memory: the activation staging plus the attention and routing arrays.
        let kh = s.top_k * mi;
        let words = if intdot {
            [h / 4 + h / 32, qd / 4 + qd / 32, kh / 4 + kh / 32, h].into_iter().max().unwrap_or(h)
        } else {
            h.max(qd).max(kh)
        };
        let chunk = LAYER_CHUNK.min(wg);
        let attn = g * hd * 4 + g * chunk * 4 + wg * 4 + 2 * g * 4 + wg * 16 + hd * 4 + 4;
        let shared = words * 4 + attn + wg * 4 + MOE_ROUTE_MAX_EXPERTS * 4 + MOE_MAX_K * 8;
        if shared > caps.max_shared_memory {
            return Err(kerr(name, format!("needs {shared} bytes of shared memory, the device has {}", caps.max_shared_memory)));
        }
        let spec = [
            SpecConst { id: 0, value: wg },
            SpecConst { id: 1, value: hd },
            SpecConst { id: 2, value: g },
            SpecConst { id: 3, value: chunk },
            SpecConst { id: 4, value: words },
        ];
        Ok((name, spec))
    }

    /// Records one decoder layer of a replayable decode step: x → x, the token's key and value
    /// stored at cache_len[0], as the fused decode kernels compute it.
    pub fn decode_layer<'a>(&self, rec: &mut Recorder<'a>, w: &LayerWeights<'a>, s: &LayerShape, st: &LayerState<'a>) -> Result<()> {
        let (name, spec) = self.layer_geometry(w, s, st.kv_cap)?;
        let groups = self
            .decode_layer_groups()
            .ok_or_else(|| kerr(name, "this device does not report its compute units; set QWEN3VK_LAYER_GROUPS".into()))?;
        if groups > self.gpu().caps().max_workgroup_count[0] {
            return Err(kerr(name, format!("{groups} workgroups exceed the device's grid")));
        }
        let chunk = spec[3].value;
        let nch = st.kv_cap.div_ceil(chunk);
        let (h, hd) = (s.hidden as u64, s.head_dim as u64);
        let gl = w.gate.layout();
        let dl = w.down.layout();
        let push = PushLayer {
            h: s.hidden,
            nh: s.n_heads,
            nkv: s.n_kv,
            kv_cap: st.kv_cap,
            nch,
            mi: w.gate.rows,
            ne: w.gate.n_experts,
            topk: s.top_k,
            flags: s.norm_topk as u32,
            eps: s.eps,
            theta: s.theta,
            section_h: s.mrope_section[1],
            section_w: s.mrope_section[2],
            scale: 1.0 / (s.head_dim as f32).sqrt(),
            gu_stride16: (gl.stride / 16) as u32,
            gu_doff2: (gl.matrix.d_offset / 2) as u32,
            dn_stride16: (dl.stride / 16) as u32,
            dn_doff2: (dl.matrix.d_offset / 2) as u32,
            spin_cap: self.layer_spin_cap.unwrap_or(SPIN_CAP),
        };
        let planar = |m: &Matrix<'a>| {
            let l = PlanarLayout::new(m.rows as u64, m.cols as u64);
            [Binding::read(m.buf).range(m.offset, l.qs_bytes), Binding::read(m.buf).range(m.offset + l.d_offset, l.d_bytes)]
        };
        let act = self.decode_layer_act_bytes(s, w.gate.n_experts, w.gate.rows, st.kv_cap);
        let cache = st.kv_cap as u64 * s.n_kv as u64 * hd * 4;
        let [gq, gd] = w.gate.bindings();
        let [uq, ud] = w.up.bindings();
        let [dq, dd] = w.down.bindings();
        let mut b = Vec::with_capacity(26);
        b.extend(planar(&w.q));
        b.extend(planar(&w.k));
        b.extend(planar(&w.v));
        b.extend(planar(&w.o));
        b.push(Binding::read(w.router.buf).range(w.router.offset, w.router.bytes()));
        b.extend([gq, gd, uq, ud, dq, dd]);
        b.push(Binding::read(w.attn_norm).range(0, h * 4));
        b.push(Binding::read(w.ffn_norm).range(0, h * 4));
        b.push(Binding::read(w.q_norm).range(0, hd * 4));
        b.push(Binding::read(w.k_norm).range(0, hd * 4));
        b.push(Binding::read_write(st.x).range(0, h * 4));
        b.push(Binding::read_write(st.act).range(0, act));
        b.push(Binding::read_write(st.k_cache).range(0, cache));
        b.push(Binding::read_write(st.v_cache).range(0, cache));
        b.push(Binding::read(st.pos).range(0, 12));
        b.push(Binding::read(st.cache_len).range(0, 4));
        b.push(Binding::read_write(st.sync).range(0, self.decode_layer_sync_bytes(s.n_kv)));
        let p = self.pipeline::<PushLayer>(name, &spec)?;
        rec.dispatch(&p, &b, push_bytes(&push), [groups, 1, 1])
    }

    /// Whether a layer dispatch gave up on a grid barrier (its workgroups were not all resident):
    /// reads word 2 of `sync` after the work completed (through staging where it is not host visible).
    pub fn decode_layer_failed(&self, sync: &Buffer) -> Result<bool> {
        let mut w = [0u8; 12];
        sync.read(0, &mut w)?;
        Ok(u32::from_le_bytes([w[8], w[9], w[10], w[11]]) != 0)
    }
}
