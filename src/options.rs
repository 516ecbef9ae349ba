//! Every engine choice in one typed value ([`EngineOptions`]), filled from the device's defaults,
//! then by the caller (CLI flags, the C API's params) and, for comparisons and benchmarks only, by
//! the `QWEN3VK_*` overrides below. [`EngineOptions::from_env`] is the only place the library reads
//! the environment: the CLI calls it once at start, the C API at model load, and the values travel
//! down from there (`Gpu::new`, [`Kernels::from_engine`](crate::Kernels::from_engine), the models
//! loaded on those kernels). `bench-thinker --variants` parses its lists with the same parser
//! ([`parse_assignments`]) and applies them to the loaded model.
//!
//! User settings: `QWEN3VK_VALIDATION`, `QWEN3VK_DEVICE`, `QWEN3VK_PIPELINE_CACHE`, `QWEN3VK_LOG`
//! (read by the CLI's logger). The benchmark overrides, every name, are in [`OVERRIDES`] and in
//! docs/gpu-runs.md ("Engine overrides"). An unknown `QWEN3VK_*` name is refused with the list of
//! valid ones; a malformed value is refused naming its variable. `QWEN3VK_TEST_*`,
//! `QWEN3VK_BENCH_*` and the tool variables in [`NOT_ENGINE`] belong to tests and scripts and are
//! left alone.

use std::fmt;
use std::path::PathBuf;

use vk_runtime::GpuOptions;

use crate::kernels::{KernelOptions, MatvecPath};

/// Every choice of the engine: the runtime's, the compute library's, the models'.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    pub gpu: GpuOptions,
    pub kernels: KernelOptions,
    pub models: ModelOptions,
}

/// Decode choices of the model components, carried by the [`Kernels`](crate::Kernels) they load on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelOptions {
    pub thinker: ThinkerOptions,
    pub talker: TalkerOptions,
    pub audio: AudioOptions,
    /// The element type of the Thinker's and the Talker's KV caches (`--cache-type`).
    pub cache_type: CacheType,
}

/// The element type of a KV cache (llama.cpp's `--cache-type` names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum CacheType {
    /// 4 bytes per element: the exact path (parity tests against transformers).
    F32,
    /// 2 bytes per element: the default.
    #[default]
    F16,
    /// ggml's Q8_0 (32 int8 quants and one f16 scale per block): 34 bytes per 32 elements.
    Q8_0,
}

impl CacheType {
    pub const ALL: [CacheType; 3] = [CacheType::F32, CacheType::F16, CacheType::Q8_0];

    /// The flag value (`f32`, `f16`, `q8_0`).
    pub fn name(self) -> &'static str {
        match self {
            CacheType::F32 => "f32",
            CacheType::F16 => "f16",
            CacheType::Q8_0 => "q8_0",
        }
    }

    pub fn parse(s: &str) -> Option<CacheType> {
        CacheType::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(s))
    }

    /// Why the attention kernels cannot hold a cache of this type for heads of `head_dim` values
    /// (`None`: they can). Q8_0 is not built into the kernels yet (docs/kernels.md, "KV cache");
    /// where it is, it needs head_dim a multiple of 32 (whole blocks per head).
    pub fn unsupported(self, head_dim: u32) -> Option<String> {
        match self {
            CacheType::F32 | CacheType::F16 => None,
            CacheType::Q8_0 if !head_dim.is_multiple_of(32) => {
                Some(format!("q8_0 needs head_dim a multiple of 32 (the model has {head_dim})"))
            }
            CacheType::Q8_0 => Some("q8_0 is not implemented by the attention kernels yet: use f16 or f32".into()),
        }
    }

    /// Bytes of one cached row of `elems` values (one position of K or of V for one layer);
    /// Q8_0 needs `elems` a multiple of 32.
    pub fn row_bytes(self, elems: u64) -> u64 {
        match self {
            CacheType::F32 => 4 * elems,
            CacheType::F16 => 2 * elems,
            CacheType::Q8_0 => elems.div_ceil(32) * 34,
        }
    }
}

impl fmt::Display for CacheType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The Thinker's decode step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThinkerOptions {
    /// Fused-prologue kernels where the shapes allow (`QWEN3VK_NO_FUSED_DECODE` turns them off).
    pub fused_decode: bool,
    /// Decode attention in one dispatch (`QWEN3VK_ATTN_FUSED`; wins over the two below).
    pub attn_fused: bool,
    /// Decode attention in two dispatches (`QWEN3VK_ATTN_PROLOGUE`; wins over `head_epilogue`).
    pub attn_prologue: bool,
    /// q/k/v with the per-head norm/RoPE/store epilogue (`QWEN3VK_NO_HEAD_EPILOGUE` turns it off).
    pub head_epilogue: bool,
    /// The MoE router folded into the o-projection (`QWEN3VK_NO_ROUTER_FOLD`); fixed at load.
    pub router_fold: bool,
}

impl Default for ThinkerOptions {
    fn default() -> Self {
        ThinkerOptions {
            fused_decode: true,
            attn_fused: false,
            attn_prologue: false,
            head_epilogue: true,
            router_fold: true,
        }
    }
}

/// The Talker's decode step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TalkerOptions {
    /// Fused-prologue kernels where the shapes allow (`QWEN3VK_NO_FUSED_DECODE`).
    pub fused_decode: bool,
    /// Code-predictor attention as kv_store + one-query prefill attention (`QWEN3VK_CP_ATTN=decode`
    /// picks 2 copies + split/merge decode instead).
    pub cp_one_dispatch_attention: bool,
    /// With fused decode: q/k norm + RoPE + store and attention as separate dispatches
    /// (`QWEN3VK_ATTN_SPLIT`).
    pub attn_split: bool,
}

impl Default for TalkerOptions {
    fn default() -> Self {
        TalkerOptions { fused_decode: true, cp_one_dispatch_attention: true, attn_split: false }
    }
}

/// The AudioTower.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioOptions {
    /// The tower's linears on the int-dot path where the device has it (`QWEN3VK_AUDIO_MATMUL=intdot`);
    /// default: float.
    pub matmul_intdot: bool,
}

impl Default for EngineOptions {
    /// The defaults: no validation, the runtime's device choice, the pipeline cache in
    /// `$XDG_CACHE_HOME/qwen3-omni-vk` (else `~/.cache/qwen3-omni-vk`), every kernel and decode
    /// choice from the device's capabilities.
    fn default() -> Self {
        EngineOptions {
            gpu: GpuOptions { pipeline_cache: default_pipeline_cache(), ..GpuOptions::default() },
            kernels: KernelOptions::default(),
            models: ModelOptions::default(),
        }
    }
}

fn default_pipeline_cache() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("qwen3-omni-vk"))
}

/// When an override can take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applies {
    /// When the device opens or the model loads.
    AtLoad,
    /// On the next recording (`bench-thinker --variants` can change it on a loaded model).
    Recording,
}

/// One `QWEN3VK_*` name: what it sets, its values, when it applies.
#[derive(Debug, Clone, Copy)]
pub struct Override {
    pub name: &'static str,
    pub values: &'static str,
    pub applies: Applies,
    pub doc: &'static str,
}

const fn o(name: &'static str, values: &'static str, applies: Applies, doc: &'static str) -> Override {
    Override { name, values, applies, doc }
}

use Applies::{AtLoad, Recording};

/// Every name [`EngineOptions::from_env`] accepts.
pub const OVERRIDES: &[Override] = &[
    o("QWEN3VK_VALIDATION", "0|1", AtLoad, "Khronos validation layer on"),
    o("QWEN3VK_DEVICE", "N", AtLoad, "use Vulkan device N (`qwen3-omni-vk devices`); `--device` wins"),
    o("QWEN3VK_PIPELINE_CACHE", "DIR|off", AtLoad, "pipeline cache directory (default ~/.cache/qwen3-omni-vk)"),
    o("QWEN3VK_LOG", "FILTER", AtLoad, "log level (tracing env-filter syntax), read by the CLI's logger"),
    o("QWEN3VK_NO_PUSH_DESCRIPTOR", "0|1", AtLoad, "pooled descriptor sets instead of push descriptors"),
    o("QWEN3VK_FORCE_STAGING", "0|1", AtLoad, "staging uploads even on UMA / full-BAR devices"),
    o("QWEN3VK_CLOCKS", "0|1", AtLoad, "enable VK_KHR_shader_clock; bench-thinker prints per-kernel clock marks"),
    o("QWEN3VK_BARRIER_FULL", "0|1", Recording, "every barrier also waits on transfers"),
    o("QWEN3VK_MATVEC", "float|intdot", AtLoad, "the Q8_0 matrix × vector path"),
    o("QWEN3VK_MV_WG", "N", Recording, "matrix × vector workgroup size (default 128)"),
    o("QWEN3VK_MV_ROWS", "N", Recording, "matrix × vector rows per subgroup step / workgroup (default 2)"),
    o("QWEN3VK_FUSED_GROUPS", "N", Recording, "target workgroup count of the fused matrix × vector kernels (1024)"),
    o("QWEN3VK_FUSED_WG", "N", Recording, "workgroup size of the fused matrix × vector kernels (256)"),
    o("QWEN3VK_HEAD_WG", "N", Recording, "workgroup size of the q/k/v head-epilogue kernel (power of two ≥ 32; 1024)"),
    o("QWEN3VK_MOE_FUSED_WG", "N", Recording, "workgroup size of both decode MoE kernels"),
    o("QWEN3VK_GATE_WG", "N", Recording, "workgroup size of the decode MoE gate/up kernel"),
    o("QWEN3VK_DOWN_WG", "N", Recording, "workgroup size of the decode MoE down kernel"),
    o("QWEN3VK_GATE_RPS", "N", Recording, "rows per subgroup step of the decode MoE gate/up kernel"),
    o("QWEN3VK_DOWN_RPS", "N", Recording, "rows per subgroup step of the decode MoE down kernel"),
    o("QWEN3VK_DOWN_KSPLIT", "N", Recording, "subgroups sharing each row of the decode down projection (4)"),
    o("QWEN3VK_ATTN_DECODE", "split|auto", Recording, "`split` forces the per-query-head split decode attention"),
    o("QWEN3VK_SAMPLE_WG", "256|512|1024", Recording, "workgroup size of the sampler's selection"),
    o("QWEN3VK_CONV_NAIVE", "0|1", Recording, "AudioTower conv stem with the direct kernel, not the tiled one"),
    o("QWEN3VK_NO_FUSED_DECODE", "0|1", Recording, "Thinker and Talker decode without the fused-prologue kernels"),
    o("QWEN3VK_ATTN_FUSED", "0|1", Recording, "Thinker decode attention as one dispatch"),
    o("QWEN3VK_ATTN_PROLOGUE", "0|1", Recording, "Thinker decode attention as two dispatches"),
    o("QWEN3VK_NO_HEAD_EPILOGUE", "0|1", Recording, "Thinker q/k/v without the per-head norm/RoPE/store epilogue"),
    o("QWEN3VK_NO_ROUTER_FOLD", "0|1", AtLoad, "Thinker MoE router as its own stage, not folded into the o-projection"),
    o("QWEN3VK_AUDIO_MATMUL", "float|intdot", AtLoad, "AudioTower linears' path (default float)"),
    o("QWEN3VK_CP_ATTN", "decode|prefill", AtLoad, "Talker code-predictor attention form (default prefill)"),
    o("QWEN3VK_ATTN_SPLIT", "0|1", AtLoad, "Talker fused decode with attention separate from norm/RoPE/store"),
];

/// `QWEN3VK_` names that are not engine options: tests' and scripts' own (also every
/// `QWEN3VK_TEST_*` and `QWEN3VK_BENCH_*`).
pub const NOT_ENGINE: &[&str] = &["QWEN3VK_BLESS", "QWEN3VK_BIN", "QWEN3VK_VENV", "QWEN3VK_SYNTHETIC_GGUF"];

/// A refused override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionsError {
    /// No such name; `valid` lists every accepted one.
    Unknown { name: String, valid: String },
    /// The value does not parse.
    Malformed { name: String, value: String, expected: &'static str },
    /// A `NAME=VALUE` list item without `=` or with an empty or spaced name.
    Syntax(String),
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionsError::Unknown { name, valid } => write!(f, "unknown option {name}; valid names: {valid}"),
            OptionsError::Malformed { name, value, expected } => {
                write!(f, "{name}={value:?}: expected {expected}")
            }
            OptionsError::Syntax(what) => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for OptionsError {}

/// The accepted names, comma separated.
pub fn valid_names() -> String {
    OVERRIDES.iter().map(|o| o.name).collect::<Vec<_>>().join(", ")
}

/// The table entry of `name`, or the refusal listing the valid names.
pub fn lookup(name: &str) -> Result<&'static Override, OptionsError> {
    OVERRIDES
        .iter()
        .find(|o| o.name == name)
        .ok_or_else(|| OptionsError::Unknown { name: name.to_string(), valid: valid_names() })
}

/// Parses `NAME=VALUE,NAME=VALUE` (spaces around items ignored), checking every name and value
/// against [`OVERRIDES`] without applying them.
pub fn parse_assignments(list: &str) -> Result<Vec<(String, String)>, OptionsError> {
    let mut pairs = Vec::new();
    for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = p.split_once('=').ok_or_else(|| OptionsError::Syntax(format!("'{p}' is not NAME=VALUE")))?;
        let k = k.trim();
        if k.is_empty() || k.contains(char::is_whitespace) {
            return Err(OptionsError::Syntax(format!("'{k}' is not a variable name")));
        }
        EngineOptions::default().set(k, v)?;
        pairs.push((k.to_string(), v.to_string()));
    }
    Ok(pairs)
}

fn flag(name: &str, v: &str) -> Result<bool, OptionsError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "off" | "no" => Ok(false),
        "1" | "true" | "on" | "yes" => Ok(true),
        _ => Err(OptionsError::Malformed { name: name.into(), value: v.into(), expected: "0 or 1" }),
    }
}

/// A count; 0 means "the default" (as before the overrides were typed).
fn count(name: &str, v: &str) -> Result<Option<u32>, OptionsError> {
    let n: u32 = v.trim().parse().map_err(|_| OptionsError::Malformed {
        name: name.into(),
        value: v.into(),
        expected: "a non-negative integer",
    })?;
    Ok((n > 0).then_some(n))
}

fn choice<'a>(
    name: &str,
    v: &str,
    allowed: &'a [&'static str],
    expected: &'static str,
) -> Result<&'a str, OptionsError> {
    let t = v.trim();
    allowed.iter().copied().find(|a| *a == t).ok_or_else(|| OptionsError::Malformed {
        name: name.into(),
        value: v.into(),
        expected,
    })
}

impl EngineOptions {
    /// The defaults with every `QWEN3VK_*` override of the process environment applied (see the
    /// module documentation). Call it once, at start-up or model load.
    pub fn from_env() -> Result<EngineOptions, OptionsError> {
        let mut vars: Vec<(String, String)> = Vec::new();
        for (k, v) in std::env::vars_os() {
            let Some(k) = k.to_str() else { continue };
            if !k.starts_with("QWEN3VK_")
                || k.starts_with("QWEN3VK_TEST_")
                || k.starts_with("QWEN3VK_BENCH_")
                || NOT_ENGINE.contains(&k)
            {
                continue;
            }
            let v = v.into_string().map_err(|v| OptionsError::Malformed {
                name: k.to_string(),
                value: v.to_string_lossy().into_owned(),
                expected: "UTF-8",
            })?;
            vars.push((k.to_string(), v));
        }
        Self::from_assignments(&vars)
    }

    /// The defaults with `pairs` applied (the environment's form, for tests).
    pub fn from_assignments(pairs: &[(String, String)]) -> Result<EngineOptions, OptionsError> {
        let mut o = EngineOptions::default();
        for (k, v) in pairs {
            o.set(k, v)?;
        }
        Ok(o)
    }

    /// Applies one override.
    pub fn set(&mut self, name: &str, v: &str) -> Result<(), OptionsError> {
        lookup(name)?;
        let (g, k, m) = (&mut self.gpu, &mut self.kernels, &mut self.models);
        match name {
            "QWEN3VK_VALIDATION" => g.validation = flag(name, v)?,
            "QWEN3VK_DEVICE" => {
                g.device = match v.trim() {
                    "" => None,
                    s => Some(s.parse().map_err(|_| OptionsError::Malformed {
                        name: name.into(),
                        value: v.into(),
                        expected: "a device index",
                    })?),
                }
            }
            "QWEN3VK_PIPELINE_CACHE" => {
                g.pipeline_cache = match v.trim() {
                    "off" | "0" => None,
                    "" => default_pipeline_cache(),
                    s => Some(PathBuf::from(s)),
                }
            }
            "QWEN3VK_LOG" => {}
            "QWEN3VK_NO_PUSH_DESCRIPTOR" => g.no_push_descriptors = flag(name, v)?,
            "QWEN3VK_FORCE_STAGING" => g.force_staging = flag(name, v)?,
            "QWEN3VK_CLOCKS" => g.clocks = flag(name, v)?,
            "QWEN3VK_BARRIER_FULL" => g.full_barriers = flag(name, v)?,
            "QWEN3VK_MATVEC" => {
                k.matvec = match choice(name, v, &["float", "intdot", ""], "float or intdot")? {
                    "float" => Some(MatvecPath::Float),
                    "intdot" => Some(MatvecPath::IntDot),
                    _ => None,
                }
            }
            "QWEN3VK_MV_WG" => k.tuning.mv_wg = count(name, v)?,
            "QWEN3VK_MV_ROWS" => k.tuning.mv_rows = count(name, v)?,
            "QWEN3VK_FUSED_GROUPS" => k.tuning.fused_groups = count(name, v)?,
            "QWEN3VK_FUSED_WG" => k.tuning.fused_wg = count(name, v)?,
            "QWEN3VK_HEAD_WG" => k.tuning.head_wg = count(name, v)?,
            "QWEN3VK_MOE_FUSED_WG" => k.tuning.moe_fused_wg = count(name, v)?,
            "QWEN3VK_GATE_WG" => k.tuning.gate_wg = count(name, v)?,
            "QWEN3VK_DOWN_WG" => k.tuning.down_wg = count(name, v)?,
            "QWEN3VK_GATE_RPS" => k.tuning.gate_rps = count(name, v)?,
            "QWEN3VK_DOWN_RPS" => k.tuning.down_rps = count(name, v)?,
            "QWEN3VK_DOWN_KSPLIT" => k.tuning.down_ksplit = count(name, v)?,
            "QWEN3VK_ATTN_DECODE" => {
                k.tuning.attn_decode_split = choice(name, v, &["split", "auto", ""], "split or auto")? == "split"
            }
            "QWEN3VK_SAMPLE_WG" => {
                k.tuning.sample_wg = match choice(name, v, &["256", "512", "1024", ""], "256, 512 or 1024")? {
                    "" => None,
                    s => s.parse().ok(),
                }
            }
            "QWEN3VK_CONV_NAIVE" => k.tuning.conv_naive = flag(name, v)?,
            "QWEN3VK_NO_FUSED_DECODE" => {
                let off = flag(name, v)?;
                m.thinker.fused_decode = !off;
                m.talker.fused_decode = !off;
            }
            "QWEN3VK_ATTN_FUSED" => m.thinker.attn_fused = flag(name, v)?,
            "QWEN3VK_ATTN_PROLOGUE" => m.thinker.attn_prologue = flag(name, v)?,
            "QWEN3VK_NO_HEAD_EPILOGUE" => m.thinker.head_epilogue = !flag(name, v)?,
            "QWEN3VK_NO_ROUTER_FOLD" => m.thinker.router_fold = !flag(name, v)?,
            "QWEN3VK_AUDIO_MATMUL" => {
                m.audio.matmul_intdot = choice(name, v, &["float", "intdot", ""], "float or intdot")? == "intdot"
            }
            "QWEN3VK_CP_ATTN" => {
                m.talker.cp_one_dispatch_attention =
                    choice(name, v, &["decode", "prefill", ""], "decode or prefill")? != "decode"
            }
            "QWEN3VK_ATTN_SPLIT" => m.talker.attn_split = flag(name, v)?,
            _ => unreachable!("{name} is in OVERRIDES but not handled"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn unknown_name_is_refused_with_the_valid_list() {
        let e = EngineOptions::from_assignments(&pairs(&[("QWEN3VK_NO_SUCH", "1")])).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("QWEN3VK_NO_SUCH"), "{s}");
        for o in OVERRIDES {
            assert!(s.contains(o.name), "{s} lacks {}", o.name);
        }
    }

    #[test]
    fn malformed_value_is_refused_naming_the_variable() {
        for (k, v) in [("QWEN3VK_MV_WG", "lots"), ("QWEN3VK_VALIDATION", "maybe"), ("QWEN3VK_MATVEC", "fast")] {
            let e = EngineOptions::from_assignments(&pairs(&[(k, v)])).unwrap_err();
            assert!(matches!(&e, OptionsError::Malformed { name, .. } if name == k), "{e}");
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    #[test]
    fn valid_overrides_apply_and_defaults_stay() {
        let d = EngineOptions::default();
        assert_eq!(d.kernels, KernelOptions::default());
        assert!(d.models.thinker.fused_decode && d.models.thinker.router_fold && d.models.thinker.head_epilogue);
        let o = EngineOptions::from_assignments(&pairs(&[
            ("QWEN3VK_MV_WG", "64"),
            ("QWEN3VK_NO_ROUTER_FOLD", "1"),
            ("QWEN3VK_MATVEC", "float"),
            ("QWEN3VK_PIPELINE_CACHE", "off"),
            ("QWEN3VK_MV_ROWS", "0"),
        ]))
        .unwrap();
        assert_eq!(o.kernels.tuning.mv_wg, Some(64));
        assert_eq!(o.kernels.tuning.mv_rows, None);
        assert_eq!(o.kernels.matvec, Some(MatvecPath::Float));
        assert!(!o.models.thinker.router_fold);
        assert_eq!(o.gpu.pipeline_cache, None);
    }

    #[test]
    fn lists_parse_like_the_environment() {
        let p = parse_assignments(" QWEN3VK_FUSED_WG=64 , QWEN3VK_ATTN_PROLOGUE=1").unwrap();
        assert_eq!(p, pairs(&[("QWEN3VK_FUSED_WG", "64"), ("QWEN3VK_ATTN_PROLOGUE", "1")]));
        for bad in ["QWEN3VK_FUSED_WG", "=3", "A B=1"] {
            assert!(matches!(parse_assignments(bad), Err(OptionsError::Syntax(_))), "{bad}");
        }
        assert!(matches!(parse_assignments("A=1"), Err(OptionsError::Unknown { .. })));
        assert!(matches!(parse_assignments("QWEN3VK_HEAD_WG=x"), Err(OptionsError::Malformed { .. })));
    }
}
