//! Helpers shared by the commands: the demo model, a seed from the clock, the tokenizer of a model
//! file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use qwen3_omni::model_file::ModelFile;
use qwen3_omni::tokenizer::Tokenizer;

/// The demo model: converted once from the fixture checkpoint plus the fetched tokenizer.
pub fn demo_model() -> anyhow::Result<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = repo.join("models/demo.gguf");
    if out.exists() {
        return Ok(out);
    }
    let src = repo.join("tests/fixtures/models/tiny-real-vocab");
    let tok = repo.join("models/tokenizer/tokenizer.json");
    if !tok.exists() {
        bail!("{} is missing: run tools/fetch-tokenizer.sh (tools/setup-debian.sh does)", tok.display());
    }
    let stage = std::env::temp_dir().join(format!("qwen3vk-demo-{}", std::process::id()));
    std::fs::create_dir_all(&stage)?;
    for e in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let e = e?;
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n.ends_with(".json") && !n.starts_with("manifest") || n.starts_with("model-") {
            std::fs::copy(e.path(), stage.join(&name))?;
        }
    }
    std::fs::copy(&tok, stage.join("tokenizer.json"))?;
    eprintln!("building the demo model {} from {}", out.display(), src.display());
    let opts = quantizer::convert::ConvertOptions {
        name: Some("qwen3-omni tiny demo (random weights)".into()),
        ..Default::default()
    };
    // Converted beside its final name, then renamed: a concurrent run never sees a partial file.
    let part = out.with_extension(format!("gguf.{}.part", std::process::id()));
    let r = quantizer::convert::convert(&stage, &part, &opts).map_err(anyhow::Error::from).and_then(|_| {
        std::fs::rename(&part, &out)?;
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&stage);
    let _ = std::fs::remove_file(&part);
    r.with_context(|| format!("converting {}", src.display()))?;
    Ok(out)
}

/// A seed from the clock (for `--seed` left out).
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// The tokenizer in a model file's metadata.
pub fn tokenizer_of(m: &ModelFile, path: &Path) -> anyhow::Result<Tokenizer> {
    let json = m.gguf.header.get("tokenizer.huggingface.json").and_then(|v| v.as_str()).with_context(|| {
        format!(
            "{}: no tokenizer.huggingface.json in the metadata (quantize with tokenizer.json beside config.json)",
            path.display()
        )
    })?;
    Ok(Tokenizer::from_json(json, path)?)
}

/// The engine options of this run: read once by `main` (`EngineOptions::from_env`) before any
/// command starts.
static ENGINE: std::sync::OnceLock<qwen3_omni_vk::EngineOptions> = std::sync::OnceLock::new();

/// Sets the run's options (`main`, once).
pub fn set_engine_options(o: qwen3_omni_vk::EngineOptions) {
    let _ = ENGINE.set(o);
}

/// The run's options (the defaults if `main` set none).
pub fn engine_options() -> &'static qwen3_omni_vk::EngineOptions {
    ENGINE.get_or_init(qwen3_omni_vk::EngineOptions::default)
}

/// Opens the GPU with the run's options, `--device` winning over `QWEN3VK_DEVICE`.
pub fn open_gpu(device: Option<usize>) -> anyhow::Result<qwen3_omni_vk::vk_runtime::Gpu> {
    let g = &engine_options().gpu;
    Ok(qwen3_omni_vk::vk_runtime::Gpu::new(&qwen3_omni_vk::vk_runtime::GpuOptions {
        device: device.or(g.device),
        ..g.clone()
    })?)
}

/// The compute library on `gpu` with the run's kernel and model options.
pub fn kernels(gpu: qwen3_omni_vk::vk_runtime::Gpu) -> anyhow::Result<qwen3_omni_vk::Kernels> {
    Ok(qwen3_omni_vk::Kernels::from_engine(gpu, engine_options())?)
}
