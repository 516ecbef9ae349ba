//! Stateless requests over a [`Session`] (what an HTTP server gets): every call gives the whole
//! conversation; the KV cache keeps the longest common prefix of what it holds and the new prompt,
//! so a follow-up turn prefills only what is new.

use super::*;

/// What [`Session::complete`] tells its `on_turn` just before feeding: the whole prompt's ids and
/// how many of them the cache already holds (the rest is prefilled now).
#[derive(Debug, Clone, Copy)]
pub struct Prefilled<'a> {
    pub ids: &'a [u32],
    pub cached: usize,
}

/// A reply to a whole conversation.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Its `prompt_tokens` counts the tokens prefilled by this call (not the cached ones).
    pub reply: Reply,
    /// Tokens of the whole prompt (cached + prefilled).
    pub prompt_tokens: usize,
    /// Leading prompt tokens reused from the cache.
    pub cached_tokens: usize,
}

impl Session {
    /// The rendered prompt (generation header added) of a whole conversation whose messages are
    /// text and 16 kHz audio pieces, and the mel features of its audio in order.
    fn conversation_prompt(
        &self,
        messages: &[(Role, Vec<Input>)],
    ) -> Result<(crate::chat::Prompt, Vec<crate::audio::LogMel>), SessionError> {
        let mut msgs = Vec::with_capacity(messages.len());
        let mut mels = Vec::new();
        for (role, inputs) in messages {
            let (items, m) = Self::items_and_mels(inputs)?;
            msgs.push(Message::new(*role, items));
            mels.extend(m);
        }
        Ok((render(&self.model.tokenizer, &msgs, true)?, mels))
    }

    /// Tokens of a whole conversation's prompt (what [`Session::complete`] would feed, cache
    /// aside): for checking it against the context before queueing it.
    pub fn prompt_len(&self, messages: &[(Role, Vec<Input>)]) -> Result<usize, SessionError> {
        Ok(self.conversation_prompt(messages)?.0.ids.len())
    }

    /// Answers the last message of a whole conversation (`messages`: system, user and assistant
    /// turns in order, each text and 16 kHz audio pieces; the session's own system message is not
    /// used). The cache keeps the longest common prefix of its ids and the new prompt's (up to the
    /// first audio position: audio is never reused) and only the rest is prefilled. `on_turn` sees
    /// the prompt just before it is fed; the reply streams through `on_delta` as in
    /// [`Session::generate`].
    ///
    /// Unlike `generate`, this does not clear the cancel flag when it starts (a server sets it
    /// from another thread at any time; the caller clears it before the request begins).
    pub fn complete(
        &mut self,
        messages: &[(Role, Vec<Input>)],
        max_tokens: usize,
        on_turn: impl FnOnce(Prefilled<'_>),
        mut on_delta: impl FnMut(Delta<'_>) -> bool,
    ) -> Result<Completion, SessionError> {
        let start = Instant::now();
        let (prompt, mels) = self.conversation_prompt(messages)?;
        let ids = prompt.ids;
        let ctx = self.context_size();
        if ids.len() + 1 > ctx as usize {
            return Err(SessionError::PromptTooLong { tokens: ids.len(), used: 0, ctx });
        }
        if ids.is_empty() {
            return Err(SessionError::InvalidArgument("the conversation has no messages".into()));
        }
        // The longest common prefix with the cache, stopping before the first audio position and
        // leaving at least one token to feed (generation starts from a fed token).
        let mut reuse = 0;
        if self.fed.len() == self.model.thinker.len() as usize {
            reuse = self.fed.iter().zip(&ids).take_while(|(a, b)| a == b).count();
        }
        if let Some(first) = prompt.audio_spans.first() {
            reuse = reuse.min(first.start);
        }
        reuse = reuse.min(ids.len() - 1);
        let audio = self.audio_embeddings(&mels)?;
        self.model.thinker.reset_to(reuse as u32)?;
        self.fed.truncate(reuse);
        self.pending.clear();
        on_turn(Prefilled { ids: &ids, cached: reuse });
        let new = &ids[reuse..];
        let result = self.run_turn(new, audio.as_ref().map(|(b, r)| (b, *r)), max_tokens, &mut on_delta, start);
        self.track_fed(reuse as u32, new, &result);
        if result.is_err() || matches!(result, Ok(None)) {
            // The reused prefix stays; what this call fed is forgotten.
            let rolled_back = self.model.thinker.reset_to(reuse as u32);
            self.fed.truncate(reuse);
            if let (Ok(_), Err(e)) = (&result, rolled_back) {
                return Err(e.into());
            }
        }
        let reply = match result? {
            Some(r) => r,
            None => Reply {
                tokens: Vec::new(),
                sampled: Vec::new(),
                text: String::new(),
                stop: StopReason::Cancelled,
                prompt_tokens: new.len(),
                prompt_secs: start.elapsed().as_secs_f64(),
                gen_secs: 0.0,
            },
        };
        Ok(Completion { reply, prompt_tokens: ids.len(), cached_tokens: reuse })
    }

    /// Cache positions whose ids are known (reusable by the next [`Session::complete`]).
    pub fn cached_ids(&self) -> &[u32] {
        &self.fed
    }
}
