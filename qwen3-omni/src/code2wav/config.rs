//! Code2Wav hyper-parameters, read from the model file's config (`code2wav_config`, spec §2.2):
//! never from transformers' class defaults (spec §2.3).

use crate::config_check::{Checked, Section, Tensors, MAX_HEADS, MAX_HEAD_DIM, MAX_LAYERS, MAX_VOCAB, MAX_WIDTH};
use crate::model_file::{ModelError, ModelFile};

/// What Code2Wav's shapes and numerics depend on.
#[derive(Debug, Clone, PartialEq)]
pub struct Code2WavConfig {
    /// Pre-transformer width (1024).
    pub hidden: u32,
    pub layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// Pre-transformer MLP width (3072).
    pub inter: u32,
    /// Codes per codebook (2048).
    pub codebook_size: u32,
    /// Code groups per frame (16).
    pub num_quantizers: u32,
    /// Keys a query sees, itself included (72).
    pub sliding_window: u32,
    pub rms_eps: f32,
    pub rope_theta: f32,
    /// Decoder channels after `decoder.0` (1536).
    pub decoder_dim: u32,
    /// Decoder block rates ([8, 5, 4, 3]).
    pub upsample_rates: Vec<u32>,
    /// Transposed-conv + ConvNeXt stage ratios ([2, 2]).
    pub upsampling_ratios: Vec<u32>,
}

const C: &str = "/code2wav_config";

/// Samples per code frame at most (real: 1920): keeps every length computation far from overflow.
pub const MAX_SAMPLES_PER_FRAME: u64 = 1 << 20;
/// Keys a query sees at most (real: 72).
pub const MAX_SLIDING_WINDOW: u32 = 4096;

impl Code2WavConfig {
    /// The config of `m`, checked as [`Code2WavConfig::from_json`] does and against the tensors.
    pub fn from_model(m: &ModelFile) -> Result<Code2WavConfig, ModelError> {
        let c = Self::from_json(m.config()).map_err(|(f, w)| m.config_err(&f, &w))?;
        c.check_tensors(&Tensors::new(m), &Section::new(m.config(), C)).map_err(|e| e.into_model(m))?;
        Ok(c)
    }

    /// From a config.json value: every field range-checked and checked against the others; errors
    /// are (field, what is wrong).
    pub fn from_json(cfg: &serde_json::Value) -> Result<Code2WavConfig, (String, String)> {
        Self::parse(&Section::new(cfg, C)).map_err(|e| (e.field, e.what))
    }

    fn parse(s: &Section) -> Checked<Code2WavConfig> {
        let hidden = s.width("hidden_size")?;
        let layers = s.uint("num_hidden_layers", 1..=MAX_LAYERS)?;
        let n_heads = s.uint("num_attention_heads", 1..=MAX_HEADS)?;
        let n_kv_heads = s.uint("num_key_value_heads", 1..=n_heads)?;
        s.ensure("num_key_value_heads", n_heads.is_multiple_of(n_kv_heads), || {
            format!("{n_kv_heads} does not divide num_attention_heads {n_heads}")
        })?;
        let head_dim = s.uint_or("head_dim", hidden / n_heads, 0..=u32::MAX)?;
        s.ensure("head_dim", head_dim.is_multiple_of(2) && (2..=MAX_HEAD_DIM).contains(&head_dim), || {
            format!("{head_dim} is not an even number in 2..={MAX_HEAD_DIM} (the windowed attention kernel)")
        })?;
        let qd = n_heads * head_dim;
        s.ensure("num_attention_heads", qd.is_multiple_of(32) && qd <= MAX_WIDTH, || {
            format!("num_attention_heads × head_dim = {qd} is not a multiple of 32 up to {MAX_WIDTH} (Q8_0 rows)")
        })?;
        let codebook_size = s.uint("codebook_size", 1..=MAX_VOCAB)?;
        let num_quantizers = s.uint("num_quantizers", 1..=64)?;
        let rows = codebook_size as u64 * num_quantizers as u64;
        s.buffer(
            "codebook_size",
            "the code embedding (codebook_size × num_quantizers × hidden_size)",
            rows * hidden as u64 * 4,
        )?;
        let upsample_rates = s.uint_list("upsample_rates", 1..=8, 1..=64)?;
        let upsampling_ratios = s.uint_list("upsampling_ratios", 0..=8, 1..=64)?;
        let spf = upsampling_ratios.iter().chain(&upsample_rates).map(|&r| r as u64).product::<u64>();
        s.ensure("upsample_rates", spf <= MAX_SAMPLES_PER_FRAME, || {
            format!("with upsampling_ratios: {spf} samples per frame, over {MAX_SAMPLES_PER_FRAME}")
        })?;
        let decoder_dim = s.uint("decoder_dim", 1..=MAX_WIDTH)?;
        let n = upsample_rates.len();
        s.ensure("decoder_dim", decoder_dim >> n != 0 && decoder_dim.is_multiple_of(1 << n), || {
            format!("{decoder_dim} cannot be halved {n} times (once per upsample_rates entry)")
        })?;
        Ok(Code2WavConfig {
            hidden,
            layers,
            n_heads,
            n_kv_heads,
            head_dim,
            inter: s.width("intermediate_size")?,
            codebook_size,
            num_quantizers,
            sliding_window: s.uint("sliding_window", 1..=MAX_SLIDING_WINDOW)?,
            rms_eps: s.rms_eps()?,
            rope_theta: s.rope_theta()?,
            decoder_dim,
            upsample_rates,
            upsampling_ratios,
        })
    }

    fn check_tensors(&self, t: &Tensors, s: &Section) -> Checked<()> {
        let embed = "code2wav.code_embedding.weight";
        if !t.has(embed) {
            return Ok(());
        }
        let rows = self.codebook_size as u64 * self.num_quantizers as u64;
        t.dim(s, "codebook_size", embed, 0, rows, "codebook_size × num_quantizers")?;
        t.dim(s, "hidden_size", embed, 1, self.hidden as u64, "hidden_size")?;
        let layer = |l: u32| format!("code2wav.pre_transformer.layers.{l}.input_layernorm.weight");
        t.count(s, "num_hidden_layers", self.layers, layer)?;
        let n = |x: &str| format!("code2wav.pre_transformer.layers.0.{x}");
        let (qd, kvd) = ((self.n_heads * self.head_dim) as u64, (self.n_kv_heads * self.head_dim) as u64);
        let q = n("self_attn.q_proj.weight");
        t.dim(s, "num_attention_heads", &q, 0, qd, "num_attention_heads × head_dim")?;
        t.dim(s, "num_key_value_heads", &n("self_attn.k_proj.weight"), 0, kvd, "num_key_value_heads × head_dim")?;
        t.dim(s, "intermediate_size", &n("mlp.gate_proj.weight"), 0, self.inter as u64, "intermediate_size")?;
        let d0 = "code2wav.decoder.0.conv.weight";
        t.dim(s, "decoder_dim", d0, 0, self.decoder_dim as u64, "decoder_dim")?;
        // Decoder blocks 1..=len(upsample_rates), then the final activation and conv.
        let block = |b: u32| format!("code2wav.decoder.{}.block.1.conv.weight", b + 1);
        t.count(s, "upsample_rates", self.upsample_rates.len() as u32, block)?;
        for (b, &r) in self.upsample_rates.iter().enumerate() {
            t.dim(s, "upsample_rates", &block(b as u32), 2, 2 * r as u64, "2 × upsample_rates[b]")?;
        }
        let up = |u: u32| format!("code2wav.upsample.{u}.0.conv.weight");
        t.count(s, "upsampling_ratios", self.upsampling_ratios.len() as u32, up)?;
        for (u, &r) in self.upsampling_ratios.iter().enumerate() {
            t.dim(s, "upsampling_ratios", &up(u as u32), 2, r as u64, "upsampling_ratios[u]")?;
        }
        Ok(())
    }

    /// Samples per code frame (1920 for the real model).
    pub fn samples_per_frame(&self) -> u64 {
        self.upsampling_ratios.iter().chain(&self.upsample_rates).map(|&r| r as u64).product()
    }

    /// Samples a full decode of `frames` frames yields (1920·T − 555 for the real model; spec §7.5):
    /// each decoder block's transposed conv loses one input frame's worth of samples.
    pub fn output_len(&self, frames: u64) -> u64 {
        if frames == 0 {
            return 0;
        }
        let mut l = frames * self.upsampling_ratios.iter().map(|&r| r as u64).product::<u64>();
        for &r in &self.upsample_rates {
            l = (l - 1) * r as u64;
        }
        l
    }

    /// Samples missing at the end of a decode of T frames: `samples_per_frame · T − output_len(T)`
    /// (555 for the real model).
    pub fn deficit(&self) -> u64 {
        self.samples_per_frame() - self.output_len(1)
    }

    /// Channels entering decoder block `b` (0-based).
    pub fn block_in(&self, b: usize) -> u32 {
        self.decoder_dim >> b
    }

    /// Channels after the last decoder block.
    pub fn final_channels(&self) -> u32 {
        self.decoder_dim >> self.upsample_rates.len()
    }

    /// Multiply-adds per code frame of a full decode (Linears, convs, attention at a full
    /// window): the numerator of a compute roofline.
    pub fn macs_per_frame(&self) -> u64 {
        let (h, inter) = (self.hidden as u64, self.inter as u64);
        let (qd, kvd) = ((self.n_heads * self.head_dim) as u64, (self.n_kv_heads * self.head_dim) as u64);
        let w = self.sliding_window as u64;
        let mut macs = self.layers as u64 * (2 * h * qd + 2 * h * kvd + 3 * h * inter + 2 * w * qd);
        let mut rows = 1u64;
        for &r in &self.upsampling_ratios {
            rows *= r as u64;
            macs += rows * (h * h + 8 * h * h + 7 * h);
        }
        macs += rows * 7 * h * self.decoder_dim as u64;
        for (b, &r) in self.upsample_rates.iter().enumerate() {
            rows *= r as u64;
            let (cin, cout) = (self.block_in(b) as u64, self.block_in(b) as u64 / 2);
            macs += rows * (2 * cin * cout + 3 * 8 * cout * cout);
        }
        macs + rows * 7 * self.final_channels() as u64
    }
}
