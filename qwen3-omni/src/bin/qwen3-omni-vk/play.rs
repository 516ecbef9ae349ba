//! `--play`: audio to the default output device while it is generated (cargo feature `play`,
//! cpal). Without the feature, [`Player::new`] says how to build with it.

#[cfg(not(feature = "play"))]
mod imp {
    /// Stand-in without the `play` feature.
    pub struct Player;

    impl Player {
        pub fn new(_rate: u32) -> anyhow::Result<Player> {
            anyhow::bail!(
                "--play needs the `play` feature: cargo build -p qwen3-omni --features play \
                 (on Debian/Ubuntu first: apt-get install libasound2-dev pkg-config); or write a file with -o / --audio-out"
            )
        }
        pub fn push(&self, _pcm: &[f32]) {}
        pub fn drain(self) {}
    }
}

#[cfg(feature = "play")]
mod imp {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use anyhow::{anyhow, Context};
    use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

    /// Samples queue up as they are made; the output callback drains them (silence when empty).
    pub struct Player {
        queue: Arc<Mutex<VecDeque<f32>>>,
        rate: u32,
        device_rate: u32,
        channels: usize,
        _stream: cpal::Stream,
    }

    impl Player {
        pub fn new(rate: u32) -> anyhow::Result<Player> {
            let host = cpal::default_host();
            let dev = host.default_output_device().ok_or_else(|| anyhow!("--play: no audio output device"))?;
            let cfg = dev.default_output_config().context("--play: output device config")?;
            let device_rate = cfg.sample_rate().0;
            let channels = cfg.channels() as usize;
            if cfg.sample_format() != cpal::SampleFormat::F32 {
                anyhow::bail!(
                    "--play: the output device wants {:?} samples; only f32 is supported",
                    cfg.sample_format()
                );
            }
            let queue = Arc::new(Mutex::new(VecDeque::new()));
            let q = queue.clone();
            let stream = dev
                .build_output_stream(
                    &cfg.config(),
                    move |out: &mut [f32], _| {
                        let mut q = q.lock().unwrap_or_else(|e| e.into_inner());
                        for frame in out.chunks_mut(channels) {
                            let v = q.pop_front().unwrap_or(0.0);
                            frame.iter_mut().for_each(|s| *s = v);
                        }
                    },
                    |e| eprintln!("--play: {e}"),
                    None,
                )
                .context("--play: opening the output stream")?;
            stream.play().context("--play: starting playback")?;
            Ok(Player { queue, rate, device_rate, channels, _stream: stream })
        }

        /// Queues 24 kHz samples (linearly resampled to the device rate).
        pub fn push(&self, pcm: &[f32]) {
            let _ = self.channels;
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if self.device_rate == self.rate {
                q.extend(pcm);
                return;
            }
            let step = self.rate as f64 / self.device_rate as f64;
            let n = (pcm.len() as f64 / step) as usize;
            for i in 0..n {
                let x = i as f64 * step;
                let j = x as usize;
                let f = (x - j as f64) as f32;
                let a = pcm[j.min(pcm.len() - 1)];
                let b = pcm[(j + 1).min(pcm.len() - 1)];
                q.push_back(a + (b - a) * f);
            }
        }

        /// Waits until everything queued has been played.
        pub fn drain(self) {
            while !self.queue.lock().map(|q| q.is_empty()).unwrap_or(true) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

pub use imp::Player;
