#version 450
// KV-cache append: for token t < n and element e < row (row = n_kv * head_dim values per cache
// position),
//   K[(p0 + t) * row + e] = k_new[t * row + e],  V[(p0 + t) * row + e] = v_new[t * row + e],
// with p0 = cache_len[0] + push p0 (DYN_LEN: the position read from the GPU, replayable decode
// steps) or push p0 alone; positions at or past max_len are not written. The caches hold the
// variant's element type (common/kv.glsl: f32, KV_F16 f16); k_new / v_new are f32.
//
// Bindings: 0 k_new (float[n*row]), 1 v_new (float[n*row]), 2 K (KV_T[max_len*row]),
//           3 V (KV_T[max_len*row]), DYN_LEN: 4 cache_len (uint[1]).
// Push: n, row, max_len, p0. Grid-stride over n*row elements. Spec: 0 WG.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"
#include "common/kv.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(push_constant) uniform Push { uint n; uint row; uint max_len; uint p0; } pc;

layout(std430, binding = 0) readonly buffer KN { float k_new[]; };
layout(std430, binding = 1) readonly buffer VN { float v_new[]; };
layout(std430, binding = 2) writeonly buffer K { KV_T kc[]; };
layout(std430, binding = 3) writeonly buffer V { KV_T vc[]; };
#ifdef DYN_LEN
layout(std430, binding = 4) readonly buffer Len { uint cache_len[]; };
#endif

void main() {
    const uint total = pc.n * pc.row;
#ifdef DYN_LEN
    const uint p0 = cache_len[0] + pc.p0;
#else
    const uint p0 = pc.p0;
#endif
    const uint stride = gl_NumWorkGroups.x * gl_NumWorkGroups.y * WG;
    for (uint e = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationIndex; e < total; e += stride) {
        const uint t = e / pc.row;
        if (p0 + t < pc.max_len) {
            const uint o = (p0 + t) * pc.row + e % pc.row;
            kc[o] = KV_T(k_new[e]);
            vc[o] = KV_T(v_new[e]);
        }
    }
}
