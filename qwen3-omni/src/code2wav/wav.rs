//! WAV output: mono, 32-bit float or 16-bit PCM, written atomically (a temporary file beside the
//! target, flushed and synced, then renamed over it), so a reader never sees a half-written file.
//! The target follows [`quantizer::outfile`]'s rules: links are written through, read-only and
//! non-regular targets refused, and a character device (`/dev/null`) or `-` (stdout) written
//! directly — streamed there with the header's lengths left at 0xFFFFFFFF ("unknown", as streaming
//! WAV writers do), since a device cannot seek back to fix them.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use quantizer::outfile::OutFile;

/// Code2Wav's sample rate.
pub const SAMPLE_RATE: u32 = 24_000;

/// Sample encoding of a WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavFormat {
    /// IEEE float, 32 bits (format tag 3).
    F32,
    /// Signed 16-bit PCM (format tag 1); samples are clamped to [−1, 1] and rounded.
    Pcm16,
}

/// The bytes of a mono WAV file holding `samples` at `rate` Hz.
pub fn wav_bytes(samples: &[f32], rate: u32, format: WavFormat) -> std::io::Result<Vec<u8>> {
    let mut b = header(samples.len() as u64, rate, format)?;
    encode(samples, format, &mut b);
    Ok(b)
}

fn encode(samples: &[f32], format: WavFormat, b: &mut Vec<u8>) {
    match format {
        WavFormat::F32 => samples.iter().for_each(|s| b.extend_from_slice(&s.to_le_bytes())),
        WavFormat::Pcm16 => samples.iter().for_each(|s| {
            let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
            b.extend_from_slice(&v.to_le_bytes())
        }),
    }
}

/// The RIFF header (everything before the samples) of a file of `n` samples.
fn header(n: u64, rate: u32, format: WavFormat) -> std::io::Result<Vec<u8>> {
    let (tag, bits): (u16, u16) = match format {
        WavFormat::F32 => (3, 32),
        WavFormat::Pcm16 => (1, 16),
    };
    let block = bits / 8;
    let data_len = n * block as u64;
    // fmt chunk of 16 bytes (18 with cbSize for float), plus a fact chunk for float.
    let fmt_len: u32 = if tag == 3 { 18 } else { 16 };
    let fact_len: u64 = if tag == 3 { 12 } else { 0 };
    let riff_len = 4 + 8 + fmt_len as u64 + fact_len + 8 + data_len;
    if riff_len > u32::MAX as u64 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{n} samples are too many for one WAV file (4 GiB limit)"),
        ));
    }
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(riff_len as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&fmt_len.to_le_bytes());
    b.extend_from_slice(&tag.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * block as u32).to_le_bytes());
    b.extend_from_slice(&block.to_le_bytes());
    b.extend_from_slice(&bits.to_le_bytes());
    if tag == 3 {
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(b"fact");
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&(n as u32).to_le_bytes());
    }
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data_len as u32).to_le_bytes());
    Ok(b)
}

fn named(path: &Path, e: std::io::Error) -> std::io::Error {
    let m = e.to_string();
    if m.starts_with(&path.display().to_string()) {
        return e;
    }
    std::io::Error::new(e.kind(), format!("writing {}: {e}", path.display()))
}

/// The header of a stream of unknown length (RIFF and data lengths 0xFFFFFFFF).
fn streaming_header(rate: u32, format: WavFormat) -> std::io::Result<Vec<u8>> {
    let mut h = header(0, rate, format)?;
    let n = h.len();
    h[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    h[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    Ok(h)
}

/// A WAV file written as audio arrives (e.g. from a Code2Wav stream), still atomically: samples
/// go to a temporary file beside `path`; [`WavWriter::finish`] fixes the header's lengths, syncs
/// and renames it to `path`. Dropped without `finish` (an error, an interrupt), it removes the
/// temporary file and `path` is untouched. A device or stdout is streamed to directly.
pub struct WavWriter {
    path: std::path::PathBuf,
    file: Option<std::io::BufWriter<OutFile>>,
    rate: u32,
    format: WavFormat,
    n: u64,
    buf: Vec<u8>,
}

impl WavWriter {
    pub fn create(path: &Path, rate: u32, format: WavFormat) -> std::io::Result<WavWriter> {
        let out = OutFile::create(path, true).map_err(|e| named(path, e))?;
        let h = if out.seekable() { header(0, rate, format)? } else { streaming_header(rate, format)? };
        // From here on, dropping the OutFile removes the temporary file if anything fails.
        let mut w = WavWriter {
            path: path.to_path_buf(),
            file: Some(std::io::BufWriter::new(out)),
            rate,
            format,
            n: 0,
            buf: Vec::new(),
        };
        w.file.as_mut().expect("just opened").write_all(&h).map_err(|e| named(path, e))?;
        Ok(w)
    }

    /// Appends samples.
    pub fn write(&mut self, samples: &[f32]) -> std::io::Result<()> {
        self.buf.clear();
        encode(samples, self.format, &mut self.buf);
        let f = self.file.as_mut().expect("open until finish");
        f.write_all(&self.buf).map_err(|e| named(&self.path, e))?;
        self.n += samples.len() as u64;
        Ok(())
    }

    /// Samples written so far.
    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Completes the file and moves it into place.
    pub fn finish(mut self) -> std::io::Result<()> {
        let path = self.path.clone();
        let res = (|| {
            let mut f = self.file.take().expect("open until finish").into_inner().map_err(|e| e.into_error())?;
            if f.seekable() {
                let h = header(self.n, self.rate, self.format)?;
                f.seek(SeekFrom::Start(0))?;
                f.write_all(&h)?;
            }
            f.commit()
        })();
        res.map_err(|e| named(&path, e))
    }
}

/// Writes a mono WAV file atomically: the whole file goes to a temporary name in the same
/// directory, is synced, and is then renamed to `path`. On error nothing is left at `path`
/// (an existing file there is kept unchanged) and the temporary file is removed.
pub fn write_wav(path: &Path, samples: &[f32], rate: u32, format: WavFormat) -> std::io::Result<()> {
    let bytes = wav_bytes(samples, rate, format)?;
    let res = (|| {
        let mut f = OutFile::create(path, true)?;
        f.write_all(&bytes)?;
        f.commit()
    })();
    res.map_err(|e| named(path, e))
}

/// Reads back a mono WAV written by [`write_wav`] (float or 16-bit PCM): (rate, samples).
pub fn read_wav(path: &Path) -> std::io::Result<(u32, Vec<f32>)> {
    let b = std::fs::read(path)?;
    let bad = |w: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {w}", path.display()));
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Err(bad("not a RIFF/WAVE file"));
    }
    let (mut at, mut fmt, mut rate, mut bits) = (12usize, 0u16, 0u32, 0u16);
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = b.get(at + 8..at + 8 + len).ok_or_else(|| bad("chunk runs past the end"))?;
        if id == b"fmt " {
            if len < 16 {
                return Err(bad("short fmt chunk"));
            }
            fmt = u16::from_le_bytes([body[0], body[1]]);
            if u16::from_le_bytes([body[2], body[3]]) != 1 {
                return Err(bad("not mono"));
            }
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
            bits = u16::from_le_bytes([body[14], body[15]]);
        } else if id == b"data" {
            return match (fmt, bits) {
                (3, 32) => {
                    Ok((rate, body.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()))
                }
                (1, 16) => Ok((
                    rate,
                    body.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32767.0).collect(),
                )),
                _ => Err(bad(&format!("unsupported format {fmt} with {bits} bits"))),
            };
        }
        at += 8 + len + (len & 1);
    }
    Err(bad("no data chunk"))
}
