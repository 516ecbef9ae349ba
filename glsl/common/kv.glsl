// The KV cache's element type, by the variant's define (docs/kernels.md, "KV cache"): KV_F16
// stores float16_t (16-bit storage; the f32 → f16 conversion rounds, loads widen exactly), else
// f32. Kernels declare the caches as KV_T / KV_T4 arrays, load with vec4(kc[i]) / float(kc[i]) and
// store with kc[i] = KV_T4(v) / KV_T(x); KV_ROUND4(v) / KV_ROUND(x) is what a store and a load give
// back: the value a kernel must use where it reads a key or value it has just written from its
// registers, so that it sees what every later reader of the cache sees.
#ifdef KV_F16
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#define KV_T float16_t
#define KV_T4 f16vec4
#define KV_ROUND4(v) vec4(f16vec4(v))
#define KV_ROUND(x) float(float16_t(x))
#else
#define KV_T float
#define KV_T4 vec4
#define KV_ROUND4(v) (v)
#define KV_ROUND(x) (x)
#endif
