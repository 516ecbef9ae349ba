//! Prefill launchers grouped by expert: `moe_group` and the grouped gate/up and down (with the
//! weighted combine).

use super::*;
use crate::kernels::names;

impl Kernels {
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
        let name = names::MOE_GROUP_U32;
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
    fn moe_grouped<'a>(
        &self,
        rec: &mut Recorder<'a>,
        name: &'static str,
        mats: &[ExpertMatrix<'a>],
        act: [Binding<'a>; 2],
        intdot: bool,
        args: GroupedOut<'a>,
    ) -> Result<()> {
        let GroupedOut { k, n_pairs, offsets, order, out } = args;
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
    pub fn moe_gate_up_grouped<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: MoeGateUpGrouped<'a>,
        scratch: Option<&'a Q8_1Scratch>,
    ) -> Result<()> {
        let MoeGateUpGrouped { gate, up, x, k, n_tokens, offsets, order, h } = args;
        let intdot = self.matvec_path() == MatvecPath::IntDot;
        let name = if intdot { names::MOE_GATE_UP_GROUPED_Q8_0P_Q8_1 } else { names::MOE_GATE_UP_GROUPED_Q8_0P_F32 };
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
        self.moe_grouped(
            rec,
            name,
            &[gate, up],
            act,
            intdot,
            GroupedOut { k, n_pairs: n_tokens as u64 * k as u64, offsets, order, out: h },
        )
    }

    /// Prefill down projection grouped by expert: o[p, :] = down_e · h[p, :] (`o` scratch of
    /// `[n_tokens·k, down.rows]` f32), then y[t, :] = residual[t, :] (if given; may be y) +
    /// Σ_j weights[t, j] · o[t·k + j, :]. On the int-dot path h is quantised into `scratch` first.
    pub fn moe_down_grouped<'a>(
        &self,
        rec: &mut Recorder<'a>,
        args: MoeDownGrouped<'a>,
        scratch: Option<&'a Q8_1Scratch>,
    ) -> Result<()> {
        let MoeDownGrouped { down, h, weights, k, n_tokens, offsets, order, o, residual, y } = args;
        let intdot = self.matvec_path() == MatvecPath::IntDot;
        let name = if intdot { names::MOE_DOWN_GROUPED_Q8_0P_Q8_1 } else { names::MOE_DOWN_GROUPED_Q8_0P_F32 };
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
        self.moe_grouped(rec, name, &[down], act, intdot, GroupedOut { k, n_pairs: pairs, offsets, order, out: o })?;
        let cname = names::MOE_COMBINE_F32;
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
            crate::ops::stride_grid(total, wg),
        )
    }
}
