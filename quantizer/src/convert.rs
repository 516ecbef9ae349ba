//! Streaming conversion of a safetensors checkpoint into one GGUF.
//!
//! Everything is validated before the output is created (headers, dtypes, shapes against
//! config.json). Tensors are then converted in file order, in chunks of a few MiB split across
//! threads; pages of the source map are released behind the cursor, so resident memory stays
//! at a few chunks regardless of checkpoint or tensor size.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::codec::{
    decode_into, encode_bf16_into, encode_f16_into, encode_f32_into, quantize_q8_0_from, SrcType, QK8_0,
};
use crate::config::{ConfigError, ModelDims};
use crate::gguf::{GgmlType, GgufWriter, MetaArray, MetaValue, TensorSpec, WriteError};
use crate::metadata::{self, MetadataError, FTYPE_BF16, FTYPE_F16, FTYPE_F32, FTYPE_Q8_0};
use crate::rules::{Decision, TypeRules};
use crate::safetensors::{Checkpoint, SafetensorsError, StTensor};

/// Source elements per work item (multiple of 32; 2 MiB of BF16).
const CHUNK_ELEMS: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Safetensors(#[from] SafetensorsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{path}: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("{shard}: tensor {tensor:?} has dtype {dtype}; only BF16, F16 and F32 are converted")]
    UnexpectedDtype { shard: PathBuf, tensor: String, dtype: String },
    #[error("no tensors to convert in {0}")]
    NoTensors(PathBuf),
    #[error("{output}: {reason}; the GGUF must go outside the checkpoint directory {input}")]
    OutputOverlapsInput { output: PathBuf, input: PathBuf, reason: String },
    #[error("no tokenizer: {looked} does not exist (the engine needs it to chat; give --tokenizer PATH)")]
    NoTokenizer { looked: PathBuf },
    /// The output path cannot be written (the message names it: see `outfile`).
    #[error("output {0}")]
    Output(std::io::Error),
}

/// Where the tokenizer comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TokenizerSource {
    /// `tokenizer.json` beside config.json if there is one (component-only files for tests).
    #[default]
    IfPresent,
    /// `tokenizer.json` beside config.json, refused before anything is written if missing (the
    /// CLI's `quantize`).
    Required,
    /// This `tokenizer.json` (its `tokenizer_config.json` and chat template beside it, else
    /// beside config.json).
    Path(PathBuf),
}

#[derive(Clone, Debug, Default)]
pub struct ConvertOptions {
    pub rules: TypeRules,
    pub tokenizer: TokenizerSource,
    /// `general.name`; default: the input directory's name.
    pub name: Option<String>,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Worker threads for encoding (0 = available parallelism).
    pub threads: usize,
    /// Source elements per encoded chunk, rounded up to a multiple of 32 (0 = 1 Mi).
    pub chunk_elems: usize,
}

#[derive(Clone, Debug, Default)]
pub struct ConvertReport {
    pub output: PathBuf,
    pub tensors: usize,
    pub skipped: usize,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub seconds: f64,
    /// Tensor count and bytes per output type.
    pub per_type: BTreeMap<String, (usize, u64)>,
}

struct Planned<'a> {
    shard: usize,
    t: &'a StTensor,
    src: SrcType,
    ty: GgmlType,
}

/// Progress bar on stderr, hidden when stderr is not a terminal or when not wanted.
pub fn progress_bar(total: u64, wanted: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        Some(total),
        if wanted && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    if let Ok(style) = ProgressStyle::with_template(
        "[{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
    ) {
        pb.set_style(style);
    }
    pb
}

/// Encode `bytes` (whole source elements; a multiple of 32 elements for Q8_0) into `out`.
fn encode(src: SrcType, ty: GgmlType, bytes: &[u8], out: &mut Vec<u8>, scratch: &mut Vec<f32>) {
    match ty {
        GgmlType::Q8_0 => {
            debug_assert!(bytes.len() % (QK8_0 * src.size()) == 0);
            quantize_q8_0_from(src, bytes, out);
        }
        GgmlType::BF16 if src == SrcType::BF16 => out.extend_from_slice(bytes),
        GgmlType::F16 | GgmlType::BF16 | GgmlType::F32 => {
            for b in bytes.chunks(src.size() * 8192) {
                scratch.clear();
                decode_into(src, b, scratch);
                match ty {
                    GgmlType::F16 => encode_f16_into(scratch, out),
                    GgmlType::BF16 => encode_bf16_into(scratch, out),
                    _ => encode_f32_into(scratch, out),
                }
            }
        }
        // The rules only produce the four types above.
        _ => unreachable!("converter does not produce {ty}"),
    }
}

fn read_config(dir: &Path) -> Result<(Value, String), ConvertError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConvertError::BadConfig { path: path.clone(), reason: format!("cannot read: {e}") })?;
    let v = serde_json::from_str(&text)
        .map_err(|e| ConvertError::BadConfig { path: path.clone(), reason: format!("not valid JSON: {e}") })?;
    Ok((v, text))
}

/// GGUF dims (ggml order) for a torch shape: reversed; a scalar becomes [1]; shapes of more than
/// 4 dims (only the vision patch-embedding Conv3d) are flattened to 2-D `[shape[0], rest]` first.
pub fn gguf_dims(shape: &[u64]) -> Vec<u64> {
    match shape.len() {
        0 => vec![1],
        1..=4 => shape.iter().rev().copied().collect(),
        _ => vec![shape[1..].iter().product(), shape[0]],
    }
}

/// Convert the checkpoint in `input` (a directory) into the GGUF `output`.
/// Refuses an output that is one of the checkpoint's files (a shard, a link to one, a hard link) or
/// lies inside the checkpoint directory, and an output path that cannot be written (see
/// [`crate::outfile`]) — before any work.
fn check_output(input: &Path, output: &Path, ckpt: &Checkpoint) -> Result<(), ConvertError> {
    let overlap = |reason: String| ConvertError::OutputOverlapsInput {
        output: output.to_path_buf(),
        input: input.to_path_buf(),
        reason,
    };
    let io = ConvertError::Output;
    if let Some(s) = ckpt.shards.iter().find(|s| crate::outfile::same_file(&s.path, output)) {
        return Err(overlap(format!("is the input shard {}", s.path.display())));
    }
    if let Ok(entries) = std::fs::read_dir(input) {
        for e in entries.flatten() {
            if crate::outfile::same_file(&e.path(), output) {
                return Err(overlap(format!("is the input file {}", e.path().display())));
            }
        }
    }
    let target = crate::outfile::canonical_target(output).map_err(io)?;
    let dir = input
        .canonicalize()
        .map_err(|e| ConvertError::BadConfig { path: input.to_path_buf(), reason: e.to_string() })?;
    if target.starts_with(&dir) {
        return Err(overlap(format!("would be written to {}, inside the checkpoint", target.display())));
    }
    crate::outfile::check(output, false).map_err(io)?;
    Ok(())
}

pub fn convert(input: &Path, output: &Path, opts: &ConvertOptions) -> Result<ConvertReport, ConvertError> {
    let start = Instant::now();
    let (config, config_text) = read_config(input)?;
    let tokenizer = match &opts.tokenizer {
        TokenizerSource::IfPresent => None,
        TokenizerSource::Required => Some(input.join("tokenizer.json")),
        TokenizerSource::Path(p) => Some(p.clone()),
    };
    let dims = ModelDims::from_config(&config)?;
    let ckpt = Checkpoint::open(input)?;
    check_output(input, output, &ckpt)?;
    if let Some(t) = &tokenizer {
        if !t.is_file() {
            return Err(ConvertError::NoTokenizer { looked: t.clone() });
        }
    }

    // Plan and validate everything before creating the output.
    let mut plan = Vec::new();
    let mut skipped = 0;
    for (si, t) in ckpt.tensors() {
        let ty = match opts.rules.decide(&t.name, &t.shape) {
            Decision::Skip => {
                skipped += 1;
                continue;
            }
            Decision::Store(ty) => ty,
        };
        let src = t.src_type().ok_or_else(|| ConvertError::UnexpectedDtype {
            shard: ckpt.shards[si].path.clone(),
            tensor: t.name.clone(),
            dtype: t.dtype.clone(),
        })?;
        dims.check(&t.name, &t.shape)?;
        plan.push(Planned { shard: si, t, src, ty });
    }
    if plan.is_empty() {
        return Err(ConvertError::NoTensors(input.to_path_buf()));
    }

    let mut w = GgufWriter::new();
    w.set_alignment(crate::gguf::DEFAULT_ALIGNMENT as u32)?;
    let file_type = if plan.iter().any(|p| p.ty == GgmlType::Q8_0) {
        FTYPE_Q8_0
    } else if plan.iter().any(|p| p.ty == GgmlType::BF16) {
        FTYPE_BF16
    } else if plan.iter().any(|p| p.ty == GgmlType::F16) {
        FTYPE_F16
    } else {
        FTYPE_F32
    };
    let name = opts.name.clone().unwrap_or_else(|| {
        input
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "qwen3-omni".into())
    });
    metadata::set_model_metadata(&mut w, &name, &config, &config_text, file_type);
    metadata::set_side_files(&mut w, input)?;
    let tok_path = tokenizer.clone().unwrap_or_else(|| input.join("tokenizer.json"));
    metadata::set_tokenizer(&mut w, &tok_path, input, Some(dims.thinker.vocab))?;
    w.set("qwen3omni.quantizer.keep_f16", MetaValue::Array(MetaArray::String(opts.rules.keep_f16.clone())));
    w.set("qwen3omni.quantizer.keep_bf16", MetaValue::Array(MetaArray::String(opts.rules.keep_bf16.clone())));
    w.set("qwen3omni.quantizer.base_type", MetaValue::String(opts.rules.base.to_string()));
    w.set("qwen3omni.quantizer.include_vision", MetaValue::Bool(opts.rules.include_vision));
    for p in &plan {
        let dims = gguf_dims(&p.t.shape);
        w.add_tensor(TensorSpec { name: p.t.name.clone(), dims, ty: p.ty })?;
    }

    let in_bytes: u64 = plan.iter().map(|p| p.t.end - p.t.start).sum();
    let mut out = w.create_file(output)?;
    let pb = progress_bar(in_bytes, opts.progress);
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8)
    } else {
        opts.threads
    };
    let chunk_elems = if opts.chunk_elems == 0 { CHUNK_ELEMS } else { opts.chunk_elems.div_ceil(QK8_0) * QK8_0 };
    let mut report = ConvertReport { skipped, in_bytes, ..Default::default() };

    // Work items: chunks of whole Q8_0 blocks (and whole elements) of each tensor, in file order.
    // Small tensors are one item each, so workers run across tensor boundaries.
    struct Item {
        plan: usize,
        start: usize,
        end: usize,
    }
    let mut items = Vec::new();
    for (pi, p) in plan.iter().enumerate() {
        let len = (p.t.end - p.t.start) as usize;
        let chunk_bytes = chunk_elems * p.src.size();
        let mut s = 0;
        loop {
            let e = (s + chunk_bytes).min(len);
            items.push(Item { plan: pi, start: s, end: e });
            if e >= len {
                break;
            }
            s = e;
        }
    }
    let data = |it: &Item| {
        let p = &plan[it.plan];
        &ckpt.shards[p.shard].data(p.t)[it.start..it.end]
    };
    crate::pipeline::run_ordered(
        items.len(),
        threads,
        |i, buf| {
            let it = &items[i];
            let p = &plan[it.plan];
            let shard = &ckpt.shards[p.shard];
            if it.start == 0 {
                shard.advise_sequential(p.t);
            }
            let mut scratch = Vec::new();
            encode(p.src, p.ty, data(it), buf, &mut scratch);
            // The encoded chunk is in `buf`: drop the source pages now, not after the write.
            shard.release(p.t.start + it.start as u64, p.t.start + it.end as u64);
        },
        |i, buf| {
            let it = &items[i];
            let p = &plan[it.plan];
            if it.start == 0 {
                pb.set_message(format!("tensor {}/{} {}", it.plan + 1, plan.len(), p.t.name));
            }
            out.write_data(buf)?;
            pb.inc((it.end - it.start) as u64);
            if it.end as u64 == p.t.end - p.t.start {
                out.end_tensor()?;
                let e = report.per_type.entry(p.ty.name().to_owned()).or_default();
                e.0 += 1;
                e.1 += TensorSpec { name: String::new(), dims: p.t.shape.clone(), ty: p.ty }.n_bytes();
            }
            Ok::<(), WriteError>(())
        },
    )?;
    report.out_bytes = out.total_size();
    report.output = out.finish()?;
    pb.finish_and_clear();
    report.tensors = plan.len();
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
