//! AudioTower hyper-parameters from the model file's config (`thinker_config.audio_config`), and
//! the chunk / window plan of one clip (spec §4.2, §4.3).

use qwen3_omni_vk::{ATTN_WINDOW_MAX, ATTN_WINDOW_MAX_HEAD_DIM};

use crate::config_check::{Checked, Section, Tensors, MAX_HEADS, MAX_LAYERS, MAX_POSITIONS, MAX_WIDTH};
use crate::model_file::{ModelError, ModelFile};

/// LayerNorm epsilon of every AudioTower norm (spec §9 trap 1; not in config.json).
pub const LN_EPS: f32 = 1e-5;

#[derive(Debug, Clone, PartialEq)]
pub struct AudioConfig {
    pub n_mels: u32,
    pub d_model: u32,
    pub layers: u32,
    pub heads: u32,
    pub head_dim: u32,
    pub ffn: u32,
    /// Channels of the conv stem (`downsample_hidden_size`).
    pub conv_channels: u32,
    pub out_dim: u32,
    pub n_window: u32,
    pub n_window_infer: u32,
}

const A: &str = "/thinker_config/audio_config";

/// Mel bins of the feature extractor every front end runs (spec §2.2: Whisper's 128).
pub const MEL_BINS: u32 = 128;

impl AudioConfig {
    /// The config of `m`, every field range-checked and checked against the others, the
    /// Thinker's hidden size and the tensors (errors name the field).
    pub fn from_model(m: &ModelFile) -> Result<AudioConfig, ModelError> {
        Self::parse(m.config(), &Tensors::new(m)).map_err(|e| e.into_model(m))
    }

    fn parse(cfg: &serde_json::Value, t: &Tensors) -> Checked<AudioConfig> {
        let s = Section::new(cfg, A);
        let n_mels = s.uint("num_mel_bins", 1..=MAX_WIDTH)?;
        s.ensure("num_mel_bins", n_mels == MEL_BINS, || {
            format!("{n_mels}: the feature extractor computes {MEL_BINS} mel bins")
        })?;
        let d_model = s.width("d_model")?;
        let heads = s.uint("encoder_attention_heads", 1..=MAX_HEADS)?;
        s.ensure("encoder_attention_heads", d_model.is_multiple_of(heads), || {
            format!("{heads} does not divide d_model {d_model}")
        })?;
        let head_dim = d_model / heads;
        s.ensure(
            "encoder_attention_heads",
            head_dim.is_multiple_of(2) && head_dim <= ATTN_WINDOW_MAX_HEAD_DIM,
            || format!("head_dim d_model / {heads} = {head_dim} is not even and at most {ATTN_WINDOW_MAX_HEAD_DIM}"),
        )?;
        let n_window = s.uint("n_window", 1..=ATTN_WINDOW_MAX)?;
        let n_window_infer = s.uint("n_window_infer", 1..=MAX_POSITIONS)?;
        s.ensure("n_window_infer", n_window_infer >= 2 * n_window, || {
            format!("{n_window_infer} is less than one chunk (2 × n_window = {})", 2 * n_window)
        })?;
        let c = AudioConfig {
            n_mels,
            d_model,
            layers: s.uint("encoder_layers", 1..=MAX_LAYERS)?,
            heads,
            head_dim,
            ffn: s.width("encoder_ffn_dim")?,
            conv_channels: s.uint("downsample_hidden_size", 1..=MAX_WIDTH)?,
            out_dim: s.width("output_dim")?,
            n_window,
            n_window_infer,
        };
        let w = c.window_tokens(c.chunk_frames()) as u64;
        s.ensure("n_window_infer", w <= ATTN_WINDOW_MAX as u64, || {
            format!("an attention window of {w} tokens is longer than the kernel's {ATTN_WINDOW_MAX}")
        })?;
        let ff = c.flat_features();
        s.ensure("downsample_hidden_size", ff.is_multiple_of(32) && ff <= MAX_WIDTH, || {
            format!("× mel bins / 8 = {ff} is not a multiple of 32 up to {MAX_WIDTH} (conv_out's Q8_0 rows)")
        })?;
        // The tower's rows replace Thinker embeddings.
        if let Some(h) = cfg.pointer("/thinker_config/text_config/hidden_size").and_then(|v| v.as_u64()) {
            s.ensure("output_dim", c.out_dim as u64 == h, || {
                format!("{} differs from the Thinker's hidden_size {h}", c.out_dim)
            })?;
        }
        c.check_tensors(t, &s)?;
        Ok(c)
    }

    fn check_tensors(&self, t: &Tensors, s: &Section) -> Checked<()> {
        let p = "thinker.audio_tower";
        if !t.any(&format!("{p}.")) {
            return Ok(());
        }
        let conv = format!("{p}.conv2d1.weight");
        t.dim(s, "downsample_hidden_size", &conv, 0, self.conv_channels as u64, "downsample_hidden_size")?;
        t.count(s, "encoder_layers", self.layers, |l| format!("{p}.layers.{l}.fc1.weight"))?;
        let fc1 = format!("{p}.layers.0.fc1.weight");
        t.dim(s, "encoder_ffn_dim", &fc1, 0, self.ffn as u64, "encoder_ffn_dim")?;
        t.dim(s, "d_model", &fc1, 1, self.d_model as u64, "d_model")?;
        t.dim(s, "output_dim", &format!("{p}.proj2.weight"), 0, self.out_dim as u64, "output_dim")?;
        Ok(())
    }

    /// Mel bins left after the three stride-2 convolutions.
    pub fn conv_freq(&self) -> u32 {
        (0..3).fold(self.n_mels, |f, _| f.div_ceil(2))
    }

    /// conv_out's input width: channels × frequencies.
    pub fn flat_features(&self) -> u32 {
        self.conv_channels * self.conv_freq()
    }

    /// Mel frames per chunk (2 · n_window = 100).
    pub fn chunk_frames(&self) -> u32 {
        2 * self.n_window
    }

    /// Attention window in tokens when the longest chunk has `lmax` frames:
    /// `tokens(lmax) · (n_window_infer // chunk)` (104 in the real model).
    pub fn window_tokens(&self, lmax: u32) -> u32 {
        conv_len(lmax) * (self.n_window_infer / self.chunk_frames())
    }

    /// The chunking of a clip of `frames` mel frames.
    pub fn plan(&self, frames: u32) -> ChunkPlan {
        let ch = self.chunk_frames();
        let n_chunks = frames.div_ceil(ch);
        let lens: Vec<u32> = (0..n_chunks).map(|j| (frames - j * ch).min(ch)).collect();
        let lmax = lens.iter().copied().max().unwrap_or(0);
        let tokens = lens.iter().map(|&l| conv_len(l)).sum();
        ChunkPlan {
            frames,
            chunk: ch,
            n_chunks,
            lmax,
            conv_t: conv_len(lmax),
            tokens,
            window: self.window_tokens(lmax),
            chunks_per_window: self.n_window_infer / ch,
            lens,
        }
    }
}

/// Length after the three stride-2 convolutions: ceil(ceil(ceil(l/2)/2)/2).
pub fn conv_len(l: u32) -> u32 {
    (0..3).fold(l, |x, _| x.div_ceil(2))
}

/// How a clip is cut into chunks (spec §4.2 steps 1, 5, 6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkPlan {
    pub frames: u32,
    pub chunk: u32,
    pub n_chunks: u32,
    /// Valid frames of each chunk (the last may be shorter).
    pub lens: Vec<u32>,
    /// Every chunk is zero-padded to this many frames before the conv stem.
    pub lmax: u32,
    /// Positions per chunk after the conv stem (= tokens of a full chunk).
    pub conv_t: u32,
    /// Output tokens: Σ conv_len(lens) — the spec §4.3 formula.
    pub tokens: u32,
    /// Attention window in tokens.
    pub window: u32,
    /// Chunks per attention window (windows start at chunk boundaries).
    pub chunks_per_window: u32,
}

impl ChunkPlan {
    /// Tokens kept from chunks `c0..c1`.
    pub fn tokens_of(&self, c0: u32, c1: u32) -> u32 {
        self.lens[c0 as usize..c1 as usize].iter().map(|&l| conv_len(l)).sum()
    }
}

/// The sinusoidal position table `[len, d]` (sin block, then cos block; timescale
/// ln(10000)/(d/2 − 1)), computed in f32 as transformers does.
pub fn positional_table(len: u32, d: u32) -> Vec<f32> {
    let half = (d / 2) as usize;
    let inc = (10000f64.ln() / (half as f64 - 1.0).max(1.0)) as f32;
    let inv: Vec<f32> = (0..half).map(|i| (-inc * i as f32).exp()).collect();
    let mut t = vec![0f32; len as usize * d as usize];
    for p in 0..len as usize {
        for i in 0..half {
            let a = p as f32 * inv[i];
            t[p * d as usize + i] = a.sin();
            t[p * d as usize + half + i] = a.cos();
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real() -> AudioConfig {
        AudioConfig {
            n_mels: 128,
            d_model: 1280,
            layers: 32,
            heads: 20,
            head_dim: 64,
            ffn: 5120,
            conv_channels: 480,
            out_dim: 2048,
            n_window: 50,
            n_window_infer: 800,
        }
    }

    /// Window boundaries (transformers' cu_seqlens) for 3000 and 3500 frames (spec §12), and
    /// token counts against the §4.3 formula.
    #[test]
    fn windows_and_tokens_match_spec() {
        let c = real();
        for (frames, bounds) in [(3000u32, vec![0u32, 104, 208, 312, 390]), (3500, vec![0, 104, 208, 312, 416, 455])] {
            let p = c.plan(frames);
            let mut b: Vec<u32> = (0..p.tokens).step_by(p.window as usize).collect();
            b.push(p.tokens);
            assert_eq!(b, bounds, "{frames} frames");
            assert_eq!(p.window, 104);
        }
        for frames in [30u32, 99, 100, 101, 250, 1000, 1234, 360_000] {
            let p = c.plan(frames);
            assert_eq!(p.tokens as usize, crate::chat::audio_token_count(frames as usize), "{frames} frames");
            assert_eq!(p.lens.iter().sum::<u32>(), frames);
        }
        // Under one second: one chunk, padded to itself, and the window shrinks with it.
        let p = c.plan(37);
        assert_eq!((p.n_chunks, p.lmax, p.conv_t, p.window), (1, 37, 5, 40));
        assert_eq!(c.flat_features(), 7680);
    }
}
