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
