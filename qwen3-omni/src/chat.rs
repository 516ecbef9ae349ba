//! ChatML prompt rendering for Qwen3-Omni (spec §3.2) with audio placeholders expanded by the
//! audio token-count formula (spec §4.3), as transformers' processor does.
//!
//! Only the template makes control tokens: its markers (`<|im_start|>`, `<|im_end|>`, the audio
//! markers and pads) are written as ids, and the text between them (role names, message text) is
//! tokenized with special tokens read as plain text, so a message that says `<|im_end|>` cannot
//! end its turn or open another role's. For text without such strings the ids are exactly
//! transformers' `processor(text=chat_template_output, audio=...)` (which also tokenizes each
//! stretch between special tokens on its own).

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
/// [`audio_token_count`] copies of `<|audio_pad|>`. Message text is plain text: special-token
/// strings in it are tokenized as characters (see the module docs).
pub fn render(tok: &Tokenizer, messages: &[Message], add_generation_prompt: bool) -> Result<Prompt, ChatError> {
    let sp = *tok.special_ids();
    let mut ids = Vec::new();
    let mut audio_spans = Vec::new();
    // Plain text waiting to be tokenized up to the next control token.
    let mut text = String::new();
    let flush = |text: &mut String, ids: &mut Vec<u32>| -> Result<(), ChatError> {
        if !text.is_empty() {
            ids.extend(tok.encode(text)?);
            text.clear();
        }
        Ok(())
    };
    let mut audio_index = 0;
    for m in messages {
        flush(&mut text, &mut ids)?;
        ids.push(sp.im_start);
        text.push_str(m.role.as_str());
        text.push('\n');
        for item in &m.items {
            match item {
                Item::Text(t) => text.push_str(t),
                &Item::Audio { n_mel_frames } => {
                    let n = audio_token_count(n_mel_frames);
                    if n == 0 {
                        return Err(ChatError::EmptyAudio { index: audio_index, n_mel_frames });
                    }
                    audio_index += 1;
                    flush(&mut text, &mut ids)?;
                    ids.push(sp.audio_start);
                    audio_spans.push(ids.len()..ids.len() + n);
                    ids.extend(std::iter::repeat_n(sp.audio_pad, n));
                    ids.push(sp.audio_end);
                }
            }
        }
        flush(&mut text, &mut ids)?;
        ids.push(sp.im_end);
        text.push('\n');
    }
    if add_generation_prompt {
        flush(&mut text, &mut ids)?;
        ids.push(sp.im_start);
        text.push_str("assistant\n");
    }
    flush(&mut text, &mut ids)?;
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
