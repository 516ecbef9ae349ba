//! Audio in (spec §4): WAV → 16 kHz mono → Whisper log-mel → AudioTower → Thinker embeddings.

pub mod config;
pub mod cpu;
pub mod gpu;
pub mod mel;
#[cfg(feature = "mic")]
pub mod mic;
pub mod wav;

pub use config::{AudioConfig, ChunkPlan};
pub use mel::{LogMel, MelExtractor};
pub use wav::{first_non_finite, load_wav, load_wav_bytes, Audio16k, AudioError, LoadOptions, Resampler};

/// A deterministic test signal: a slow chirp over tones and a little noise, in [−1, 1].
pub fn synthetic_audio(seconds: f64) -> Vec<f32> {
    let n = (seconds * 16_000.0) as usize;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|i| {
            let t = i as f64 / 16_000.0;
            let f = 150.0 + 50.0 * (t * 0.37).sin() + 3000.0 * ((t * 0.05).fract());
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
            (0.4 * (2.0 * std::f64::consts::PI * f * t).sin()
                + 0.2 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 0.05 * noise) as f32
        })
        .collect()
}
