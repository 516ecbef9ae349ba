//! `qwen3-omni-vk serve` on the demo model, over loopback (every wait bounded, the server killed
//! at the end): /health and /v1/models; chat completions whole and streamed (SSE framing, usage,
//! prefix reuse), with speech out (WAV/PCM of 1920·T − 555 samples) and audio in; speech and
//! transcriptions; every error as an OpenAI error object (400 naming `param`, context, 401, 413,
//! 404, a worker panic → 500); a refused non-loopback start; a bounded load test with random
//! disconnects (every request answered or 429, the slots idle after).
#![cfg(unix)]

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::child::{reader, wait_for};
use common::http::{get, multipart, parse, post_json, request, send, sse_data, tone_wav};
use serde_json::{json, Value};

const KEY: &str = "test-key-123";

/// models/demo.gguf, built once by the binary (as `chat` without -m does).
fn demo() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/demo.gguf");
        if !p.exists() {
            let o = Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk"))
                .args(["chat", "-p", "hi", "-n", "1"])
                .env("QWEN3VK_PIPELINE_CACHE", "off")
                .output()
                .unwrap();
            assert!(p.exists(), "building the demo model: {}", String::from_utf8_lossy(&o.stderr));
        }
        p
    })
    .clone()
}

struct Server {
    child: Child,
    addr: String,
    saw_503: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` on 127.0.0.1:0 with `args` and waits (at most 180 s) until /health says ready.
fn start(args: &[&str], key: Option<&str>) -> Server {
    let demo = demo();
    let mut c = Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk"));
    c.args(["serve", "-m", demo.to_str().unwrap(), "--port", "0"]).args(args);
    if let Some(k) = key {
        c.args(["--api-key", k]);
    }
    c.env("QWEN3VK_PIPELINE_CACHE", "off").env_remove("QWEN3VK_LOG").stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = c.spawn().expect("starting serve");
    let rx = reader(child.stdout.take().unwrap());
    let mut out = String::new();
    wait_for(&rx, &mut out, "the listening line", |s| s.contains("listening on http://") && s.ends_with('\n'));
    let addr = out.split("listening on http://").nth(1).unwrap().lines().next().unwrap().trim().to_string();
    let mut s = Server { child, addr, saw_503: false };
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let r = get(&s.addr, "/health", None);
        match r.status {
            200 => {
                assert_eq!(r.json()["status"], "ok");
                break;
            }
            503 => {
                assert_eq!(r.json()["status"], "loading");
                s.saw_503 = true;
            }
            other => panic!("/health: {other} {}", r.text()),
        }
        assert!(Instant::now() < deadline, "the server did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    s
}

/// An OpenAI error object with `status` (and `param`, when given).
fn error(r: &common::http::Response, status: u16, param: Option<&str>) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    let e = &v["error"];
    assert!(e["message"].is_string() && e["type"].is_string(), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
    if let Some(p) = param {
        assert_eq!(e["param"], p, "{v}");
    }
    e.clone()
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// Samples of a whole Code2Wav decode of T frames.
fn samples(t: u64) -> usize {
    1920 * t as usize - 555
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

#[test]
fn endpoints_streamed_and_not_with_every_error() {
    let s = start(
        &["-c", "512", "-n", "6", "--max-frames", "5", "--max-body-mb", "1", "--test-panic-marker", "PANIC!"],
        Some(KEY),
    );
    let (a, k) = (s.addr.as_str(), Some(KEY));
    // Models; the key is needed on /v1, not on /health.
    let m = get(a, "/v1/models", k).json();
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], "demo");
    error(&get(a, "/v1/models", None), 401, None);
    error(&get(a, "/v1/models", Some("wrong")), 401, None);
    error(&get(a, "/v1/nothing", k), 404, None);

    // Whole text reply: max_tokens reached → "length", usage adds up.
    let r = post_json(a, "/v1/chat/completions", k, &json!({"messages": user("Hello"), "max_tokens": 4, "seed": 1}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert!(v["choices"][0]["message"]["content"].is_string());
    let u = &v["usage"];
    assert_eq!(u["completion_tokens"], 4);
    let p = u["prompt_tokens"].as_u64().unwrap();
    assert_eq!(u["total_tokens"].as_u64().unwrap(), p + 4);
    // The same prompt again reuses the cache (all but the last prompt token), the same text.
    let v2 = post_json(a, "/v1/chat/completions", k, &json!({"messages": user("Hello"), "max_tokens": 4})).json();
    assert_eq!(v2["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap(), p - 1);
    assert_eq!(v2["choices"][0]["message"]["content"], v["choices"][0]["message"]["content"]);
    // A follow-up turn prefills only what is new.
    let reply = v["choices"][0]["message"]["content"].as_str().unwrap();
    let turn2 = json!([{"role": "user", "content": "Hello"}, {"role": "assistant", "content": reply}, {"role": "user", "content": "More"}]);
    let v3 = post_json(a, "/v1/chat/completions", k, &json!({"messages": turn2, "max_tokens": 2})).json();
    assert!(v3["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap() >= p, "{v3}");

    // Streamed text: role chunk, content pieces, finish_reason, usage chunk, [DONE].
    let r = post_json(
        a,
        "/v1/chat/completions",
        k,
        &json!({"messages": user("Hi"), "max_tokens": 3, "stream": true, "stream_options": {"include_usage": true}}),
    );
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
    let d = sse_data(&r.text());
    assert_eq!(d.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = d[..d.len() - 1].iter().map(|x| serde_json::from_str(x).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    let fin = &chunks[chunks.len() - 2];
    assert_eq!(fin["choices"][0]["finish_reason"], "length");
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert_eq!(usage["usage"]["completion_tokens"], 3);

    // Stop strings end the reply before them.
    let full = post_json(a, "/v1/chat/completions", k, &json!({"messages": user("Hello"), "max_tokens": 6})).json();
    let text = full["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    if let Some((i, _)) = text.char_indices().nth(text.chars().count() / 2).filter(|_| text.chars().count() > 2) {
        let stop: String = text[i..].chars().take(1).collect();
        let cut = text.find(&stop).unwrap();
        let v = post_json(
            a,
            "/v1/chat/completions",
            k,
            &json!({"messages": user("Hello"), "max_tokens": 6, "stop": [stop]}),
        )
        .json();
        assert_eq!(v["choices"][0]["message"]["content"].as_str().unwrap(), &text[..cut]);
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
    }

    // Speech out, whole: WAV and PCM of 1920·T − 555 samples, T = audio tokens (frames).
    for (fmt, header) in [("wav", 44usize), ("pcm16", 0)] {
        let body = json!({"messages": user("Hi"), "max_tokens": 3, "modalities": ["text", "audio"], "audio": {"voice": "ethan", "format": fmt}});
        let v = post_json(a, "/v1/chat/completions", k, &body).json();
        let au = &v["choices"][0]["message"]["audio"];
        assert!(au["id"].as_str().unwrap().starts_with("audio_"), "{v}");
        assert!(au["expires_at"].as_u64().unwrap() > 0);
        assert_eq!(au["transcript"], v["choices"][0]["message"]["content"]);
        let bytes = unb64(au["data"].as_str().unwrap());
        let t = v["usage"]["completion_tokens_details"]["audio_tokens"].as_u64().unwrap();
        assert!((1..=5).contains(&t), "{v}");
        if fmt == "wav" {
            assert_eq!(&bytes[..4], b"RIFF");
            assert_eq!(&bytes[8..12], b"WAVE");
        }
        assert_eq!((bytes.len() - header) / 2, samples(t), "{fmt}");
        // The next turn refers to the spoken reply by its id.
        let next = json!([{"role": "user", "content": "Hi"}, {"role": "assistant", "audio": {"id": au["id"]}}, {"role": "user", "content": "Again"}]);
        let r = post_json(a, "/v1/chat/completions", k, &json!({"messages": next, "max_tokens": 1}));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let next = json!([{"role": "assistant", "audio": {"id": "audio_nope"}}, {"role": "user", "content": "x"}]);
    error(&post_json(a, "/v1/chat/completions", k, &json!({"messages": next})), 400, Some("messages[0].audio.id"));

    // Speech out, streamed: base64 PCM16 chunks adding up to 1920·T − 555.
    let body = json!({"messages": user("Hi"), "max_tokens": 3, "stream": true, "stream_options": {"include_usage": true},
        "modalities": ["text", "audio"], "audio": {"voice": "chelsie", "format": "pcm16"}});
    let d = sse_data(&post_json(a, "/v1/chat/completions", k, &body).text());
    assert_eq!(d.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = d[..d.len() - 1].iter().map(|x| serde_json::from_str(x).unwrap()).collect();
    let pcm: usize = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["audio"]["data"].as_str())
        .map(|b| unb64(b).len() / 2)
        .sum();
    let t = chunks.last().unwrap()["usage"]["completion_tokens_details"]["audio_tokens"].as_u64().unwrap();
    assert!(chunks.iter().filter(|c| c["choices"][0]["delta"]["audio"]["data"].is_string()).count() >= 1);
    assert_eq!(pcm, samples(t));
    assert!(chunks.iter().any(|c| c["choices"][0]["delta"]["audio"]["transcript"].is_string()));

    // Audio in (base64 WAV, 44.1 kHz, resampled); other formats refused naming them.
    let wav = tone_wav(44_100, 1.0);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&wav);
    let msg = |data: &str, fmt: &str| {
        json!({"max_tokens": 2, "messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}, {"type": "text", "text": "What is it?"}]}]})
    };
    let r = post_json(a, "/v1/chat/completions", k, &msg(&b64, "wav"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["usage"]["prompt_tokens"].as_u64().unwrap() > 13);
    let e = error(
        &post_json(a, "/v1/chat/completions", k, &msg(&b64, "mp3")),
        400,
        Some("messages[0].content[0].input_audio.format"),
    );
    assert!(e["message"].as_str().unwrap().contains("mp3"), "{e}");
    let flac = base64::engine::general_purpose::STANDARD.encode(b"fLaC\0\0\0\x22rest-of-a-flac-file");
    let e = error(
        &post_json(a, "/v1/chat/completions", k, &msg(&flac, "wav")),
        400,
        Some("messages[0].content[0].input_audio.data"),
    );
    assert!(e["message"].as_str().unwrap().contains("flac"), "{e}");
    error(
        &post_json(a, "/v1/chat/completions", k, &msg("@@not base64@@", "wav")),
        400,
        Some("messages[0].content[0].input_audio.data"),
    );

    // /v1/audio/speech: WAV whole, PCM streamed, SSE events.
    let r = post_json(
        a,
        "/v1/audio/speech",
        k,
        &json!({"input": "Hello world", "voice": "aiden", "response_format": "wav"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("audio/wav"));
    assert_eq!(&r.body[..4], b"RIFF");
    let n = (r.body.len() - 44) / 2;
    assert_eq!((n + 555) % 1920, 0, "{n} samples");
    let r = post_json(a, "/v1/audio/speech", k, &json!({"input": "Hello world", "response_format": "pcm"}));
    assert_eq!(r.header("content-type"), Some("audio/pcm"));
    assert_eq!((r.body.len() / 2 + 555) % 1920, 0);
    let d =
        sse_data(&post_json(a, "/v1/audio/speech", k, &json!({"input": "Hello world", "stream_format": "sse"})).text());
    let evs: Vec<Value> = d.iter().map(|x| serde_json::from_str(x).unwrap()).collect();
    let done = evs.last().unwrap();
    assert_eq!(done["type"], "speech.audio.done");
    let t = done["usage"]["output_tokens"].as_u64().unwrap();
    let n: usize = evs[..evs.len() - 1]
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "speech.audio.delta");
            unb64(e["audio"].as_str().unwrap()).len() / 2
        })
        .sum();
    assert_eq!(n, samples(t));
    error(&post_json(a, "/v1/audio/speech", k, &json!({"input": "x", "voice": "nobody"})), 400, Some("voice"));
    error(
        &post_json(a, "/v1/audio/speech", k, &json!({"input": "x", "response_format": "mp3"})),
        400,
        Some("response_format"),
    );
    error(&post_json(a, "/v1/audio/speech", k, &json!({"voice": "ethan"})), 400, Some("input"));

    // Transcriptions: json, text, verbose_json; a non-WAV file refused naming its format.
    for (fmt, want_json) in [("json", true), ("text", false), ("verbose_json", true)] {
        let (bd, body) = multipart(&[
            ("file", Some("a.wav"), &wav),
            ("model", None, b"demo"),
            ("response_format", None, fmt.as_bytes()),
        ]);
        let ct = format!("multipart/form-data; boundary={bd}");
        let r = request(
            a,
            "POST",
            "/v1/audio/transcriptions",
            &[("Content-Type", &ct), ("Authorization", &format!("Bearer {KEY}"))],
            &body,
        );
        assert_eq!(r.status, 200, "{fmt}: {}", r.text());
        if want_json {
            assert!(r.json()["text"].is_string());
            if fmt == "verbose_json" {
                assert!((r.json()["duration"].as_f64().unwrap() - 1.0).abs() < 0.01);
            }
        } else {
            assert!(r.header("content-type").unwrap().starts_with("text/plain"));
        }
    }
    let (bd, body) = multipart(&[("file", Some("a.ogg"), b"OggS\0\x02rest-of-an-ogg-file")]);
    let ct = format!("multipart/form-data; boundary={bd}");
    let r = request(
        a,
        "POST",
        "/v1/audio/transcriptions",
        &[("Content-Type", &ct), ("Authorization", &format!("Bearer {KEY}"))],
        &body,
    );
    assert!(error(&r, 400, Some("file"))["message"].as_str().unwrap().contains("ogg"));
    let (bd, body) = multipart(&[("model", None, b"demo")]);
    let ct = format!("multipart/form-data; boundary={bd}");
    let r = request(
        a,
        "POST",
        "/v1/audio/transcriptions",
        &[("Content-Type", &ct), ("Authorization", &format!("Bearer {KEY}"))],
        &body,
    );
    error(&r, 400, Some("file"));

    // Errors: malformed JSON, bad fields named, the context, the body limit, a panic.
    let auth = format!("Bearer {KEY}");
    let r = request(a, "POST", "/v1/chat/completions", &[("Authorization", &auth)], b"{\"messages\": [");
    assert!(error(&r, 400, None)["param"].is_null());
    for (body, param) in [
        (json!({"messages": user("x"), "temperature": 3}), "temperature"),
        (json!({"messages": user("x"), "top_p": 0}), "top_p"),
        (json!({"messages": user("x"), "top_k": "a"}), "top_k"),
        (json!({"messages": user("x"), "max_tokens": 0}), "max_tokens"),
        (json!({"messages": user("x"), "n": 2}), "n"),
        (json!({"messages": user("x"), "logprobs": true}), "logprobs"),
        (json!({"messages": user("x"), "stop": 5}), "stop"),
        (json!({"messages": []}), "messages"),
        (json!({"messages": [{"role": "robot", "content": "x"}]}), "messages[0].role"),
        (json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}), "messages[0].content[0].type"),
        (json!({"messages": user("x"), "modalities": ["text", "audio"], "audio": {"voice": "zed"}}), "audio.voice"),
        (json!({"messages": user("x"), "modalities": ["text", "audio"], "audio": {"format": "flac"}}), "audio.format"),
    ] {
        error(&post_json(a, "/v1/chat/completions", k, &body), 400, Some(param));
    }
    let long = "hello ".repeat(600);
    let e = error(&post_json(a, "/v1/chat/completions", k, &json!({"messages": user(&long)})), 400, Some("messages"));
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("512") && msg.contains("60"), "both counts: {msg}");
    assert_eq!(e["code"], "context_length_exceeded");
    let big = vec![b' '; 2 << 20];
    error(&request(a, "POST", "/v1/chat/completions", &[("Authorization", &auth)], &big), 413, None);
    let e = error(&post_json(a, "/v1/chat/completions", k, &json!({"messages": user("PANIC!")})), 500, None);
    assert!(e["message"].as_str().unwrap().contains("internal error"), "{e}");
    // The slot goes on after the panic.
    let r = post_json(a, "/v1/chat/completions", k, &json!({"messages": user("Hello"), "max_tokens": 2}));
    assert_eq!(r.status, 200, "{}", r.text());
    let h = get(a, "/health", None).json();
    assert_eq!((h["slots_busy"].as_u64(), h["queued"].as_u64()), (Some(0), Some(0)), "{h}");
}

#[test]
fn non_loopback_needs_a_key() {
    let o = Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk"))
        .args(["serve", "--host", "0.0.0.0", "--port", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--api-key") && err.contains("--insecure-no-auth"), "{err}");
    assert!(o.stdout.is_empty(), "nothing listened");
}

/// Waits until no slot is busy and nothing is queued (at most `secs`); the seconds it took.
fn idle_within(a: &str, secs: u64) -> f64 {
    let t0 = Instant::now();
    loop {
        let h = get(a, "/health", None).json();
        if h["slots_busy"] == 0 && h["queued"] == 0 {
            return t0.elapsed().as_secs_f64();
        }
        assert!(t0.elapsed().as_secs() < secs, "slots still busy after {secs} s: {h}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn load_with_disconnects_and_a_full_queue() {
    let s = start(&["-c", "256", "-n", "8", "--max-frames", "4", "--parallel", "2", "--queue", "2"], None);
    let a = s.addr.clone();
    // A long streamed reply dropped after its first chunk stops at once (1000 tokens take minutes
    // here) and frees the slot.
    let body = json!({"messages": user("Tell me everything"), "max_tokens": 200, "stream": true}).to_string();
    let mut c = send(&a, "POST", "/v1/chat/completions", &[("Content-Type", "application/json")], body.as_bytes());
    let mut buf = [0u8; 256];
    let n = c.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(c);
    let t = idle_within(&a, 60);
    eprintln!("a dropped stream freed its slot in {t:.2} s");
    // The same for a whole (non-streamed) reply: the handler is dropped with the connection.
    let body = json!({"messages": user("Tell me everything"), "max_tokens": 200}).to_string();
    let c = send(&a, "POST", "/v1/chat/completions", &[("Content-Type", "application/json")], body.as_bytes());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(&a, "/health", None).json()["slots_busy"], 1);
    drop(c);
    let t = idle_within(&a, 60);
    eprintln!("a dropped whole request freed its slot in {t:.2} s");
    // 8 clients × 3 requests, mixed kinds, a third dropped part-way (a fixed pseudo-random plan).
    let t0 = Instant::now();
    let handles: Vec<_> = (0..8u64)
        .map(|client| {
            let a = a.clone();
            std::thread::spawn(move || {
                let mut counts = [0u32; 3]; // answered, 429 (then retried), dropped
                for i in 0..3u64 {
                    let (drop_it, speak, stream) = ((client + i) % 3 == 0, (client + i) % 2 == 0, client % 2 == 0);
                    let mut body = json!({"messages": user("Hello there"), "max_tokens": 4, "stream": stream});
                    if speak {
                        body["modalities"] = json!(["text", "audio"]);
                    }
                    if drop_it {
                        // Drop the connection after the first bytes of the answer.
                        let mut c = send(&a, "POST", "/v1/chat/completions", &[], body.to_string().as_bytes());
                        let mut b = [0u8; 64];
                        let _ = c.read(&mut b);
                        counts[2] += 1;
                        continue;
                    }
                    // A 429 is retried after its Retry-After (at most 60 times).
                    for attempt in 0.. {
                        assert!(attempt < 60, "client {client}: still refused after 60 tries");
                        let mut c = send(&a, "POST", "/v1/chat/completions", &[], body.to_string().as_bytes());
                        let mut raw = Vec::new();
                        c.read_to_end(&mut raw).expect("the response (bounded by the read timeout)");
                        let r = parse(&raw);
                        match r.status {
                            200 => {
                                if stream {
                                    assert_eq!(sse_data(&r.text()).last().unwrap(), "[DONE]");
                                } else {
                                    assert!(r.json()["choices"][0]["message"]["content"].is_string());
                                }
                                counts[0] += 1;
                                break;
                            }
                            429 => {
                                assert_eq!(r.header("retry-after"), Some("1"));
                                assert_eq!(r.json()["error"]["type"], "rate_limit_error");
                                counts[1] += 1;
                                std::thread::sleep(Duration::from_millis(300));
                            }
                            other => panic!("status {other}: {}", r.text()),
                        }
                    }
                }
                counts
            })
        })
        .collect();
    let mut total = [0u32; 3];
    for h in handles {
        let c = h.join().expect("a client failed");
        (0..3).for_each(|i| total[i] += c[i]);
    }
    let t = idle_within(&a, 120);
    eprintln!(
        "load: {} answered, {} refusals with 429 (retried), {} dropped, in {:.1} s; idle {t:.2} s after",
        total[0],
        total[1],
        total[2],
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(total[0] + total[2], 24, "every request answered (after its 429s) or dropped");
    // Still serving.
    let r = post_json(&a, "/v1/chat/completions", None, &json!({"messages": user("Hi"), "max_tokens": 2}));
    assert_eq!(r.status, 200, "{}", r.text());
}
