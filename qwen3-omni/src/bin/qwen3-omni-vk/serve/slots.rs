//! The slots: `--parallel N` worker threads, each owning a loaded model (its own weights and KV
//! cache) and its Talker + Code2Wav, fed from one bounded FIFO queue. The GPU work runs on these
//! threads only; the async side talks to them through the queue and a channel of [`Event`]s per
//! request, and never blocks.
//!
//! Cancelling: every request holds a [`CancelGuard`]; when the client goes away the response (and
//! with it the guard) is dropped, which sets the request's flag and, while a slot runs it, the
//! slot's Thinker and Talker flags, so generation stops within one Thinker step or Talker frame.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use qwen3_omni::chat::Role;
use qwen3_omni::session::{Input, Sampling};
use tokio::sync::mpsc;

use super::errors::ApiError;

/// What a slot is asked to do.
pub enum Work {
    Chat(ChatWork),
    Speech(SpeechWork),
}

/// A chat completion (also a transcription: one user turn with the audio and the instruction).
pub struct ChatWork {
    pub messages: Vec<(Role, Vec<Input>)>,
    pub max_tokens: usize,
    pub sampling: Sampling,
    pub stop: Vec<String>,
    /// Speak the reply with this voice (`modalities` with "audio").
    pub voice: Option<String>,
    /// Tests only (`--test-panic-marker`): the worker panics inside the job.
    pub panic: bool,
}

/// `/v1/audio/speech`: read `text` aloud.
pub struct SpeechWork {
    pub text: String,
    pub voice: String,
    pub seed: Option<u64>,
}

/// What a request hears from its slot, in order: text pieces and PCM chunks (24 kHz mono float)
/// as they are made, then one `Done` or `Failed`.
pub enum Event {
    Text(String),
    Pcm(Vec<f32>),
    Done(Summary),
    Failed(ApiError),
}

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub prompt_tokens: usize,
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    /// OpenAI's: "stop" or "length".
    pub finish_reason: &'static str,
    /// The whole reply text (the transcript of its speech).
    pub text: String,
    pub samples: usize,
    pub frames: usize,
    pub cancelled: bool,
}

pub struct Job {
    pub id: u64,
    pub work: Work,
    pub cancel: Arc<AtomicBool>,
    pub events: mpsc::UnboundedSender<Event>,
}

/// The flags a running job can be stopped through.
#[derive(Clone)]
pub struct SlotFlags {
    pub thinker: Arc<AtomicBool>,
    pub talker: Option<Arc<AtomicBool>>,
}

impl SlotFlags {
    fn raise(&self) {
        self.thinker.store(true, Ordering::SeqCst);
        if let Some(t) = &self.talker {
            t.store(true, Ordering::SeqCst);
        }
    }
}

struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
    busy: usize,
}

pub struct Slots {
    q: Mutex<Queue>,
    cv: Condvar,
    running: Mutex<HashMap<u64, SlotFlags>>,
    pub parallel: usize,
    pub queue_cap: usize,
    ready: AtomicUsize,
    next_id: AtomicU64,
    /// Requests answered (finished or failed) since the start, for tests and /health.
    pub served: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Dropped with the request's response: stops its generation if it still runs.
pub struct CancelGuard {
    id: u64,
    cancel: Arc<AtomicBool>,
    slots: Arc<Slots>,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        if let Some(f) = lock(&self.slots.running).get(&self.id) {
            f.raise();
        }
    }
}

/// Slots busy, requests waiting, slots ready (warm).
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub busy: usize,
    pub queued: usize,
    pub ready: usize,
}

impl Slots {
    pub fn new(parallel: usize, queue_cap: usize) -> Arc<Slots> {
        Arc::new(Slots {
            q: Mutex::new(Queue { jobs: VecDeque::new(), idle: 0, busy: 0 }),
            cv: Condvar::new(),
            running: Mutex::new(HashMap::new()),
            parallel,
            queue_cap,
            ready: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            served: AtomicU64::new(0),
        })
    }

    pub fn load(&self) -> Load {
        let q = lock(&self.q);
        Load { busy: q.busy, queued: q.jobs.len(), ready: self.ready.load(Ordering::SeqCst) }
    }

    pub fn all_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) >= self.parallel
    }

    /// Queues `work` (FIFO): refused with 429 when every slot is busy and `--queue` requests
    /// already wait. The receiver gets the job's events; dropping the guard cancels it.
    pub fn submit(self: &Arc<Self>, work: Work) -> Result<(mpsc::UnboundedReceiver<Event>, CancelGuard), ApiError> {
        if !self.all_ready() {
            return Err(ApiError::loading());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let cancel = Arc::new(AtomicBool::new(false));
        {
            let mut q = lock(&self.q);
            if q.jobs.len() >= q.idle + self.queue_cap {
                return Err(ApiError::busy(self.parallel, self.queue_cap));
            }
            q.jobs.push_back(Job { id, work, cancel: cancel.clone(), events: tx });
        }
        self.cv.notify_one();
        Ok((rx, CancelGuard { id, cancel, slots: self.clone() }))
    }

    /// A slot finished warming up and takes jobs from now on.
    pub fn slot_ready(&self) {
        lock(&self.q).idle += 1;
        self.ready.fetch_add(1, Ordering::SeqCst);
    }

    /// The next job for a slot (blocks while there is none); its flags are registered so that a
    /// cancel reaches them, and cleared before the job's own flag is looked at.
    pub fn next_job(&self, flags: &SlotFlags) -> Job {
        let job = {
            let mut q = lock(&self.q);
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    q.idle -= 1;
                    q.busy += 1;
                    break j;
                }
                q = self.cv.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let mut running = lock(&self.running);
        flags.thinker.store(false, Ordering::SeqCst);
        if let Some(t) = &flags.talker {
            t.store(false, Ordering::SeqCst);
        }
        running.insert(job.id, flags.clone());
        drop(running);
        // A cancel before the registration set only the job's flag: pass it on.
        if job.cancel.load(Ordering::SeqCst) {
            flags.raise();
        }
        job
    }

    /// The slot is done with job `id` and idle again.
    pub fn job_done(&self, id: u64) {
        lock(&self.running).remove(&id);
        self.served.fetch_add(1, Ordering::SeqCst);
        let mut q = lock(&self.q);
        q.busy -= 1;
        q.idle += 1;
    }
}
