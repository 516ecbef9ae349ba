//! ChatML prompt rendering for Qwen3-Omni (spec §3.2) with audio placeholders expanded by the
//! audio token-count formula (spec §4.3), as transformers' processor does.
//!
//! The rendered text is tokenized as one string (special tokens written in it are split out by
//! the tokenizer), exactly like `processor(text=chat_template_output, audio=...)`.

use crate::tokenizer::{Tokenizer, TokenizerError};
use std::ops::Range;

/// Samples per mel frame at 16 kHz (hop length, spec §4.1).
pub const HOP_LENGTH: usize = 160;
/// Audio sampling rate the feature extractor expects.
pub const SAMPLE_RATE: usize = 16_000;

/// Mel frames for `n_samples` of 16 kHz audio: `T = N // 160` (the last STFT frame is dropped).
pub fn mel_frames(n_samples: usize) -> usize {
    n_samples / HOP_LENGTH
}

/// AudioTower output tokens for `T` mel frames (spec §4.3):
/// `13·floor(T/100) + ceil((T mod 100)/8)`.
pub fn audio_token_count(n_mel_frames: usize) -> usize {
    13 * (n_mel_frames / 100) + (n_mel_frames % 100).div_ceil(8)
}

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role name written after `<|im_start|>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One item of a message's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Text(String),
    /// An audio clip, given by its length in mel frames (see [`Item::audio_samples`]).
    Audio {
        n_mel_frames: usize,
    },
}

impl Item {
    pub fn text(s: impl Into<String>) -> Item {
        Item::Text(s.into())
    }

    /// An audio clip of `n_samples` samples at 16 kHz.
    pub fn audio_samples(n_samples: usize) -> Item {
        Item::Audio { n_mel_frames: mel_frames(n_samples) }
    }

    pub fn audio_frames(n_mel_frames: usize) -> Item {
        Item::Audio { n_mel_frames }
    }
}

/// A chat message: a role and its items, concatenated without separators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    pub items: Vec<Item>,
}

impl Message {
    pub fn new(role: Role, items: Vec<Item>) -> Self {
        Message { role, items }
    }

    /// A message with a single text item.
    pub fn text(role: Role, s: impl Into<String>) -> Self {
        Message { role, items: vec![Item::text(s)] }
    }
}

/// Errors from rendering a prompt.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("the prompt contains {found} <|audio_pad|> tokens but {expected} audio items; message text must not contain the literal placeholder")]
    PlaceholderMismatch { expected: usize, found: usize },
    #[error("audio item {index} is empty ({n_mel_frames} mel frames give no audio tokens)")]
    EmptyAudio { index: usize, n_mel_frames: usize },
}

/// A tokenized prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub ids: Vec<u32>,
    /// Positions of the `<|audio_pad|>` runs in `ids`, one per audio item in order; the
    /// AudioTower's output rows for that clip replace these embeddings.
    pub audio_spans: Vec<Range<usize>>,
}

/// Renders messages as ChatML text with one `<|audio_pad|>` per audio item (the chat
/// template's output, before the processor expands placeholders).
pub fn render_text(messages: &[Message], add_generation_prompt: bool) -> String {
    let mut s = String::new();
    for m in messages {
        s.push_str("<|im_start|>");
        s.push_str(m.role.as_str());
        s.push('\n');
        for item in &m.items {
            match item {
                Item::Text(t) => s.push_str(t),
                Item::Audio { .. } => s.push_str("<|audio_start|><|audio_pad|><|audio_end|>"),
            }
        }
        s.push_str("<|im_end|>\n");
    }
    if add_generation_prompt {
        s.push_str("<|im_start|>assistant\n");
    }
    s
}

/// Renders and tokenizes messages, expanding each audio item's placeholder to
/// [`audio_token_count`] copies of `<|audio_pad|>`.
pub fn render(tok: &Tokenizer, messages: &[Message], add_generation_prompt: bool) -> Result<Prompt, ChatError> {
    let counts: Vec<usize> = messages
        .iter()
        .flat_map(|m| &m.items)
        .filter_map(|it| match it {
            Item::Audio { n_mel_frames } => Some(*n_mel_frames),
            Item::Text(_) => None,
        })
        .enumerate()
        .map(|(index, n_mel_frames)| match audio_token_count(n_mel_frames) {
            0 => Err(ChatError::EmptyAudio { index, n_mel_frames }),
            n => Ok(n),
        })
        .collect::<Result<_, _>>()?;

    let text = render_text(messages, add_generation_prompt);
    let raw = tok.encode(&text)?;
    let pad = tok.special_ids().audio_pad;
    let found = raw.iter().filter(|&&id| id == pad).count();
    if found != counts.len() {
        return Err(ChatError::PlaceholderMismatch { expected: counts.len(), found });
    }

    let mut ids = Vec::with_capacity(raw.len() + counts.iter().sum::<usize>());
    let mut audio_spans = Vec::with_capacity(counts.len());
    let mut next = counts.iter();
    for id in raw {
        if id == pad {
            let n = *next.next().unwrap_or(&0);
            audio_spans.push(ids.len()..ids.len() + n);
            ids.extend(std::iter::repeat_n(pad, n));
        } else {
            ids.push(id);
        }
    }
    Ok(Prompt { ids, audio_spans })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_count_examples_from_spec() {
        // 1 s -> 13, 2.5 s -> 33, 30 s -> 390 (spec §4.3).
        assert_eq!(audio_token_count(mel_frames(16_000)), 13);
        assert_eq!(audio_token_count(mel_frames(40_000)), 33);
        assert_eq!(audio_token_count(mel_frames(480_000)), 390);
        assert_eq!(audio_token_count(0), 0);
        assert_eq!(audio_token_count(1), 1);
        assert_eq!(audio_token_count(8), 1);
        assert_eq!(audio_token_count(9), 2);
        assert_eq!(audio_token_count(101), 14);
    }

    #[test]
    fn template_text() {
        let msgs = [
            Message::text(Role::System, "S"),
            Message::new(Role::User, vec![Item::audio_frames(100), Item::text("Q")]),
        ];
        assert_eq!(
            render_text(&msgs, true),
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n\
             <|audio_start|><|audio_pad|><|audio_end|>Q<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
