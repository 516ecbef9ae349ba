//! The Qwen3 byte-level BPE tokenizer with Qwen3-Omni's added tokens (spec §3.1).
//!
//! Encoding is delegated to the `tokenizers` crate reading `tokenizer.json` (written by
//! `tools/fetch-tokenizer.sh`). Decoding is done here from a per-id byte table, because the
//! tokenizer is byte-level: every id stands for a fixed byte string, so text can be produced
//! incrementally ([`StreamDecoder`]) and still equal a one-shot [`Tokenizer::decode`].

use std::path::{Path, PathBuf};

/// Errors from loading or using the tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot load tokenizer {path}: {msg} (run tools/fetch-tokenizer.sh to fetch it)")]
    Load { path: PathBuf, msg: String },
    #[error("tokenizer {path} lacks the special token {token:?} (id {id}); is it the Qwen3-Omni tokenizer from tools/fetch-tokenizer.sh?")]
    MissingSpecial { path: PathBuf, token: &'static str, id: u32 },
    #[error("tokenizer {path}: model token {token:?} (id {id}) is not a byte-level token")]
    NotByteLevel { path: PathBuf, token: String, id: u32 },
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("token id {0} is outside the tokenizer's vocabulary")]
    UnknownId(u32),
}

/// Special token ids of Qwen3-Omni (spec §3.1, §2.1–2.2). Checked against the loaded tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    pub endoftext: u32,
    pub im_start: u32,
    pub im_end: u32,
    pub vision_start: u32,
    pub vision_end: u32,
    pub image_pad: u32,
    pub video_pad: u32,
    pub audio_start: u32,
    pub audio_end: u32,
    pub tts_pad: u32,
    pub tts_bos: u32,
    pub tts_eos: u32,
    pub tts_bos_single: u32,
    pub audio_pad: u32,
}

impl SpecialIds {
    /// The ids of the real Qwen3-Omni tokenizer.
    pub const QWEN3_OMNI: SpecialIds = SpecialIds {
        endoftext: 151643,
        im_start: 151644,
        im_end: 151645,
        vision_start: 151652,
        vision_end: 151653,
        image_pad: 151655,
        video_pad: 151656,
        audio_start: 151669,
        audio_end: 151670,
        tts_pad: 151671,
        tts_bos: 151672,
        tts_eos: 151673,
        tts_bos_single: 151674,
        audio_pad: 151675,
    };

    fn named(&self) -> [(&'static str, u32); 14] {
        [
            ("<|endoftext|>", self.endoftext),
            ("<|im_start|>", self.im_start),
            ("<|im_end|>", self.im_end),
            ("<|vision_start|>", self.vision_start),
            ("<|vision_end|>", self.vision_end),
            ("<|image_pad|>", self.image_pad),
            ("<|video_pad|>", self.video_pad),
            ("<|audio_start|>", self.audio_start),
            ("<|audio_end|>", self.audio_end),
            ("<tts_pad>", self.tts_pad),
            ("<tts_text_bos>", self.tts_bos),
            ("<tts_text_eod>", self.tts_eos),
            ("<tts_text_bos_single>", self.tts_bos_single),
            ("<|audio_pad|>", self.audio_pad),
        ]
    }
}

/// Default location of the tokenizer, relative to the repository root.
pub const DEFAULT_TOKENIZER_PATH: &str = "models/tokenizer/tokenizer.json";

/// A loaded tokenizer: `tokenizers` for encoding, a byte table for decoding.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// `inner` with special tokens read as plain text ([`Tokenizer::encode`]).
    plain: tokenizers::Tokenizer,
    /// Bytes each id decodes to (empty for ids that do not exist).
    bytes: Vec<Box<[u8]>>,
    /// Whether each id is a special added token (skipped by `decode(.., skip_special=true)`).
    special: Vec<bool>,
    ids: SpecialIds,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("vocab_size", &self.vocab_size()).finish()
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json` and checks that it carries Qwen3-Omni's special tokens.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let load_err = |msg: String| TokenizerError::Load { path: path.to_path_buf(), msg };
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| load_err(e.to_string()))?;
        Self::from_inner(inner, path)
    }

    /// Loads tokenizer.json text (as a GGUF's `tokenizer.huggingface.json` holds it); `origin`
    /// names where it came from in errors.
    pub fn from_json(json: &str, origin: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = origin.as_ref();
        let inner: tokenizers::Tokenizer = json
            .parse()
            .map_err(|e: tokenizers::Error| TokenizerError::Load { path: path.to_path_buf(), msg: e.to_string() })?;
        Self::from_inner(inner, path)
    }

    fn from_inner(inner: tokenizers::Tokenizer, path: &Path) -> Result<Self, TokenizerError> {
        let vocab = inner.get_vocab(true);
        let n = vocab.values().copied().max().map_or(0, |m| m as usize + 1);
        let mut bytes: Vec<Box<[u8]>> = vec![Box::default(); n];
        let mut special = vec![false; n];
        let added = inner.get_added_tokens_decoder();
        let unicode_to_byte = byte_level_inverse();
        for (token, &id) in &vocab {
            let i = id as usize;
            if let Some(at) = added.get(&id) {
                // Added tokens are stored as plain text, not byte-level encoded.
                bytes[i] = at.content.as_bytes().into();
                special[i] = at.special;
                continue;
            }
            let mut b = Vec::with_capacity(token.len());
            for ch in token.chars() {
                match unicode_to_byte.get(ch as usize).copied().flatten() {
                    Some(byte) => b.push(byte),
                    None => {
                        return Err(TokenizerError::NotByteLevel { path: path.to_path_buf(), token: token.clone(), id })
                    }
                }
            }
            bytes[i] = b.into();
        }

        let ids = SpecialIds::QWEN3_OMNI;
        for (token, id) in ids.named() {
            if inner.token_to_id(token) != Some(id) {
                return Err(TokenizerError::MissingSpecial { path: path.to_path_buf(), token, id });
            }
        }
        let mut plain = inner.clone();
        plain.set_encode_special_tokens(true);
        Ok(Tokenizer { inner, plain, bytes, special, ids })
    }

    /// Special token ids.
    pub fn special_ids(&self) -> &SpecialIds {
        &self.ids
    }

    /// Number of token ids (model vocabulary plus added tokens), e.g. 151676.
    /// The model's embedding tables are larger (152064); the extra rows are padding.
    pub fn vocab_size(&self) -> usize {
        self.bytes.len()
    }

    /// Id of a token string (a vocabulary entry in byte-level form, or an added token).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Encodes text as plain text: special-token strings in it (`<|im_end|>`) are tokenized as
    /// ordinary characters, so text from a user can never become a control token; no BOS/EOS.
    /// This is what prompts use ([`crate::chat::render`] writes the control tokens as ids).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let enc = self.plain.encode_fast(text, false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encodes text as transformers does by default: special tokens written in the text
    /// (e.g. `<|im_start|>`) become their ids, no BOS/EOS is added. Only for trusted text (a
    /// rendered template, parity tests); never for a user's message.
    pub fn encode_with_special(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let enc = self.inner.encode_fast(text, false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Raw bytes of one token (may be an incomplete UTF-8 sequence).
    pub fn token_bytes(&self, id: u32) -> Result<&[u8], TokenizerError> {
        self.bytes.get(id as usize).map(|b| &**b).ok_or(TokenizerError::UnknownId(id))
    }

    /// Whether `id` is a special added token.
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// Bytes `decode` emits for one id: nothing for skipped specials and for ids without a token.
    /// The model's vocabulary (152064 rows) is larger than the tokenizer's (151676), and the padding
    /// rows are not masked, so a model can emit such ids; like `tokenizers`, they decode to nothing.
    fn decode_bytes(&self, id: u32, skip_special: bool) -> &[u8] {
        if skip_special && self.is_special(id) {
            return &[];
        }
        self.bytes.get(id as usize).map_or(&[], |b| &**b)
    }

    /// Decodes ids to text; invalid UTF-8 becomes U+FFFD (as transformers' byte-level decoder).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let mut buf = Vec::new();
        for &id in ids {
            buf.extend_from_slice(self.decode_bytes(id, skip_special));
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// A streaming decoder borrowing this tokenizer.
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder<'_> {
        StreamDecoder { tok: self, pending: Vec::new(), skip_special }
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Incremental detokenizer: feed ids one at a time, get the text that is complete so far.
///
/// A byte-level token may end in the middle of a UTF-8 character; those bytes are held back
/// until the character completes. The concatenation of all [`push`](Self::push) results and
/// [`finish`](Self::finish) equals [`Tokenizer::decode`] of the same ids.
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    pending: Vec<u8>,
    skip_special: bool,
}

impl StreamDecoder<'_> {
    /// Adds one id; returns the newly completed text (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        self.pending.extend_from_slice(self.tok.decode_bytes(id, self.skip_special));
        self.drain(false)
    }

    /// Flushes held-back bytes (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        self.drain(true)
    }

    fn drain(&mut self, at_end: bool) -> String {
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = start + e.valid_up_to();
                    // Valid by construction (`valid_up_to`), so the fallback never triggers.
                    out.push_str(std::str::from_utf8(&self.pending[start..valid]).unwrap_or(""));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start = valid + bad;
                        }
                        None if at_end => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            start = self.pending.len();
                            break;
                        }
                        None => {
                            // Incomplete character at the end: wait for more bytes.
                            start = valid;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        out
    }
}

/// Inverse of GPT-2's byte-to-unicode map: `table[char as usize] = Some(byte)`.
/// Printable bytes (`!`..`~`, `¡`..`¬`, `®`..`ÿ`) map to themselves; the other 68 bytes map,
/// in increasing order, to U+0100 and up.
fn byte_level_inverse() -> Vec<Option<u8>> {
    let mut table = vec![None; 256 + 68];
    let mut next = 256usize;
    for b in 0u8..=255 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        if printable {
            table[b as usize] = Some(b);
        } else {
            table[next] = Some(b);
            next += 1;
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table_is_a_bijection() {
        let t = byte_level_inverse();
        let mut seen = [false; 256];
        for b in t.iter().flatten() {
            assert!(!seen[*b as usize]);
            seen[*b as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(t['Ġ' as usize], Some(b' '));
        assert_eq!(t['Ċ' as usize], Some(b'\n'));
    }
}
