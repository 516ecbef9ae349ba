//! Per-pair expert launchers (decode, and prefill without grouping): routing, the shared-expert
//! gate, gate/up (alone or fused with routing and the norm) and down.

use super::*;
use crate::kernels::names;

impl Kernels {
    /// Routing for `n_tokens` rows of `n_experts` router logits (f32): softmax in f32, the `k`
    /// (1..=8) largest probabilities (ties → lower expert index) in descending order, then, with
    /// `renormalize` (norm_topk_prob), each divided by their sum. Writes `ids` (u32) and `weights`
    /// (f32), both `[n_tokens, k]`.
    pub fn moe_route<'a>(&self, rec: &mut Recorder<'a>, args: MoeRoute<'a>) -> Result<()> {
        let MoeRoute { logits, ids, weights, n_experts, k, n_tokens, renormalize } = args;
        let name = names::MOE_ROUTE_F32;
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
    pub fn moe_shared_gate<'a>(&self, rec: &mut Recorder<'a>, args: MoeSharedGate<'a>) -> Result<()> {
        let MoeSharedGate { x, w_gate, ids, weights, hidden, n_tokens } = args;
        let name = names::MOE_SHARED_GATE_F32;
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

    /// h[t, j, :] = silu(gate_e · x[t]) ⊙ (up_e · x[t]) for e = ids[t, j], every token t <
    /// `n_tokens` and slot j < `k`, in one dispatch; `h` is `[n_tokens, k, gate.rows]` f32. The ids
    /// are read on the GPU. On the int-dot path x (`[n_tokens, gate.cols]`) is quantised to Q8_1
    /// into `scratch` first; it is unused on the float path.
    pub fn moe_gate_up<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: MoeGateUp<'a>,
        scratch: Option<&'a Q8_1Scratch>,
    ) -> Result<()> {
        self.moe_gate_up_impl(rec, args, scratch, true)
    }

    /// Like [`Kernels::moe_gate_up`] with `scratch` already holding x quantised by
    /// [`Kernels::quantize_q8_1`] (e.g. shared with the router); the float path ignores `scratch`.
    pub fn moe_gate_up_prequantized<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: MoeGateUp<'a>,
        scratch: &'a Q8_1Scratch,
    ) -> Result<()> {
        self.moe_gate_up_impl(rec, args, Some(scratch), false)
    }

    fn moe_gate_up_impl<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: MoeGateUp<'a>,
        scratch: Option<&'a Q8_1Scratch>,
        quantize: bool,
    ) -> Result<()> {
        let MoeGateUp { gate, up, x, ids, k, n_tokens, h } = args;
        let intdot = self.matvec_path() == MatvecPath::IntDot;
        let name = if intdot { names::MOE_GATE_UP_Q8_0P_Q8_1 } else { names::MOE_GATE_UP_Q8_0P_F32 };
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
    pub fn moe_route_gate_up<'a>(&self, rec: &mut Recorder<'a>, args: MoeRouteGateUp<'a>) -> Result<()> {
        self.moe_route_gate_up_norm(rec, args, None)
    }

    /// [`Kernels::moe_route_gate_up`] with the layer's RMSNorm fused in front: with `norm =
    /// Some((w, eps))`, x is the raw residual stream and each workgroup normalises it itself
    /// (one `rms_norm` dispatch and barrier fewer per MoE block).
    pub fn moe_route_gate_up_norm<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: MoeRouteGateUp<'a>,
        norm: Option<(&'a Buffer, f32)>,
    ) -> Result<()> {
        self.moe_route_gate_up_impl(rec, args, norm, false)
    }

    /// [`Kernels::moe_route_gate_up_norm`] for one token (`args.n_tokens` is taken as 1) with the
    /// norm always fused; with
    /// `folded`, the router logits were computed without the norm's RMS factor (by
    /// [`Kernels::moe_router_fold`]) and each workgroup scales them by 1/rms(x), which it computes
    /// for the norm anyway.
    pub fn moe_route_gate_up_decode<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: MoeRouteGateUp<'a>,
        folded: bool,
        norm: (&'a Buffer, f32),
    ) -> Result<()> {
        self.moe_route_gate_up_impl(rec, MoeRouteGateUp { n_tokens: 1, ..args }, Some(norm), folded)
    }

    fn moe_route_gate_up_impl<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: MoeRouteGateUp<'a>,
        norm: Option<(&'a Buffer, f32)>,
        folded: bool,
    ) -> Result<()> {
        let MoeRouteGateUp { logits, gate, up, x, ids, weights, k, n_tokens, renormalize, h } = args;
        let intdot = self.matvec_path() == MatvecPath::IntDot;
        let name = match (intdot, norm.is_some()) {
            (true, false) => names::MOE_ROUTE_GATE_UP_Q8_0P_Q8_1,
            (false, false) => names::MOE_ROUTE_GATE_UP_Q8_0P_F32,
            (true, true) => names::MOE_ROUTE_GATE_UP_NORM_Q8_0P_Q8_1,
            (false, true) => names::MOE_ROUTE_GATE_UP_NORM_Q8_0P_F32,
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
    pub fn moe_down<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: MoeDown<'a>,
        scratch: Option<&'a Q8_1Scratch>,
    ) -> Result<()> {
        let intdot = self.matvec_path() == MatvecPath::IntDot;
        self.moe_down_impl(rec, args, scratch, intdot)
    }

    /// [`Kernels::moe_down`] on the float path whatever [`Kernels::matvec_path`] says (h read as
    /// f32, no quantisation): the more exact down projection. On an H200 it is the slower one
    /// (Thinker shape: 5.1 against 4.5 µs; decode MoE chain 39.1 against 34.3 µs;
    /// tests/moe.rs `moe_decode_timing`).
    pub fn moe_down_float<'a>(&self, rec: &mut Recorder<'a>, args: MoeDown<'a>) -> Result<()> {
        self.moe_down_impl(rec, args, None, false)
    }

    fn moe_down_impl<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: MoeDown<'a>,
        scratch: Option<&'a Q8_1Scratch>,
        intdot: bool,
    ) -> Result<()> {
        let MoeDown { down, h, ids, weights, k, n_tokens, residual, y } = args;
        let fused = intdot && k as u64 * down.cols as u64 <= MOE_FUSED_MAX_H;
        let name = match (intdot, fused) {
            (true, true) => names::MOE_DOWN_Q8_0P_Q8_1_FUSED,
            (true, false) => names::MOE_DOWN_Q8_0P_Q8_1,
            _ => names::MOE_DOWN_Q8_0P_F32,
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
}
