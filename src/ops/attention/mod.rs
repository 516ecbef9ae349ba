//! Attention side of a decoder layer: rotary embedding (rotate-half, interleaved MRoPE), KV-cache
//! append, causal GQA attention for decode (split over the KV length, then merged) and prefill
//! (tiled, online softmax).
//!
//! Layouts (f32): q / k / v / attention output `[n_tokens, heads, head_dim]`; the K and V caches are
//! separate buffers `[max_len, n_kv, head_dim]` (position-major) of their [`CacheType`]: f32 (the
//! exact path; appending tokens is one copy each) or f16 (rounded on store, widened on load; every
//! kernel that writes or reads a cache has an `_f16` variant, docs/kernels.md "KV cache").
//! Query head h reads KV head h / (n_heads / n_kv). Scale 1/√head_dim.

use bytemuck::{Pod, Zeroable};
use vk_runtime::{Binding, Buffer, Recorder, Result, SpecConst};

use super::{grid, kerr, push_bytes, stride_grid};
use crate::kernels::Kernels;
use crate::options::CacheType;

mod decode;
mod prefill;
mod rope;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushRope {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    theta: f32,
    section_h: u32,
    section_w: u32,
}
crate::push_layout!(PushRope { n_tokens, n_heads, head_dim, theta, section_h, section_w });
const _: () = assert!(std::mem::size_of::<PushRope>() == 24);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushQkNormRope {
    n_tokens: u32,
    n_heads: u32,
    n_kv: u32,
    head_dim: u32,
    theta: f32,
    section_h: u32,
    section_w: u32,
    eps: f32,
    grid_x: u32,
}
crate::push_layout!(PushQkNormRope { n_tokens, n_heads, n_kv, head_dim, theta, section_h, section_w, eps, grid_x });
const _: () = assert!(std::mem::size_of::<PushQkNormRope>() == 36);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushDecodeFused {
    n_heads: u32,
    n_kv: u32,
    kv_cap: u32,
    n_chunks: u32,
    scale: f32,
    theta: f32,
    section_h: u32,
    section_w: u32,
    eps: f32,
}
crate::push_layout!(PushDecodeFused { n_heads, n_kv, kv_cap, n_chunks, scale, theta, section_h, section_w, eps });
const _: () = assert!(std::mem::size_of::<PushDecodeFused>() == 36);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushQkNormRopeStore {
    base: PushQkNormRope,
    max_len: u32,
}
crate::push_layout!(PushQkNormRopeStore { base: PushQkNormRope, max_len });
const _: () = assert!(std::mem::size_of::<PushQkNormRopeStore>() == 40);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushSplit {
    n_q: u32,
    n_heads: u32,
    n_kv: u32,
    head_dim: u32,
    kv_len: u32,
    chunk: u32,
    n_chunks: u32,
    scale: f32,
}
crate::push_layout!(PushSplit { n_q, n_heads, n_kv, head_dim, kv_len, chunk, n_chunks, scale });
const _: () = assert!(std::mem::size_of::<PushSplit>() == 32);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushDecode {
    n_q: u32,
    n_heads: u32,
    n_kv: u32,
    kv_len: u32,
    n_chunks: u32,
    scale: f32,
}
crate::push_layout!(PushDecode { n_q, n_heads, n_kv, kv_len, n_chunks, scale });
const _: () = assert!(std::mem::size_of::<PushDecode>() == 24);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushReduce {
    rows: u32,
    n_chunks: u32,
    head_dim: u32,
    grid_x: u32,
}
crate::push_layout!(PushReduce { rows, n_chunks, head_dim, grid_x });
const _: () = assert!(std::mem::size_of::<PushReduce>() == 16);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushReduceDyn {
    rows: u32,
    n_chunks: u32,
    head_dim: u32,
    grid_x: u32,
    chunk: u32,
    n_q: u32,
    kv_cap: u32,
}
crate::push_layout!(PushReduceDyn { rows, n_chunks, head_dim, grid_x, chunk, n_q, kv_cap });
const _: () = assert!(std::mem::size_of::<PushReduceDyn>() == 28);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushStore {
    n: u32,
    row: u32,
    max_len: u32,
    p0: u32,
}
crate::push_layout!(PushStore { n, row, max_len, p0 });
const _: () = assert!(std::mem::size_of::<PushStore>() == 16);

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PushPrefill {
    n: u32,
    n_heads: u32,
    n_kv: u32,
    p0: u32,
    scale: f32,
}
crate::push_layout!(PushPrefill { n, n_heads, n_kv, p0, scale });
const _: () = assert!(std::mem::size_of::<PushPrefill>() == 20);

const ROPE_WG: u32 = 256;
/// Decode: invocations per workgroup (also the largest head_dim) and the largest KV chunk.
const DECODE_WG: u32 = 128;
const MAX_CHUNK: u32 = 512;
/// Decode splits the KV length into about this many chunks (until chunks reach MAX_CHUNK).
const DECODE_SPLITS: u32 = 16;
/// GQA-shared decode kernel (attn_decode.comp): invocations per workgroup = the largest chunk;
/// chunks halve (down to GQA_MIN_CHUNK keys) while there are fewer than GQA_TARGET_GROUPS
/// workgroups; the largest group of query heads per KV head it takes (registers: G floats + G vec4s).
const GQA_CHUNK: u32 = 128;
const GQA_MIN_CHUNK: u32 = 32;
const GQA_TARGET_GROUPS: u64 = 256;
const GQA_MAX_G: u32 = 16;
/// Invocations of the merge kernel.
const REDUCE_WG: u32 = 256;
/// Prefill: invocations per workgroup, query block and key tile (match attn_prefill.comp).
const PREFILL_WG: u32 = 128;
const BQ: u32 = 16;
const BK: u32 = 16;

fn round_up(v: u64, m: u64) -> u64 {
    v.div_ceil(m) * m
}

/// GQA head shape: `n_heads` query heads sharing `n_kv` KV heads, each `head_dim` wide.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub n_heads: u32,
    pub n_kv: u32,
    pub head_dim: u32,
}

/// Rotary embedding parameters: the base `theta` and the MRoPE sections `[t, h, w]` (see
/// [`Kernels::rope`]).
#[derive(Clone, Copy, Debug)]
pub struct Rope {
    pub theta: f32,
    pub mrope_section: [u32; 3],
}

/// A layer's K and V caches, each `[capacity, n_kv, head_dim]` (position-major) of element type
/// `ty` ([`CacheType::row_bytes`] per position).
#[derive(Clone, Copy)]
pub struct KvCache<'a> {
    pub k: &'a Buffer,
    pub v: &'a Buffer,
    pub ty: CacheType,
}

/// The kernel for a cache of type `ty`: `f32` or `f16`; Q8_0 is refused naming the kernel.
pub(super) fn kv_kernel(ty: CacheType, f32: &'static str, f16: &'static str) -> Result<&'static str> {
    match ty {
        CacheType::F32 => Ok(f32),
        CacheType::F16 => Ok(f16),
        CacheType::Q8_0 => Err(kerr(f16, "a q8_0 KV cache is not supported by this kernel".into())),
    }
}

/// Bytes of `positions` cache positions of `n_kv` heads of `head_dim` values.
pub(super) fn kv_bytes(ty: CacheType, positions: u64, n_kv: u32, head_dim: u32) -> u64 {
    positions * ty.row_bytes(n_kv as u64 * head_dim as u64)
}

/// What [`Kernels::rope`] rotates in place: x `[n_tokens, n_heads, head_dim]`, positions `pos`
/// (u32 `[3, n_tokens]`).
#[derive(Clone, Copy)]
pub struct RopeRows<'a> {
    pub x: &'a Buffer,
    pub pos: &'a Buffer,
    pub n_tokens: u32,
    pub n_heads: u32,
    pub head_dim: u32,
}

/// The per-head RMSNorm + RoPE inputs of [`Kernels::qk_norm_rope`] and
/// [`Kernels::qk_norm_rope_store`]: q and k (in place), their norm weights (`[head_dim]`), the
/// positions (u32 `[3, n_tokens]`) and the norm's eps.
#[derive(Clone, Copy)]
pub struct QkNormRope<'a> {
    pub q: &'a Buffer,
    pub k: &'a Buffer,
    pub q_w: &'a Buffer,
    pub k_w: &'a Buffer,
    pub pos: &'a Buffer,
    pub n_tokens: u32,
    pub eps: f32,
}

/// Where [`Kernels::qk_norm_rope_store`] writes: the new V rows, the caches (`[max_len, n_kv,
/// head_dim]` of `ty`) and the cache length read from `cache_len` (u32).
#[derive(Clone, Copy)]
pub struct KvWrite<'a> {
    pub v: &'a Buffer,
    pub k_cache: &'a Buffer,
    pub v_cache: &'a Buffer,
    pub cache_len: &'a Buffer,
    pub max_len: u32,
    pub ty: CacheType,
}

/// Arguments of [`Kernels::attn_decode_fused`] besides the caches, heads and RoPE.
#[derive(Clone, Copy)]
pub struct AttnDecodeFused<'a> {
    pub q: &'a Buffer,
    pub k: &'a Buffer,
    pub v: &'a Buffer,
    pub q_w: &'a Buffer,
    pub k_w: &'a Buffer,
    pub pos: &'a Buffer,
    pub out: &'a Buffer,
    pub scratch: &'a Buffer,
    pub counters: &'a Buffer,
    pub cache_len: &'a Buffer,
    pub kv_cap: u32,
    pub eps: f32,
    pub merge_here: bool,
}

/// Arguments of [`Kernels::kv_append`]: `n` new K and V rows (`[n, n_kv, head_dim]`) written at
/// position `p0`.
#[derive(Clone, Copy)]
pub struct KvAppend<'a> {
    pub k_new: &'a Buffer,
    pub v_new: &'a Buffer,
    pub n: u32,
    pub n_kv: u32,
    pub head_dim: u32,
    pub p0: u32,
}

/// Arguments of [`Kernels::kv_store`]: `n` new K and V rows written at the position read from
/// `cache_len` (u32), within `max_len`.
#[derive(Clone, Copy)]
pub struct KvStore<'a> {
    pub k_new: &'a Buffer,
    pub v_new: &'a Buffer,
    pub cache_len: &'a Buffer,
    pub n: u32,
    pub n_kv: u32,
    pub head_dim: u32,
    pub max_len: u32,
}

/// Arguments of [`Kernels::attn_decode`] besides the caches and heads: `n_q` query rows, the
/// output, the split scratch and the attended length.
#[derive(Clone, Copy)]
pub struct AttnDecode<'a> {
    pub q: &'a Buffer,
    pub out: &'a Buffer,
    pub scratch: &'a Buffer,
    pub n_q: u32,
    pub kv_len: u32,
}

/// Arguments of [`Kernels::attn_decode_at`]: as [`AttnDecode`] with the length read from
/// `cache_len` (u32) within `kv_cap`.
#[derive(Clone, Copy)]
pub struct AttnDecodeAt<'a> {
    pub q: &'a Buffer,
    pub out: &'a Buffer,
    pub scratch: &'a Buffer,
    pub cache_len: &'a Buffer,
    pub n_q: u32,
    pub kv_cap: u32,
}

/// The split-KV merge with the length read from a buffer (`attn_merge_dyn`).
#[derive(Clone, Copy)]
struct MergeDyn<'a> {
    scratch: &'a Buffer,
    out: &'a Buffer,
    rows: u64,
    n_chunks: u32,
    head_dim: u32,
    cache_len: &'a Buffer,
    chunk: u32,
    n_q: u32,
    kv_cap: u32,
}

/// Arguments of [`Kernels::attn_prefill`] besides the caches and heads: `n` query rows at
/// positions `p0..p0 + n`.
#[derive(Clone, Copy)]
pub struct AttnPrefill<'a> {
    pub q: &'a Buffer,
    pub out: &'a Buffer,
    pub n: u32,
    pub p0: u32,
}

/// Checks the GQA head shape shared by the attention launchers.
pub(super) fn check_heads(name: &str, n_heads: u32, n_kv: u32, head_dim: u32) -> Result<()> {
    if n_heads == 0 || n_kv == 0 || !n_heads.is_multiple_of(n_kv) {
        return Err(kerr(name, format!("{n_heads} query heads cannot share {n_kv} KV heads evenly")));
    }
    if head_dim == 0 {
        return Err(kerr(name, "head_dim is 0".into()));
    }
    Ok(())
}

/// The rotary-embedding arguments every RoPE launcher takes: the MRoPE sections fit in head_dim/2
/// frequencies and theta is a usable base.
pub(super) fn check_rope(name: &str, head_dim: u32, theta: f32, mrope_section: [u32; 3]) -> Result<()> {
    if mrope_section.iter().map(|&s| s as u64).sum::<u64>() > (head_dim / 2) as u64 {
        return Err(kerr(
            name,
            format!("mrope_section {mrope_section:?} covers more than head_dim/2 = {} frequencies", head_dim / 2),
        ));
    }
    if !(theta.is_finite() && theta > 1.0) {
        return Err(kerr(name, format!("theta {theta} must be finite and > 1")));
    }
    Ok(())
}
