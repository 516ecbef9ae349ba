//! The `info` and `quantize` subcommands, as clap `Args` structs plus run functions, so that any
//! binary (the main `qwen3-omni-vk` CLI or `qwen3-omni-quantize`) can mount them. A crate of its own
//! so that clap and anyhow stay out of the quantizer library (and so out of `libqwen3_omni.a`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::{json, Value};

use quantizer::convert::{convert, ConvertOptions, TokenizerSource};
use quantizer::gguf::{Abbrev, GgufFile, MetaArray, MetaValue};
use quantizer::rules::{Preset, TypeRules};

fn parse_preset(s: &str) -> Result<Preset, String> {
    Preset::parse(s).ok_or_else(|| {
        let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
        format!("unknown preset {s:?}: one of {}", names.join(", "))
    })
}

/// Describe a GGUF file: header, metadata (long values abbreviated), tensor table, totals per type.
#[derive(clap::Args, Debug, Clone)]
pub struct InfoArgs {
    /// GGUF file to describe.
    pub file: PathBuf,
    /// Print JSON (full metadata and tensor table) instead of text.
    #[arg(long)]
    pub json: bool,
    /// With --json: add the CRC-32 (IEEE, as zlib.crc32) of every tensor's bytes; reads the whole file.
    #[arg(long, requires = "json")]
    pub checksums: bool,
    /// Array elements shown per metadata value in text mode.
    #[arg(long, default_value_t = 8)]
    pub max_items: usize,
    /// Omit the tensor table in text mode (totals are still printed).
    #[arg(long)]
    pub no_tensors: bool,
}

/// Convert a Hugging Face safetensors checkpoint (BF16/F16/F32) into one Q8_0 GGUF, or write a
/// random-weight GGUF with the real Qwen3-Omni tensor list (--synthetic).
#[derive(clap::Args, Debug, Clone)]
pub struct QuantizeArgs {
    /// Checkpoint directory (config.json, model.safetensors.index.json + shards or model.safetensors,
    /// optionally tokenizer.json, tokenizer_config.json, generation_config.json, preprocessor_config.json).
    #[arg(required_unless_present = "synthetic")]
    pub input: Option<PathBuf>,
    /// Output GGUF path (written to a temporary name and renamed when complete).
    #[arg(required_unless_present = "synthetic")]
    pub output: Option<PathBuf>,
    /// Write a random-weight Q8_0 GGUF with the real tensor list and metadata (minus vision) to this path.
    #[arg(
        long,
        value_name = "OUT.gguf",
        conflicts_with_all = ["input", "output", "keep_f16", "keep_bf16", "preset", "tokenizer", "include_vision"]
    )]
    pub synthetic: Option<PathBuf>,
    /// With --synthetic: number of Thinker, Talker and AudioTower layers (default: the real counts).
    #[arg(long, requires = "synthetic")]
    pub layers: Option<u64>,
    /// With --synthetic: random seed.
    #[arg(long, default_value_t = 0, requires = "synthetic")]
    pub seed: u64,
    /// The type plan: q8_0 (every Linear in Q8_0), q8_0-hq (Q8_0, with the code predictor, the
    /// codec head and Code2Wav in F16), f16 or bf16 (every Linear unquantised).
    #[arg(long, value_name = "PRESET", default_value = "q8_0", value_parser = parse_preset)]
    pub preset: Preset,
    /// Keep tensors whose name matches this glob (`*`, `?`) in F16 instead of the preset's type;
    /// repeatable, e.g. --keep-f16 'talker.code_predictor.*' --keep-f16 'code2wav.*'.
    #[arg(long = "keep-f16", value_name = "PATTERN")]
    pub keep_f16: Vec<String>,
    /// Keep tensors whose name matches this glob in BF16 (after --keep-f16); repeatable.
    #[arg(long = "keep-bf16", value_name = "PATTERN")]
    pub keep_bf16: Vec<String>,
    /// The tokenizer.json to embed (default: the one beside config.json; quantize refuses a
    /// checkpoint without one, since the engine cannot chat without it).
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Also convert the vision tower (thinker.visual.*), skipped by default.
    #[arg(long)]
    pub include_vision: bool,
    /// general.name (default: the input directory's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Encoding threads (0 = all cores, at most 8).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Never draw the progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

pub fn run_quantize(a: &QuantizeArgs) -> anyhow::Result<()> {
    if let Some(out) = &a.synthetic {
        let r = quantizer::synthetic::write_synthetic(out, a.layers, a.seed, !a.no_progress)
            .with_context(|| format!("writing synthetic GGUF {}", out.display()))?;
        eprintln!(
            "wrote {} ({} tensors, {:.2} GB) in {:.1} s, {:.2} GB/s",
            r.output.display(),
            r.tensors,
            r.bytes as f64 / 1e9,
            r.seconds,
            r.bytes as f64 / 1e9 / r.seconds.max(1e-9)
        );
        return Ok(());
    }
    let (Some(input), Some(output)) = (&a.input, &a.output) else {
        anyhow::bail!("quantize needs INPUT and OUTPUT (or --synthetic OUT.gguf)");
    };
    let mut rules: TypeRules = a.preset.rules();
    rules.keep_f16.extend(a.keep_f16.iter().cloned());
    rules.keep_bf16.extend(a.keep_bf16.iter().cloned());
    rules.include_vision = a.include_vision;
    let opts = ConvertOptions {
        rules,
        tokenizer: match &a.tokenizer {
            Some(p) => TokenizerSource::Path(p.clone()),
            None => TokenizerSource::Required,
        },
        name: a.name.clone(),
        progress: !a.no_progress,
        threads: a.threads,
        chunk_elems: 0,
    };
    let r = convert(input, output, &opts).with_context(|| format!("converting {}", input.display()))?;
    eprintln!(
        "wrote {}: {} tensors ({} skipped), {:.2} GB read, {:.2} GB written, {:.1} s, {:.2} GB/s read",
        r.output.display(),
        r.tensors,
        r.skipped,
        r.in_bytes as f64 / 1e9,
        r.out_bytes as f64 / 1e9,
        r.seconds,
        r.in_bytes as f64 / 1e9 / r.seconds.max(1e-9)
    );
    for (ty, (n, b)) in &r.per_type {
        eprintln!("  {ty:5} {n:6} tensors {:10.3} GB", *b as f64 / 1e9);
    }
    Ok(())
}

/// CRC-32 (IEEE 802.3, reflected, as zlib.crc32).
pub fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[[u32; 256]; 8]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [[0u32; 256]; 8];
        for i in 0..256u32 {
            let mut c = i;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            t[0][i as usize] = c;
        }
        for i in 0..256 {
            for k in 1..8 {
                let p = t[k - 1][i];
                t[k][i] = (p >> 8) ^ t[0][(p & 0xff) as usize];
            }
        }
        t
    });
    let mut c = !0u32;
    let mut chunks = data.chunks_exact(8);
    for b in &mut chunks {
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) ^ c;
        let hi = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        c = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in chunks.remainder() {
        c = t[0][((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

fn array_json(a: &MetaArray) -> Value {
    match a {
        MetaArray::U8(v) => json!(v),
        MetaArray::I8(v) => json!(v),
        MetaArray::U16(v) => json!(v),
        MetaArray::I16(v) => json!(v),
        MetaArray::U32(v) => json!(v),
        MetaArray::I32(v) => json!(v),
        MetaArray::F32(v) => json!(v),
        MetaArray::Bool(v) => json!(v),
        MetaArray::String(v) => json!(v),
        MetaArray::U64(v) => json!(v),
        MetaArray::I64(v) => json!(v),
        MetaArray::F64(v) => json!(v),
        MetaArray::Array(v) => Value::Array(v.iter().map(array_json).collect()),
    }
}

/// A metadata value as JSON: `{"type": "U32", "value": 5}`; arrays add `"elem_type"`.
pub fn meta_json(v: &MetaValue) -> Value {
    let ty = format!("{:?}", v.value_type()).to_uppercase();
    match v {
        MetaValue::Array(a) => {
            json!({"type": ty, "elem_type": format!("{:?}", a.elem_type()).to_uppercase(), "value": array_json(a)})
        }
        MetaValue::U8(x) => json!({"type": ty, "value": x}),
        MetaValue::I8(x) => json!({"type": ty, "value": x}),
        MetaValue::U16(x) => json!({"type": ty, "value": x}),
        MetaValue::I16(x) => json!({"type": ty, "value": x}),
        MetaValue::U32(x) => json!({"type": ty, "value": x}),
        MetaValue::I32(x) => json!({"type": ty, "value": x}),
        MetaValue::F32(x) => json!({"type": ty, "value": x}),
        MetaValue::Bool(x) => json!({"type": ty, "value": x}),
        MetaValue::String(x) => json!({"type": ty, "value": x}),
        MetaValue::U64(x) => json!({"type": ty, "value": x}),
        MetaValue::I64(x) => json!({"type": ty, "value": x}),
        MetaValue::F64(x) => json!({"type": ty, "value": x}),
    }
}

fn human(b: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = b as f64;
    let mut i = 0;
    while x >= 1024.0 && i < U.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{x:.2} {}", U[i])
    }
}

pub fn run_info(a: &InfoArgs) -> anyhow::Result<()> {
    let f = GgufFile::open(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let h = &f.header;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if a.json {
        let meta: serde_json::Map<String, Value> = h.metadata.iter().map(|(k, v)| (k.clone(), meta_json(v))).collect();
        let tensors: Vec<Value> = h
            .tensors
            .iter()
            .map(|t| {
                let mut o = json!({"name": t.name, "type": t.ty.name(), "type_id": t.ty.id(), "dims": t.dims,
                                   "offset": t.rel_offset, "abs_offset": t.abs_offset, "n_bytes": t.n_bytes});
                if a.checksums {
                    o["crc32"] = json!(crc32(f.tensor_data(t)));
                }
                o
            })
            .collect();
        let doc = json!({"file": a.file, "file_size": f.bytes().len(), "version": h.version, "alignment": h.alignment,
                         "data_offset": h.data_offset, "metadata": meta, "tensors": tensors});
        serde_json::to_writer(&mut out, &doc)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "file:        {}", a.file.display())?;
    writeln!(out, "size:        {} ({})", f.bytes().len(), human(f.bytes().len() as u64))?;
    writeln!(out, "version:     {}", h.version)?;
    writeln!(out, "alignment:   {}", h.alignment)?;
    writeln!(out, "data offset: {}", h.data_offset)?;
    writeln!(out, "tensors:     {}", h.tensors.len())?;
    writeln!(out, "\nmetadata ({} keys):", h.metadata.len())?;
    let w = h.metadata.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &h.metadata {
        writeln!(out, "  {k:w$}  {:<6} {}", format!("{:?}", v.value_type()), Abbrev(v, a.max_items))?;
    }
    if !a.no_tensors {
        let nw = h.tensors.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
        writeln!(
            out,
            "\n  {:>6}  {:nw$}  {:5}  {:24}  {:>14}  {:>12}",
            "#", "name", "type", "ne (ggml order)", "offset", "bytes"
        )?;
        for (i, t) in h.tensors.iter().enumerate() {
            let dims = t.dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" x ");
            writeln!(
                out,
                "  {i:>6}  {:nw$}  {:5}  {dims:24}  {:>14}  {:>12}",
                t.name,
                t.ty.name(),
                t.rel_offset,
                t.n_bytes
            )?;
        }
    }
    let mut per: BTreeMap<&str, (usize, u64, u64)> = BTreeMap::new();
    for t in &h.tensors {
        let e = per.entry(t.ty.name()).or_default();
        e.0 += 1;
        e.1 += t.n_bytes;
        e.2 += t.n_elements();
    }
    writeln!(out, "\ntotals per type:")?;
    for (ty, (n, b, e)) in &per {
        writeln!(out, "  {ty:5}  {n:7} tensors  {e:15} elements  {:>12}", human(*b))?;
    }
    let (n, b, e) = per.values().fold((0, 0, 0), |a, v| (a.0 + v.0, a.1 + v.1, a.2 + v.2));
    writeln!(out, "  {:5}  {n:7} tensors  {e:15} elements  {:>12}", "all", human(b))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32_known_values() {
        assert_eq!(super::crc32(b""), 0);
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
        let long: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        // bytewise reference
        let mut c = !0u32;
        for &b in &long {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        assert_eq!(super::crc32(&long), !c);
    }
}
