//! Microphone capture (cargo feature `mic`, cpal): records the default input device until Enter
//! is pressed, or until 1.5 s of silence follows speech, or a length cap; then mixes to mono and
//! resamples to 16 kHz like a WAV file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, Sample, SizedSample};

use super::wav::{resample_to_16k, Audio16k, Resampler};

/// When recording stops.
#[derive(Debug, Clone, Copy)]
pub struct MicOptions {
    /// Stop after this much silence once speech was heard.
    pub silence_secs: f64,
    /// RMS over 100 ms below this counts as silence (0.01 ≈ −40 dBFS).
    pub silence_rms: f32,
    /// Hard cap on the recording.
    pub max_secs: f64,
}

impl Default for MicOptions {
    fn default() -> Self {
        MicOptions { silence_secs: 1.5, silence_rms: 0.01, max_secs: 300.0 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MicError {
    #[error("no microphone: the default audio host has no input device")]
    NoDevice,
    #[error("microphone {device}: {what}")]
    Device { device: String, what: String },
    #[error("microphone {device}: nothing was recorded")]
    Empty { device: String },
}

fn build<T>(
    dev: &cpal::Device,
    cfg: &cpal::StreamConfig,
    buf: Arc<Mutex<Vec<f32>>>,
) -> Result<cpal::Stream, cpal::BuildStreamError>
where
    T: SizedSample + Sample + Send + 'static,
    f32: FromSample<T>,
{
    dev.build_input_stream(
        cfg,
        move |data: &[T], _: &cpal::InputCallbackInfo| {
            if let Ok(mut b) = buf.lock() {
                b.extend(data.iter().map(|&s| f32::from_sample(s)));
            }
        },
        |e| tracing::warn!("microphone stream error: {e}"),
        None,
    )
}

/// Records from the default input device (status lines on stderr) and returns 16 kHz mono.
pub fn record(opts: &MicOptions) -> Result<Audio16k, MicError> {
    let host = cpal::default_host();
    let dev = host.default_input_device().ok_or(MicError::NoDevice)?;
    let name = dev.name().unwrap_or_else(|_| "(unnamed)".into());
    let derr = |what: String| MicError::Device { device: name.clone(), what };
    let sup = dev.default_input_config().map_err(|e| derr(e.to_string()))?;
    let cfg: cpal::StreamConfig = sup.clone().into();
    let (rate, ch) = (cfg.sample_rate.0, cfg.channels as usize);
    let buf = Arc::new(Mutex::new(Vec::<f32>::new()));
    let stream = match sup.sample_format() {
        cpal::SampleFormat::F32 => build::<f32>(&dev, &cfg, buf.clone()),
        cpal::SampleFormat::I16 => build::<i16>(&dev, &cfg, buf.clone()),
        cpal::SampleFormat::U16 => build::<u16>(&dev, &cfg, buf.clone()),
        cpal::SampleFormat::I32 => build::<i32>(&dev, &cfg, buf.clone()),
        cpal::SampleFormat::I8 => build::<i8>(&dev, &cfg, buf.clone()),
        cpal::SampleFormat::U8 => build::<u8>(&dev, &cfg, buf.clone()),
        f => return Err(derr(format!("unsupported sample format {f:?}"))),
    }
    .map_err(|e| derr(e.to_string()))?;
    let enter = Arc::new(AtomicBool::new(false));
    {
        let enter = enter.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            enter.store(true, Ordering::SeqCst);
        });
    }
    stream.play().map_err(|e| derr(e.to_string()))?;
    eprintln!(
        "recording from {name} ({rate} Hz, {ch} ch): speak; Enter or {:.1} s of silence stops",
        opts.silence_secs
    );
    let start = Instant::now();
    let block = (rate as usize / 10).max(1) * ch;
    let (mut seen, mut heard, mut quiet) = (0usize, false, 0.0f64);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        if enter.load(Ordering::SeqCst) || start.elapsed().as_secs_f64() >= opts.max_secs {
            break;
        }
        let b = buf.lock().map_err(|_| derr("capture buffer poisoned".into()))?;
        while seen + block <= b.len() {
            let blk = &b[seen..seen + block];
            let rms = (blk.iter().map(|v| v * v).sum::<f32>() / blk.len() as f32).sqrt();
            if rms >= opts.silence_rms {
                heard = true;
                quiet = 0.0;
            } else if heard {
                quiet += 0.1;
            }
            seen += block;
        }
        if heard && quiet >= opts.silence_secs {
            break;
        }
    }
    drop(stream);
    let interleaved = std::mem::take(&mut *buf.lock().map_err(|_| derr("capture buffer poisoned".into()))?);
    let mono: Vec<f32> = interleaved.chunks_exact(ch.max(1)).map(|f| f.iter().sum::<f32>() / ch as f32).collect();
    if mono.len() < rate as usize / 100 {
        return Err(MicError::Empty { device: name });
    }
    if let Some((i, v)) = super::first_non_finite(&mono) {
        return Err(derr(format!("captured sample {i} is {v}; audio samples must be finite numbers")));
    }
    eprintln!("recorded {:.1} s", mono.len() as f64 / rate as f64);
    let samples = resample_to_16k(&mono, rate, Resampler::Rubato).map_err(derr)?;
    Ok(Audio16k { samples, source_rate: rate, source_channels: ch as u16 })
}
