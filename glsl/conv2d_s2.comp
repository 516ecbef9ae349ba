#version 450
// 3×3 convolution, stride 2, zero padding 1, with bias, then exact-erf GELU (the AudioTower's
// conv stem, spec §4.2):
//   y[b, co, ho, wo] = gelu(bias[co] + Σ_{ci, kh, kw} w[co, ci, kh, kw] · x[b, ci, 2ho + kh − 1, 2wo + kw − 1])
// x: float[n, cin, hin, win]; w: float[cout, cin, 3, 3]; bias: float[cout].
// Output layout: FLAT = 0 → y[b, co, ho, wo]; FLAT = 1 → y[(b·wout + wo)·cout·hout + co·hout + ho],
// i.e. per (chunk, time) a feature vector indexed co·hout + ho (the flatten before conv_out).
// One invocation per output value, grid-stride over a 2-D grid; adjacent invocations share co, so
// their weight reads coincide. Push: see Push. Spec: 0 WG.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"
#include "common/gelu.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push {
    uint n; uint cin; uint hin; uint win; uint cout; uint hout; uint wout; uint flat_out;
} pc;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Wt { float w[]; };
layout(std430, binding = 2) readonly buffer Bs { float bias[]; };
layout(std430, binding = 3) writeonly buffer Y { float y[]; };

void main() {
    const uint total = pc.n * pc.cout * pc.hout * pc.wout;
    const uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * WG;
    const uint first = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationIndex;
    for (uint o = first; o < total; o += stride) {
        const uint wo = o % pc.wout;
        const uint ho = (o / pc.wout) % pc.hout;
        const uint co = (o / (pc.wout * pc.hout)) % pc.cout;
        const uint b = o / (pc.wout * pc.hout * pc.cout);
        float acc = bias[co];
        const int h0 = int(2 * ho) - 1;
        const int w0 = int(2 * wo) - 1;
        for (uint ci = 0; ci < pc.cin; ci++) {
            const uint xb = (b * pc.cin + ci) * pc.hin;
            const uint wb = (co * pc.cin + ci) * 9;
            for (int kh = 0; kh < 3; kh++) {
                const int h = h0 + kh;
                if (h < 0 || h >= int(pc.hin)) continue;
                for (int kw = 0; kw < 3; kw++) {
                    const int ww = w0 + kw;
                    if (ww < 0 || ww >= int(pc.win)) continue;
                    acc += w[wb + uint(kh * 3 + kw)] * x[(xb + uint(h)) * pc.win + uint(ww)];
                }
            }
        }
        const float v = gelu_erf(acc);
        if (pc.flat_out != 0) {
            y[(b * pc.wout + wo) * pc.cout * pc.hout + co * pc.hout + ho] = v;
        } else {
            y[o] = v;
        }
    }
}
