// Q8_1 quantisation of one activation vector held in registers, for the decode kernels' prologues
// (the same numbers as quantize_q8_1: per 32-block d = max|v| / 127, q = clamp(roundEven(v / d))).
// Invocation tid holds vec4s tid + r·WG (r < Q81_R) in v[r]; loading them all up front, before
// any reduction, costs one memory round trip instead of two (the RMS sum, then the block maxima).
// Include after the spec constant WG, with Q81_MAX4 (most vec4s), shared float s_xd[] (per-block
// scales) and Q81_STORE(i, w) (store vec4 i's four packed int8s) defined. Every invocation of the
// workgroup must call q81_from_regs (barriers); it ends with one.
#include "common/q8_1_block.glsl"
#define Q81_R 4u
shared float q81_amax[Q81_MAX4];

void q81_from_regs(vec4 v[Q81_R], uint n4) {
    const uint tid = gl_LocalInvocationIndex;
    for (uint r = 0; r < Q81_R; r++) {
        const uint i = tid + r * WG;
        if (i < n4) q81_amax[i] = q81_amax4(v[r]);
    }
    barrier();
    for (uint r = 0; r < Q81_R; r++) {
        const uint i = tid + r * WG;
        if (i < n4) {
            const uint blk = i >> 3;
            float amax = 0.0;
            for (uint j = 0; j < 8u; j++) amax = max(amax, q81_amax[blk * 8u + j]);
            const float d = q81_scale(amax);
            const float id = q81_inv(d);
            const ivec4 q = q81_round(v[r], id);
            Q81_STORE(i, q81_pack(q));
            if ((i & 7u) == 0u) s_xd[blk] = d;
        }
    }
    barrier();
}
