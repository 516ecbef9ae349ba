//! Audio across the API: uploaded and base64 input (WAV, any rate and channels, resampled to
//! 16 kHz; any other container is refused naming what it is), and speech out as 24 kHz mono 16-bit
//! PCM, raw or in a WAV file, base64 where JSON carries it.

use base64::Engine as _;
use qwen3_omni::audio::{load_wav_bytes, LoadOptions};
use qwen3_omni::code2wav::wav::{wav_bytes, WavFormat, SAMPLE_RATE};

use super::errors::ApiError;

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(s: &str, param: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| ApiError::param(param, format!("not valid base64: {e}")))
}

/// What the bytes of an audio file are, by their first bytes.
pub fn sniff(b: &[u8]) -> &'static str {
    match b {
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'A', b'V', b'E', ..] => "wav",
        [b'f', b'L', b'a', b'C', ..] => "flac",
        [b'O', b'g', b'g', b'S', ..] => "ogg",
        [b'I', b'D', b'3', ..] => "mp3",
        [0xFF, x, ..] if x & 0xE0 == 0xE0 => "mp3",
        [0x1A, 0x45, 0xDF, 0xA3, ..] => "webm",
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => "mp4",
        _ => "unknown",
    }
}

/// A WAV file's samples as 16 kHz mono; anything else is a 400 naming its format.
pub fn decode(bytes: &[u8], param: &str) -> Result<Vec<f32>, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::param(param, "the audio is empty (0 bytes)"));
    }
    match sniff(bytes) {
        "wav" => {}
        "unknown" => {
            return Err(ApiError::unsupported(param, "the audio is not a WAV file (unrecognised format); send WAV"))
        }
        other => {
            return Err(ApiError::unsupported(
                param,
                format!("audio format {other} is not supported; send WAV (any rate, channels, 8-32-bit PCM or float)"),
            ))
        }
    }
    let a =
        load_wav_bytes(bytes, param, &LoadOptions::default()).map_err(|e| ApiError::param(param, strip(e, param)))?;
    Ok(a.samples)
}

/// The library names the "file" in its message; here that is the field, already said.
fn strip(e: qwen3_omni::audio::AudioError, param: &str) -> String {
    let s = e.to_string();
    s.strip_prefix(&format!("{param}: ")).map(str::to_string).unwrap_or(s)
}

/// `input_audio.format`: what a chat request's base64 audio says it is.
pub fn check_input_format(format: &str, param: &str) -> Result<(), ApiError> {
    match format {
        "wav" => Ok(()),
        "mp3" | "flac" | "ogg" | "opus" | "webm" | "m4a" | "aac" | "pcm16" | "mp4" => {
            Err(ApiError::unsupported(param, format!("audio format {format} is not supported; send WAV")))
        }
        other => Err(ApiError::param(param, format!("unknown audio format {other:?} (supported: wav)"))),
    }
}

/// Little-endian signed 16-bit samples (clamped to [−1, 1], rounded, as the WAV writer does).
pub fn pcm16(samples: &[f32]) -> Vec<u8> {
    let mut b = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        b.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes());
    }
    b
}

/// A 24 kHz mono 16-bit WAV file of `samples`.
pub fn wav16(samples: &[f32]) -> Vec<u8> {
    wav_bytes(samples, SAMPLE_RATE, WavFormat::Pcm16).unwrap_or_default()
}

/// Speech-out formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    Wav,
    Pcm16,
}

impl OutFormat {
    /// `param`'s value (`audio.format` of a chat request, `response_format` of speech).
    pub fn parse(s: &str, param: &str) -> Result<OutFormat, ApiError> {
        match s {
            "wav" => Ok(OutFormat::Wav),
            "pcm16" | "pcm" => Ok(OutFormat::Pcm16),
            "flac" | "mp3" | "opus" | "aac" => Err(ApiError::unsupported(
                param,
                format!("audio format {s} is not supported (supported: wav, pcm16/pcm)"),
            )),
            other => Err(ApiError::param(param, format!("unknown audio format {other:?} (supported: wav, pcm16/pcm)"))),
        }
    }

    pub fn encode(self, samples: &[f32]) -> Vec<u8> {
        match self {
            OutFormat::Wav => wav16(samples),
            OutFormat::Pcm16 => pcm16(samples),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            OutFormat::Wav => "audio/wav",
            OutFormat::Pcm16 => "audio/pcm",
        }
    }
}
