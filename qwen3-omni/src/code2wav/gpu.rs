//! Code2Wav on the GPU: the streaming decoder of `cpu.rs` with every activation on the device and
//! one command buffer per pushed chunk of up to `max_frames` frames.
//!
//! Activations are time-major. Each conv's input buffer starts with its history rows (the last
//! `(k−1)·d` inputs of the previous chunk, zeros at the start): before the conv they are copied in
//! from a small per-conv state buffer and after it the new tail is copied back, so a chunk's
//! output continues the previous one exactly. The pre-transformer keeps the last `window − 1`
//! roped keys and values of each layer the same way, with positions counting on. A full decode is
//! a reset then the frames in chunks; the host only computes the code-embedding mean (16 row
//! lookups per frame) and reads the samples back.
//!
//! Every Linear and conv runs through one tiled kernel (`conv1d`) with f32 activations, so no
//! activation is quantised. Linears keep the file's Q8_0 (planar layout, dequantised in the kernel
//! exactly); conv kernels are uploaded as f32 (F16 in the file, exact).

use quantizer::gguf::GgmlType;
use qwen3_omni_vk::layout::PlanarLayout;
use qwen3_omni_vk::vk_runtime::{Buffer, Gpu, MemoryIntent, Profile, Recorder};
use qwen3_omni_vk::{repack_conv, repack_trans_conv, ConvEpilogue, ConvShape, ConvWeights, Kernels};
use qwen3_omni_vk::{AttnWindow, ConvIo, DwConv, Heads, LayerNorm, RopeSpan, SnakeBeta};

use super::weights::{Code2WavWeights, Snake, CONV_K, DILATIONS};
use super::{check_codes, Code2WavConfig, Code2WavError};
use crate::model_file::{ModelError, ModelFile};

/// A Linear's weights: planar Q8_0 as the file stores them, or f32 (files written with
/// `--keep-f16`).
struct Lin {
    buf: Buffer,
    q8: bool,
}

impl Lin {
    fn w(&self) -> ConvWeights<'_> {
        if self.q8 {
            ConvWeights::Q8_0Planar(&self.buf)
        } else {
            ConvWeights::F32(&self.buf)
        }
    }
}

fn lin(g: &Gpu, m: &ModelFile, name: &str, rows: u32, cols: u32, f32w: &[f32]) -> Result<Lin, ModelError> {
    let t = m.tensor(name, &[rows as u64, cols as u64])?;
    if t.ty() == GgmlType::Q8_0 {
        let l = PlanarLayout::new(rows as u64, cols as u64);
        let mut tmp = vec![0u8; l.total() as usize];
        t.repack_planar_into(rows as u64, cols as u64, &mut tmp)?;
        Ok(Lin { buf: g.buffer_from(name, &tmp, MemoryIntent::Weights)?, q8: true })
    } else {
        Ok(Lin { buf: wbuf(g, name, f32w)?, q8: false })
    }
}

struct LayerW {
    attn_norm: Buffer,
    q: Lin,
    k: Lin,
    v: Lin,
    o: Lin,
    attn_scale: Buffer,
    ffn_norm: Buffer,
    gate: Lin,
    up: Lin,
    down: Lin,
    mlp_scale: Buffer,
}

struct UpW {
    ratio: u32,
    tconv_w: Buffer,
    tconv_b: Buffer,
    dw_w: Buffer,
    dw_b: Buffer,
    ln_w: Buffer,
    ln_b: Buffer,
    pw1_w: Lin,
    pw1_b: Buffer,
    pw2_w: Lin,
    pw2_b: Buffer,
    gamma: Buffer,
}

struct UnitW {
    dilation: u32,
    act1: Buffer,
    conv1_w: Buffer,
    conv1_b: Buffer,
    act2: Buffer,
    conv2_w: Buffer,
    conv2_b: Buffer,
}

struct BlockW {
    rate: u32,
    cin: u32,
    cout: u32,
    act: Buffer,
    tconv_w: Buffer,
    tconv_b: Buffer,
    units: Vec<UnitW>,
}

struct Weights {
    layers: Vec<LayerW>,
    norm: Buffer,
    upsample: Vec<UpW>,
    dec0_w: Buffer,
    dec0_b: Buffer,
    blocks: Vec<BlockW>,
    final_act: Buffer,
    final_w: Buffer,
    final_b: Buffer,
}

/// Per-conv history carried between chunks (host-visible so a reset can zero it).
struct State {
    k: Vec<Buffer>,
    v: Vec<Buffer>,
    dw: Vec<Buffer>,
    dec0: Buffer,
    /// Per block: the transposed conv's previous input, then one per residual unit.
    block_prev: Vec<Buffer>,
    units: Vec<Vec<Buffer>>,
    fin: Buffer,
}

struct Scratch {
    x_in: Buffer,
    x: Buffer,
    y: Buffer,
    q: Buffer,
    kbuf: Buffer,
    vbuf: Buffer,
    att: Buffer,
    g: Buffer,
    u: Buffer,
    h: Buffer,
    dw: [Buffer; 2],
    t1: Buffer,
    t2: Buffer,
    t3: Buffer,
    dec0: Buffer,
    xa: Buffer,
    xb: Buffer,
    s: Buffer,
    c1: Buffer,
    c2: Buffer,
    out: Buffer,
}

/// Code2Wav loaded on the GPU, with its streaming state.
pub struct GpuCode2Wav {
    k: Kernels,
    pub config: Code2WavConfig,
    embed: Vec<f32>,
    w: Weights,
    st: State,
    s: Scratch,
    max_frames: u32,
    /// Frames pushed since the last reset.
    pos: u32,
    /// Per decoder block: left-trimmed samples still to drop.
    skip: Vec<u32>,
    /// GPU time of the batches since the last reset, when the device has timestamps.
    gpu_ns: f64,
    batches: u32,
    profile: bool,
    last_profile: Option<Profile>,
}

const HIST_K: u32 = CONV_K - 1;

/// Largest chunk one command buffer takes (82 s of audio; keeps every dispatch within the
/// 65535-workgroup limit per axis).
pub const MAX_CHUNK_FRAMES: u32 = 1024;

fn snake_params(s: &Snake) -> Vec<f32> {
    s.alpha
        .iter()
        .map(|a| (*a as f64).exp() as f32)
        .chain(s.beta.iter().map(|b| (1.0 / ((*b as f64).exp() + 1e-9)) as f32))
        .collect()
}

fn wbuf(g: &Gpu, name: &str, v: &[f32]) -> Result<Buffer, qwen3_omni_vk::Error> {
    g.buffer_from(name, v, MemoryIntent::Weights)
}

fn state(g: &Gpu, name: &str, rows: u32, c: u32) -> Result<Buffer, qwen3_omni_vk::Error> {
    let b = g.buffer(name, rows.max(1) as u64 * c as u64 * 4, MemoryIntent::Upload)?;
    b.write_slice(0, &vec![0f32; rows.max(1) as usize * c as usize])?;
    Ok(b)
}

/// Rows of each stage for a chunk of `n` frames: upsampling stages' outputs, then per decoder
/// block (input rows, output rows, skipped rows) given each block's remaining skip.
struct Rows {
    up: Vec<u32>,
    blocks: Vec<(u32, u32, u32)>,
}

fn rows_for(c: &Code2WavConfig, n: u32, skip: &[u32]) -> Rows {
    let mut up = Vec::new();
    let mut r = n;
    for &u in &c.upsampling_ratios {
        r *= u;
        up.push(r);
    }
    let mut blocks = Vec::new();
    for (b, &rate) in c.upsample_rates.iter().enumerate() {
        let full = r * rate;
        let sk = skip[b].min(full);
        blocks.push((r, full - sk, sk));
        r = full - sk;
    }
    Rows { up, blocks }
}

impl GpuCode2Wav {
    /// Loads Code2Wav from `m` onto the kernels' GPU, for chunks of up to `max_frames` frames
    /// (clamped to 1..=[`MAX_CHUNK_FRAMES`]; device memory for activations grows linearly with it,
    /// about 5 MB per frame for the real model, next to 0.36 GB of weights).
    pub fn load(k: Kernels, m: &ModelFile, max_frames: u32) -> Result<GpuCode2Wav, ModelError> {
        let c = Code2WavConfig::from_model(m)?;
        let hw = Code2WavWeights::load(m, &c)?;
        if c.head_dim > 128 {
            return Err(m.config_err("/code2wav_config/head_dim", "the GPU attention kernel takes head_dim ≤ 128"));
        }
        let max_frames = max_frames.clamp(1, MAX_CHUNK_FRAMES);
        let g = k.gpu().clone();
        let (h, inter) = (c.hidden, c.inter);
        let (qd, kvd) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        let kk = CONV_K as usize;
        let mut layers = Vec::new();
        for (l, lw) in hw.layers.iter().enumerate() {
            let n = |s: &str| format!("code2wav.pre_transformer.layers.{l}.{s}");
            layers.push(LayerW {
                attn_norm: wbuf(&g, &n("input_layernorm"), &lw.attn_norm)?,
                q: lin(&g, m, &n("self_attn.q_proj.weight"), qd, h, &lw.q)?,
                k: lin(&g, m, &n("self_attn.k_proj.weight"), kvd, h, &lw.k)?,
                v: lin(&g, m, &n("self_attn.v_proj.weight"), kvd, h, &lw.v)?,
                o: lin(&g, m, &n("self_attn.o_proj.weight"), h, qd, &lw.o)?,
                attn_scale: wbuf(&g, &n("self_attn_layer_scale"), &lw.attn_scale)?,
                ffn_norm: wbuf(&g, &n("post_attention_layernorm"), &lw.ffn_norm)?,
                gate: lin(&g, m, &n("mlp.gate_proj.weight"), inter, h, &lw.gate)?,
                up: lin(&g, m, &n("mlp.up_proj.weight"), inter, h, &lw.up)?,
                down: lin(&g, m, &n("mlp.down_proj.weight"), h, inter, &lw.down)?,
                mlp_scale: wbuf(&g, &n("mlp_layer_scale"), &lw.mlp_scale)?,
            });
        }
        let hu = h as usize;
        let mut upsample = Vec::new();
        for (i, u) in hw.upsample.iter().enumerate() {
            let n = |s: &str| format!("code2wav.upsample.{i}.{s}");
            let r = u.ratio as usize;
            upsample.push(UpW {
                ratio: u.ratio,
                tconv_w: wbuf(&g, &n("tconv"), &repack_trans_conv(&u.tconv_w, hu, hu, r, r))?,
                tconv_b: wbuf(&g, &n("tconv.bias"), &u.tconv_b)?,
                dw_w: wbuf(&g, &n("dwconv"), &u.dw_w)?,
                dw_b: wbuf(&g, &n("dwconv.bias"), &u.dw_b)?,
                ln_w: wbuf(&g, &n("norm.weight"), &u.ln_w)?,
                ln_b: wbuf(&g, &n("norm.bias"), &u.ln_b)?,
                pw1_w: lin(&g, m, &n("1.pwconv1.weight"), 4 * h, h, &u.pw1_w)?,
                pw1_b: wbuf(&g, &n("pwconv1.bias"), &u.pw1_b)?,
                pw2_w: lin(&g, m, &n("1.pwconv2.weight"), h, 4 * h, &u.pw2_w)?,
                pw2_b: wbuf(&g, &n("pwconv2.bias"), &u.pw2_b)?,
                gamma: wbuf(&g, &n("gamma"), &u.gamma)?,
            });
        }
        let dd = c.decoder_dim as usize;
        let dec0_w = wbuf(&g, "code2wav.decoder.0", &repack_conv(&hw.dec0_w, dd, hu, kk))?;
        let dec0_b = wbuf(&g, "code2wav.decoder.0.bias", &hw.dec0_b)?;
        let mut blocks = Vec::new();
        for (b, bw) in hw.blocks.iter().enumerate() {
            let n = |s: &str| format!("code2wav.decoder.{}.{s}", b + 1);
            let (cin, cout, r) = (bw.cin as usize, bw.cout as usize, bw.rate as usize);
            let mut units = Vec::new();
            for (ui, u) in bw.units.iter().enumerate() {
                units.push(UnitW {
                    dilation: u.dilation,
                    act1: wbuf(&g, &n(&format!("unit{ui}.act1")), &snake_params(&u.act1))?,
                    conv1_w: wbuf(&g, &n(&format!("unit{ui}.conv1")), &repack_conv(&u.conv1_w, cout, cout, kk))?,
                    conv1_b: wbuf(&g, &n(&format!("unit{ui}.conv1.bias")), &u.conv1_b)?,
                    act2: wbuf(&g, &n(&format!("unit{ui}.act2")), &snake_params(&u.act2))?,
                    conv2_w: wbuf(&g, &n(&format!("unit{ui}.conv2")), &u.conv2_w)?,
                    conv2_b: wbuf(&g, &n(&format!("unit{ui}.conv2.bias")), &u.conv2_b)?,
                });
            }
            blocks.push(BlockW {
                rate: bw.rate,
                cin: bw.cin,
                cout: bw.cout,
                act: wbuf(&g, &n("act"), &snake_params(&bw.act))?,
                tconv_w: wbuf(&g, &n("tconv"), &repack_trans_conv(&bw.tconv_w, cin, cout, 2 * r, r))?,
                tconv_b: wbuf(&g, &n("tconv.bias"), &bw.tconv_b)?,
                units,
            });
        }
        let cf = c.final_channels();
        let w = Weights {
            layers,
            norm: wbuf(&g, "code2wav.pre_transformer.norm", &hw.norm)?,
            upsample,
            dec0_w,
            dec0_b,
            blocks,
            final_act: wbuf(&g, "code2wav.final.act", &snake_params(&hw.final_act))?,
            final_w: wbuf(&g, "code2wav.final.conv", &repack_conv(&hw.final_w, 1, cf as usize, kk))?,
            final_b: wbuf(&g, "code2wav.final.conv.bias", &hw.final_b)?,
        };

        let wh = c.sliding_window - 1;
        let st = State {
            k: (0..c.layers)
                .map(|l| state(&g, &format!("code2wav k history {l}"), wh, kvd))
                .collect::<Result<_, _>>()?,
            v: (0..c.layers)
                .map(|l| state(&g, &format!("code2wav v history {l}"), wh, kvd))
                .collect::<Result<_, _>>()?,
            dw: (0..c.upsampling_ratios.len())
                .map(|i| state(&g, &format!("code2wav dwconv history {i}"), HIST_K, h))
                .collect::<Result<_, _>>()?,
            dec0: state(&g, "code2wav decoder.0 history", HIST_K, h)?,
            block_prev: c
                .upsample_rates
                .iter()
                .enumerate()
                .map(|(b, _)| state(&g, &format!("code2wav block {b} tconv history"), 1, c.block_in(b)))
                .collect::<Result<_, _>>()?,
            units: (0..c.upsample_rates.len())
                .map(|b| {
                    DILATIONS
                        .iter()
                        .map(|&d| {
                            state(&g, &format!("code2wav block {b} unit d{d} history"), HIST_K * d, c.block_in(b) / 2)
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<_, _>>()?,
            fin: state(&g, "code2wav final history", HIST_K, cf)?,
        };

        // Scratch sized for a chunk of max_frames frames (no skip: the most rows).
        let rows = rows_for(&c, max_frames, &vec![0; c.upsample_rates.len()]);
        let nf = max_frames as u64;
        let f = |name: &str, floats: u64| g.buffer(name, floats.max(1) * 4, MemoryIntent::Scratch);
        let l_up = *rows.up.last().unwrap_or(&max_frames) as u64;
        let mut dec_max = l_up * c.decoder_dim as u64;
        let mut s_max = (HIST_K as u64 + l_up) * h as u64;
        let mut c_max = 1u64;
        for (b, &(rin, rout, _)) in rows.blocks.iter().enumerate() {
            let (cin, cout) = (c.block_in(b) as u64, c.block_in(b) as u64 / 2);
            dec_max = dec_max.max(rout as u64 * cout);
            s_max = s_max.max((1 + rin as u64) * cin).max((HIST_K as u64 * 9 + rout as u64) * cout);
            c_max = c_max.max(rout as u64 * cout);
        }
        let l_fin = rows.blocks.last().map(|b| b.1).unwrap_or(0) as u64;
        s_max = s_max.max((HIST_K as u64 + l_fin) * cf as u64);
        let up_max = rows.up.iter().copied().max().unwrap_or(max_frames) as u64;
        let s = Scratch {
            x_in: g.buffer("code2wav embeddings", nf * h as u64 * 4, MemoryIntent::Upload)?,
            x: f("code2wav x", nf * h as u64)?,
            y: f("code2wav normed", nf * h as u64)?,
            q: f("code2wav q", nf * qd as u64)?,
            kbuf: f("code2wav k", (wh as u64 + nf) * kvd as u64)?,
            vbuf: f("code2wav v", (wh as u64 + nf) * kvd as u64)?,
            att: f("code2wav attention out", nf * qd as u64)?,
            g: f("code2wav gate", nf * inter as u64)?,
            u: f("code2wav up", nf * inter as u64)?,
            h: f("code2wav mlp hidden", nf * inter as u64)?,
            dw: [
                f("code2wav upsample a", (HIST_K as u64 + up_max) * h as u64)?,
                f("code2wav upsample b", (HIST_K as u64 + up_max) * h as u64)?,
            ],
            t1: f("code2wav convnext dw", up_max * h as u64)?,
            t2: f("code2wav convnext norm", up_max * h as u64)?,
            t3: f("code2wav convnext hidden", up_max * 4 * h as u64)?,
            dec0: f("code2wav decoder.0 in", (HIST_K as u64 + l_up) * h as u64)?,
            xa: f("code2wav decoder a", dec_max)?,
            xb: f("code2wav decoder b", dec_max)?,
            s: f("code2wav snake out", s_max)?,
            c1: f("code2wav conv1 out", c_max)?,
            c2: f("code2wav act2 out", c_max)?,
            out: g.buffer("code2wav samples", l_fin.max(1) * 4, MemoryIntent::Readback)?,
        };
        let skip = c.upsample_rates.clone();
        let embed = hw.embed;
        Ok(GpuCode2Wav {
            k,
            config: c,
            embed,
            w,
            st,
            s,
            max_frames,
            pos: 0,
            skip,
            gpu_ns: 0.0,
            batches: 0,
            profile: false,
            last_profile: None,
        })
    }

    pub fn kernels(&self) -> &Kernels {
        &self.k
    }

    /// Frames per command buffer.
    pub fn max_frames(&self) -> u32 {
        self.max_frames
    }

    /// Frames pushed since the last reset.
    pub fn frames(&self) -> u32 {
        self.pos
    }

    /// GPU time (ns) and command buffers of the work since the last reset (timestamps permitting).
    pub fn gpu_time(&self) -> (f64, u32) {
        (self.gpu_ns, self.batches)
    }

    /// Benchmarks: time every dispatch of the following command buffers (serialised).
    pub fn set_profile(&mut self, on: bool) {
        self.profile = on;
    }

    /// The profile of the last command buffer recorded with profiling on.
    pub fn last_profile(&self) -> Option<&Profile> {
        self.last_profile.as_ref()
    }

    /// Starts a new stream: positions from 0, every history zero.
    pub fn reset(&mut self) -> Result<(), Code2WavError> {
        let st = &self.st;
        for b in st.k.iter().chain(&st.v).chain(&st.dw).chain(&st.block_prev).chain(st.units.iter().flatten()) {
            b.write_slice(0, &vec![0f32; (b.size() / 4) as usize])?;
        }
        for b in [&st.dec0, &st.fin] {
            b.write_slice(0, &vec![0f32; (b.size() / 4) as usize])?;
        }
        self.pos = 0;
        self.skip = self.config.upsample_rates.clone();
        self.gpu_ns = 0.0;
        self.batches = 0;
        Ok(())
    }

    /// One full decode of `codes` (`[T, num_quantizers]`): `output_len(T)` samples.
    pub fn decode(&mut self, codes: &[u32]) -> Result<Vec<f32>, Code2WavError> {
        self.reset()?;
        self.push(codes)
    }

    /// [`GpuCode2Wav::decode`] for the real model's 16 code groups per frame.
    pub fn decode16(&mut self, codes: &[[u32; 16]]) -> Result<Vec<f32>, Code2WavError> {
        self.decode(codes.as_flattened())
    }

    /// transformers' `chunked_decode(chunk, left_context)` (spec §7.6; 300/25 in `generate`):
    /// independent decodes of each chunk with its left context, the context's samples dropped.
    pub fn chunked_decode(
        &mut self,
        codes: &[u32],
        chunk: usize,
        left_context: usize,
    ) -> Result<Vec<f32>, Code2WavError> {
        let q = self.config.num_quantizers as usize;
        check_codes(&self.config, codes)?;
        let t = codes.len() / q;
        let spf = self.config.samples_per_frame() as usize;
        let mut out = Vec::new();
        let mut start = 0;
        while start < t {
            let end = (start + chunk.max(1)).min(t);
            let ctx = left_context.min(start);
            let wav = self.decode(&codes[(start - ctx) * q..end * q])?;
            out.extend_from_slice(&wav[(ctx * spf).min(wav.len())..]);
            start = end;
        }
        Ok(out)
    }

    /// Decodes `codes` (`[n, num_quantizers]`) after the frames already pushed, in command
    /// buffers of up to `max_frames` frames; returns every sample they complete. Concatenated
    /// over pushes this is exactly one full decode of all frames (the decode is causal).
    pub fn push(&mut self, codes: &[u32]) -> Result<Vec<f32>, Code2WavError> {
        check_codes(&self.config, codes)?;
        let q = self.config.num_quantizers as usize;
        let mut out = Vec::new();
        for chunk in codes.chunks(self.max_frames as usize * q) {
            out.extend(self.push_chunk(chunk)?);
        }
        Ok(out)
    }

    /// Ends a stream: nothing is held back by `push`, so there is nothing left to emit.
    pub fn finish(&mut self) -> Vec<f32> {
        Vec::new()
    }

    fn push_chunk(&mut self, codes: &[u32]) -> Result<Vec<f32>, Code2WavError> {
        let c = &self.config;
        let (h, q) = (c.hidden as usize, c.num_quantizers as usize);
        let n = (codes.len() / q) as u32;
        if n == 0 {
            return Ok(Vec::new());
        }
        // Mean of the code embeddings (spec §7.1), on the host.
        let mut x = vec![0f32; n as usize * h];
        for (t, f) in codes.chunks_exact(q).enumerate() {
            let row = &mut x[t * h..(t + 1) * h];
            for (g, &code) in f.iter().enumerate() {
                let e = (g * c.codebook_size as usize + code as usize) * h;
                for (r, v) in row.iter_mut().zip(&self.embed[e..e + h]) {
                    *r += v;
                }
            }
            let inv = 1.0 / q as f32;
            row.iter_mut().for_each(|r| *r *= inv);
        }
        self.s.x_in.write_slice(0, &x)?;
        let rows = rows_for(c, n, &self.skip);
        let total = rows.blocks.last().map(|b| b.1).unwrap_or(0);
        let mut rec = self.k.gpu().recorder(self.profile)?;
        self.record(&mut rec, n, &rows)?;
        let prof = rec.submit()?;
        if self.profile {
            self.last_profile = Some(prof.clone());
        }
        self.gpu_ns += prof.total_ns.unwrap_or(0.0);
        self.batches += 1;
        self.pos += n;
        for (s, b) in self.skip.iter_mut().zip(&rows.blocks) {
            *s -= b.2;
        }
        let mut out = vec![0f32; total as usize];
        if total > 0 {
            self.s.out.read(0, bytemuck::cast_slice_mut(&mut out))?;
        }
        Ok(out)
    }

    fn record<'a>(&'a self, rec: &mut Recorder<'a>, n: u32, rows: &Rows) -> Result<(), qwen3_omni_vk::Error> {
        let c = &self.config;
        let (k, s, w, st) = (&self.k, &self.s, &self.w, &self.st);
        let (h, inter) = (c.hidden, c.inter);
        let (nh, nkv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let (qd, kvd) = (nh * hd, nkv * hd);
        let wh = c.sliding_window - 1;
        let f4 = |rows: u32, ch: u32| rows as u64 * ch as u64 * 4;
        // Copies of rows (src, src row, dst, dst row, rows, channels), after a full compute +
        // transfer barrier: the recorder's hazard tracking only looks back to the previous barrier,
        // which may have ordered compute work alone, so a copy could otherwise overtake a dispatch
        // before it that wrote its source or read its destination (synchronization validation
        // reports exactly that).
        type Rows<'b> = (&'b Buffer, u32, &'b Buffer, u32, u32, u32);
        let copies = |rec: &mut Recorder<'a>, list: &[Rows<'a>]| -> Result<(), qwen3_omni_vk::Error> {
            if list.iter().all(|c| c.4 == 0) {
                return Ok(());
            }
            rec.full_barrier();
            for &(src, from, dst, to, rows, ch) in list {
                if rows > 0 {
                    rec.copy(src, f4(from, ch), dst, f4(to, ch), f4(rows, ch))?;
                }
            }
            Ok(())
        };
        let hist_copy =
            |rec: &mut Recorder<'a>, src: &'a Buffer, from: u32, dst: &'a Buffer, to: u32, rows: u32, ch: u32| {
                copies(rec, &[(src, from, dst, to, rows, ch)])
            };

        // Pre-transformer (spec §7.2).
        rec.copy(&s.x_in, 0, &s.x, 0, f4(n, h))?;
        let lin = |n: u32, cin: u32, cout: u32| ConvShape::linear(n, cin, cout);
        for (l, lw) in w.layers.iter().enumerate() {
            k.rms_norm(rec, &s.x, &lw.attn_norm, &s.y, h, n, c.rms_eps)?;
            k.conv1d(
                rec,
                lin(n, h, qd),
                lw.q.w(),
                ConvIo { x: &s.y, bias: None, epilogue: ConvEpilogue::Store, scale: None, y: &s.q },
            )?;
            copies(rec, &[(&st.k[l], 0, &s.kbuf, 0, wh, kvd), (&st.v[l], 0, &s.vbuf, 0, wh, kvd)])?;
            let kv_shape = ConvShape { y_off: wh, ..lin(n, h, kvd) };
            k.conv1d(
                rec,
                kv_shape,
                lw.k.w(),
                ConvIo { x: &s.y, bias: None, epilogue: ConvEpilogue::Store, scale: None, y: &s.kbuf },
            )?;
            k.conv1d(
                rec,
                kv_shape,
                lw.v.w(),
                ConvIo { x: &s.y, bias: None, epilogue: ConvEpilogue::Store, scale: None, y: &s.vbuf },
            )?;
            k.rope_rows(
                rec,
                RopeSpan { x: &s.q, row_off: 0, n, heads: nh, head_dim: hd, pos0: self.pos, theta: c.rope_theta },
            )?;
            k.rope_rows(
                rec,
                RopeSpan { x: &s.kbuf, row_off: wh, n, heads: nkv, head_dim: hd, pos0: self.pos, theta: c.rope_theta },
            )?;
            let valid = wh.min(self.pos);
            k.attn_window(
                rec,
                AttnWindow { q: &s.q, k: &s.kbuf, v: &s.vbuf, o: &s.att, n, hist: wh, valid, window: c.sliding_window },
                Heads { n_heads: nh, n_kv: nkv, head_dim: hd },
            )?;
            copies(rec, &[(&s.kbuf, n, &st.k[l], 0, wh, kvd), (&s.vbuf, n, &st.v[l], 0, wh, kvd)])?;
            k.conv1d(
                rec,
                lin(n, qd, h),
                lw.o.w(),
                ConvIo {
                    x: &s.att,
                    bias: None,
                    epilogue: ConvEpilogue::ScaledResidual,
                    scale: Some(&lw.attn_scale),
                    y: &s.x,
                },
            )?;
            k.rms_norm(rec, &s.x, &lw.ffn_norm, &s.y, h, n, c.rms_eps)?;
            k.conv1d(
                rec,
                lin(n, h, inter),
                lw.gate.w(),
                ConvIo { x: &s.y, bias: None, epilogue: ConvEpilogue::Store, scale: None, y: &s.g },
            )?;
            k.conv1d(
                rec,
                lin(n, h, inter),
                lw.up.w(),
                ConvIo { x: &s.y, bias: None, epilogue: ConvEpilogue::Store, scale: None, y: &s.u },
            )?;
            k.silu_mul(rec, &s.g, &s.u, &s.h, n as u64 * inter as u64)?;
            k.conv1d(
                rec,
                lin(n, inter, h),
                lw.down.w(),
                ConvIo {
                    x: &s.h,
                    bias: None,
                    epilogue: ConvEpilogue::ScaledResidual,
                    scale: Some(&lw.mlp_scale),
                    y: &s.x,
                },
            )?;
        }
        k.rms_norm(rec, &s.x, &w.norm, &s.y, h, n, c.rms_eps)?;

        // Upsampling (spec §7.3): transposed conv k = s into the depthwise conv's input, ConvNeXt,
        // the residual added in place.
        let (mut cur, mut cur_off, mut cur_rows) = (&s.y, 0u32, n);
        for (i, uw) in w.upsample.iter().enumerate() {
            let dwb = &s.dw[i % 2];
            let l_out = rows.up[i];
            let sh = ConvShape {
                n_in: cur_rows,
                cin: h,
                cout: h,
                s: uw.ratio,
                m: 1,
                d: 1,
                x_off: cur_off,
                y_off: HIST_K,
                skip: 0,
            };
            k.conv1d(
                rec,
                sh,
                ConvWeights::F32(&uw.tconv_w),
                ConvIo { x: cur, bias: Some(&uw.tconv_b), epilogue: ConvEpilogue::Store, scale: None, y: dwb },
            )?;
            hist_copy(rec, &st.dw[i], 0, dwb, 0, HIST_K, h)?;
            k.dwconv(
                rec,
                DwConv { x: dwb, x_off: HIST_K, w: &uw.dw_w, b: &uw.dw_b, y: &s.t1, n: l_out, c: h, k: CONV_K },
            )?;
            hist_copy(rec, dwb, l_out, &st.dw[i], 0, HIST_K, h)?;
            k.layer_norm(
                rec,
                LayerNorm { x: &s.t1, w: &uw.ln_w, b: &uw.ln_b, y: &s.t2, n: h, rows: l_out, eps: 1e-6 },
            )?;
            k.conv1d(
                rec,
                lin(l_out, h, 4 * h),
                uw.pw1_w.w(),
                ConvIo { x: &s.t2, bias: Some(&uw.pw1_b), epilogue: ConvEpilogue::Gelu, scale: None, y: &s.t3 },
            )?;
            let sh2 = ConvShape { y_off: HIST_K, ..lin(l_out, 4 * h, h) };
            k.conv1d(
                rec,
                sh2,
                uw.pw2_w.w(),
                ConvIo {
                    x: &s.t3,
                    bias: Some(&uw.pw2_b),
                    epilogue: ConvEpilogue::ScaledResidual,
                    scale: Some(&uw.gamma),
                    y: dwb,
                },
            )?;
            (cur, cur_off, cur_rows) = (dwb, HIST_K, l_out);
        }

        // decoder.0: causal conv k = 7 (spec §7.4).
        copies(rec, &[(cur, cur_off, &s.dec0, HIST_K, cur_rows, h), (&st.dec0, 0, &s.dec0, 0, HIST_K, h)])?;
        let dd = c.decoder_dim;
        let sh =
            ConvShape { n_in: cur_rows, cin: h, cout: dd, s: 1, m: CONV_K, d: 1, x_off: HIST_K, y_off: 0, skip: 0 };
        k.conv1d(
            rec,
            sh,
            ConvWeights::F32(&w.dec0_w),
            ConvIo { x: &s.dec0, bias: Some(&w.dec0_b), epilogue: ConvEpilogue::Store, scale: None, y: &s.xa },
        )?;
        hist_copy(rec, &s.dec0, cur_rows, &st.dec0, 0, HIST_K, h)?;

        // Decoder blocks: SnakeBeta, transposed conv (k = 2r, left trim r), three residual units.
        let (mut xa, mut xb) = (&s.xa, &s.xb);
        for (b, bw) in w.blocks.iter().enumerate() {
            let (rin, rout, skip) = rows.blocks[b];
            let (cin, cout) = (bw.cin, bw.cout);
            hist_copy(rec, &st.block_prev[b], 0, &s.s, 0, 1, cin)?;
            k.snake_beta(rec, SnakeBeta { x: xa, x_off: 0, params: &bw.act, y: &s.s, y_off: 1, n: rin, c: cin })?;
            let sh = ConvShape { n_in: rin, cin, cout, s: bw.rate, m: 2, d: 1, x_off: 1, y_off: 0, skip };
            k.conv1d(
                rec,
                sh,
                ConvWeights::F32(&bw.tconv_w),
                ConvIo { x: &s.s, bias: Some(&bw.tconv_b), epilogue: ConvEpilogue::Store, scale: None, y: xb },
            )?;
            hist_copy(rec, &s.s, rin, &st.block_prev[b], 0, 1, cin)?;
            for (ui, uw) in bw.units.iter().enumerate() {
                let hr = HIST_K * uw.dilation;
                let us = &st.units[b][ui];
                hist_copy(rec, us, 0, &s.s, 0, hr, cout)?;
                k.snake_beta(
                    rec,
                    SnakeBeta { x: xb, x_off: 0, params: &uw.act1, y: &s.s, y_off: hr, n: rout, c: cout },
                )?;
                hist_copy(rec, &s.s, rout, us, 0, hr, cout)?;
                let sh = ConvShape {
                    n_in: rout,
                    cin: cout,
                    cout,
                    s: 1,
                    m: CONV_K,
                    d: uw.dilation,
                    x_off: hr,
                    y_off: 0,
                    skip: 0,
                };
                k.conv1d(
                    rec,
                    sh,
                    ConvWeights::F32(&uw.conv1_w),
                    ConvIo { x: &s.s, bias: Some(&uw.conv1_b), epilogue: ConvEpilogue::Store, scale: None, y: &s.c1 },
                )?;
                k.snake_beta(
                    rec,
                    SnakeBeta { x: &s.c1, x_off: 0, params: &uw.act2, y: &s.c2, y_off: 0, n: rout, c: cout },
                )?;
                k.conv1d(
                    rec,
                    lin(rout, cout, cout),
                    ConvWeights::F32(&uw.conv2_w),
                    ConvIo { x: &s.c2, bias: Some(&uw.conv2_b), epilogue: ConvEpilogue::Residual, scale: None, y: xb },
                )?;
            }
            std::mem::swap(&mut xa, &mut xb);
        }

        // Final SnakeBeta, causal conv to one channel, clamp.
        let cf = c.final_channels();
        let l_fin = rows.blocks.last().map(|b| b.1).unwrap_or(0);
        hist_copy(rec, &st.fin, 0, &s.s, 0, HIST_K, cf)?;
        k.snake_beta(
            rec,
            SnakeBeta { x: xa, x_off: 0, params: &w.final_act, y: &s.s, y_off: HIST_K, n: l_fin, c: cf },
        )?;
        hist_copy(rec, &s.s, l_fin, &st.fin, 0, HIST_K, cf)?;
        let sh = ConvShape { n_in: l_fin, cin: cf, cout: 1, s: 1, m: CONV_K, d: 1, x_off: HIST_K, y_off: 0, skip: 0 };
        k.conv1d(
            rec,
            sh,
            ConvWeights::F32(&w.final_w),
            ConvIo { x: &s.s, bias: Some(&w.final_b), epilogue: ConvEpilogue::Clamp, scale: None, y: &s.out },
        )?;
        Ok(())
    }

    /// A streaming handle: starts a new stream.
    pub fn stream(&mut self) -> Result<Streamer<'_>, Code2WavError> {
        self.reset()?;
        Ok(Streamer { c: self })
    }
}

/// Streams frames into Code2Wav: each push returns the samples its frames complete; their
/// concatenation is one full decode of every frame pushed (no gaps, no overlap).
pub struct Streamer<'a> {
    c: &'a mut GpuCode2Wav,
}

impl Streamer<'_> {
    /// Decodes more frames (`[n, num_quantizers]`).
    pub fn push(&mut self, codes: &[u32]) -> Result<Vec<f32>, Code2WavError> {
        self.c.push(codes)
    }

    /// [`Streamer::push`] for 16 code groups per frame.
    pub fn push16(&mut self, frames: &[[u32; 16]]) -> Result<Vec<f32>, Code2WavError> {
        self.c.push(frames.as_flattened())
    }

    /// Ends the stream (nothing is held back, so this is empty).
    pub fn finish(self) -> Vec<f32> {
        self.c.finish()
    }
}
