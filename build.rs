//! Compiles every `glsl/*.comp` (with its `#define` variants) to SPIR-V with shaderc, checks each
//! module with rspirv (descriptor set 0, storage buffers only, push constants ≤ 128 bytes), and
//! writes the kernel table `kernels.rs` into OUT_DIR. A shader error fails the build with the
//! file, line and message.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One compiled variant: (kernel name, source file, defines).
struct Variant {
    name: &'static str,
    file: &'static str,
    defines: &'static [(&'static str, &'static str)],
}

/// Every kernel variant. Names follow `<op>_<types>[_<suffix>…]` (docs/kernels.md, "Names";
/// `check_name`).
const VARIANTS: &[Variant] = &[
    Variant { name: "mv_f32_f32", file: "matvec.comp", defines: &[("WTYPE_F32", "1")] },
    Variant { name: "mv_f16_f32", file: "matvec.comp", defines: &[("WTYPE_F16", "1")] },
    Variant { name: "mv_q8_0p_f32", file: "matvec_q8_0p.comp", defines: &[] },
    Variant { name: "mv_q8_0p_q8_1", file: "matvec_q8_0p.comp", defines: &[("INTDOT", "1")] },
    Variant { name: "mv_q8_0p_f32_res", file: "matvec_q8_0p.comp", defines: &[("RESIDUAL", "1")] },
    Variant { name: "mv_q8_0p_q8_1_res", file: "matvec_q8_0p.comp", defines: &[("INTDOT", "1"), ("RESIDUAL", "1")] },
    Variant {
        name: "mv_q8_0p_q8_1_nq",
        file: "matvec_q8_0p.comp",
        defines: &[("INTDOT", "1"), ("PROLOGUE", "1"), ("NORM", "1")],
    },
    Variant { name: "mv_q8_0p_f32_n", file: "matvec_q8_0p.comp", defines: &[("PROLOGUE", "1"), ("NORM", "1")] },
    Variant {
        name: "mv_q8_0p_f32_head",
        file: "matvec_q8_0p.comp",
        defines: &[("PROLOGUE", "1"), ("NORM", "1"), ("HEAD", "1")],
    },
    Variant {
        name: "mv_q8_0p_q8_1_head",
        file: "matvec_q8_0p.comp",
        defines: &[("INTDOT", "1"), ("PROLOGUE", "1"), ("NORM", "1"), ("HEAD", "1")],
    },
    Variant {
        name: "mv_q8_0p_q8_1_pq_res",
        file: "matvec_q8_0p.comp",
        defines: &[("INTDOT", "1"), ("PROLOGUE", "1"), ("RESIDUAL", "1")],
    },
    // KV cache in f16 (common/kv.glsl): the k / v head epilogues' stores.
    Variant {
        name: "mv_q8_0p_f32_head_kv_f16",
        file: "matvec_q8_0p.comp",
        defines: &[("PROLOGUE", "1"), ("NORM", "1"), ("HEAD", "1"), ("KV_F16", "1")],
    },
    Variant {
        name: "mv_q8_0p_q8_1_head_kv_f16",
        file: "matvec_q8_0p.comp",
        defines: &[("INTDOT", "1"), ("PROLOGUE", "1"), ("NORM", "1"), ("HEAD", "1"), ("KV_F16", "1")],
    },
    Variant { name: "mv_f32_f32_norm", file: "matvec.comp", defines: &[("WTYPE_F32", "1"), ("NORM", "1")] },
    Variant { name: "rope_qk_norm_store_f32", file: "rope_qk_norm.comp", defines: &[("STORE", "1")] },
    Variant { name: "rope_qk_norm_store_f16", file: "rope_qk_norm.comp", defines: &[("STORE", "1"), ("KV_F16", "1")] },
    Variant {
        name: "moe_route_gate_up_norm_q8_0p_f32",
        file: "moe_gate_up.comp",
        defines: &[("ROUTE", "1"), ("NORM", "1")],
    },
    Variant {
        name: "moe_route_gate_up_norm_q8_0p_q8_1",
        file: "moe_gate_up.comp",
        defines: &[("ROUTE", "1"), ("INTDOT", "1"), ("NORM", "1")],
    },
    Variant { name: "attn_decode_fused_f32", file: "attn_decode_fused.comp", defines: &[] },
    Variant { name: "attn_decode_prologue_f32", file: "attn_decode_fused.comp", defines: &[("NO_MERGE", "1")] },
    Variant { name: "attn_decode_fused_f16", file: "attn_decode_fused.comp", defines: &[("KV_F16", "1")] },
    Variant {
        name: "attn_decode_prologue_f16",
        file: "attn_decode_fused.comp",
        defines: &[("NO_MERGE", "1"), ("KV_F16", "1")],
    },
    Variant { name: "router_fold_f32", file: "router_fold.comp", defines: &[] },
    Variant { name: "router_fold_q8_1_f32", file: "router_fold.comp", defines: &[("QUANT_A", "1")] },
    Variant { name: "decode_advance", file: "decode_advance.comp", defines: &[] },
    Variant { name: "quantize_q8_1", file: "quantize_q8_1.comp", defines: &[] },
    Variant { name: "mm_q8_0p_q8_1", file: "matmul_q8_0_q8_1.comp", defines: &[] },
    Variant { name: "mm_f32_f32", file: "mm_f32.comp", defines: &[] },
    Variant { name: "rms_norm_f32", file: "rms_norm.comp", defines: &[] },
    Variant { name: "add_f32", file: "elementwise.comp", defines: &[("OP_ADD", "1")] },
    Variant { name: "mul_f32", file: "elementwise.comp", defines: &[("OP_MUL", "1")] },
    Variant { name: "silu_mul_f32", file: "elementwise.comp", defines: &[("OP_SILU_MUL", "1")] },
    Variant { name: "softmax_f32", file: "softmax.comp", defines: &[] },
    Variant { name: "copy_vec4", file: "bandwidth.comp", defines: &[("OP_COPY", "1")] },
    Variant { name: "read_vec4", file: "bandwidth.comp", defines: &[("OP_READ", "1")] },
    Variant { name: "moe_route_f32", file: "moe_route.comp", defines: &[] },
    Variant { name: "moe_gate_up_q8_0p_f32", file: "moe_gate_up.comp", defines: &[] },
    Variant { name: "moe_gate_up_q8_0p_q8_1", file: "moe_gate_up.comp", defines: &[("INTDOT", "1")] },
    Variant { name: "moe_down_q8_0p_f32", file: "moe_down.comp", defines: &[] },
    Variant { name: "moe_down_q8_0p_q8_1", file: "moe_down.comp", defines: &[("INTDOT", "1")] },
    Variant { name: "moe_shared_gate_f32", file: "moe_shared_gate.comp", defines: &[] },
    Variant { name: "moe_route_gate_up_q8_0p_f32", file: "moe_gate_up.comp", defines: &[("ROUTE", "1")] },
    Variant {
        name: "moe_route_gate_up_q8_0p_q8_1",
        file: "moe_gate_up.comp",
        defines: &[("ROUTE", "1"), ("INTDOT", "1")],
    },
    Variant { name: "moe_down_q8_0p_q8_1_fused", file: "moe_down.comp", defines: &[("INTDOT", "1"), ("QUANT_H", "1")] },
    Variant { name: "moe_group_u32", file: "moe_group.comp", defines: &[] },
    Variant { name: "moe_gate_up_grouped_q8_0p_f32", file: "moe_grouped.comp", defines: &[] },
    Variant { name: "moe_gate_up_grouped_q8_0p_q8_1", file: "moe_grouped.comp", defines: &[("INTDOT", "1")] },
    Variant { name: "moe_down_grouped_q8_0p_f32", file: "moe_grouped.comp", defines: &[("DOWN", "1")] },
    Variant {
        name: "moe_down_grouped_q8_0p_q8_1",
        file: "moe_grouped.comp",
        defines: &[("DOWN", "1"), ("INTDOT", "1")],
    },
    Variant { name: "moe_combine_f32", file: "moe_combine.comp", defines: &[] },
    Variant { name: "embed_q8_0p_f32", file: "embed_q8_0p.comp", defines: &[] },
    Variant { name: "rope_f32", file: "rope.comp", defines: &[] },
    Variant { name: "rope_qk_norm_f32", file: "rope_qk_norm.comp", defines: &[] },
    Variant { name: "attn_split_f32", file: "attn_split.comp", defines: &[] },
    Variant { name: "attn_split_vec4_f32", file: "attn_split.comp", defines: &[("VEC4", "1")] },
    Variant { name: "attn_split_f16", file: "attn_split.comp", defines: &[("KV_F16", "1")] },
    Variant { name: "attn_split_vec4_f16", file: "attn_split.comp", defines: &[("VEC4", "1"), ("KV_F16", "1")] },
    Variant { name: "attn_reduce_f32", file: "attn_reduce.comp", defines: &[] },
    Variant { name: "attn_decode_gqa_f32", file: "attn_decode.comp", defines: &[] },
    Variant { name: "attn_decode_gqa_dyn_f32", file: "attn_decode.comp", defines: &[("DYN_LEN", "1")] },
    Variant { name: "attn_decode_gqa_f16", file: "attn_decode.comp", defines: &[("KV_F16", "1")] },
    Variant {
        name: "attn_decode_gqa_dyn_f16",
        file: "attn_decode.comp",
        defines: &[("DYN_LEN", "1"), ("KV_F16", "1")],
    },
    Variant { name: "attn_reduce_dyn_f32", file: "attn_reduce.comp", defines: &[("DYN_LEN", "1")] },
    Variant { name: "attn_kv_store_f32", file: "attn_kv_store.comp", defines: &[("DYN_LEN", "1")] },
    Variant { name: "attn_kv_store_f16", file: "attn_kv_store.comp", defines: &[("DYN_LEN", "1"), ("KV_F16", "1")] },
    Variant { name: "attn_kv_store_at_f16", file: "attn_kv_store.comp", defines: &[("KV_F16", "1")] },
    Variant { name: "attn_prefill_f32", file: "attn_prefill.comp", defines: &[] },
    Variant { name: "attn_prefill_v4_f32", file: "attn_prefill_v4.comp", defines: &[] },
    Variant { name: "attn_prefill_f16", file: "attn_prefill.comp", defines: &[("KV_F16", "1")] },
    Variant { name: "attn_prefill_v4_f16", file: "attn_prefill_v4.comp", defines: &[("KV_F16", "1")] },
    Variant { name: "argmax_f32", file: "argmax.comp", defines: &[] },
    Variant { name: "argmax_final_f32", file: "argmax.comp", defines: &[("FINAL", "1")] },
    Variant { name: "sample_prep_f32", file: "sample_prep.comp", defines: &[] },
    Variant { name: "sample_penalty_f32", file: "sample_prep.comp", defines: &[("PENALTY", "1")] },
    Variant { name: "sample_f32", file: "sample.comp", defines: &[] },
    Variant { name: "sample_hist_f32", file: "sample.comp", defines: &[("HIST", "1")] },
    Variant { name: "conv1d_f32", file: "conv1d.comp", defines: &[] },
    Variant { name: "conv1d_narrow_f32", file: "conv1d.comp", defines: &[("NARROW", "1")] },
    Variant { name: "conv1d_q8_0p_f32", file: "conv1d.comp", defines: &[("Q8_0P", "1")] },
    Variant { name: "conv1d_narrow_q8_0p_f32", file: "conv1d.comp", defines: &[("NARROW", "1"), ("Q8_0P", "1")] },
    Variant { name: "snake_beta_f32", file: "snake_beta.comp", defines: &[] },
    Variant { name: "dwconv_f32", file: "dwconv.comp", defines: &[] },
    Variant { name: "layer_norm_f32", file: "layer_norm.comp", defines: &[] },
    Variant { name: "rope_rows_f32", file: "rope_rows.comp", defines: &[] },
    Variant { name: "attn_window_f32", file: "attn_window.comp", defines: &[] },
    Variant { name: "sample_step_f32", file: "sample.comp", defines: &[("STEP_BUFFER", "1")] },
    // AudioTower (spec §4.2; LayerNorm is layer_norm_f32 above).
    Variant { name: "add_gelu_f32", file: "elementwise.comp", defines: &[("OP_ADD_GELU", "1")] },
    Variant { name: "conv2d_s2_gelu_f32", file: "conv2d_s2.comp", defines: &[] },
    Variant { name: "conv2d_s2_gelu_tiled_f32", file: "conv2d_s2_tiled.comp", defines: &[] },
    Variant { name: "attn_bidir_window_f32", file: "attn_bidir.comp", defines: &[] },
    Variant { name: "mm_q8_0p_f32", file: "mm_q8_0p_f32.comp", defines: &[] },
    // The driver self-check at device start (src/subgroups.rs).
    Variant { name: "subgroup_probe", file: "subgroup_probe.comp", defines: &[] },
    // Timing instrumentation (QWEN3VK_CLOCKS=1 bench-thinker): the decode kernels with MARK()s on.
    Variant {
        name: "mv_q8_0p_q8_1_head_clk",
        file: "matvec_q8_0p.comp",
        defines: &[("INTDOT", "1"), ("PROLOGUE", "1"), ("NORM", "1"), ("HEAD", "1"), ("CLOCKS", "8")],
    },
    Variant {
        name: "mv_q8_0p_q8_1_head_kv_f16_clk",
        file: "matvec_q8_0p.comp",
        defines: &[("INTDOT", "1"), ("PROLOGUE", "1"), ("NORM", "1"), ("HEAD", "1"), ("KV_F16", "1"), ("CLOCKS", "8")],
    },
    Variant {
        name: "mv_q8_0p_q8_1_pq_res_clk",
        file: "matvec_q8_0p.comp",
        defines: &[("INTDOT", "1"), ("PROLOGUE", "1"), ("RESIDUAL", "1"), ("CLOCKS", "5")],
    },
    Variant {
        name: "moe_route_gate_up_norm_q8_0p_q8_1_clk",
        file: "moe_gate_up.comp",
        defines: &[("ROUTE", "1"), ("INTDOT", "1"), ("NORM", "1"), ("CLOCKS", "10")],
    },
    Variant {
        name: "moe_down_q8_0p_q8_1_fused_clk",
        file: "moe_down.comp",
        defines: &[("INTDOT", "1"), ("QUANT_H", "1"), ("CLOCKS", "7")],
    },
    Variant {
        name: "router_fold_q8_1_f32_clk",
        file: "router_fold.comp",
        defines: &[("QUANT_A", "1"), ("CLOCKS", "4")],
    },
    Variant {
        name: "attn_decode_gqa_dyn_f32_clk",
        file: "attn_decode.comp",
        defines: &[("DYN_LEN", "1"), ("CLOCKS", "6")],
    },
    Variant {
        name: "attn_decode_gqa_dyn_f16_clk",
        file: "attn_decode.comp",
        defines: &[("DYN_LEN", "1"), ("KV_F16", "1"), ("CLOCKS", "6")],
    },
    Variant {
        name: "attn_reduce_dyn_f32_clk",
        file: "attn_reduce.comp",
        defines: &[("DYN_LEN", "1"), ("CLOCKS", "4")],
    },
];

const MAX_PUSH: u32 = 128;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let glsl = root.join("glsl");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=glsl");
    println!("cargo:rerun-if-changed=build.rs");

    // Every .comp must be used by some variant, so nothing silently goes uncompiled.
    let mut files: Vec<String> = std::fs::read_dir(&glsl)
        .expect("glsl/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".comp"))
        .collect();
    files.sort();
    for f in &files {
        if !VARIANTS.iter().any(|v| v.file == f) {
            fail(&format!("glsl/{f} is not listed in build.rs VARIANTS"));
        }
    }

    let compiler = shaderc::Compiler::new().unwrap_or_else(|e| fail(&format!("shaderc: {e}")));
    let mut table = String::new();
    let mut entries = String::new();
    let mut names = String::new();
    let mut seen = BTreeMap::new();
    let mut files_using_subgroups = BTreeMap::new();
    for v in VARIANTS {
        check_name(v.name);
    }
    for v in VARIANTS {
        if seen.insert(v.name, ()).is_some() {
            fail(&format!("kernel name {} is used twice", v.name));
        }
        let path = glsl.join(v.file);
        let src = std::fs::read_to_string(&path).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
        let words = compile(&compiler, &glsl, &path, &src, v);
        let iface = reflect(v.name, &words);
        let mut sg = subgroup_header(v, &src);
        if sg.class == "none" && iface.uses_subgroup {
            fail(&format!(
                "glsl/{}: variant {} uses subgroup operations, but its header says `// Subgroup: none`",
                v.file, v.name
            ));
        }
        if iface.uses_subgroup {
            files_using_subgroups.insert(v.file, ());
        } else {
            // A variant compiled without the file's subgroup code needs nothing of the device.
            sg.class = "none";
        }
        let ident = v.name.to_uppercase();
        writeln!(table, "static {ident}: [u32; {}] = {:?};", words.len(), words).unwrap();
        let access: Vec<&str> = iface
            .access
            .iter()
            .map(|a| match a {
                (true, false) => "Access::Read",
                (false, true) => "Access::Write",
                _ => "Access::ReadWrite",
            })
            .collect();
        let push: Vec<String> = iface
            .push
            .iter()
            .map(|m| format!("PushMember {{ offset: {}, width: {}, name: {:?} }}", m.offset, m.width, m.name))
            .collect();
        writeln!(names, "    pub const {ident}: &str = {:?};", v.name).unwrap();
        writeln!(
            entries,
            "    KernelInfo {{ name: {:?}, spirv: &{ident}, bindings: {}, access: &[{}], push_size: {}, \
             push: &[{}], subgroup: SubgroupUse::{}, subgroup_min: {}, local_size: {} }},",
            v.name,
            iface.access.len(),
            access.join(", "),
            iface.push_size,
            push.join(", "),
            match sg.class {
                "none" => "None",
                "any" => "Any",
                _ => "Full",
            },
            sg.min,
            match iface.local_size {
                LocalSize::Fixed(n) => format!("LocalSize::Fixed({n})"),
                LocalSize::Spec { id, default } => format!("LocalSize::Spec {{ id: {id}, default: {default} }}"),
            }
        )
        .unwrap();
    }
    for v in VARIANTS {
        let src = std::fs::read_to_string(glsl.join(v.file)).unwrap_or_default();
        let sg = subgroup_header(v, &src);
        if sg.class != "none" && !files_using_subgroups.contains_key(v.file) {
            fail(&format!(
                "glsl/{}: its header says `// Subgroup: {}`, but no variant uses subgroup operations (say `none`)",
                v.file, sg.class
            ));
        }
    }
    let code = format!(
        "// @generated by build.rs from glsl/*.comp — do not edit.\n{table}\n\
         /// Every kernel compiled at build time.\npub static KERNELS: &[KernelInfo] = &[\n{entries}];\n\n\
         /// Every kernel's name, as a constant named by the name in upper case.\npub mod names {{\n{names}}}\n"
    );
    std::fs::write(out.join("kernels.rs"), code).expect("write kernels.rs");
}

/// Kernels without a data type in their name (docs/kernels.md, "Names").
const UNTYPED: &[&str] = &["decode_advance", "subgroup_probe"];

/// The naming rule of docs/kernels.md: `[a-z0-9_]`, a type token, and `_clk` only as the copy of a
/// kernel of the same name.
fn check_name(name: &str) {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        fail(&format!("kernel name {name:?}: only a-z, 0-9 and _ (docs/kernels.md, \"Names\")"));
    }
    let parts: Vec<&str> = name.split('_').collect();
    let typed = ["f32", "f16", "u32", "vec4"].iter().any(|t| parts.contains(t))
        || parts.windows(2).any(|w| w == ["q8", "0p"] || w == ["q8", "1"]);
    if !typed && !UNTYPED.contains(&name) {
        fail(&format!(
            "kernel name {name:?} has no type token (f32, f16, q8_0p, q8_1, u32, vec4): docs/kernels.md, \"Names\""
        ));
    }
    if let Some(base) = name.strip_suffix("_clk") {
        if !VARIANTS.iter().any(|v| v.name == base) {
            fail(&format!("kernel {name}: a `_clk` variant needs the kernel {base} it instruments"));
        }
    } else if parts.contains(&"clk") {
        fail(&format!("kernel {name}: `clk` only as the last suffix"));
    }
}

fn fail(msg: &str) -> ! {
    // One line per message so cargo shows it plainly.
    for line in msg.lines() {
        println!("cargo:warning={line}");
    }
    eprintln!("{msg}");
    std::process::exit(1)
}

fn compile(c: &shaderc::Compiler, dir: &Path, path: &Path, src: &str, v: &Variant) -> Vec<u32> {
    let mut o = shaderc::CompileOptions::new().expect("shaderc options");
    o.set_target_env(shaderc::TargetEnv::Vulkan, shaderc::EnvVersion::Vulkan1_3 as u32);
    o.set_target_spirv(shaderc::SpirvVersion::V1_5);
    o.set_optimization_level(shaderc::OptimizationLevel::Performance);
    o.set_generate_debug_info();
    for (k, val) in v.defines {
        o.add_macro_definition(k, Some(val));
    }
    let inc_dir = dir.to_path_buf();
    o.set_include_callback(move |name, _ty, _from, _depth| {
        let p = inc_dir.join(name);
        std::fs::read_to_string(&p)
            .map(|content| shaderc::ResolvedInclude { resolved_name: p.display().to_string(), content })
            .map_err(|e| format!("{}: {e}", p.display()))
    });
    match c.compile_into_spirv(src, shaderc::ShaderKind::Compute, &path.display().to_string(), "main", Some(&o)) {
        Ok(a) => {
            if a.get_num_warnings() > 0 {
                println!("cargo:warning={} ({}): {}", v.name, v.file, a.get_warning_messages().replace('\n', " | "));
            }
            a.as_binary().to_vec()
        }
        Err(e) => fail(&format!(
            "shader {} (variant {}, defines {:?}) failed to compile:\n{e}",
            path.display(),
            v.name,
            v.defines
        )),
    }
}

struct Interface {
    /// One entry per binding 0..n: (the shader never writes it, the shader never reads it), from
    /// NonWritable / NonReadable on the variable or on every member of its block.
    access: Vec<(bool, bool)>,
    push_size: u32,
    /// The push-constant block's members in declaration order.
    push: Vec<PushMember>,
    /// Any subgroup operation or subgroup builtin in the entry point.
    uses_subgroup: bool,
    /// local_size_x: a literal, or a specialisation constant with its default.
    local_size: LocalSize,
}

struct PushMember {
    offset: u32,
    width: u32,
    name: String,
}

enum LocalSize {
    Fixed(u32),
    Spec { id: u32, default: u32 },
}

/// A kernel's stated subgroup assumption: the `// Subgroup: CLASS[, min N] — why` line of its
/// file. CLASS is `none` (no subgroup operations), `any` (correct at every subgroup size, partial
/// subgroups included) or `full` (correct at every size when subgroups are full: the workgroup is
/// a multiple of the size; the host checks). `min N`: correct only at sizes ≥ N.
struct SubgroupHeader {
    class: &'static str,
    min: u32,
}

fn subgroup_header(v: &Variant, src: &str) -> SubgroupHeader {
    let lines: Vec<&str> = src.lines().filter_map(|l| l.trim().strip_prefix("// Subgroup:")).collect();
    let [line] = lines[..] else {
        fail(&format!(
            "glsl/{}: needs exactly one `// Subgroup: none|any|full[, min N] — why` header line (found {})",
            v.file,
            lines.len()
        ))
    };
    let head = line.split('—').next().unwrap_or("").trim();
    let mut parts = head.split(',').map(str::trim);
    let class = match parts.next() {
        Some("none") => "none",
        Some("any") => "any",
        Some("full") => "full",
        other => fail(&format!("glsl/{}: subgroup class {other:?} is not none, any or full", v.file)),
    };
    let mut min = 1;
    for p in parts {
        match p.strip_prefix("min ").and_then(|n| n.trim().parse().ok()) {
            Some(n) => min = n,
            None => fail(&format!("glsl/{}: unknown subgroup qualifier {p:?} (expected `min N`)", v.file)),
        }
    }
    if !line.contains('—') {
        fail(&format!("glsl/{}: the `// Subgroup:` line gives no reason after `—`", v.file));
    }
    SubgroupHeader { class, min }
}

fn reflect(name: &str, words: &[u32]) -> Interface {
    use rspirv::dr::Operand;
    use rspirv::spirv::{Decoration, Op, StorageClass};
    let m =
        rspirv::dr::load_words(words).unwrap_or_else(|e| fail(&format!("{name}: rspirv cannot parse the module: {e}")));
    let mut binding = BTreeMap::new();
    let mut set = BTreeMap::new();
    let mut nonwritable = BTreeMap::new();
    let mut member_nonwritable: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut nonreadable = BTreeMap::new();
    let mut member_nonreadable: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut member_offset: BTreeMap<(u32, u32), u32> = BTreeMap::new();
    let mut array_stride = BTreeMap::new();
    for a in &m.annotations {
        let target = match a.operands.first() {
            Some(Operand::IdRef(t)) => *t,
            _ => continue,
        };
        match (a.class.opcode, a.operands.get(1), a.operands.get(2), a.operands.get(3)) {
            (Op::Decorate, Some(Operand::Decoration(Decoration::Binding)), Some(Operand::LiteralBit32(b)), _) => {
                binding.insert(target, *b);
            }
            (Op::Decorate, Some(Operand::Decoration(Decoration::DescriptorSet)), Some(Operand::LiteralBit32(s)), _) => {
                set.insert(target, *s);
            }
            (Op::Decorate, Some(Operand::Decoration(Decoration::NonWritable)), _, _) => {
                nonwritable.insert(target, ());
            }
            (Op::Decorate, Some(Operand::Decoration(Decoration::NonReadable)), _, _) => {
                nonreadable.insert(target, ());
            }
            (Op::Decorate, Some(Operand::Decoration(Decoration::ArrayStride)), Some(Operand::LiteralBit32(s)), _) => {
                array_stride.insert(target, *s);
            }
            (
                Op::MemberDecorate,
                Some(Operand::LiteralBit32(mi)),
                Some(Operand::Decoration(Decoration::NonWritable)),
                _,
            ) => {
                member_nonwritable.entry(target).or_default().push(*mi);
            }
            (
                Op::MemberDecorate,
                Some(Operand::LiteralBit32(mi)),
                Some(Operand::Decoration(Decoration::NonReadable)),
                _,
            ) => {
                member_nonreadable.entry(target).or_default().push(*mi);
            }
            (
                Op::MemberDecorate,
                Some(Operand::LiteralBit32(mi)),
                Some(Operand::Decoration(Decoration::Offset)),
                Some(Operand::LiteralBit32(off)),
            ) => {
                member_offset.insert((target, *mi), *off);
            }
            _ => {}
        }
    }
    // Type table: id -> instruction.
    let mut types = BTreeMap::new();
    for t in &m.types_global_values {
        if let Some(id) = t.result_id {
            types.insert(id, t.clone());
        }
    }
    let pointee = |ptr_ty: u32| -> u32 {
        match types.get(&ptr_ty).map(|i| (i.class.opcode, i.operands.get(1))) {
            Some((Op::TypePointer, Some(Operand::IdRef(p)))) => *p,
            _ => fail(&format!("{name}: variable type %{ptr_ty} is not a pointer")),
        }
    };
    fn size_of(name: &str, types: &BTreeMap<u32, rspirv::dr::Instruction>, id: u32) -> u32 {
        use rspirv::dr::Operand;
        use rspirv::spirv::Op;
        let i = &types[&id];
        match i.class.opcode {
            Op::TypeInt | Op::TypeFloat => match i.operands.first() {
                Some(Operand::LiteralBit32(w)) => w / 8,
                _ => fail(&format!("{name}: malformed scalar type")),
            },
            Op::TypeVector => match (i.operands.first(), i.operands.get(1)) {
                (Some(Operand::IdRef(c)), Some(Operand::LiteralBit32(n))) => size_of(name, types, *c) * n,
                _ => fail(&format!("{name}: malformed vector type")),
            },
            op => {
                fail(&format!("{name}: push-constant member of type {op:?} is not supported (use scalars and vectors)"))
            }
        }
    }
    let mut member_name: BTreeMap<(u32, u32), String> = BTreeMap::new();
    for d in &m.debug_names {
        if let (
            Op::MemberName,
            Some(Operand::IdRef(t)),
            Some(Operand::LiteralBit32(mi)),
            Some(Operand::LiteralString(n)),
        ) = (d.class.opcode, d.operands.first(), d.operands.get(1), d.operands.get(2))
        {
            member_name.insert((*t, *mi), n.clone());
        }
    }
    let mut bindings: BTreeMap<u32, (bool, bool)> = BTreeMap::new();
    let mut push_size = 0u32;
    let mut push = Vec::new();
    for g in &m.types_global_values {
        if g.class.opcode != Op::Variable {
            continue;
        }
        let id = g.result_id.unwrap_or(0);
        let sc = match g.operands.first() {
            Some(Operand::StorageClass(sc)) => *sc,
            _ => continue,
        };
        let ty = g.result_type.unwrap_or(0);
        match sc {
            StorageClass::StorageBuffer => {
                let s = set.get(&id).copied().unwrap_or(0);
                if s != 0 {
                    fail(&format!("{name}: storage buffer in descriptor set {s}; only set 0 is supported"));
                }
                let b = *binding.get(&id).unwrap_or_else(|| fail(&format!("{name}: storage buffer without a binding")));
                let block = pointee(ty);
                let members = match types.get(&block) {
                    Some(i) if i.class.opcode == Op::TypeStruct => i.operands.len() as u32,
                    _ => 0,
                };
                let all = |per_member: &BTreeMap<u32, Vec<u32>>| {
                    members > 0 && per_member.get(&block).map(|v| v.len() as u32 == members).unwrap_or(false)
                };
                let ro = nonwritable.contains_key(&id) || all(&member_nonwritable);
                let wo = nonreadable.contains_key(&id) || all(&member_nonreadable);
                if ro && wo {
                    fail(&format!("{name}: binding {b} is declared neither read nor written"));
                }
                if bindings.insert(b, (ro, wo)).is_some() {
                    fail(&format!("{name}: binding {b} declared twice"));
                }
            }
            StorageClass::PushConstant => {
                let block = pointee(ty);
                let st = &types[&block];
                for (mi, op) in st.operands.iter().enumerate() {
                    let Operand::IdRef(mt) = op else { continue };
                    let off = member_offset.get(&(block, mi as u32)).copied().unwrap_or(0);
                    let width = size_of(name, &types, *mt);
                    push_size = push_size.max(off + width);
                    let member = member_name.get(&(block, mi as u32)).cloned().unwrap_or_default();
                    push.push(PushMember { offset: off, width, name: member });
                }
            }
            StorageClass::Uniform | StorageClass::UniformConstant => {
                fail(&format!("{name}: uniform buffers/images are not supported; use storage buffers"))
            }
            _ => {}
        }
    }
    let _ = array_stride;
    for (i, b) in bindings.keys().enumerate() {
        if *b != i as u32 {
            fail(&format!(
                "{name}: bindings must be 0..n without gaps (found {:?})",
                bindings.keys().collect::<Vec<_>>()
            ));
        }
    }
    if push_size > MAX_PUSH {
        fail(&format!(
            "{name}: push constants are {push_size} bytes; at most {MAX_PUSH} (lavapipe's limit) are allowed"
        ));
    }
    let uses_subgroup = subgroup_use(&m);
    let local_size = local_size(name, &m, &types);
    Interface { access: bindings.values().copied().collect(), push_size, push, uses_subgroup, local_size }
}

/// Whether the module runs a subgroup operation or reads a subgroup builtin in its entry point.
fn subgroup_use(m: &rspirv::dr::Module) -> bool {
    use rspirv::dr::Operand;
    use rspirv::spirv::{BuiltIn, Decoration, Op};
    let ops = m.functions.iter().flat_map(|f| f.blocks.iter()).flat_map(|b| b.instructions.iter());
    if ops.map(|i| format!("{:?}", i.class.opcode)).any(|n| n.starts_with("GroupNonUniform")) {
        return true;
    }
    let subgroup_builtins: Vec<u32> = m
        .annotations
        .iter()
        .filter(|a| a.class.opcode == Op::Decorate)
        .filter_map(|a| match (a.operands.first(), a.operands.get(1), a.operands.get(2)) {
            (Some(Operand::IdRef(t)), Some(Operand::Decoration(Decoration::BuiltIn)), Some(Operand::BuiltIn(b)))
                if matches!(
                    b,
                    BuiltIn::SubgroupSize
                        | BuiltIn::SubgroupLocalInvocationId
                        | BuiltIn::SubgroupId
                        | BuiltIn::NumSubgroups
                ) =>
            {
                Some(*t)
            }
            _ => None,
        })
        .collect();
    m.entry_points
        .iter()
        .flat_map(|e| e.operands.iter())
        .any(|o| matches!(o, Operand::IdRef(id) if subgroup_builtins.contains(id)))
}

/// The workgroup's x size: the WorkgroupSize built-in's (spec) constant, else the LocalSize mode.
fn local_size(name: &str, m: &rspirv::dr::Module, types: &BTreeMap<u32, rspirv::dr::Instruction>) -> LocalSize {
    use rspirv::dr::Operand;
    use rspirv::spirv::{BuiltIn, Decoration, ExecutionMode, Op};
    let decorated = |want: Decoration| -> BTreeMap<u32, Option<Operand>> {
        m.annotations
            .iter()
            .filter(|a| a.class.opcode == Op::Decorate && a.operands.get(1) == Some(&Operand::Decoration(want)))
            .filter_map(|a| match a.operands.first() {
                Some(Operand::IdRef(t)) => Some((*t, a.operands.get(2).cloned())),
                _ => None,
            })
            .collect()
    };
    let builtins = decorated(Decoration::BuiltIn);
    let spec_ids = decorated(Decoration::SpecId);
    let wgs = builtins.iter().find(|(_, b)| *b == &Some(Operand::BuiltIn(BuiltIn::WorkgroupSize))).map(|(t, _)| *t);
    let literal = |id: u32| match types.get(&id).and_then(|i| i.operands.first()) {
        Some(Operand::LiteralBit32(v)) => *v,
        _ => fail(&format!("{name}: workgroup size component %{id} is not a 32-bit constant")),
    };
    if let Some(composite) = wgs.and_then(|id| types.get(&id)) {
        let Some(Operand::IdRef(x)) = composite.operands.first() else {
            fail(&format!("{name}: malformed WorkgroupSize constant"))
        };
        return match spec_ids.get(x) {
            Some(Some(Operand::LiteralBit32(id))) => LocalSize::Spec { id: *id, default: literal(*x) },
            _ => LocalSize::Fixed(literal(*x)),
        };
    }
    for e in &m.execution_modes {
        if let (Some(Operand::ExecutionMode(ExecutionMode::LocalSize)), Some(Operand::LiteralBit32(x))) =
            (e.operands.get(1), e.operands.get(2))
        {
            return LocalSize::Fixed(*x);
        }
    }
    fail(&format!("{name}: no workgroup size found"))
}
