//! Frames (§6.6): one frame per call (recorded each time) or replayed for a run of frames, the
//! per-frame host inputs and read-back, and the per-part timing for benchmarks.

use super::*;

impl GpuTalker {
    /// Whether the text for the next frame's Talker step is known.
    pub fn ready(&self) -> bool {
        self.frame < self.text.len() || self.text_done
    }

    /// The next frame's codes (`groups` values: code 0 then the residual codes), or `None` once
    /// code 0 is codec EOS. One command buffer per frame; the next code 0 is sampled in it.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u32>>, TalkerError> {
        self.next_frame_impl(false, None)
    }

    /// As [`GpuTalker::next_frame`], with every dispatch timed ([`GpuTalker::last_profile`]).
    pub fn next_frame_profiled(&mut self) -> Result<Option<Vec<u32>>, TalkerError> {
        self.next_frame_impl(true, None)
    }

    /// Teacher forcing (parity tests): runs the next frame on the reference codes `frame` (code 0
    /// and the residual codes) instead of its own choices, and returns what it would have chosen for
    /// each residual code with the logits of every group; the next code 0 is chosen as usual
    /// ([`GpuTalker::pending_code0`], logits in [`GpuTalker::logits`]).
    pub fn next_frame_forced(&mut self, frame: &[u32]) -> Result<(Vec<u32>, Vec<Vec<f32>>), TalkerError> {
        let c = self.config.clone();
        if frame.len() != c.groups as usize
            || frame[0] >= c.talker.vocab
            || frame[1..].iter().any(|&x| x >= c.predictor.vocab)
        {
            return Err(TalkerError::BadInput(format!("a forced frame needs {} codes in range", c.groups)));
        }
        self.s.forced.write_slice(0, frame)?;
        self.next_code0 = frame[0];
        let pred = self.next_frame_impl(false, Some(frame))?.unwrap_or_default();
        let v: Vec<f32> = self.s.cp_logits.read_vec()?;
        let logits = v.chunks_exact(c.predictor.vocab as usize).map(|r| r.to_vec()).collect();
        Ok((pred.get(1..).map(|p| p.to_vec()).unwrap_or_default(), logits))
    }

    pub(super) fn next_frame_impl(
        &mut self,
        profile: bool,
        forced: Option<&[u32]>,
    ) -> Result<Option<Vec<u32>>, TalkerError> {
        if !self.started {
            return Err(TalkerError::NotStarted);
        }
        if self.next_code0 == self.config.ids.codec_eos {
            return Ok(None);
        }
        self.write_frame_inputs(self.frame, self.len, self.next_code0)?;
        let t0 = std::time::Instant::now();
        let mut rec = self.k.gpu().recorder(profile)?;
        self.record_frame(&mut rec, forced.is_some())?;
        let mut batch = rec.finish()?;
        let record_ns = t0.elapsed().as_secs_f64() * 1e9;
        let prof = batch.submit()?;
        drop(batch);
        self.record_ns = record_ns;
        self.last_profile = Some(prof);
        let (frame, next) = self.read_frame()?;
        self.next_code0 = next;
        self.len += 1;
        self.frame += 1;
        Ok(Some(frame))
    }

    /// Generates frames with one command buffer recorded once and replayed for each (the host
    /// writes only the step's text vector, position, history entry and RNG step), calling
    /// `on_frame` with each frame's codes, until code 0 is codec EOS, `max` frames, text that is not
    /// known yet ([`GpuTalker::ready`]), or `on_frame` returns false. Returns the frames made.
    pub fn run_frames(&mut self, max: usize, mut on_frame: impl FnMut(&[u32]) -> bool) -> Result<usize, TalkerError> {
        if !self.started {
            return Err(TalkerError::NotStarted);
        }
        let eos = self.config.ids.codec_eos;
        let (mut t, mut len, mut c0, mut n) = (self.frame, self.len, self.next_code0, 0usize);
        let result = (|| -> Result<(), TalkerError> {
            let mut batch = None;
            while n < max && c0 != eos && (t < self.text.len() || self.text_done) {
                if batch.is_none() {
                    let mut rec = self.k.gpu().recorder(false)?;
                    self.record_frame(&mut rec, false)?;
                    batch = Some(rec.finish()?);
                }
                self.write_frame_inputs(t, len, c0)?;
                batch.as_mut().map(|b| b.submit()).transpose()?;
                let (frame, next) = self.read_frame()?;
                (t, len, c0, n) = (t + 1, len + 1, next, n + 1);
                if !on_frame(&frame) {
                    break;
                }
            }
            Ok(())
        })();
        (self.frame, self.len, self.next_code0) = (t, len, c0);
        result.map(|_| n)
    }

    /// The host side of frame t at Talker position `len` with code 0 `c0`: the step's text vector,
    /// position and cache length, the code-0 history entry and the RNG step.
    pub(super) fn write_frame_inputs(&self, t: usize, len: u32, c0: u32) -> Result<(), TalkerError> {
        if len >= self.ctx {
            return Err(TalkerError::ContextFull { len, ctx: self.ctx });
        }
        let text = match self.text.get(t) {
            Some(r) => r,
            None if self.text_done => &self.tts[0],
            None => return Err(TalkerError::TextNotReady { step: t }),
        };
        self.s.text.write_slice(0, text)?;
        self.s.pos.write_slice(0, &[len, len, len])?;
        self.s.cache_len.write_slice(0, &[len])?;
        self.history.write_slice(t as u64 * 4, &[c0])?;
        self.s.rng_step.write_slice(0, &[(t as u32 + 1).wrapping_mul(self.config.groups + 1)])?;
        Ok(())
    }

    /// The frame's codes and the next code 0.
    pub(super) fn read_frame(&self) -> Result<(Vec<u32>, u32), TalkerError> {
        let g = self.config.groups as usize;
        let mut out = vec![0u32; g + 1];
        self.s.frame_out.read(0, bytemuck::cast_slice_mut(&mut out))?;
        let next = out[g];
        out.truncate(g);
        Ok((out, next))
    }

    /// Benchmarks (after `start`): GPU and wall time of one Talker step and of one frame's code
    /// predictor (16 passes, 15 samplings), each recorded once and replayed `n` times at the current
    /// position, and the CPU time to record a whole frame. Leaves the generation state as it was
    /// except the cache entry at the current position, which the next frame rewrites.
    pub fn bench_parts(&mut self, n: u32) -> Result<BenchParts, TalkerError> {
        if !self.started {
            return Err(TalkerError::NotStarted);
        }
        let p = self.len.min(self.ctx - 1);
        self.s.pos.write_slice(0, &[p, p, p])?;
        self.s.cache_len.write_slice(0, &[p])?;
        self.s.text.write_slice(0, &self.tts[0])?;
        let t0 = std::time::Instant::now();
        {
            let mut rec = self.k.gpu().recorder(false)?;
            self.record_frame(&mut rec, false)?;
            drop(rec.finish()?);
        }
        let record_us = t0.elapsed().as_secs_f64() * 1e6;
        let time = |which: u8| -> Result<(f64, f64, u32, u32), TalkerError> {
            let mut rec = self.k.gpu().recorder(false)?;
            if which == 0 {
                self.record_talker(&mut rec, &self.s.text)?;
            } else {
                self.record_predictor(&mut rec, false)?;
            }
            let dispatches = rec.dispatches();
            let mut batch = rec.finish()?;
            let barriers = batch.barriers();
            batch.submit()?; // warm-up
            let (mut gpu_ns, t0) = (0.0, std::time::Instant::now());
            for _ in 0..n.max(1) {
                gpu_ns += batch.submit()?.total_ns.unwrap_or(0.0);
            }
            let k = n.max(1) as f64;
            Ok((gpu_ns / 1e3 / k, t0.elapsed().as_secs_f64() * 1e6 / k, dispatches, barriers))
        };
        let (talker_gpu_us, talker_wall_us, talker_dispatches, talker_barriers) = time(0)?;
        let (predictor_gpu_us, predictor_wall_us, predictor_dispatches, predictor_barriers) = time(1)?;
        Ok(BenchParts {
            talker_gpu_us,
            talker_wall_us,
            talker_dispatches,
            talker_barriers,
            predictor_gpu_us,
            predictor_wall_us,
            predictor_dispatches,
            predictor_barriers,
            record_us,
        })
    }
}
