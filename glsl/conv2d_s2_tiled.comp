#version 450
// 3×3, stride 2, padding 1 convolution + bias + exact GELU as an implicit GEMM (same result and
// layouts as conv2d_s2.comp, for many input channels):
//   Y[co, p] = gelu(bias[co] + Σ_k W[co, k] · X[k, p]),  k = ci·9 + kh·3 + kw (W's own row-major
//   order), p = (b, ho, wo), X[k, p] = x[b, ci, 2ho + kh − 1, 2wo + kw − 1] (0 outside).
// Workgroup: a 64 (co) × 64 (p) output tile, 256 invocations × 4×4 outputs; K in steps of 16,
// W and X tiles staged in shared memory (X gathered on the fly: no im2col buffer).
// x: float[n, cin, hin, win]; w: float[cout, cin·9]; bias: float[cout]. Output as conv2d_s2.comp
// (flat_out: y[(b·wout + wo)·cout·hout + co·hout + ho]). Grid: (ceil(P/64), ceil(cout/64)).
// Subgroup: none — no subgroup operations
#include "common/common.glsl"
#include "common/gelu.glsl"

layout(local_size_x = 256) in;
layout(push_constant) uniform Push {
    uint n; uint cin; uint hin; uint win; uint cout; uint hout; uint wout; uint flat_out;
} pc;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Wt { float w[]; };
layout(std430, binding = 2) readonly buffer Bs { float bias[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

#define TM 64
#define TN 64
#define TK 16

shared float ws[TK][TM + 4];
shared float xs[TK][TN + 4];

void main() {
    const uint tid = gl_LocalInvocationIndex;
    const uint K = pc.cin * 9;
    const uint hw = pc.hout * pc.wout;
    const uint P = pc.n * hw;
    const uint p0 = gl_WorkGroupID.x * TN;
    const uint m0 = gl_WorkGroupID.y * TM;
    const uint tm = (tid / 16) * 4;
    const uint tn = (tid % 16) * 4;
    float acc[4][4];
    for (uint i = 0; i < 4; i++) for (uint j = 0; j < 4; j++) acc[i][j] = 0.0;

    // Loader roles: weights — row (co) lw_m, 4 consecutive k from lw_k; inputs — column (p) lx_p,
    // k rows lx_k, lx_k + 4, lx_k + 8, lx_k + 12.
    const uint lw_m = tid / 4, lw_k = (tid % 4) * 4;
    const uint lx_p = tid % TN, lx_k = tid / TN;
    const uint p = p0 + lx_p;
    const bool p_ok = p < P;
    const uint pb = p_ok ? p / hw : 0;
    const uint prem = p_ok ? p % hw : 0;
    const int ih0 = int(2 * (prem / pc.wout)) - 1;
    const int iw0 = int(2 * (prem % pc.wout)) - 1;

    for (uint k0 = 0; k0 < K; k0 += TK) {
        for (uint j = 0; j < 4; j++) {
            const uint m = m0 + lw_m, k = k0 + lw_k + j;
            ws[lw_k + j][lw_m] = (m < pc.cout && k < K) ? w[m * K + k] : 0.0;
        }
        for (uint j = 0; j < 4; j++) {
            const uint kk = lx_k + 4 * j;
            const uint k = k0 + kk;
            float v = 0.0;
            if (p_ok && k < K) {
                const uint ci = k / 9, r = k % 9;
                const int ih = ih0 + int(r / 3), iw = iw0 + int(r % 3);
                if (ih >= 0 && ih < int(pc.hin) && iw >= 0 && iw < int(pc.win)) {
                    v = x[((pb * pc.cin + ci) * pc.hin + uint(ih)) * pc.win + uint(iw)];
                }
            }
            xs[kk][lx_p] = v;
        }
        barrier();
        for (uint kk = 0; kk < TK; kk++) {
            const vec4 a = vec4(ws[kk][tm], ws[kk][tm + 1], ws[kk][tm + 2], ws[kk][tm + 3]);
            const vec4 b = vec4(xs[kk][tn], xs[kk][tn + 1], xs[kk][tn + 2], xs[kk][tn + 3]);
            for (uint i = 0; i < 4; i++) {
                acc[i][0] += a[i] * b[0];
                acc[i][1] += a[i] * b[1];
                acc[i][2] += a[i] * b[2];
                acc[i][3] += a[i] * b[3];
            }
        }
        barrier();
    }
    for (uint i = 0; i < 4; i++) {
        const uint co = m0 + tm + i;
        if (co >= pc.cout) continue;
        for (uint j = 0; j < 4; j++) {
            const uint pp = p0 + tn + j;
            if (pp >= P) continue;
            const uint b = pp / hw, rem = pp % hw, ho = rem / pc.wout, wo = rem % pc.wout;
            const float v = gelu_erf(acc[i][j] + bias[co]);
            if (pc.flat_out != 0) {
                y[(b * pc.wout + wo) * pc.cout * pc.hout + co * pc.hout + ho] = v;
            } else {
                y[((b * pc.cout + co) * pc.hout + ho) * pc.wout + wo] = v;
            }
        }
    }
}
