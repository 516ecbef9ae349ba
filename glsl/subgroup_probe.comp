#version 450
// The driver self-check (src/subgroups.rs): what a kernel's subgroup builtins say, one record per
// invocation, for the host to compare. A consistent device has, in every invocation,
//   gl_SubgroupSize == subgroupAdd(1) (full subgroups) == the number of lanes with its gl_SubgroupID,
//   gl_SubgroupInvocationID < gl_SubgroupSize, gl_SubgroupID < gl_NumSubgroups,
//   gl_NumSubgroups == ceil(WG / gl_SubgroupSize), and distinct (gl_SubgroupID, lane) pairs.
// Lavapipe at LP_NATIVE_VECTOR_WIDTH=1024 / 2048 says gl_SubgroupSize 32 / 64 while subgroupAdd(1)
// is 16 and lanes run 0..15 (docs/kernels.md, "Subgroup self-check").
// Subgroup: any — it measures the subgroup; partial subgroups show as subgroupAdd(1) < gl_SubgroupSize.
// Bindings: 0 out (uint[WG * 8]): per invocation gl_SubgroupSize, subgroupAdd(1), gl_SubgroupInvocationID,
//           gl_SubgroupID, gl_NumSubgroups, subgroupMax(lane) + 1, the lowest lane of the subgroup
//           (subgroupMin), gl_LocalInvocationIndex.
// Spec: 0 WG.
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;

layout(std430, binding = 0) writeonly buffer Out { uint o[]; };

void main() {
    const uint i = gl_LocalInvocationIndex;
    const uint lane = gl_SubgroupInvocationID;
    o[i * 8u + 0u] = gl_SubgroupSize;
    o[i * 8u + 1u] = subgroupAdd(1u);
    o[i * 8u + 2u] = lane;
    o[i * 8u + 3u] = gl_SubgroupID;
    o[i * 8u + 4u] = gl_NumSubgroups;
    o[i * 8u + 5u] = subgroupMax(lane) + 1u;
    o[i * 8u + 6u] = subgroupMin(lane);
    o[i * 8u + 7u] = i;
}
