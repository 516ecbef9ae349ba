#version 450
// Advances a replayable decode step on the GPU, so that the next step can be submitted before the
// host has read this one's token: the sampled token becomes the next input, the position (all
// three MRoPE axes) and the cache length grow by one, and the token is appended to the history
// (which the host reads the tokens from, and the repetition penalty reads).
//   p = cache_len + 1; token = next; pos[0..3] = p; cache_len = p; history[p] = next if p < ctx.
// Bindings: 0 next (uint[1]), 1 token (uint[1]), 2 pos (uint[3]), 3 cache_len (uint[1]),
//           4 history (uint[ctx]). Push: ctx. One invocation.
// Subgroup: none — no subgroup operations
#include "common/common.glsl"

layout(local_size_x = 1) in;
layout(push_constant) uniform Push { uint ctx; } pc;

layout(std430, binding = 0) readonly buffer Next { uint next[]; };
layout(std430, binding = 1) writeonly buffer Tok { uint token[]; };
layout(std430, binding = 2) writeonly buffer Pos { uint pos[]; };
layout(std430, binding = 3) buffer Len { uint cache_len[]; };
layout(std430, binding = 4) writeonly buffer Hist { uint history[]; };

void main() {
    const uint n = next[0];
    const uint p = cache_len[0] + 1u;
    token[0] = n;
    pos[0] = p;
    pos[1] = p;
    pos[2] = p;
    cache_len[0] = p;
    if (p < pc.ctx) history[p] = n;
}
