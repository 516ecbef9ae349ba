//! Whisper log-mel features, as transformers' `WhisperFeatureExtractor` computes them with the
//! processor's settings (spec §4.1): periodic Hann window of 400, hop 160, centred STFT with
//! reflect padding, power spectrum, the last frame dropped, 128 Slaney mel filters (Slaney area
//! normalisation) over 0–8 kHz, log10 with a 1e-10 clamp, floor at max − 8, then (x + 4) / 4.
//! CPU, f64 FFT (realfft): a 30 s clip takes a few milliseconds.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
pub const N_BINS: usize = N_FFT / 2 + 1;

/// A log-mel extractor with its window, filter bank and FFT plan made once.
pub struct MelExtractor {
    n_mels: usize,
    window: Vec<f64>,
    /// `[n_mels, N_BINS]` row-major.
    filters: Vec<f64>,
    /// Per filter, the bins where it is non-zero.
    spans: Vec<(usize, usize)>,
    fft: Arc<dyn RealToComplex<f64>>,
}

/// Log-mel features `[n_mels, frames]` row-major.
#[derive(Debug, Clone)]
pub struct LogMel {
    pub n_mels: usize,
    pub frames: usize,
    pub data: Vec<f32>,
}

fn hz_to_mel(f: f64) -> f64 {
    if f < 1000.0 {
        3.0 * f / 200.0
    } else {
        15.0 + 27.0 * (f / 1000.0).ln() / 6.4f64.ln()
    }
}

fn mel_to_hz(m: f64) -> f64 {
    if m < 15.0 {
        200.0 * m / 3.0
    } else {
        1000.0 * (6.4f64.ln() * (m - 15.0) / 27.0).exp()
    }
}

/// Slaney-style triangular filters with area normalisation, `[n_mels, N_BINS]`.
pub fn mel_filters(n_mels: usize, sample_rate: f64, f_max: f64) -> Vec<f64> {
    let (m_lo, m_hi) = (hz_to_mel(0.0), hz_to_mel(f_max));
    let pts: Vec<f64> =
        (0..n_mels + 2).map(|i| mel_to_hz(m_lo + (m_hi - m_lo) * i as f64 / (n_mels + 1) as f64)).collect();
    let fft_f: Vec<f64> = (0..N_BINS).map(|b| b as f64 * (sample_rate / 2.0) / (N_BINS - 1) as f64).collect();
    let mut fb = vec![0.0; n_mels * N_BINS];
    for m in 0..n_mels {
        let (lo, c, hi) = (pts[m], pts[m + 1], pts[m + 2]);
        let norm = 2.0 / (hi - lo);
        for (b, &f) in fft_f.iter().enumerate() {
            let v = ((f - lo) / (c - lo)).min((hi - f) / (hi - c)).max(0.0);
            fb[m * N_BINS + b] = v * norm;
        }
    }
    fb
}

impl MelExtractor {
    pub fn new(n_mels: usize) -> MelExtractor {
        let window =
            (0..N_FFT).map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos()).collect();
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
        let filters = mel_filters(n_mels, 16_000.0, 8_000.0);
        let spans = (0..n_mels)
            .map(|m| {
                let row = &filters[m * N_BINS..(m + 1) * N_BINS];
                let lo = row.iter().position(|&v| v != 0.0).unwrap_or(0);
                let hi = row.iter().rposition(|&v| v != 0.0).map_or(lo, |i| i + 1);
                (lo, hi)
            })
            .collect();
        MelExtractor { n_mels, window, filters, spans, fft }
    }

    /// Features of 16 kHz mono samples: `T = n / 160` frames (none for fewer than 160 samples).
    pub fn compute(&self, x: &[f32]) -> LogMel {
        let n = x.len();
        let frames = n / HOP;
        let nm = self.n_mels;
        let mut out = vec![0f32; nm * frames];
        if frames == 0 {
            return LogMel { n_mels: nm, frames, data: out };
        }
        let pad = N_FFT / 2;
        // Reflect padding (no edge repeat), as torch.stft(center=True, pad_mode="reflect").
        let at = |i: isize| -> f64 {
            let n = n as isize;
            let mut j = i - pad as isize;
            if n == 1 {
                return x[0] as f64;
            }
            while j < 0 || j >= n {
                if j < 0 {
                    j = -j;
                }
                if j >= n {
                    j = 2 * (n - 1) - j;
                }
            }
            x[j as usize] as f64
        };
        let mut frame = self.fft.make_input_vec();
        let mut spec = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f64; N_BINS];
        let mut logs = vec![0f64; nm * frames];
        let mut max = f64::NEG_INFINITY;
        for t in 0..frames {
            let start = (t * HOP) as isize;
            for (i, v) in frame.iter_mut().enumerate() {
                *v = at(start + i as isize) * self.window[i];
            }
            self.fft.process_with_scratch(&mut frame, &mut spec, &mut scratch).expect("FFT buffer sizes");
            for (p, c) in power.iter_mut().zip(&spec) {
                *p = c.re * c.re + c.im * c.im;
            }
            for m in 0..nm {
                let (lo, hi) = self.spans[m];
                let row = &self.filters[m * N_BINS + lo..m * N_BINS + hi];
                let e: f64 = row.iter().zip(&power[lo..hi]).map(|(a, b)| a * b).sum();
                let l = e.max(1e-10).log10();
                max = max.max(l);
                logs[m * frames + t] = l;
            }
        }
        let floor = max - 8.0;
        for (o, l) in out.iter_mut().zip(&logs) {
            *o = ((l.max(floor) + 4.0) / 4.0) as f32;
        }
        LogMel { n_mels: nm, frames, data: out }
    }
}
