//! Flags checked before anything loads, each error naming the flag: sampling ranges, the speech
//! flags, the voice (against the model file's speaker table, right after it is opened), output
//! paths (what the output writer would refuse, refused before a long load), the context size.

use std::path::Path;

use anyhow::{bail, Context};
use qwen3_omni::model_file::ModelFile;
use qwen3_omni::talker::TalkerConfig;
use qwen3_omni_vk::SAMPLE_MAX_K;

use crate::speech_out::VoiceArgs;

/// One sampler's flags; `names`: the flag names of temperature, top-k, top-p and (if any) the
/// repetition penalty.
pub struct SamplingFlags<'a> {
    pub names: [&'a str; 4],
    pub temp: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub repeat_penalty: Option<f32>,
}

pub fn sampling(f: &SamplingFlags<'_>) -> anyhow::Result<()> {
    let [t, k, p, r] = f.names;
    if !(f.temp.is_finite() && f.temp >= 0.0) {
        bail!("{t} {}: the temperature must be a finite number ≥ 0 (0 = greedy)", f.temp);
    }
    if f.top_k > SAMPLE_MAX_K {
        bail!("{k} {}: at most {SAMPLE_MAX_K} (0 = off)", f.top_k);
    }
    if !(f.top_p > 0.0 && f.top_p <= 1.0) {
        bail!("{p} {}: must be in (0, 1] (1 = off)", f.top_p);
    }
    if let Some(rp) = f.repeat_penalty {
        if !(rp.is_finite() && rp > 0.0) {
            bail!("{r} {rp}: must be a finite number > 0 (1 = off)");
        }
    }
    Ok(())
}

/// The Thinker's flags of `chat` / `transcribe`.
pub fn thinker_sampling(temp: f32, top_k: u32, top_p: f32, repeat_penalty: f32) -> anyhow::Result<()> {
    sampling(&SamplingFlags {
        names: ["--temp", "--top-k", "--top-p", "--repeat-penalty"],
        temp,
        top_k,
        top_p,
        repeat_penalty: Some(repeat_penalty),
    })
}

/// `-c`: at least one position (the model's own limit is checked once its config is read).
pub fn ctx_size(c: u32) -> anyhow::Result<()> {
    if c == 0 {
        bail!("-c/--ctx-size 0: the context needs at least one position");
    }
    Ok(())
}

impl VoiceArgs {
    /// The speech flags alone (no model needed).
    pub fn check(&self) -> anyhow::Result<()> {
        sampling(&SamplingFlags {
            names: ["--talker-temp", "--talker-top-k", "", ""],
            temp: self.talker_temp,
            top_k: self.talker_top_k,
            top_p: 1.0,
            repeat_penalty: None,
        })?;
        sampling(&SamplingFlags {
            names: ["", "--cp-top-k", "--cp-top-p", ""],
            temp: 0.0,
            top_k: self.cp_top_k,
            top_p: self.cp_top_p,
            repeat_penalty: None,
        })?;
        if self.max_frames == 0 {
            bail!("--max-frames 0: a reply needs at least one 80 ms frame");
        }
        if self.stream_frames == 0 {
            bail!("--stream-frames 0: a chunk needs at least one frame");
        }
        if self.talker_batch == 0 {
            bail!("--talker-batch 0: a batch needs at least one frame");
        }
        Ok(())
    }

    /// `--voice` against the speakers of the model file at `path` (opened, nothing loaded yet).
    pub fn check_voice(&self, m: &ModelFile, path: &Path) -> anyhow::Result<()> {
        let cfg = TalkerConfig::from_model(m).with_context(|| format!("{}: the Talker's config", path.display()))?;
        cfg.speaker(&self.voice.to_lowercase()).map_err(|e| anyhow::anyhow!("--voice: {e}"))?;
        Ok(())
    }
}

/// An output path given by `flag`, checked as the writer would check it (symlinks followed,
/// read-only files, directories and FIFOs refused), before anything loads.
pub fn output(flag: &str, path: &Path) -> anyhow::Result<()> {
    quantizer::outfile::check(path, true).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}
