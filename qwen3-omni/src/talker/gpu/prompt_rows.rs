//! The Talker's input side: Thinker rows projected on the GPU, codec embeddings, the prompt plan
//! (§6.2), its prefill and the streamed text and spoken rows.

use super::*;

impl GpuTalker {
    /// Projects Thinker-space rows (`thinker_hidden` floats each) through text_projection
    /// (`hidden = false`) or hidden_projection into Talker space, on the GPU.
    pub fn project(&self, rows: &[Vec<f32>], hidden: bool) -> Result<Vec<Vec<f32>>, TalkerError> {
        let c = &self.config;
        let (th, h, inter) = (c.thinker_hidden, c.talker.hidden, c.talker.inter);
        if let Some(bad) = rows.iter().find(|r| r.len() != th as usize) {
            return Err(TalkerError::BadInput(format!(
                "a Thinker-space row has {} values; the model's thinker_hidden_size is {th}",
                bad.len()
            )));
        }
        let pw: &ProjWeights = if hidden { &self.w.hidden_proj } else { &self.w.text_proj };
        let (k, ps) = (&self.k, &self.ps);
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(ps.rows as usize) {
            ps.inp.write_slice(0, &chunk.concat())?;
            let mut rec = k.gpu().recorder(false)?;
            let (rin, rout) = (th as u64 * 4, h as u64 * 4);
            for r in 0..chunk.len() as u64 {
                rec.copy(&ps.inp, r * rin, &ps.x, 0, rin)?;
                k.matvec(&mut rec, planar(&pw.w1, inter, th), &ps.x, &ps.a, Some(&ps.q81))?;
                k.add(&mut rec, &ps.a, &pw.b1, &ps.b, inter as u64, inter as u64)?;
                k.silu_mul(&mut rec, &ps.b, &ps.ones, &ps.a, inter as u64)?;
                k.matvec(&mut rec, planar(&pw.w2, h, inter), &ps.a, &ps.o1, Some(&ps.q81))?;
                k.add(&mut rec, &ps.o1, &pw.b2, &ps.o2, h as u64, h as u64)?;
                rec.copy(&ps.o2, 0, &ps.out, r * rout, rout)?;
            }
            rec.submit()?;
            let mut v = vec![0f32; chunk.len() * h as usize];
            ps.out.read(0, bytemuck::cast_slice_mut(&mut v))?;
            out.extend(v.chunks_exact(h as usize).map(|r| r.to_vec()));
        }
        Ok(out)
    }

    /// Rows `ids` of the Talker's codec embedding C(·), read back.
    pub(super) fn codec_embeddings(&self, ids: &[u32]) -> Result<Vec<Vec<f32>>, TalkerError> {
        let (k, c) = (&self.k, &self.config.talker);
        let g = k.gpu();
        let idb = g.buffer_from("codec ids", ids, MemoryIntent::Upload)?;
        let out = g.buffer("codec rows", (ids.len() * c.hidden as usize * 4) as u64, MemoryIntent::Readback)?;
        let mut rec = g.recorder(false)?;
        k.embed_q8_0p(&mut rec, planar(&self.w.codec_embed, c.vocab, c.hidden), &idb, ids.len() as u32, &out)?;
        rec.submit()?;
        let v: Vec<f32> = out.read_vec()?;
        Ok(v.chunks_exact(c.hidden as usize).map(|r| r.to_vec()).collect())
    }

    pub(super) fn codec_row(&self, id: u32) -> Result<Vec<f32>, TalkerError> {
        if let Some((_, r)) = self.codec_rows.iter().find(|(i, _)| *i == id) {
            return Ok(r.clone());
        }
        if id >= self.config.talker.vocab {
            return Err(TalkerError::BadInput(format!("codec id {id} is outside the codec vocabulary")));
        }
        Ok(self.codec_embeddings(&[id])?.remove(0))
    }

    /// Talker-space vectors of text sides: `embed(id)` gives the Thinker's E(id), `hidden(pos)` its
    /// hs[accept] at a prompt position.
    pub fn text_sides(
        &self,
        sides: &[TextSide],
        embed: &dyn Fn(u32) -> Result<Vec<f32>, TalkerError>,
        hidden: &dyn Fn(usize) -> Result<Vec<f32>, TalkerError>,
    ) -> Result<Vec<Vec<f32>>, TalkerError> {
        let mut out = vec![Vec::new(); sides.len()];
        let (mut tok, mut hid) = (Vec::new(), Vec::new());
        for (i, s) in sides.iter().enumerate() {
            match *s {
                TextSide::Token(id) => tok.push((i, embed(id)?)),
                TextSide::Hidden(p) => hid.push((i, hidden(p)?)),
                TextSide::Pad => out[i] = self.tts[0].clone(),
                TextSide::Bos => out[i] = self.tts[1].clone(),
                TextSide::Eos => out[i] = self.tts[2].clone(),
                TextSide::Zero => out[i] = vec![0.0; self.config.talker.hidden as usize],
            }
        }
        for (list, is_hidden) in [(tok, false), (hid, true)] {
            let (idx, rows): (Vec<usize>, Vec<Vec<f32>>) = list.into_iter().unzip();
            for (i, v) in idx.into_iter().zip(self.project(&rows, is_hidden)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// The Talker input rows of a prompt plan (text side + codec embedding).
    pub fn prompt_rows(
        &self,
        rows: &[Row],
        embed: &dyn Fn(u32) -> Result<Vec<f32>, TalkerError>,
        hidden: &dyn Fn(usize) -> Result<Vec<f32>, TalkerError>,
    ) -> Result<Vec<Vec<f32>>, TalkerError> {
        let sides: Vec<TextSide> = rows.iter().map(|r| r.text).collect();
        let mut out = self.text_sides(&sides, embed, hidden)?;
        for (o, r) in out.iter_mut().zip(rows) {
            if let Some(id) = r.codec {
                for (a, b) in o.iter_mut().zip(self.codec_row(id)?) {
                    *a += b;
                }
            }
        }
        Ok(out)
    }

    /// Convenience: builds the §6.2 prompt for the Thinker prompt `ids` (whose hs[accept] rows,
    /// `[ids.len(), thinker_hidden]`, come from the Thinker, e.g. `GpuThinker::hidden_states`), the
    /// first generated token `g0` and `speaker` ("ethan", "chelsie", "aiden"), then starts.
    /// Thinker embeddings are read from `m` on the CPU. Returns code 0 of the first frame.
    pub fn start_from_thinker(
        &mut self,
        m: &ModelFile,
        ids: &[u32],
        hs_accept: &[f32],
        g0: u32,
        speaker: &str,
    ) -> Result<u32, TalkerError> {
        let th = self.config.thinker_hidden as usize;
        if hs_accept.len() < ids.len() * th {
            return Err(TalkerError::BadInput(format!(
                "{} hidden-state values for {} prompt positions of {th}",
                hs_accept.len(),
                ids.len()
            )));
        }
        let spk = self.config.speaker(speaker).map_err(TalkerError::BadInput)?;
        let p = plan(&self.config, ids, g0, spk)?;
        let embed = |id: u32| thinker_embedding(m, id).map_err(TalkerError::from);
        let hidden = |pos: usize| Ok(hs_accept[pos * th..(pos + 1) * th].to_vec());
        let rows = self.prompt_rows(&p.rows, &embed, &hidden)?;
        self.start(&rows)
    }

    /// Resets and feeds the prompt rows (Talker space, `hidden` floats each) through the Talker;
    /// returns the first frame's code 0 (EOS means nothing to say). Trailing text is then given
    /// with [`GpuTalker::push_text`] / [`GpuTalker::finish_text`].
    pub fn start(&mut self, rows: &[Vec<f32>]) -> Result<u32, TalkerError> {
        let h = self.config.talker.hidden as usize;
        if rows.is_empty() || rows.iter().any(|r| r.len() != h) {
            return Err(TalkerError::BadInput(format!("prompt rows must be non-empty vectors of {h} values")));
        }
        if rows.len() as u32 + 1 > self.ctx {
            return Err(TalkerError::ContextFull { len: rows.len() as u32, ctx: self.ctx });
        }
        self.history.write_slice(0, &vec![u32::MAX; self.ctx as usize])?;
        self.len = 0;
        self.frame = 0;
        self.text.clear();
        self.text_done = false;
        self.started = false;
        if self.batched_prefill() {
            self.prefill_scratch()?;
            let n = rows.len();
            for (ci, part) in rows.chunks(PREFILL_CHUNK as usize).enumerate() {
                let p0 = (ci * PREFILL_CHUNK as usize) as u32;
                self.prefill_chunk(part, p0, p0 as usize + part.len() == n)?;
            }
        } else {
            // One recorded step, replayed for every row: the host writes the row, position and length.
            let mut rec = self.k.gpu().recorder(false)?;
            self.record_talker(&mut rec, &self.s.xin)?;
            let mut batch = rec.finish()?;
            self.s.rng_step.write_slice(0, &[0u32])?;
            for (p, r) in rows.iter().enumerate() {
                let p = p as u32;
                self.s.xin.write_slice(0, r)?;
                self.s.pos.write_slice(0, &[p, p, p])?;
                self.s.cache_len.write_slice(0, &[p])?;
                batch.submit()?;
            }
        }
        self.len = rows.len() as u32;
        let mut c0 = [0u32];
        self.s.code0.read(0, bytemuck::cast_slice_mut(&mut c0))?;
        self.next_code0 = c0[0];
        self.started = true;
        Ok(c0[0])
    }

    /// Appends trailing text vectors (Talker space), one per future step, in order.
    pub fn push_text(&mut self, rows: &[Vec<f32>]) -> Result<(), TalkerError> {
        let h = self.config.talker.hidden as usize;
        if rows.iter().any(|r| r.len() != h) {
            return Err(TalkerError::BadInput(format!("text rows must have {h} values")));
        }
        self.text.extend(rows.iter().cloned());
        Ok(())
    }

    /// Convenience: pushes the text side of Thinker tokens (text_projection of E(id), read from `m`).
    pub fn push_tokens(&mut self, m: &ModelFile, ids: &[u32]) -> Result<(), TalkerError> {
        let sides: Vec<TextSide> = ids.iter().map(|&id| TextSide::Token(id)).collect();
        let embed = |id: u32| thinker_embedding(m, id).map_err(TalkerError::from);
        let rows = self.text_sides(&sides, &embed, &|_| Err(TalkerError::BadInput("no hidden states".into())))?;
        self.push_text(&rows)
    }

    /// Marks the text complete: tts_eos follows the pushed text, then tts_pad forever.
    pub fn finish_text(&mut self) {
        if !self.text_done {
            self.text.push(self.tts[2].clone());
            self.text_done = true;
        }
    }

    /// Pushes the trailing text of a finished Thinker reply in transformers' form (spec §6.2:
    /// `spoken[1..]`, then tts_eos), where `spoken` = g0, g1, … as in [`super::trailing`].
    pub fn push_spoken(&mut self, m: &ModelFile, spoken: &[u32]) -> Result<(), TalkerError> {
        let mut toks = Vec::new();
        let mut t = 0;
        while let Some(TextSide::Token(id)) = trailing(&self.config, spoken, t, true) {
            toks.push(id);
            t += 1;
        }
        self.push_tokens(m, &toks)?;
        self.finish_text();
        Ok(())
    }
}
