//! `qwen3-omni-vk serve`: an OpenAI-compatible HTTP server (docs/server.md) on tokio + axum.
//!
//! * `slots` + `worker`: `--parallel N` threads, each with its own loaded model, fed from one
//!   bounded FIFO queue (429 beyond it); the GPU work never runs on the async threads.
//! * `routes`: the router, the API key, limits, CORS, tracing; `chat`, `speech`: the endpoints;
//!   `schema`: requests read field by field; `errors`: OpenAI error objects; `sse`: event
//!   streams; `audio`: WAV in, PCM/WAV out; `transcripts`: reply audio ids.

mod audio;
mod chat;
mod errors;
mod routes;
mod schema;
mod slots;
mod speech;
mod sse;
mod transcripts;
mod worker;

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use qwen3_omni::model_file::ModelFile;
use qwen3_omni::session::LoadOptions;

use crate::common::demo_model;

/// Arguments of `serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Model file (Q8_0 GGUF). Default: the tiny demo model (random weights: gibberish, noise).
    #[arg(short = 'm', long)]
    pub model: Option<PathBuf>,
    /// Address to listen on. Anything but a loopback address needs --api-key (or --insecure-no-auth).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port; the bound address is printed as `listening on http://ADDR`).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Context size (KV cache positions) of each slot.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx_size: u32,
    /// Requests served at once; each slot loads its own copy of the model (weights and KV cache).
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Requests that may wait for a slot; beyond that the answer is 429 with Retry-After.
    #[arg(long, default_value_t = 16)]
    pub queue: usize,
    /// Require `Authorization: Bearer KEY` on every /v1 endpoint.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Allow a non-loopback --host without --api-key.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// The model id of /v1/models and the responses (default: the file's name without .gguf).
    #[arg(long)]
    pub model_name: Option<String>,
    /// Largest request body, in MiB (413 beyond).
    #[arg(long, default_value_t = 32)]
    pub max_body_mb: usize,
    /// max_tokens of a request that gives none.
    #[arg(short = 'n', long = "n-predict", default_value_t = 1024)]
    pub n_predict: usize,
    /// Most speech frames (80 ms each) per reply.
    #[arg(long, default_value_t = 1000)]
    pub max_frames: u32,
    /// Allowed CORS origin (repeatable; `*` for any). Default: no CORS headers.
    #[arg(long = "cors-origin")]
    pub cors: Vec<String>,
    /// Vulkan device index (see `qwen3-omni-vk devices`).
    #[arg(long)]
    pub device: Option<usize>,
    /// Tests only: a chat whose last message is this text makes its worker panic.
    #[arg(long, hide = true)]
    pub test_panic_marker: Option<String>,
}

/// What the handlers share.
pub struct AppState {
    slots: Arc<slots::Slots>,
    model_id: String,
    created: u64,
    voices: Vec<String>,
    speaks: bool,
    audio_in: bool,
    default_max_tokens: usize,
    transcripts: transcripts::Transcripts,
    api_key: Option<String>,
    body_limit: usize,
    panic_marker: Option<String>,
}

impl AppState {
    fn limits(&self) -> schema::Limits<'_> {
        schema::Limits {
            voices: &self.voices,
            speaks: self.speaks,
            audio_in: self.audio_in,
            default_max_tokens: self.default_max_tokens,
            transcripts: &self.transcripts,
            panic_marker: self.panic_marker.as_deref(),
        }
    }
}

fn check_flags(a: &ServeArgs) -> anyhow::Result<IpAddr> {
    crate::check::ctx_size(a.ctx_size)?;
    if !(1..=64).contains(&a.parallel) {
        bail!("--parallel {}: give 1 to 64 slots", a.parallel);
    }
    if a.queue > 100_000 {
        bail!("--queue {}: at most 100000", a.queue);
    }
    if !(1..=4096).contains(&a.max_body_mb) {
        bail!("--max-body-mb {}: give 1 to 4096", a.max_body_mb);
    }
    if a.n_predict == 0 {
        bail!("-n/--n-predict 0: give at least 1");
    }
    if !(1..=10_000).contains(&a.max_frames) {
        bail!("--max-frames {}: give 1 to 10000", a.max_frames);
    }
    if a.api_key.as_deref().is_some_and(|k| k.trim().is_empty() || k.chars().any(char::is_whitespace)) {
        bail!("--api-key: the key must be non-empty and hold no spaces");
    }
    let ip: IpAddr = if a.host == "localhost" {
        IpAddr::from([127, 0, 0, 1])
    } else {
        a.host.parse().with_context(|| format!("--host {:?}: not an IP address", a.host))?
    };
    if !ip.is_loopback() && a.api_key.is_none() && !a.insecure_no_auth {
        bail!(
            "--host {ip}: listening beyond this machine needs --api-key KEY (or --insecure-no-auth to serve anyone \
             who can reach the port)"
        );
    }
    Ok(ip)
}

pub fn run(a: &ServeArgs) -> anyhow::Result<()> {
    let ip = check_flags(a)?;
    let path = match &a.model {
        Some(p) => p.clone(),
        None => demo_model()?,
    };
    // What the model can do, from its file (the slots load it below).
    let m = ModelFile::open(&path)?;
    qwen3_omni::config_check::check_model(&m)?;
    let speaks = qwen3_omni::speech::speech_missing(&m, &path).is_none();
    let voices = if speaks {
        qwen3_omni::talker::TalkerConfig::from_model(&m)?.ids.speakers.iter().map(|(n, _)| n.to_lowercase()).collect()
    } else {
        Vec::new()
    };
    let audio_in = m.gguf.header.tensors.iter().any(|t| t.name.starts_with("thinker.audio_tower."));
    drop(m);
    let model_id = a.model_name.clone().unwrap_or_else(|| {
        path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "qwen3-omni".into())
    });
    let engine = crate::common::engine_options().clone();
    let load = LoadOptions {
        device: a.device.or(engine.gpu.device),
        ctx_size: a.ctx_size,
        ..LoadOptions::from_engine(engine)
    };
    let cfg = Arc::new(worker::SlotConfig { path: path.clone(), load, speaks, max_frames: a.max_frames });
    let slots = slots::Slots::new(a.parallel, a.queue);
    let st = Arc::new(AppState {
        slots: slots.clone(),
        model_id,
        created: transcripts::now_s(),
        voices,
        speaks,
        audio_in,
        default_max_tokens: a.n_predict,
        transcripts: Default::default(),
        api_key: a.api_key.clone(),
        body_limit: a.max_body_mb << 20,
        panic_marker: a.test_panic_marker.clone(),
    });
    let app = routes::router(st, &a.cors);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((ip, a.port))
            .await
            .with_context(|| format!("listening on {ip}:{}", a.port))?;
        let addr = listener.local_addr()?;
        // Tests and scripts read this line for the port.
        outln!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
        eprintln!(
            "qwen3-omni-vk serve: {} on http://{addr}: loading {} slot{} (/health says 503 until they are warm){}",
            path.display(),
            a.parallel,
            if a.parallel == 1 { "" } else { "s" },
            if a.api_key.is_some() { "; API key required" } else { "" }
        );
        for i in 0..a.parallel {
            worker::spawn(i, cfg.clone(), slots.clone())?;
        }
        axum::serve(listener, app).await.context("serving")?;
        Ok(())
    })
}
