//! The generation loop: the prompt through the batched prefill, then one decode step per token
//! (the recorded step replayed where the GPU reads the positions itself).

use super::*;
use qwen3_omni_vk::DecodeAdvance;

impl GpuThinker {
    /// Feeds `prompt` (batched prefill), then generates with the sampling set by
    /// [`GpuThinker::set_sampling`] (greedy by default) until `stop` or `max_new` tokens, calling
    /// `on_token` for each new token (return false to stop early).
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_new: usize,
        stop: &[u32],
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<Vec<u32>, GenError> {
        let mut next = self.prefill(prompt)?;
        let mut out = Vec::new();
        if max_new == 0 {
            return Ok(out); // the prompt is fed; its sampled next token is not wanted
        }
        if !self.replayable() {
            while out.len() < max_new {
                out.push(next);
                if stop.contains(&next) || !on_token(next) || out.len() == max_new {
                    break;
                }
                next = self.step(next, false)?.0;
            }
            return Ok(out);
        }
        // Two copies of one recorded step, submitted alternately: each step ends by advancing the
        // token, positions and cache length on the GPU (decode_advance), so step n + 1 is queued
        // before the host has read step n's token and the GPU never waits for the host. The host
        // reads the tokens from the history buffer; a step queued past a stop is rolled back.
        let mut len = self.len;
        let len0 = len;
        let result = (|| -> Result<(), GenError> {
            let mut batches = Vec::with_capacity(2);
            for _ in 0..2 {
                let mut rec = self.k.gpu().recorder(false)?;
                rec.full_barrier();
                self.record_step(&mut rec, None)?;
                let s = &self.s;
                self.k.decode_advance(
                    &mut rec,
                    DecodeAdvance {
                        next: &s.next,
                        token: &s.token,
                        pos: &s.pos,
                        cache_len: &s.cache_len,
                        history: &self.history,
                        ctx: self.ctx + 1,
                    },
                )?;
                batches.push(rec.finish()?);
            }
            // Steps queued (positions fed), and the oldest one's batch.
            let (mut queued, mut oldest) = (0u32, 0usize);
            let mut done = false;
            out.push(next);
            if stop.contains(&next) || !on_token(next) || out.len() >= max_new {
                return Ok(());
            }
            if len >= self.ctx {
                return Err(GenError::ContextFull { len, ctx: self.ctx });
            }
            self.write_step_inputs(next, len)?;
            let result = (|| -> Result<(), GenError> {
                while !done || queued > 0 {
                    // Keep two steps in flight while more tokens are wanted and fit.
                    while !done && queued < 2 && (out.len() + queued as usize) < max_new && len + queued < self.ctx {
                        batches[(oldest + queued as usize) % 2].submit_nowait()?;
                        queued += 1;
                    }
                    if queued == 0 {
                        break;
                    }
                    batches[oldest].wait()?;
                    oldest = (oldest + 1) % 2;
                    queued -= 1;
                    if done {
                        continue; // a step past the stop: discarded
                    }
                    len += 1;
                    let mut t = [0u32];
                    self.history.read(len as u64 * 4, bytemuck::cast_slice_mut(&mut t))?;
                    next = t[0];
                    out.push(next);
                    if stop.contains(&next) || !on_token(next) || out.len() >= max_new {
                        done = true;
                    } else if len >= self.ctx {
                        done = true;
                        return Err(GenError::ContextFull { len, ctx: self.ctx });
                    }
                }
                Ok(())
            })();
            // Wait for anything still queued (an error path), then forget the history past the
            // positions fed (the GPU appended the last output at `len`, and a discarded step one
            // more), as the stepping path leaves it.
            for b in batches.iter_mut() {
                let _ = b.wait();
            }
            let from = len.min(self.ctx + 1);
            let rest = ((len + 3).min(self.ctx + 1) - from) as usize;
            self.history.write_slice(from as u64 * 4, &vec![u32::MAX; rest])?;
            result
        })();
        // As many draws as the stepping path would have made (one per position fed).
        self.steps_sampled = self.steps_sampled.wrapping_add(len - len0);
        self.len = len;
        result.map(|_| out)
    }
}
