// Workgroup reductions for any subgroup size. Include after declaring the spec constant WG.
// Every invocation of the workgroup must call them (uniform control flow); all get the result.
shared float red_buf[WG];

float wg_sum(float v) {
    v = subgroupAdd(v);
    if (subgroupElect()) red_buf[gl_SubgroupID] = v;
    barrier();
    float t = 0.0;
    for (uint i = 0; i < gl_NumSubgroups; i++) t += red_buf[i];
    barrier();
    return t;
}

float wg_max(float v) {
    v = subgroupMax(v);
    if (subgroupElect()) red_buf[gl_SubgroupID] = v;
    barrier();
    float t = red_buf[0];
    for (uint i = 1; i < gl_NumSubgroups; i++) t = max(t, red_buf[i]);
    barrier();
    return t;
}
