//! Code2Wav hyper-parameters, read from the model file's config (`code2wav_config`, spec §2.2):
//! never from transformers' class defaults (spec §2.3).

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

impl Code2WavConfig {
    pub fn from_model(m: &ModelFile) -> Result<Code2WavConfig, ModelError> {
        Self::from_json(m.config()).map_err(|(f, w)| m.config_err(&f, &w))
    }

    /// From a config.json value; errors name the field.
    pub fn from_json(cfg: &serde_json::Value) -> Result<Code2WavConfig, (String, String)> {
        let field = |k: &str| format!("{C}/{k}");
        let u = |k: &str| -> Result<u32, (String, String)> {
            let v = cfg.pointer(&field(k)).and_then(|v| v.as_u64());
            let v = v.ok_or_else(|| (field(k), "missing or not an unsigned integer".to_string()))?;
            u32::try_from(v).map_err(|_| (field(k), "does not fit in 32 bits".to_string()))
        };
        let f = |k: &str| -> Result<f64, (String, String)> {
            cfg.pointer(&field(k)).and_then(|v| v.as_f64()).ok_or_else(|| (field(k), "missing or not a number".into()))
        };
        let list = |k: &str| -> Result<Vec<u32>, (String, String)> {
            let a = cfg.pointer(&field(k)).and_then(|v| v.as_array());
            let a = a.ok_or_else(|| (field(k), "missing or not a list".to_string()))?;
            a.iter()
                .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
                .collect::<Option<Vec<u32>>>()
                .ok_or_else(|| (field(k), "holds something other than small unsigned integers".into()))
        };
        let hidden = u("hidden_size")?;
        let n_heads = u("num_attention_heads")?;
        let head_dim = match cfg.pointer(&field("head_dim")) {
            Some(_) => u("head_dim")?,
            None => hidden / n_heads.max(1),
        };
        let theta = cfg
            .pointer(&field("rope_parameters/rope_theta"))
            .or_else(|| cfg.pointer(&field("rope_theta")))
            .and_then(|v| v.as_f64())
            .ok_or_else(|| (field("rope_parameters/rope_theta"), "missing".to_string()))?;
        let c = Code2WavConfig {
            hidden,
            layers: u("num_hidden_layers")?,
            n_heads,
            n_kv_heads: u("num_key_value_heads")?,
            head_dim,
            inter: u("intermediate_size")?,
            codebook_size: u("codebook_size")?,
            num_quantizers: u("num_quantizers")?,
            sliding_window: u("sliding_window")?,
            rms_eps: f("rms_norm_eps")? as f32,
            rope_theta: theta as f32,
            decoder_dim: u("decoder_dim")?,
            upsample_rates: list("upsample_rates")?,
            upsampling_ratios: list("upsampling_ratios")?,
        };
        c.check().map_err(|(k, w)| (field(k), w))?;
        Ok(c)
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.n_heads == 0 || self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err((
                "num_key_value_heads",
                format!("{} does not divide num_attention_heads {}", self.n_kv_heads, self.n_heads),
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) || self.head_dim > 256 {
            return Err(("head_dim", format!("{} is not an even number in 2..=256", self.head_dim)));
        }
        if self.sliding_window == 0 {
            return Err(("sliding_window", "must be at least 1".into()));
        }
        if self.num_quantizers == 0 || self.codebook_size == 0 {
            return Err(("num_quantizers", "no codebooks".into()));
        }
        for (f, v) in [("hidden_size", self.hidden), ("intermediate_size", self.inter)] {
            if v == 0 || !v.is_multiple_of(32) {
                return Err((f, format!("{v} is not a positive multiple of 32 (Q8_0 rows)")));
            }
        }
        if !(self.n_heads * self.head_dim).is_multiple_of(32) {
            return Err(("head_dim", "num_attention_heads × head_dim is not a multiple of 32 (Q8_0 rows)".into()));
        }
        if self.upsample_rates.is_empty() || self.upsample_rates.iter().any(|&r| r == 0 || r > 64) {
            return Err(("upsample_rates", format!("{:?}: need 1..=64 each, at least one", self.upsample_rates)));
        }
        if self.upsampling_ratios.iter().any(|&r| r == 0 || r > 64) {
            return Err(("upsampling_ratios", format!("{:?}: need 1..=64 each", self.upsampling_ratios)));
        }
        if self.decoder_dim >> self.upsample_rates.len() == 0
            || !self.decoder_dim.is_multiple_of(1 << self.upsample_rates.len())
        {
            return Err((
                "decoder_dim",
                format!("{} cannot be halved {} times", self.decoder_dim, self.upsample_rates.len()),
            ));
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
