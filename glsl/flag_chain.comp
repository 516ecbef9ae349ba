#version 450
// Experiment (bench-thinker, QWEN3VK_FLAG_CHAIN=1): chained dispatches ordered by a flag in device
// memory instead of a pipeline barrier between them. Stage s waits (one invocation polls) until
// the arrival counter of stage s - 1 reaches that stage's workgroup count, then reads what it
// wrote; every workgroup bumps its own stage's counter after its writes. With no barrier between
// the dispatches the driver may start stage s + 1's workgroups while stage s drains, so each
// workgroup can load its weights (which no earlier stage writes) before it waits.
//
// ADD: y[i] = x[i] + 1 (one vec4 per invocation). MV: y = tanh(W·x), W [n, n] planar Q8_0 (float
// path, ROWS rows per workgroup, one row per subgroup at a time).
// Bindings: 0 x (vec4[n/4]), 1 y (float[n]), 2 sync (uint: [0] error, [(1 + s) * stride] stage s's
//           arrivals), MV: 3 qs (uvec4[]), 4 d (uint16[]).
// Push: n, stage, target (arrivals to wait for; 0 = no wait), flags (1 arrive, 2 prefetch), stride
// (words between counters), backoff (dependent multiply-adds between polls).
// Variant COHERENT_X: x read through `coherent` (past the non-coherent L1).
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint ROWS = 16;

layout(push_constant) uniform Push { uint n; uint stage; uint target; uint flags; uint stride; uint backoff; } pc;
#ifdef COHERENT_X
layout(std430, binding = 0) coherent readonly buffer X { vec4 x[]; };
#else
layout(std430, binding = 0) readonly buffer X { vec4 x[]; };
#endif
layout(std430, binding = 1) writeonly buffer Y { float y[]; };
layout(std430, binding = 2) volatile coherent buffer Sync { uint sync[]; };
#ifdef MV
layout(std430, binding = 3) readonly buffer QS { uvec4 qs[]; };
layout(std430, binding = 4) readonly buffer D { uint16_t dw[]; };
#define MAX_N 4096u
shared vec4 s_x[MAX_N / 4u];
#define PRE 4u
#endif

#define F_ARRIVE 1u
#define F_PREFETCH 2u
#define SPIN_CAP (1u << 24)

void wait_prev() {
    if (pc.target == 0u) return;
    if (gl_LocalInvocationIndex == 0u) {
        uint spins = 0u;
        float idle = 0.0;
        while (sync[pc.stage * pc.stride] < pc.target) {
            if (++spins > SPIN_CAP) {
                atomicOr(sync[0], 1u);
                break;
            }
            for (uint k = 0u; k < pc.backoff; k++) idle = idle * 0.999 + 1.0;
        }
        if (idle < 0.0) atomicOr(sync[0], 2u); // never: keeps the back-off loop
    }
    memoryBarrierBuffer();
    barrier();
    memoryBarrierBuffer();
}

void arrive() {
    if ((pc.flags & F_ARRIVE) == 0u) return;
    memoryBarrierBuffer();
    barrier();
    if (gl_LocalInvocationIndex == 0u) atomicAdd(sync[(1u + pc.stage) * pc.stride], 1u);
}

#ifdef MV
vec4 bytes4(uint w) {
    const int v = int(w);
    return vec4(bitfieldExtract(v, 0, 8), bitfieldExtract(v, 8, 8), bitfieldExtract(v, 16, 8), bitfieldExtract(v, 24, 8));
}

float chunk(uvec4 wv, float d, uint c) {
    return d * (dot(bytes4(wv.x), s_x[c * 4u]) + dot(bytes4(wv.y), s_x[c * 4u + 1u]) + dot(bytes4(wv.z), s_x[c * 4u + 2u])
                + dot(bytes4(wv.w), s_x[c * 4u + 3u]));
}
#endif

void main() {
#ifdef MV
    const uint lane = gl_SubgroupInvocationID, ss = gl_SubgroupSize;
    const uint nc = pc.n / 16u, nb = pc.n / 32u;
    const uint first = gl_WorkGroupID.x * ROWS, last = min(first + ROWS, pc.n);
    const uint row_p = first + gl_SubgroupID;
    const bool pre_on = (pc.flags & F_PREFETCH) != 0u && row_p < last;
    uvec4 pre[PRE];
    float pd[PRE];
    for (uint j = 0u; j < PRE; j++) {
        const uint c = min(lane + j * ss, nc - 1u);
        if (pre_on) {
            pre[j] = qs[row_p * nc + c];
            pd[j] = f16_bits_to_float(dw[row_p * nb + c / 2u]);
        }
    }
    wait_prev();
    for (uint i = gl_LocalInvocationIndex; i < pc.n / 4u; i += WG) s_x[i] = x[i];
    barrier();
    for (uint row = row_p; row < last; row += gl_NumSubgroups) {
        float acc = 0.0;
        uint c0 = lane;
        if (pre_on && row == row_p) {
            for (uint j = 0u; j < PRE; j++) {
                const uint c = lane + j * ss;
                if (c < nc) acc += chunk(pre[j], pd[j], c);
            }
            c0 = lane + PRE * ss;
        }
        for (uint c = c0; c < nc; c += ss) acc += chunk(qs[row * nc + c], f16_bits_to_float(dw[row * nb + c / 2u]), c);
        acc = subgroupAdd(acc);
        if (subgroupElect()) y[row] = tanh(acc);
    }
#else
    wait_prev();
    const uint i = gl_GlobalInvocationID.x;
    if (i < pc.n / 4u) {
        const vec4 v = x[i] + 1.0;
        y[i * 4u] = v.x;
        y[i * 4u + 1u] = v.y;
        y[i * 4u + 2u] = v.z;
        y[i * 4u + 3u] = v.w;
    }
#endif
    arrive();
}
