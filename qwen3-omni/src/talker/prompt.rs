//! The Talker's prompt (spec §6.2) as a plan of rows, independent of where the projections run:
//! each row is a text-side vector (a projected Thinker embedding or hidden state, or one of the
//! fixed tts vectors) plus, optionally, a codec embedding.

use super::TalkerConfig;

/// The text side of one Talker input row, in Thinker space before projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextSide {
    /// `text_projection(E(id))`: the Thinker's input embedding of a token.
    Token(u32),
    /// `hidden_projection(hs[accept][pos])`: the Thinker's hidden state at a prompt position
    /// (audio / image / video placeholders).
    Hidden(usize),
    /// `text_projection(E(tts_pad))`, `E(tts_bos)`, `E(tts_eos)`.
    Pad,
    Bos,
    Eos,
    /// A zero text side (not produced by the plan; available to callers).
    Zero,
}

/// One Talker input row: text side + codec embedding `C(codec)` (none = 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub text: TextSide,
    pub codec: Option<u32>,
}

/// The Talker prefill (user turns + the 9-position assistant block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TalkerPlan {
    pub rows: Vec<Row>,
    /// transformers' `talker_input_ids` (user ids, then 9 × tts_pad): for reference only.
    pub ids: Vec<u32>,
}

/// Why a prompt cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PromptError {
    #[error("the prompt has no `<|im_start|>assistant` turn to speak")]
    NoAssistantTurn,
    #[error("the prompt has no user turn")]
    NoUserTurn,
    #[error("the Thinker produced no text to speak")]
    NothingToSay,
}

/// Builds the prefill plan for prompt `ids` (the Thinker's input, ending with the generation
/// prompt `<|im_start|>assistant\n`), the Thinker's first generated token `g0` and the speaker's
/// codec id. All user turns in order (system and earlier assistant turns skipped): a user turn spans
/// `<|im_start|>` to the next `<|im_start|>`; placeholder positions use the hidden state, the rest
/// the token embedding. Then the assistant block of spec §6.2's table.
pub fn plan(c: &TalkerConfig, ids: &[u32], g0: u32, speaker: u32) -> Result<TalkerPlan, PromptError> {
    let i = &c.ids;
    if g0 == i.im_end {
        return Err(PromptError::NothingToSay);
    }
    let mut rows = Vec::new();
    let mut out_ids = Vec::new();
    // Role of each position: the token after the most recent <|im_start|> at or before it.
    let mut role: Option<u32> = None;
    for (p, &id) in ids.iter().enumerate() {
        if id == i.im_start {
            role = ids.get(p + 1).copied();
        }
        if role == Some(i.user) {
            let text = if i.multimodal.contains(&id) { TextSide::Hidden(p) } else { TextSide::Token(id) };
            rows.push(Row { text, codec: None });
            out_ids.push(id);
        }
    }
    if rows.is_empty() {
        return Err(PromptError::NoUserTurn);
    }
    let a = (0..ids.len().saturating_sub(1))
        .rev()
        .find(|&p| ids[p] == i.im_start && ids[p + 1] == i.assistant)
        .ok_or(PromptError::NoAssistantTurn)?;
    // The assistant header: <|im_start|>, assistant, and the token after it ("\n").
    let header: Vec<u32> = (0..3).map(|k| ids.get(a + k).copied().unwrap_or(198)).collect();
    let tok = |t| Row { text: TextSide::Token(t), codec: None };
    rows.extend([tok(header[0]), tok(header[1]), tok(header[2])]);
    for codec in [i.codec_nothink, i.codec_think_bos, i.codec_think_eos, speaker] {
        rows.push(Row { text: TextSide::Pad, codec: Some(codec) });
    }
    rows.push(Row { text: TextSide::Bos, codec: Some(i.codec_pad) });
    rows.push(Row { text: TextSide::Token(g0), codec: Some(i.codec_bos) });
    out_ids.extend(std::iter::repeat_n(i.tts_pad, 9));
    Ok(TalkerPlan { rows, ids: out_ids })
}

/// The text side fed with decode step t (t = 0 after the prefill): the spoken tokens g1, g2, …
/// (`spoken[1..]`; `spoken[0]` = g0 is in the prefill; a `<|im_end|>` in it ends the text), then
/// tts_eos, then tts_pad forever. transformers speaks the tokens the Thinker fed back to itself: all
/// generated tokens before `<|im_end|>`, and when the Thinker stops at its length cap, all but the
/// last (spec §11.5). `done` says whether the text is complete; if not, a token not yet known gives
/// `None`.
pub fn trailing(c: &TalkerConfig, spoken: &[u32], t: usize, done: bool) -> Option<TextSide> {
    let end = spoken.iter().position(|&g| g == c.ids.im_end).unwrap_or(spoken.len());
    let finished = done || end < spoken.len();
    let n = t + 1;
    if n < end {
        Some(TextSide::Token(spoken[n]))
    } else if !finished {
        None
    } else if n == end.max(1) {
        Some(TextSide::Eos)
    } else {
        Some(TextSide::Pad)
    }
}
