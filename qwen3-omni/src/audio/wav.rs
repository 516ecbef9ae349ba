//! WAV in: any sample rate, channel count and PCM / float sample format (hound), mixed to mono
//! and resampled to the 16 kHz the feature extractor expects (spec §4.1).
//!
//! Loading matches tools/fixtures_audio.py: integer samples are scaled by 1 / 2^(bits − 1)
//! (int16 / 32768), channels are averaged in f32. Two resamplers:
//! * [`Resampler::Rubato`] (the default): rubato's synchronous FFT resampler (any integer rates;
//!   Blackman-Harris² anti-aliasing filter) — a real streaming resampler;
//! * [`Resampler::Reference`]: the fixture script's windowed-sinc resampler written out directly
//!   (Hann-windowed sinc over 32 zero crossings, cutoff 0.94), so fixture mels of 44.1 kHz clips are
//!   reproduced to float rounding.

use std::path::{Path, PathBuf};

use rubato::{FftFixedIn, Resampler as _};

/// The rate everything is resampled to.
pub const TARGET_RATE: u32 = 16_000;

/// Longest audio accepted by default: an hour. The Thinker's 65,536-position context holds about
/// 84 minutes of audio at 13 tokens per second; past an hour the prompt would leave little room
/// for the answer, so longer recordings are refused (cut them into pieces) rather than truncated.
pub const DEFAULT_MAX_SECONDS: f64 = 3600.0;

/// Why a WAV file could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the file is empty (0 bytes)")]
    EmptyFile { path: PathBuf },
    #[error("{path}: not a readable WAV file: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("{path}: unsupported WAV format: {what}")]
    Unsupported { path: PathBuf, what: String },
    #[error("{path}: the file contains no audio samples")]
    NoSamples { path: PathBuf },
    #[error(
        "{path}: {seconds:.1} s of audio is too short: at least 10 ms (160 samples at 16 kHz, one mel frame) is needed"
    )]
    TooShort { path: PathBuf, seconds: f64 },
    #[error(
        "{path}: {seconds:.1} s of audio exceeds the limit of {limit:.0} s (the Thinker's context holds ~84 min of \
         audio at 13 tokens/s); cut the recording into shorter pieces"
    )]
    TooLong { path: PathBuf, seconds: f64, limit: f64 },
    #[error(
        "{path}: sample {index} (frame {frame}, channel {channel}) is {value}; audio samples must be finite numbers"
    )]
    NonFinite { path: PathBuf, index: usize, frame: usize, channel: usize, value: f32 },
    #[error("{path}: resampling from {rate} Hz failed: {what}")]
    Resample { path: PathBuf, rate: u32, what: String },
}

/// Which resampler brings the audio to 16 kHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Resampler {
    #[default]
    Rubato,
    Reference,
}

/// Options of [`load_wav`].
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub resampler: Resampler,
    /// Longer input is refused with [`AudioError::TooLong`] before its samples are read.
    pub max_seconds: f64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { resampler: Resampler::Rubato, max_seconds: DEFAULT_MAX_SECONDS }
    }
}

/// 16 kHz mono audio and where it came from.
#[derive(Debug, Clone)]
pub struct Audio16k {
    pub samples: Vec<f32>,
    pub source_rate: u32,
    pub source_channels: u16,
}

impl Audio16k {
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / TARGET_RATE as f64
    }
}

/// Reads `path`, mixes it to mono and resamples it to 16 kHz.
pub fn load_wav(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Audio16k, AudioError> {
    let path = path.as_ref();
    let p = || path.to_path_buf();
    let meta = std::fs::metadata(path).map_err(|source| AudioError::Open { path: p(), source })?;
    if meta.len() == 0 {
        return Err(AudioError::EmptyFile { path: p() });
    }
    let reader = hound::WavReader::open(path).map_err(|e| hound_err(path, e))?;
    decode(reader, path, opts)
}

/// [`load_wav`] for a WAV file held in memory (an upload, a base64 field); `name` stands for the
/// path in the errors (e.g. the request field it came from).
pub fn load_wav_bytes(bytes: &[u8], name: &str, opts: &LoadOptions) -> Result<Audio16k, AudioError> {
    let path = Path::new(name);
    if bytes.is_empty() {
        return Err(AudioError::EmptyFile { path: path.to_path_buf() });
    }
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(|e| hound_err(path, e))?;
    decode(reader, path, opts)
}

/// The samples of an opened WAV file, mixed to mono and resampled to 16 kHz.
fn decode<R: std::io::Read>(
    reader: hound::WavReader<R>,
    path: &Path,
    opts: &LoadOptions,
) -> Result<Audio16k, AudioError> {
    let p = || path.to_path_buf();
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(AudioError::Corrupt {
            path: p(),
            what: format!("{} channels at {} Hz", spec.channels, spec.sample_rate),
        });
    }
    let frames = reader.duration() as usize;
    let seconds = frames as f64 / spec.sample_rate as f64;
    if seconds > opts.max_seconds {
        return Err(AudioError::TooLong { path: p(), seconds, limit: opts.max_seconds });
    }
    if frames == 0 {
        return Err(AudioError::NoSamples { path: p() });
    }
    let ch = spec.channels as usize;
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            reader.into_samples::<f32>().collect::<Result<_, _>>().map_err(|e| hound_err(path, e))?
        }
        (hound::SampleFormat::Int, bits @ 8..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            let v: Vec<i32> = reader.into_samples::<i32>().collect::<Result<_, _>>().map_err(|e| hound_err(path, e))?;
            v.into_iter().map(|s| (s as f64 * scale) as f32).collect()
        }
        (f, b) => {
            return Err(AudioError::Unsupported {
                path: p(),
                what: format!("{b}-bit {f:?} samples (supported: 8/16/24/32-bit integer PCM, 32-bit float)"),
            })
        }
    };
    // Float files can hold NaN or infinities, which would poison every mel frame they touch.
    if let Some((index, value)) = first_non_finite(&interleaved) {
        return Err(AudioError::NonFinite { path: p(), index, frame: index / ch, channel: index % ch, value });
    }
    // A file cut short mid-frame: drop the partial frame.
    let frames = interleaved.len() / ch;
    if frames == 0 {
        return Err(AudioError::NoSamples { path: p() });
    }
    let mono: Vec<f32> = if ch == 1 {
        interleaved
    } else {
        interleaved.chunks_exact(ch).map(|f| f.iter().sum::<f32>() / ch as f32).collect()
    };
    let samples = resample_to_16k(&mono, spec.sample_rate, opts.resampler).map_err(|what| AudioError::Resample {
        path: p(),
        rate: spec.sample_rate,
        what,
    })?;
    if samples.len() < crate::chat::HOP_LENGTH {
        return Err(AudioError::TooShort { path: p(), seconds });
    }
    Ok(Audio16k { samples, source_rate: spec.sample_rate, source_channels: spec.channels })
}

/// The first sample of `x` that is NaN or infinite, and its index: what every audio input is
/// checked with (WAV files here, PCM in `Session::generate_inputs`, the microphone).
pub fn first_non_finite(x: &[f32]) -> Option<(usize, f32)> {
    x.iter().position(|v| !v.is_finite()).map(|i| (i, x[i]))
}

fn hound_err(path: &Path, e: hound::Error) -> AudioError {
    let p = path.to_path_buf();
    match e {
        hound::Error::Unsupported => AudioError::Unsupported {
            path: p,
            what: "not PCM or IEEE float, or a sample layout hound does not read".into(),
        },
        hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::Corrupt { path: p, what: "the file ends early (truncated?)".into() }
        }
        other => AudioError::Corrupt { path: p, what: other.to_string() },
    }
}

/// Mono `x` at `rate` Hz → 16 kHz, `floor(n · 16000 / rate)` samples.
pub fn resample_to_16k(x: &[f32], rate: u32, which: Resampler) -> Result<Vec<f32>, String> {
    if rate == TARGET_RATE {
        return Ok(x.to_vec());
    }
    match which {
        Resampler::Reference => Ok(resample_reference(x, rate, TARGET_RATE)),
        Resampler::Rubato => resample_rubato(x, rate, TARGET_RATE),
    }
}

/// The fixture script's resampler (tools/README.md): output j sits at input position
/// t = j·rate_in/rate_out; y[j] = Σ_k x[k]·h(t − k) over |t − k| < 16/fc, with
/// h(u) = fc·sinc(fc·u)·(0.5 + 0.5·cos(π·u·fc/16)), fc = 0.94·min(1, rate_out/rate_in). f64 math.
pub fn resample_reference(x: &[f32], rate_in: u32, rate_out: u32) -> Vec<f32> {
    let n_out = (x.len() as u64 * rate_out as u64 / rate_in as u64) as usize;
    let zeros = 16.0f64;
    let fc = 0.94 * (rate_out as f64 / rate_in as f64).min(1.0);
    let half = zeros / fc;
    let sinc = |v: f64| if v == 0.0 { 1.0 } else { (std::f64::consts::PI * v).sin() / (std::f64::consts::PI * v) };
    (0..n_out)
        .map(|j| {
            let t = j as f64 * rate_in as f64 / rate_out as f64;
            let k0 = (t - half).ceil().max(0.0) as usize;
            let k1 = ((t + half).floor() as usize).min(x.len().saturating_sub(1));
            let mut acc = 0.0f64;
            for (k, &xk) in x.iter().enumerate().take(k1 + 1).skip(k0) {
                let u = t - k as f64;
                if u.abs() >= half {
                    continue;
                }
                let h = fc * sinc(fc * u) * (0.5 + 0.5 * (std::f64::consts::PI * u * fc / zeros).cos());
                acc += xk as f64 * h;
            }
            acc as f32
        })
        .collect()
}

/// rubato's synchronous FFT resampler (anti-aliasing filter from a Blackman-Harris² window) over
/// the whole signal, its delay removed (an exact number of output samples) and its tail flushed.
fn resample_rubato(x: &[f32], rate_in: u32, rate_out: u32) -> Result<Vec<f32>, String> {
    let n_out = (x.len() as u64 * rate_out as u64 / rate_in as u64) as usize;
    // An even number of the rates' smallest whole blocks per FFT keeps both FFT sizes even, so the
    // filter's delay is a whole number of output samples (odd sizes leave a half-sample shift).
    let g = gcd(rate_in, rate_out) as usize;
    let block_in = rate_in as usize / g;
    let k = (4096 / block_in).max(2) & !1;
    let chunk = k * block_in;
    let mut r = FftFixedIn::<f32>::new(rate_in as usize, rate_out as usize, chunk, 1, 1).map_err(|e| e.to_string())?;
    let delay = r.output_delay();
    let mut out: Vec<f32> = Vec::with_capacity(n_out + delay + chunk);
    let mut buf = r.output_buffer_allocate(true);
    let mut pos = 0;
    while pos + r.input_frames_next() <= x.len() {
        let need = r.input_frames_next();
        let (_, n) = r.process_into_buffer(&[&x[pos..pos + need]], &mut buf, None).map_err(|e| e.to_string())?;
        out.extend_from_slice(&buf[0][..n]);
        pos += need;
    }
    if pos < x.len() {
        let (_, n) = r.process_partial_into_buffer(Some(&[&x[pos..]]), &mut buf, None).map_err(|e| e.to_string())?;
        out.extend_from_slice(&buf[0][..n]);
    }
    // Flush: zeros until the delayed output covers every sample.
    while out.len() < n_out + delay {
        let (_, n) = r.process_partial_into_buffer(None::<&[&[f32]]>, &mut buf, None).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[0][..n]);
    }
    let mut y: Vec<f32> = out.into_iter().skip(delay).take(n_out).collect();
    y.resize(n_out, 0.0);
    Ok(y)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
