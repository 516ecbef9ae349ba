#version 450
// Groups the (token, slot) pairs of a prefill chunk by expert, for the grouped expert kernels:
// offsets[e] .. offsets[e+1] index order[], which lists the pairs p (= t*k + j) routed to expert e.
// One workgroup: counts per expert with shared-memory atomics (invocations stride over the pairs),
// an exclusive scan by one invocation, then each pair takes the next slot of its expert. The
// order within an expert's run depends on scheduling; the grouped kernels' results do not.
// Ids ≥ n_experts count as n_experts - 1 (as the expert kernels clamp them).
// Bindings: 0 ids (uint[n_pairs]), 1 offsets (uint[n_experts+1]), 2 order (uint[n_pairs]).
// Push: n_pairs, n_experts (≤ MAX_E). Spec: 0 WG.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 1024;
layout(push_constant) uniform Push { uint n_pairs; uint n_experts; } pc;

layout(std430, binding = 0) readonly buffer IDS { uint ids[]; };
layout(std430, binding = 1) writeonly buffer OFF { uint offsets[]; };
layout(std430, binding = 2) writeonly buffer ORD { uint order[]; };

#define MAX_E 1024u
shared uint cnt[MAX_E];

void main() {
    const uint tid = gl_LocalInvocationIndex, last = pc.n_experts - 1u;
    for (uint e = tid; e < pc.n_experts; e += WG) cnt[e] = 0u;
    barrier();
    for (uint p = tid; p < pc.n_pairs; p += WG) atomicAdd(cnt[min(ids[p], last)], 1u);
    barrier();
    if (tid == 0u) {
        uint off = 0;
        for (uint e = 0; e < pc.n_experts; e++) {
            const uint c = cnt[e];
            offsets[e] = off;
            cnt[e] = off;
            off += c;
        }
        offsets[pc.n_experts] = off;
    }
    barrier();
    for (uint p = tid; p < pc.n_pairs; p += WG) order[atomicAdd(cnt[min(ids[p], last)], 1u)] = p;
}
