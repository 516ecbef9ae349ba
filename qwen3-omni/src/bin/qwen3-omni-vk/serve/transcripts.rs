//! The transcripts of spoken replies, by their audio id: a later request's assistant message with
//! `audio: {id}` stands for that text. Bounded (the oldest are forgotten) and expiring.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// How long an audio id is kept (seconds).
pub const AUDIO_TTL_S: u64 = 3600;
const MAX_KEPT: usize = 1024;

#[derive(Default)]
pub struct Transcripts {
    kept: Mutex<VecDeque<(String, String, u64)>>,
}

pub fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Transcripts {
    /// Keeps `text` under `id`; returns when it expires (Unix seconds).
    pub fn put(&self, id: &str, text: &str) -> u64 {
        let expires = now_s() + AUDIO_TTL_S;
        let mut k = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if k.len() >= MAX_KEPT {
            k.pop_front();
        }
        k.push_back((id.to_string(), text.to_string(), expires));
        expires
    }

    pub fn get(&self, id: &str) -> Option<String> {
        let now = now_s();
        let k = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        k.iter().rev().find(|(i, _, e)| i == id && *e > now).map(|(_, t, _)| t.clone())
    }
}

/// A fresh id with `prefix` (`chatcmpl-…`, `audio_…`): the clock and a counter, hex.
pub fn new_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:016x}{:04x}", t ^ 0x9E37_79B9_7F4A_7C15, n & 0xFFFF)
}
