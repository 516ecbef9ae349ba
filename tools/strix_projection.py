#!/usr/bin/env python3
"""A small model of where this engine's time goes, fitted on the H200 and H100 figures of
docs/perf.md and evaluated for the Radeon 8060S (Strix Halo). Prints the markdown tables of
docs/perf.md, "Strix Halo projection". No inputs: every number it starts from is below, with
where it comes from. Run: python3 tools/strix_projection.py

The model, per quantity:
  decode token   = stages * t_dep + (weight bytes + KV bytes(ctx, type)) / (eta * BW)
  prefill token  = compute_scale * (int8 ops / R_mm + t_other) + bytes per token / (eta * BW)
  short prompt   = max(compute, bytes of every expert the prompt routes to / (eta * BW))
  Talker frame   = barriers * t_dep + bytes per frame / (eta * BW)
  first audio    = Thinker prefill + first token + Talker prompt + first frame + first Code2Wav window
t_dep is the cost of one dependent stage (barrier + launch + drain), eta the share of the measured
read ceiling that streaming kernels reach, R_mm our int8 matrix x matrix kernel's rate.
"""
GB = 1e9

# ---- The model (spec: ../shared/docs/qwen3-omni-spec.md, thinker/talker text configs) ----------
Q8 = 34 / 32  # bytes per weight, Q8_0
L, H, NQ, NKV, HD, FF, E, TOPK, VOCAB = 48, 2048, 32, 4, 128, 768, 128, 8, 152064
attn_params = H * NQ * HD + 2 * H * NKV * HD + NQ * HD * H
expert_params = 3 * FF * H
layer_active = attn_params + TOPK * expert_params + H * E
thinker_active = L * layer_active  # per token in a prefill (lm_head only for the last token)
expert_bytes = L * E * expert_params * Q8  # every expert of every layer
dense_bytes = (L * (attn_params + H * E) + 2 * VOCAB * H) * Q8
W_DECODE = 3.27 * GB  # weight bytes one decode token reads (docs/perf.md, bench-thinker)
KV_ELEMS_PER_POS = L * 2 * NKV * HD  # K and V of every layer
KV_BYTES = {"f32": 4.0, "f16": 2.0, "q8_0": 34 / 32}
# Talker (20 layers, 128 experts of 384, top-6, hidden 1024) and per-frame figures measured on
# the H200 (docs/perf.md, "Talker, code predictor, Code2Wav").
T_L, T_H, T_FF, T_E, T_TOPK = 20, 1024, 384, 128, 6
talker_expert_bytes = T_L * T_E * 3 * T_FF * T_H * Q8
talker_dense_bytes = 0.35 * GB  # attention, shared expert (768), projections: synthetic file
FRAME_BYTES = 1.685 * GB  # Talker step 315 MB + code predictor 1,370 MB per 80 ms frame
FRAME_BARRIERS = 167 + 507
C2W_WINDOW_MS_H200 = (13.0, 17.9)  # first / later 4-frame window, H200, latency-bound kernels
DECODE_STAGES = 294  # dependent stages (barriers) per Thinker token (docs/perf.md, session 5)

# ---- Measured (docs/perf.md; each figure with the ceiling of its own run) ---------------------
H200 = dict(name="H200", bw=4558 * GB, decode512=331.0, decode4096=298.2, prefill512=2120,
            sms=132, lanes=128, ghz=1.98)
H100 = dict(name="H100", bw=3184 * GB, decode512=302.8, decode4096=272.6, prefill512=1996,
            sms=132, lanes=128, ghz=1.98)
H200_16K = (286.0, 208.0)  # decode at context 512 and 16,384 in one run, f32 cache (issue 18)
R_MM_H200 = 23e12  # int8 ops/s of mm_q8_0p_q8_1 at 512 tokens, kernel bench (21.0-24.7)
ETA = 0.90  # streaming kernels: 82-97% of the ceiling at big shapes (kernel table, H200)
FIRST_AUDIO_H200 = dict(thinker=50.0, talker_prompt=15.0, total=93.0)  # bench-speech, 40-token prompt

# ---- Strix Halo (../shared/docs/strix-halo.md) -------------------------------------------------
STRIX = dict(name="Radeon 8060S", bw=212 * GB, cus=40, lanes=64, ghz=2.9)
LLAMA_STRIX = dict(decode=(57, 58.5), prefill=(823, 1146))


def kv_bytes(ctx, kind):
    return ctx * KV_ELEMS_PER_POS * KV_BYTES[kind]


def fit_t_dep(card):
    """t_dep from a card's decode at context 512 with eta fixed: the rest of the token's time
    spread over its dependent stages."""
    t = 1 / card["decode512"]
    return (t - (W_DECODE + kv_bytes(512, "f32")) / (ETA * card["bw"])) / DECODE_STAGES


def fit_eta_kv():
    """Share of the ceiling the H200's decode attention reaches on the f32 cache (16k vs 512)."""
    dt = 1 / H200_16K[1] - 1 / H200_16K[0]
    return (kv_bytes(16384, "f32") - kv_bytes(512, "f32")) / dt / H200["bw"]


def prefill_fit(card):
    """Per-token prefill time split into int8 matmul, bytes and the rest (routing, grouping,
    norms, Q8_1 quantisation, attention, launch gaps), at 512 tokens."""
    t = 1 / card["prefill512"]
    mm = 2 * thinker_active / R_MM_H200
    byts = (expert_bytes + dense_bytes) / 512 + 10e6  # weights per chunk / 512 + activations
    return dict(mm=mm, bytes=byts, other=t - mm - byts / (ETA * card["bw"]))


def distinct_share(rows, topk, experts):
    """Expected share of the experts a prompt of `rows` rows routes to (uniform routing)."""
    return 1 - (1 - topk / experts) ** rows


def project(t_dep_us, compute_scale, eta=ETA, card=STRIX, residual_scale=None):
    """The model on `card` (compute `compute_scale` times slower than the H200's; the H200's
    unexplained short-prompt time scaled by `residual_scale`, by default as t_dep)."""
    bw = eta * card["bw"]
    t_dep = t_dep_us * 1e-6
    out = {}
    for ctx in (512, 4096, 16384, 32768):
        for kind in ("f32", "f16", "q8_0"):
            t = DECODE_STAGES * t_dep + (W_DECODE + kv_bytes(ctx, kind)) / bw
            out[("decode", ctx, kind)] = 1 / t
    pf = prefill_fit(H200)
    t_pf = compute_scale * (pf["mm"] + pf["other"]) + pf["bytes"] / bw
    out["prefill512"] = 1 / t_pf
    # A 40-token prompt (bench-speech): compute for 40 tokens or the bytes of every expert it
    # touches, whichever is longer.
    share = distinct_share(40, TOPK, E)
    pre40 = max(40 * t_pf, (share * expert_bytes + dense_bytes) / bw)
    # What the model leaves unexplained of the H200's measured Thinker part of first audio
    # (prefill of 40 tokens + first token): fitted there, scaled here.
    if residual_scale is None:
        residual_scale = t_dep_us / (fit_t_dep(H200) * 1e6)
    if residual_scale:
        pre40 += residual_scale * short_prompt_residual()
    g0 = 1 / out[("decode", 512, "f16")]
    t_share = distinct_share(46, T_TOPK, T_E)
    talker_prompt = (t_share * talker_expert_bytes + talker_dense_bytes) / bw
    frame = FRAME_BARRIERS * t_dep + FRAME_BYTES / bw
    # Code2Wav windows: latency-bound small kernels; between "per-CU speed" (clock ratio) and
    # "whole-GPU compute" (compute_scale) of the H200's times.
    c2w_first = C2W_WINDOW_MS_H200[0] * 1e-3 * compute_scale
    c2w_window = C2W_WINDOW_MS_H200[1] * 1e-3 * compute_scale
    out["first_audio"] = pre40 + g0 + talker_prompt + frame + c2w_first
    out["first_audio_parts"] = (pre40, g0, talker_prompt, frame, c2w_first)
    # Speech: per 80 ms frame one Talker frame, a quarter of a 4-frame Code2Wav window, and
    # while the Thinker still generates 0.64 of its tokens (64 tokens over 100 frames).
    out["rtf_thinker"] = (frame + c2w_window / 4 + 0.64 * g0) / 0.080
    out["rtf_after"] = (frame + c2w_window / 4) / 0.080
    out["frame_ms"] = frame * 1e3
    return out


def short_prompt_residual():
    """Measured minus modelled Thinker prefill + first token of a 40-token prompt on the H200."""
    m = project(fit_t_dep(H200) * 1e6, 1.0, ETA, H200, residual_scale=0.0)
    return FIRST_AUDIO_H200["thinker"] * 1e-3 - sum(m["first_audio_parts"][:2])


def lane_rate(c, units, lanes):
    return c[units] * c[lanes] * c["ghz"] * 1e9


def main():
    print("Fit on the measured cards (eta fixed at %.2f):" % ETA)
    for c in (H200, H100):
        print("  %s: t_dep = %.2f us per dependent stage (%d stages per token)"
              % (c["name"], fit_t_dep(c) * 1e6, DECODE_STAGES))
    print("  H200 decode attention on the f32 cache: %.0f%% of the read ceiling" % (100 * fit_eta_kv()))
    for c in (H200, H100):
        pf = prefill_fit(c)
        print("  %s prefill per token: int8 matmul %.3f ms, bytes %.3f ms, other %.3f ms"
              % (c["name"], pf["mm"] * 1e3, pf["bytes"] / (ETA * c["bw"]) * 1e3, pf["other"] * 1e3))
    print("  Thinker: %.2f B params active per prefill token, experts %.1f GB, dense %.1f GB"
          % (thinker_active / 1e9, expert_bytes / GB, dense_bytes / GB))
    print("  a 40-token prompt routes to %.0f%% of the experts, the Talker's 46 rows to %.0f%%"
          % (100 * distinct_share(40, TOPK, E), 100 * distinct_share(46, T_TOPK, T_E)))
    # Compute of the 8060S against the H200: lanes x clock (DP4A and plain ALU both scale so);
    # RDNA 3.5's dual issue (VOPD) could double it, so the optimistic case halves the scale.
    h = project(fit_t_dep(H200) * 1e6, 1.0, ETA, H200, residual_scale=0.0)
    t4096 = (1 / H200["decode512"] + (kv_bytes(4096, "f32") - kv_bytes(512, "f32")) / (fit_eta_kv() * H200["bw"]))
    print("  check on the H200: decode at 4096 (f32, attention at the fitted share) %.1f tok/s, measured %.1f;"
          % (1 / t4096, H200["decode4096"]))
    print("    Talker frame %.1f ms, measured 5.9; Thinker part of first audio %.0f ms, measured %.0f"
          " (the %.0f ms the model leaves out is carried to the 8060S scaled like t_dep)"
          % (h["frame_ms"], sum(h["first_audio_parts"][:2]) * 1e3, FIRST_AUDIO_H200["thinker"],
             short_prompt_residual() * 1e3))
    lane_ratio = lane_rate(H200, "sms", "lanes") / lane_rate(STRIX, "cus", "lanes")
    cases = [("optimistic", 4.0, lane_ratio / 2, 0.95), ("central", 6.0, lane_ratio * 0.75, ETA),
             ("pessimistic", 10.0, lane_ratio, 0.85)]
    print("  H200 / 8060S lanes x clock: %.1f" % lane_ratio)
    res = [(n, td, cs, eta, project(td, cs, eta)) for n, td, cs, eta in cases]
    print()
    hdr = "| Radeon 8060S, 212 GB/s | " + " | ".join(
        "%s (t_dep %g us, compute %.1fx slower, eta %.2f)" % (n, td, cs, eta) for n, td, cs, eta, _ in res)
    print(hdr + " | llama.cpp measured there |")
    print("| --- |" + " ---: |" * (len(res) + 1))

    def row(label, f, ref=""):
        print("| %s | %s | %s |" % (label, " | ".join(f(r) for *_, r in res), ref))

    for ctx in (512, 4096, 16384, 32768):
        for kind in ("f32", "f16", "q8_0"):
            ref = "%g–%g tok/s (tg128)" % LLAMA_STRIX["decode"] if (ctx, kind) == (512, "f16") else ""
            row("decode tok/s, context %d, %s cache" % (ctx, kind),
                lambda r, ctx=ctx, kind=kind: "%.1f" % r[("decode", ctx, kind)], ref)
    row("prefill tok/s, 512 tokens", lambda r: "%.0f" % r["prefill512"],
        "%d–%d tok/s (pp512, Q8_0 / Q6_K)" % LLAMA_STRIX["prefill"])
    row("Talker + code predictor frame (80 ms of audio)", lambda r: "%.1f ms" % r["frame_ms"], "no speech out")
    row("request → first audio, 40-token prompt", lambda r: "%.0f ms" % (r["first_audio"] * 1e3), "")
    row("  of which: prefill / first token / Talker prompt / frame / Code2Wav window",
        lambda r: " / ".join("%.0f" % (x * 1e3) for x in r["first_audio_parts"]), "")
    row("speech real-time factor, Thinker still generating", lambda r: "%.2f" % r["rtf_thinker"], "")
    row("speech real-time factor, after the Thinker is done", lambda r: "%.2f" % r["rtf_after"], "")


if __name__ == "__main__":
    main()
