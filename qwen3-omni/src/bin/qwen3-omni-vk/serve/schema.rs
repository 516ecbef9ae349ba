//! Requests as OpenAI shapes them, read field by field so that a bad one is named in `param`
//! (`messages[2].content[0].input_audio.format`, `temperature`, …), and the usage object of the
//! responses.

use serde_json::{json, Map, Value};

use qwen3_omni::chat::Role;
use qwen3_omni::session::{Input, Sampling};

use super::audio::{check_input_format, decode, unb64, OutFormat};
use super::errors::ApiError;
use super::slots::{ChatWork, SpeechWork, Summary};
use super::transcripts::Transcripts;

/// What request parsing needs to know of the server.
pub struct Limits<'a> {
    pub voices: &'a [String],
    pub speaks: bool,
    pub audio_in: bool,
    /// `max_tokens` when the request gives none.
    pub default_max_tokens: usize,
    pub transcripts: &'a Transcripts,
    pub panic_marker: Option<&'a str>,
}

pub struct ChatRequest {
    pub work: ChatWork,
    pub stream: bool,
    pub include_usage: bool,
    /// With `modalities` "audio": how the non-streamed reply's audio is encoded.
    pub audio_format: Option<OutFormat>,
}

pub fn parse_json(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("the body is not valid JSON: {e}")))?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::invalid("the body must be a JSON object")),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn want(param: &str, what: &str, v: &Value) -> ApiError {
    ApiError::param(param, format!("must be {what}, not {}", kind(v)))
}

/// A field that may be absent or null.
fn field<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn opt_str<'a>(m: &'a Map<String, Value>, key: &str, param: &str) -> Result<Option<&'a str>, ApiError> {
    match field(m, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(want(param, "a string", v)),
    }
}

fn opt_bool(m: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match field(m, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(want(key, "true or false", v)),
    }
}

fn opt_num(m: &Map<String, Value>, key: &str) -> Result<Option<f64>, ApiError> {
    match field(m, key) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(v) => Err(want(key, "a number", v)),
    }
}

fn opt_int(m: &Map<String, Value>, key: &str) -> Result<Option<i64>, ApiError> {
    match field(m, key) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(u)) => Ok(Some(u as i64)),
            _ => Err(ApiError::param(key, format!("must be an integer, not {n}"))),
        },
        Some(v) => Err(want(key, "an integer", v)),
    }
}

fn obj<'a>(v: &'a Value, param: &str) -> Result<&'a Map<String, Value>, ApiError> {
    v.as_object().ok_or_else(|| want(param, "an object", v))
}

/// The voice a request names, checked against the model's (case-insensitive).
pub fn voice(v: Option<&str>, param: &str, voices: &[String]) -> Result<String, ApiError> {
    let v = match v {
        Some(v) => v.to_lowercase(),
        None if voices.iter().any(|x| x == "ethan") => "ethan".into(),
        None => voices.first().cloned().unwrap_or_default(),
    };
    if voices.contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::param(param, format!("unknown voice {v:?} (this model has: {})", voices.join(", "))))
    }
}

fn role(s: &str, param: &str) -> Result<Role, ApiError> {
    match s {
        "system" | "developer" => Ok(Role::System),
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        "tool" | "function" => {
            Err(ApiError::unsupported(param, format!("role {s:?} is not supported (no tool calls)")))
        }
        other => Err(ApiError::param(param, format!("unknown role {other:?} (system, developer, user, assistant)"))),
    }
}

/// One message: its role and its text and audio pieces in order.
fn message(v: &Value, i: usize, lim: &Limits<'_>) -> Result<(Role, Vec<Input>), ApiError> {
    let p = format!("messages[{i}]");
    let m = obj(v, &p)?;
    let r = match field(m, "role") {
        Some(Value::String(s)) => role(s, &format!("{p}.role"))?,
        Some(v) => return Err(want(&format!("{p}.role"), "a string", v)),
        None => return Err(ApiError::param(format!("{p}.role"), "is required")),
    };
    let mut inputs = Vec::new();
    match field(m, "content") {
        None => {}
        Some(Value::String(s)) => inputs.push(Input::Text(s.clone())),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let pp = format!("{p}.content[{j}]");
                let pm = obj(part, &pp)?;
                match opt_str(pm, "type", &format!("{pp}.type"))? {
                    Some("text") => match field(pm, "text") {
                        Some(Value::String(t)) => inputs.push(Input::Text(t.clone())),
                        Some(v) => return Err(want(&format!("{pp}.text"), "a string", v)),
                        None => return Err(ApiError::param(format!("{pp}.text"), "is required")),
                    },
                    Some("input_audio") => {
                        if r != Role::User {
                            return Err(ApiError::unsupported(&pp, "audio input is taken in user messages only"));
                        }
                        if !lim.audio_in {
                            return Err(ApiError::unsupported(
                                &pp,
                                "this model file has no AudioTower: no audio input",
                            ));
                        }
                        let ap = format!("{pp}.input_audio");
                        let a = obj(field(pm, "input_audio").unwrap_or(&Value::Null), &ap)?;
                        let format = opt_str(a, "format", &format!("{ap}.format"))?.unwrap_or("wav");
                        check_input_format(format, &format!("{ap}.format"))?;
                        let data = opt_str(a, "data", &format!("{ap}.data"))?
                            .ok_or_else(|| ApiError::param(format!("{ap}.data"), "is required"))?;
                        let bytes = unb64(data, &format!("{ap}.data"))?;
                        inputs.push(Input::Audio(decode(&bytes, &format!("{ap}.data"))?));
                    }
                    Some(t @ ("image_url" | "input_image" | "video_url" | "file" | "refusal")) => {
                        return Err(ApiError::unsupported(
                            format!("{pp}.type"),
                            format!("content parts of type {t:?} are not supported (text, input_audio)"),
                        ))
                    }
                    Some(t) => {
                        return Err(ApiError::param(
                            format!("{pp}.type"),
                            format!("unknown content part type {t:?} (text, input_audio)"),
                        ))
                    }
                    None => return Err(ApiError::param(format!("{pp}.type"), "is required")),
                }
            }
        }
        Some(v) => return Err(want(&format!("{p}.content"), "a string or an array of parts", v)),
    }
    // An assistant turn that was spoken: `audio: {id}` stands for its transcript.
    if let Some(a) = field(m, "audio") {
        let ap = format!("{p}.audio");
        if r != Role::Assistant {
            return Err(ApiError::param(&ap, "only assistant messages refer to earlier audio"));
        }
        let id = opt_str(obj(a, &ap)?, "id", &format!("{ap}.id"))?
            .ok_or_else(|| ApiError::param(format!("{ap}.id"), "is required"))?;
        if inputs.is_empty() {
            let t = lim.transcripts.get(id).ok_or_else(|| {
                ApiError::param(
                    format!("{ap}.id"),
                    format!("no reply audio {id:?} is known (expired, or from another server)"),
                )
            })?;
            inputs.push(Input::Text(t));
        }
    }
    Ok((r, inputs))
}

pub fn parse_chat(m: &Map<String, Value>, lim: &Limits<'_>) -> Result<ChatRequest, ApiError> {
    opt_str(m, "model", "model")?;
    let messages = match field(m, "messages") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(ApiError::param("messages", "must hold at least one message")),
        Some(v) => return Err(want("messages", "an array", v)),
        None => return Err(ApiError::param("messages", "is required")),
    };
    let messages = messages.iter().enumerate().map(|(i, v)| message(v, i, lim)).collect::<Result<Vec<_>, _>>()?;
    // Modalities and the voice.
    let mut speak = false;
    if let Some(v) = field(m, "modalities") {
        let a = v.as_array().ok_or_else(|| want("modalities", "an array", v))?;
        for (i, x) in a.iter().enumerate() {
            match x.as_str() {
                Some("text") => {}
                Some("audio") => speak = true,
                Some(o) => {
                    return Err(ApiError::param(
                        format!("modalities[{i}]"),
                        format!("unknown modality {o:?} (text, audio)"),
                    ))
                }
                None => return Err(want(&format!("modalities[{i}]"), "a string", x)),
            }
        }
    }
    let (mut voice_name, mut audio_format) = (None, None);
    if speak {
        if !lim.speaks {
            return Err(ApiError::unsupported(
                "modalities",
                "this model file has no Talker and Code2Wav: no audio out",
            ));
        }
        let empty = Map::new();
        let a = match field(m, "audio") {
            Some(v) => obj(v, "audio")?,
            None => &empty,
        };
        voice_name = Some(voice(opt_str(a, "voice", "audio.voice")?, "audio.voice", lim.voices)?);
        audio_format = Some(OutFormat::parse(opt_str(a, "format", "audio.format")?.unwrap_or("wav"), "audio.format")?);
    }
    // Lengths and sampling.
    let max_tokens = match (opt_int(m, "max_completion_tokens")?, opt_int(m, "max_tokens")?) {
        (Some(n), _) => ("max_completion_tokens", n),
        (None, Some(n)) => ("max_tokens", n),
        (None, None) => ("", lim.default_max_tokens as i64),
    };
    if max_tokens.1 < 1 {
        return Err(ApiError::param(max_tokens.0, format!("{} must be at least 1", max_tokens.1)));
    }
    let mut sampling = Sampling::default();
    if let Some(t) = opt_num(m, "temperature")? {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::param("temperature", format!("{t} must be in [0, 2]")));
        }
        sampling.temperature = t as f32;
    }
    if let Some(p) = opt_num(m, "top_p")? {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::param("top_p", format!("{p} must be in (0, 1]")));
        }
        sampling.top_p = p as f32;
    }
    if let Some(k) = opt_int(m, "top_k")? {
        let max = qwen3_omni_vk::SAMPLE_MAX_K as i64;
        // -1 is how several servers spell "off".
        if k < -1 || k > max {
            return Err(ApiError::param("top_k", format!("{k} must be in 0..={max} (0 or -1: off)")));
        }
        sampling.top_k = k.max(0) as u32;
    }
    if let Some(r) = opt_num(m, "repetition_penalty")? {
        if !(r > 0.0 && r.is_finite()) {
            return Err(ApiError::param("repetition_penalty", format!("{r} must be > 0")));
        }
        sampling.repeat_penalty = r as f32;
    }
    sampling.seed = opt_int(m, "seed")?.map(|s| s as u64);
    for key in ["frequency_penalty", "presence_penalty"] {
        if opt_num(m, key)?.is_some_and(|x| x != 0.0) {
            return Err(ApiError::unsupported(key, "is not supported (use repetition_penalty)"));
        }
    }
    if opt_int(m, "n")?.is_some_and(|n| n != 1) {
        return Err(ApiError::unsupported("n", "only one choice per request (n = 1)"));
    }
    if opt_bool(m, "logprobs")? == Some(true) || opt_int(m, "top_logprobs")?.is_some_and(|n| n > 0) {
        return Err(ApiError::unsupported("logprobs", "log probabilities are not supported"));
    }
    if field(m, "tools").and_then(|t| t.as_array()).is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::unsupported("tools", "tool calls are not supported"));
    }
    if let Some(rf) = field(m, "response_format") {
        let t = obj(rf, "response_format")?.get("type").and_then(|t| t.as_str());
        if t != Some("text") {
            return Err(ApiError::unsupported("response_format", "only {\"type\": \"text\"} is supported"));
        }
    }
    let stop = match field(m, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => {
            if a.len() > 4 {
                return Err(ApiError::param("stop", format!("at most 4 stop strings, not {}", a.len())));
            }
            a.iter()
                .enumerate()
                .map(|(i, s)| s.as_str().map(str::to_string).ok_or_else(|| want(&format!("stop[{i}]"), "a string", s)))
                .collect::<Result<_, _>>()?
        }
        Some(v) => return Err(want("stop", "a string or an array of strings", v)),
    };
    let stream = opt_bool(m, "stream")?.unwrap_or(false);
    let include_usage = match field(m, "stream_options") {
        Some(v) => opt_bool(obj(v, "stream_options")?, "include_usage")
            .map_err(|e| ApiError::param("stream_options.include_usage", e.message))?
            .unwrap_or(false),
        None => false,
    };
    let panic = lim.panic_marker.is_some_and(|mark| {
        messages.last().is_some_and(|(_, i)| i.iter().any(|x| matches!(x, Input::Text(t) if t == mark)))
    });
    Ok(ChatRequest {
        work: ChatWork { messages, max_tokens: max_tokens.1 as usize, sampling, stop, voice: voice_name, panic },
        stream,
        include_usage,
        audio_format,
    })
}

pub struct SpeechRequest {
    pub work: SpeechWork,
    pub format: OutFormat,
    pub sse: bool,
}

/// Longest `input` of `/v1/audio/speech` (OpenAI's limit).
pub const SPEECH_MAX_CHARS: usize = 4096;

pub fn parse_speech(m: &Map<String, Value>, lim: &Limits<'_>) -> Result<SpeechRequest, ApiError> {
    opt_str(m, "model", "model")?;
    if !lim.speaks {
        return Err(ApiError::unsupported("model", "this model file has no Talker and Code2Wav: no speech"));
    }
    let input = opt_str(m, "input", "input")?.ok_or_else(|| ApiError::param("input", "is required"))?;
    if input.trim().is_empty() {
        return Err(ApiError::param("input", "the text to speak is empty"));
    }
    let n = input.chars().count();
    if n > SPEECH_MAX_CHARS {
        return Err(ApiError::param("input", format!("{n} characters is over the limit of {SPEECH_MAX_CHARS}")));
    }
    let voice = voice(opt_str(m, "voice", "voice")?, "voice", lim.voices)?;
    let format =
        OutFormat::parse(opt_str(m, "response_format", "response_format")?.unwrap_or("wav"), "response_format")?;
    let sse = match opt_str(m, "stream_format", "stream_format")? {
        None | Some("audio") => false,
        Some("sse") => true,
        Some(o) => return Err(ApiError::param("stream_format", format!("unknown stream format {o:?} (audio, sse)"))),
    };
    if opt_num(m, "speed")?.is_some_and(|s| s != 1.0) {
        return Err(ApiError::unsupported("speed", "only speed 1.0 is supported"));
    }
    let seed = opt_int(m, "seed")?.map(|s| s as u64);
    Ok(SpeechRequest { work: SpeechWork { text: input.to_string(), voice, seed }, format, sse })
}

/// OpenAI's usage object, with the cached part of the prompt.
pub fn usage(s: &Summary) -> Value {
    json!({
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "total_tokens": s.prompt_tokens + s.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": s.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": s.frames},
    })
}
