//! The AudioTower on the GPU (spec §4.2). Work is cut into groups of whole attention windows
//! (windows start at chunk boundaries and nothing crosses them, so groups are independent through
//! every layer): scratch stays bounded however long the audio, and each group is one command
//! buffer: conv stem → conv_out → positions → 32 encoder layers → ln_post → proj1/GELU/proj2, its
//! rows copied into the output `[tokens, out_dim]` at their offset. Linears are planar Q8_0 ×
//! Q8_1 activations (int8 dot products, as the Thinker's prefill); conv kernels are f32 on the
//! device (converted from the file's F16).

use quantizer::gguf::GgmlType;
use qwen3_omni_vk::vk_runtime::{Buffer, Gpu, MemoryIntent};
use qwen3_omni_vk::{AttnBidirWindow, LayerNorm};
use qwen3_omni_vk::{Conv2dShape, Kernels, Matrix, Q8_1Scratch, WType};

use super::config::{conv_len, positional_table, AudioConfig, ChunkPlan, LN_EPS};
use super::cpu::load_f32;
use crate::model_file::{ModelError, ModelFile};
use crate::thinker::weights::{f32_vec, q8_planar};

struct Linear {
    w: Buffer,
    b: Option<Buffer>,
    rows: u32,
    cols: u32,
}

struct Layer {
    ln1: (Buffer, Buffer),
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ln2: (Buffer, Buffer),
    fc1: Linear,
    fc2: Linear,
}

struct Scratch {
    chunks: u32,
    mel: Buffer,
    c1: Buffer,
    c2: Buffer,
    c3: Buffer,
    h: Buffer,
    y: Buffer,
    q: Buffer,
    k: Buffer,
    v: Buffer,
    o: Buffer,
    a: Buffer,
    f: Buffer,
    out: Buffer,
    q81: Q8_1Scratch,
}

/// How the tower's linears multiply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioMatmul {
    /// Activations quantised to Q8_1, int8 dot products (as the Thinker's prefill): ~1% error.
    IntDot,
    /// f32 activations against the dequantised Q8_0 weights.
    Float,
}

impl AudioMatmul {
    /// Float by default: it reproduces transformers to ~5e-7 (int-dot: ~1.2e-2) and the tower's
    /// linears are a small cost next to real time (docs/audio.md). `AudioOptions::matmul_intdot`
    /// (`QWEN3VK_AUDIO_MATMUL=intdot`) picks int-dot where the device has it.
    pub fn choose(caps: &qwen3_omni_vk::vk_runtime::Caps, o: &qwen3_omni_vk::AudioOptions) -> AudioMatmul {
        if o.matmul_intdot && caps.int_dot {
            AudioMatmul::IntDot
        } else {
            AudioMatmul::Float
        }
    }
}

/// Audio embeddings on the GPU: `[tokens, dim]` f32, ready to replace `<|audio_pad|>` rows.
pub struct AudioEmbeds {
    pub buf: Buffer,
    pub tokens: u32,
    pub dim: u32,
}

impl AudioEmbeds {
    pub fn read(&self) -> Result<Vec<f32>, qwen3_omni_vk::Error> {
        let mut v = vec![0f32; self.tokens as usize * self.dim as usize];
        self.buf.read(0, bytemuck::cast_slice_mut(&mut v))?;
        Ok(v)
    }
}

/// The AudioTower's weights on the GPU and its scratch.
pub struct GpuAudioTower {
    pub config: AudioConfig,
    conv: [(Buffer, Buffer); 3],
    conv_out: Linear,
    layers: Vec<Layer>,
    ln_post: (Buffer, Buffer),
    proj1: Linear,
    proj2: Linear,
    pe: Buffer,
    scratch: Option<Scratch>,
    /// Int-dot or float linears (Float after `load`; see [`AudioMatmul::choose`]); Float needs no
    /// int8 dot products.
    pub matmul: AudioMatmul,
    /// With `profile` set, every dispatch is timed; `stats` sums them over the last forward.
    pub profile: bool,
    pub stats: ForwardStats,
}

/// GPU time of the last forward (whole command buffers; per kernel only when profiling).
#[derive(Debug, Clone, Default)]
pub struct ForwardStats {
    pub gpu_ns: f64,
    pub groups: u32,
    pub dispatches: u32,
    /// Kernel name → (ns, dispatches), profiling only.
    pub kernels: std::collections::BTreeMap<String, (f64, u32)>,
}

/// Attention windows per command buffer (≈ 416 tokens at the real model's 104-token windows).
const GROUP_TOKENS: u32 = 512;

impl GpuAudioTower {
    /// Device bytes of the weights (for a fit check and the CLI's report).
    pub fn device_bytes(c: &AudioConfig) -> u64 {
        let p = |r: u32, k: u32| qwen3_omni_vk::layout::PlanarLayout::new(r as u64, k as u64).total();
        let (d, ds) = (c.d_model, c.conv_channels);
        let conv = 4 * (ds as u64 * 9 + 2 * ds as u64 * ds as u64 * 9 + 3 * ds as u64);
        let layer = 4 * p(d, d) + p(c.ffn, d) + p(d, c.ffn) + 4 * (9 * d as u64 + c.ffn as u64);
        conv + p(d, c.flat_features()) + c.layers as u64 * layer + p(d, d) + p(c.out_dim, d) + 4 * 4 * d as u64
    }

    pub fn load(gpu: &Gpu, m: &ModelFile, mut progress: impl FnMut(u32, u32)) -> Result<GpuAudioTower, ModelError> {
        let c = AudioConfig::from_model(m)?;
        let p = "thinker.audio_tower";
        let (d, ds, ffn) = (c.d_model as u64, c.conv_channels as u64, c.ffn as u64);
        let vec = |name: &str, len: u64| f32_vec(gpu, m, &format!("{p}.{name}"), &[len]);
        let lin = |name: &str, rows: u64, cols: u64, bias: bool| -> Result<Linear, ModelError> {
            Ok(Linear {
                w: q8_planar(gpu, m, &format!("{p}.{name}.weight"), rows, cols)?,
                b: if bias { Some(vec(&format!("{name}.bias"), rows)?) } else { None },
                rows: rows as u32,
                cols: cols as u32,
            })
        };
        let conv = |name: &str, cin: u64| -> Result<(Buffer, Buffer), ModelError> {
            let wn = format!("{p}.{name}.weight");
            m.tensor_typed(&wn, &[ds, cin, 3, 3], &[GgmlType::F16, GgmlType::F32])?;
            let w = load_f32(m, &wn, &[ds, cin, 3, 3])?;
            Ok((gpu.buffer_from(&wn, &w, MemoryIntent::Weights)?, vec(&format!("{name}.bias"), ds)?))
        };
        let convs = [conv("conv2d1", 1)?, conv("conv2d2", ds)?, conv("conv2d3", ds)?];
        let conv_out = lin("conv_out", d, c.flat_features() as u64, false)?;
        let mut layers = Vec::new();
        for l in 0..c.layers {
            let n = |s: &str| format!("layers.{l}.{s}");
            layers.push(Layer {
                ln1: (vec(&n("self_attn_layer_norm.weight"), d)?, vec(&n("self_attn_layer_norm.bias"), d)?),
                q: lin(&n("self_attn.q_proj"), d, d, true)?,
                k: lin(&n("self_attn.k_proj"), d, d, true)?,
                v: lin(&n("self_attn.v_proj"), d, d, true)?,
                o: lin(&n("self_attn.out_proj"), d, d, true)?,
                ln2: (vec(&n("final_layer_norm.weight"), d)?, vec(&n("final_layer_norm.bias"), d)?),
                fc1: lin(&n("fc1"), ffn, d, true)?,
                fc2: lin(&n("fc2"), d, ffn, true)?,
            });
            progress(l + 1, c.layers);
        }
        let pe_len = conv_len(c.chunk_frames());
        let pe = gpu.buffer_from("audio positions", &positional_table(pe_len, c.d_model), MemoryIntent::Weights)?;
        Ok(GpuAudioTower {
            conv: convs,
            conv_out,
            layers,
            ln_post: (vec("ln_post.weight", d)?, vec("ln_post.bias", d)?),
            proj1: lin("proj1", d, d, true)?,
            proj2: lin("proj2", c.out_dim as u64, d, true)?,
            pe,
            scratch: None,
            matmul: AudioMatmul::Float,
            profile: false,
            stats: ForwardStats::default(),
            config: c,
        })
    }

    /// Chunks per command buffer: whole attention windows, about [`GROUP_TOKENS`] tokens.
    fn group_chunks(&self) -> u32 {
        let c = &self.config;
        let per_window = (c.n_window_infer / c.chunk_frames()).max(1);
        let window = c.window_tokens(c.chunk_frames()).max(1);
        per_window * (GROUP_TOKENS / window).max(1)
    }

    fn scratch(&mut self, gpu: &Gpu, k: &Kernels) -> Result<(), qwen3_omni_vk::Error> {
        if self.scratch.is_some() {
            return Ok(());
        }
        let c = &self.config;
        let g = self.group_chunks() as u64;
        let (nm, lmax, ds) = (c.n_mels as u64, c.chunk_frames() as u64, c.conv_channels as u64);
        let t3 = conv_len(c.chunk_frames()) as u64;
        let n = g * t3;
        let f = |name: &str, len: u64| gpu.buffer(name, len * 4, MemoryIntent::Scratch);
        let widest = (c.flat_features().max(c.ffn).max(c.d_model) as u64 * n).div_ceil(32) * 32;
        self.scratch = Some(Scratch {
            chunks: g as u32,
            mel: gpu.buffer("audio mel chunks", g * nm * lmax * 4, MemoryIntent::Upload)?,
            c1: f("audio conv1", g * ds * nm.div_ceil(2) * lmax.div_ceil(2))?,
            c2: f("audio conv2", g * ds * nm.div_ceil(4) * lmax.div_ceil(4))?,
            c3: f("audio conv3 flat", n * c.flat_features() as u64)?,
            h: f("audio h", n * c.d_model as u64)?,
            y: f("audio normed", n * c.d_model as u64)?,
            q: f("audio q", n * c.d_model as u64)?,
            k: f("audio k", n * c.d_model as u64)?,
            v: f("audio v", n * c.d_model as u64)?,
            o: f("audio attention out", n * c.d_model as u64)?,
            a: f("audio projection out", n * c.d_model.max(c.out_dim) as u64)?,
            f: f("audio ffn hidden", n * c.ffn as u64)?,
            out: f("audio out", n * c.out_dim as u64)?,
            q81: k.q8_1_scratch(widest)?,
        });
        Ok(())
    }

    /// mel `[n_mels, frames]` → embeddings `[tokens(frames), out_dim]` on the GPU.
    pub fn forward(&mut self, k: &Kernels, mel: &[f32], frames: u32) -> Result<AudioEmbeds, qwen3_omni_vk::Error> {
        let c = self.config.clone();
        let err = |what: String| qwen3_omni_vk::Error::Kernel { kernel: "audio tower".into(), what };
        if frames == 0 {
            return Err(err("no mel frames (audio shorter than 10 ms)".into()));
        }
        if mel.len() != c.n_mels as usize * frames as usize {
            return Err(err(format!("mel has {} values, expected {} × {frames}", mel.len(), c.n_mels)));
        }
        let gpu = k.gpu().clone();
        self.scratch(&gpu, k)?;
        let plan = c.plan(frames);
        let out = gpu.buffer("audio embeddings", plan.tokens as u64 * c.out_dim as u64 * 4, MemoryIntent::Scratch)?;
        let g = self.scratch.as_ref().map(|s| s.chunks).unwrap_or(1);
        self.stats = ForwardStats::default();
        let mut row = 0u32;
        let mut c0 = 0;
        while c0 < plan.n_chunks {
            let c1 = (c0 + g).min(plan.n_chunks);
            let (n, prof) = self.group(k, &plan, mel, c0, c1, &out, row)?;
            self.stats.gpu_ns += prof.total_ns.unwrap_or(0.0);
            self.stats.groups += 1;
            self.stats.dispatches += prof.dispatches;
            for kt in &prof.kernels {
                let e = self.stats.kernels.entry(kt.name.clone()).or_default();
                e.0 += kt.ns;
                e.1 += 1;
            }
            row += n;
            c0 = c1;
        }
        debug_assert_eq!(row, plan.tokens);
        Ok(AudioEmbeds { buf: out, tokens: plan.tokens, dim: c.out_dim })
    }

    /// Chunks c0..c1 (whole windows) in one command buffer; their rows go to `out` at `row`.
    #[allow(clippy::too_many_arguments)]
    fn group(
        &self,
        k: &Kernels,
        plan: &ChunkPlan,
        mel: &[f32],
        c0: u32,
        c1: u32,
        out: &Buffer,
        row: u32,
    ) -> Result<(u32, qwen3_omni_vk::vk_runtime::Profile), qwen3_omni_vk::Error> {
        let c = &self.config;
        let s = self.scratch.as_ref().expect("scratch");
        let (nm, lmax, frames) = (c.n_mels as usize, plan.lmax as usize, plan.frames as usize);
        let nc = c1 - c0;
        // Chunks zero-padded to lmax frames: [nc, n_mels, lmax].
        let mut x = vec![0f32; nc as usize * nm * lmax];
        for j in 0..nc as usize {
            let (start, len) = ((c0 as usize + j) * plan.chunk as usize, plan.lens[c0 as usize + j] as usize);
            for b in 0..nm {
                let dst = (j * nm + b) * lmax;
                x[dst..dst + len].copy_from_slice(&mel[b * frames + start..b * frames + start + len]);
            }
        }
        s.mel.write_slice(0, &x)?;
        let n = plan.tokens_of(c0, c1);
        let (d, ds) = (c.d_model, c.conv_channels);
        let padded_rows = nc * plan.conv_t;
        let mut rec = k.gpu().recorder(self.profile)?;
        let s1 = Conv2dShape { n: nc, cin: 1, hin: c.n_mels, win: plan.lmax, cout: ds };
        k.conv2d_s2_gelu(&mut rec, s1, &s.mel, &self.conv[0].0, &self.conv[0].1, &s.c1, false)?;
        let s2 = Conv2dShape { n: nc, cin: ds, hin: s1.hout(), win: s1.wout(), cout: ds };
        k.conv2d_s2_gelu(&mut rec, s2, &s.c1, &self.conv[1].0, &self.conv[1].1, &s.c2, false)?;
        let s3 = Conv2dShape { n: nc, cin: ds, hin: s2.hout(), win: s2.wout(), cout: ds };
        k.conv2d_s2_gelu(&mut rec, s3, &s.c2, &self.conv[2].0, &self.conv[2].1, &s.c3, true)?;
        debug_assert_eq!(s3.wout(), plan.conv_t);
        // conv_out over every padded position, then the per-chunk positions (period conv_t rows);
        // the kept rows are a prefix (only the last chunk of the clip keeps fewer).
        self.linear(k, &mut rec, &self.conv_out, &s.c3, padded_rows, &s.h, &s.q81)?;
        let hd = padded_rows as u64 * d as u64;
        k.add(&mut rec, &s.h, &self.pe, &s.h, hd, plan.conv_t as u64 * d as u64)?;
        let nd = n as u64 * d as u64;
        let scale = 1.0 / (c.head_dim as f32).sqrt();
        for l in &self.layers {
            k.layer_norm(
                &mut rec,
                LayerNorm { x: &s.h, w: &l.ln1.0, b: &l.ln1.1, y: &s.y, n: d, rows: n, eps: LN_EPS },
            )?;
            if self.matmul == AudioMatmul::IntDot {
                k.quantize_q8_1(&mut rec, &s.y, nd, &s.q81)?;
            }
            for (lin, dst) in [(&l.q, &s.q), (&l.k, &s.k), (&l.v, &s.v)] {
                let m = Matrix::new(&lin.w, WType::Q8_0Planar, lin.rows, lin.cols);
                match self.matmul {
                    AudioMatmul::IntDot => k.matmul_q8_0_prequantized(&mut rec, m, n, dst, &s.q81)?,
                    AudioMatmul::Float => k.matmul_q8_0_float(&mut rec, m, &s.y, n, dst)?,
                }
                if let Some(b) = &lin.b {
                    k.add(&mut rec, dst, b, dst, nd, d as u64)?;
                }
            }
            k.attn_bidir_window(
                &mut rec,
                AttnBidirWindow {
                    q: &s.q,
                    k: &s.k,
                    v: &s.v,
                    o: &s.o,
                    n_tok: n,
                    heads: c.heads,
                    head_dim: c.head_dim,
                    window: plan.window,
                    scale,
                },
            )?;
            self.linear(k, &mut rec, &l.o, &s.o, n, &s.a, &s.q81)?;
            k.add(&mut rec, &s.h, &s.a, &s.h, nd, nd)?;
            k.layer_norm(
                &mut rec,
                LayerNorm { x: &s.h, w: &l.ln2.0, b: &l.ln2.1, y: &s.y, n: d, rows: n, eps: LN_EPS },
            )?;
            self.linear_gelu(k, &mut rec, &l.fc1, &s.y, n, &s.f, &s.q81)?;
            self.linear(k, &mut rec, &l.fc2, &s.f, n, &s.a, &s.q81)?;
            k.add(&mut rec, &s.h, &s.a, &s.h, nd, nd)?;
        }
        k.layer_norm(
            &mut rec,
            LayerNorm { x: &s.h, w: &self.ln_post.0, b: &self.ln_post.1, y: &s.y, n: d, rows: n, eps: LN_EPS },
        )?;
        self.linear_gelu(k, &mut rec, &self.proj1, &s.y, n, &s.a, &s.q81)?;
        self.linear(k, &mut rec, &self.proj2, &s.a, n, &s.out, &s.q81)?;
        let rb = c.out_dim as u64 * 4;
        rec.copy(&s.out, 0, out, row as u64 * rb, n as u64 * rb)?;
        let prof = rec.submit()?;
        Ok((n, prof))
    }

    /// y = x·Wᵀ over n rows, int-dot or float.
    #[allow(clippy::too_many_arguments)]
    fn matmul<'a>(
        &self,
        k: &Kernels,
        rec: &mut qwen3_omni_vk::vk_runtime::Recorder<'a>,
        lin: &'a Linear,
        x: &'a Buffer,
        n: u32,
        y: &'a Buffer,
        q81: &'a Q8_1Scratch,
    ) -> Result<(), qwen3_omni_vk::Error> {
        let m = Matrix::new(&lin.w, WType::Q8_0Planar, lin.rows, lin.cols);
        match self.matmul {
            AudioMatmul::IntDot => k.matmul_q8_0(rec, m, x, n, y, q81),
            AudioMatmul::Float => k.matmul_q8_0_float(rec, m, x, n, y),
        }
    }

    /// y = x·Wᵀ + b over n rows.
    #[allow(clippy::too_many_arguments)]
    fn linear<'a>(
        &self,
        k: &Kernels,
        rec: &mut qwen3_omni_vk::vk_runtime::Recorder<'a>,
        lin: &'a Linear,
        x: &'a Buffer,
        n: u32,
        y: &'a Buffer,
        q81: &'a Q8_1Scratch,
    ) -> Result<(), qwen3_omni_vk::Error> {
        self.matmul(k, rec, lin, x, n, y, q81)?;
        if let Some(b) = &lin.b {
            k.add(rec, y, b, y, n as u64 * lin.rows as u64, lin.rows as u64)?;
        }
        Ok(())
    }

    /// y = gelu(x·Wᵀ + b) over n rows.
    #[allow(clippy::too_many_arguments)]
    fn linear_gelu<'a>(
        &self,
        k: &Kernels,
        rec: &mut qwen3_omni_vk::vk_runtime::Recorder<'a>,
        lin: &'a Linear,
        x: &'a Buffer,
        n: u32,
        y: &'a Buffer,
        q81: &'a Q8_1Scratch,
    ) -> Result<(), qwen3_omni_vk::Error> {
        self.matmul(k, rec, lin, x, n, y, q81)?;
        let b = lin.b.as_ref().expect("fc1 and proj1 have biases");
        k.add_gelu(rec, y, b, y, n as u64 * lin.rows as u64, lin.rows as u64)
    }
}
