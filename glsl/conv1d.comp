#version 450
// Causal conv1d / transposed conv1d / Linear as one tiled kernel over time-major activations
// (`[rows, channels]` row-major), f32 weights repacked to W'[phase][tap][cout][cin]:
//   for input row i (0 ≤ i < n_in) and phase p (0 ≤ p < s), output row t = i·s + p:
//     acc = bias[co] + Σ_u Σ_ci W'[p][u][co][ci] · x[(x_off + i − u·d)·cin + ci]
//   rows t < skip are dropped; row t goes to y row y_off + t − skip.
// A stride-1 causal conv of kernel k and dilation d is s = 1, m = k taps, W'[0][u] = W[:, :, k−1−u],
// with x_off ≥ (k−1)·d history rows before input 0. A transposed conv with kernel m·s and stride s
// is W'[p][u][co][ci] = Wt[ci][co][p + u·s], d = 1 (its k − s left-trimmed samples are `skip`).
// A Linear is s = m = d = 1. Q8_0P variants: the same with planar Q8_0 weights (Linears only).
// Epilogue (mode bits): 1 bias, 2 GELU (erf), 4 residual y = y_old + v, 8 scaled residual
// y = y_old + scale[co]·v, 16 clamp to [−1, 1].
// Bindings: 0 x, 1 w, 2 bias, 3 scale, 4 y (read-write for the residual modes).
// Dispatch: (ceil(cout/64), ceil(n_in/64), s). 256 invocations, each 4×4 outputs; no subgroup ops.
// NARROW variant (cout ≤ 16, e.g. the last decoder blocks and the final conv): one invocation per
// output row computing all cout channels; dispatch (ceil(n_in·s/64), 1, 1) of 64 invocations.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"

#ifdef NARROW
layout(local_size_x = 64) in;
#else
layout(local_size_x = 16, local_size_y = 16) in;
#endif
layout(push_constant) uniform Push {
    uint n_in; uint cin; uint cout; uint s;
    uint m; uint d; uint x_off; uint y_off;
    uint skip; uint mode;
} pc;

#ifdef Q8_0P
// Linear only (s = m = d = 1) with planar Q8_0 weights [cout, cin]: quants row-major (int8 in
// 32-bit words), then f16 scales per 32 (separate bindings). Bindings: 0 x, 1 qs, 2 d, 3 bias,
// 4 scale, 5 y.
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer QS { uint qsw[]; };
layout(std430, binding = 2) readonly buffer D { uint16_t d16[]; };
layout(std430, binding = 3) readonly buffer B { float bias[]; };
layout(std430, binding = 4) readonly buffer S { float scale[]; };
layout(std430, binding = 5) buffer Y { float y[]; };
float wload(uint idx) {
    const int q = int(qsw[idx >> 2] << (24u - 8u * (idx & 3u))) >> 24;
    return float(q) * f16_bits_to_float(d16[idx >> 5]);
}
#else
layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { float w[]; };
layout(std430, binding = 2) readonly buffer B { float bias[]; };
layout(std430, binding = 3) readonly buffer S { float scale[]; };
layout(std430, binding = 4) buffer Y { float y[]; };
float wload(uint idx) { return w[idx]; }
#endif

const uint TI = 64;
const uint TO = 64;
const uint TK = 16;
// Staged slices as vec4s: invocation (tx, ty) reads its 4 rows and 4 columns with one 16-byte
// shared load each per k.
shared vec4 xs[TK][TI / 4];
shared vec4 ws[TK][TO / 4];

float erf_approx(float v) {
    const float z = abs(v);
    const float t = 1.0 / (1.0 + 0.5 * z);
    const float p = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    const float erfc = t * exp(p);
    return v >= 0.0 ? 1.0 - erfc : erfc - 1.0;
}

float epilogue(float v, uint co, uint yi) {
    if ((pc.mode & 1u) != 0u) v += bias[co];
    if ((pc.mode & 2u) != 0u) v = 0.5 * v * (1.0 + erf_approx(v * 0.70710678118654752));
    if ((pc.mode & 4u) != 0u) v = y[yi] + v;
    if ((pc.mode & 8u) != 0u) v = y[yi] + scale[co] * v;
    if ((pc.mode & 16u) != 0u) v = clamp(v, -1.0, 1.0);
    return v;
}

#ifdef NARROW
const uint MAXC = 16;
void main() {
    const uint idx = gl_GlobalInvocationID.x;
    if (idx >= pc.n_in * pc.s) return;
    const uint i = idx / pc.s;
    const uint p = idx % pc.s;
    const uint t = idx;
    if (t < pc.skip) return;
    float acc[MAXC];
    for (uint co = 0; co < MAXC; co++) acc[co] = 0.0;
    for (uint u = 0; u < pc.m; u++) {
        const uint xb = (pc.x_off + i - u * pc.d) * pc.cin;
        const uint wbase = (p * pc.m + u) * pc.cout;
        for (uint ci = 0; ci < pc.cin; ci++) {
            const float xv = x[xb + ci];
            for (uint co = 0; co < MAXC; co++) {
                if (co < pc.cout) acc[co] += wload((wbase + co) * pc.cin + ci) * xv;
            }
        }
    }
    const uint row = pc.y_off + t - pc.skip;
    for (uint co = 0; co < MAXC; co++) {
        if (co < pc.cout) {
            const uint yi = row * pc.cout + co;
            y[yi] = epilogue(acc[co], co, yi);
        }
    }
}
#else
void main() {
    const uint tx = gl_LocalInvocationID.x;
    const uint ty = gl_LocalInvocationID.y;
    const uint tid = ty * 16 + tx;
    const uint o0 = gl_WorkGroupID.x * TO;
    const uint i0 = gl_WorkGroupID.y * TI;
    const uint p = gl_WorkGroupID.z;
    float acc[4][4];
    for (uint a = 0; a < 4; a++)
        for (uint b = 0; b < 4; b++) acc[a][b] = 0.0;

    for (uint u = 0; u < pc.m; u++) {
        const uint wbase = (p * pc.m + u) * pc.cout;
        for (uint c0 = 0; c0 < pc.cin; c0 += TK) {
            // Stage a TK × 64 slice of inputs and of weights (consecutive threads: consecutive ci).
            for (uint r = 0; r < 4; r++) {
                const uint idx = tid + r * 256;
                const uint kk = idx % TK;
                const uint jj = idx / TK;
                const uint ci = c0 + kk;
                const uint i = i0 + jj;
                float xv = 0.0;
                if (ci < pc.cin && i < pc.n_in) xv = x[(pc.x_off + i - u * pc.d) * pc.cin + ci];
                xs[kk][jj >> 2][jj & 3u] = xv;
                const uint co = o0 + jj;
                float wv = 0.0;
                if (ci < pc.cin && co < pc.cout) wv = wload((wbase + co) * pc.cin + ci);
                ws[kk][jj >> 2][jj & 3u] = wv;
            }
            barrier();
            for (uint kk = 0; kk < TK; kk++) {
                const vec4 xr = xs[kk][ty];
                const vec4 wr = ws[kk][tx];
                for (uint a = 0; a < 4; a++)
                    for (uint b = 0; b < 4; b++) acc[a][b] += xr[a] * wr[b];
            }
            barrier();
        }
    }

    for (uint a = 0; a < 4; a++) {
        const uint i = i0 + ty * 4 + a;
        if (i >= pc.n_in) continue;
        const uint t = i * pc.s + p;
        if (t < pc.skip) continue;
        const uint row = pc.y_off + t - pc.skip;
        for (uint b = 0; b < 4; b++) {
            const uint co = o0 + tx * 4 + b;
            if (co >= pc.cout) continue;
            const uint yi = row * pc.cout + co;
            y[yi] = epilogue(acc[a][b], co, yi);
        }
    }
}
#endif
