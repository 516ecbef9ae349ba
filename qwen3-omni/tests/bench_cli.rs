//! `qwen3-omni-vk bench-thinker --variants` on the tiny fixture model (lavapipe): every variant is
//! timed in both passes, and a malformed list is refused before the model is loaded.

mod common;

use std::path::Path;
use std::process::Command;

fn bench(model: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk"))
        .args(["bench-thinker", "-m"])
        .arg(model)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bench_variants_time_each_setting_twice() {
    let (dir, model) = common::tiny_gguf("bench", "variants");
    let v = "QWEN3VK_ATTN_PROLOGUE=1;QWEN3VK_FUSED_WG=64,QWEN3VK_MV_ROWS=1";
    let (ok, out, err) = bench(&model, &["--ctx", "16", "-n", "2", "--prefill", "0", "--variants", v]);
    let _ = std::fs::remove_dir_all(dir);
    assert!(ok, "bench-thinker failed: {err}\n{out}");
    for name in ["(defaults)", "QWEN3VK_ATTN_PROLOGUE=1", "QWEN3VK_FUSED_WG=64 QWEN3VK_MV_ROWS=1"] {
        for pass in 0..2 {
            let line = format!("variant pass {pass}, context 16: {name}: ");
            let rate = out
                .lines()
                .find_map(|l| l.trim().strip_prefix(&line))
                .unwrap_or_else(|| panic!("no line '{line}' in:\n{out}"));
            let tps: f64 = rate.split(' ').next().unwrap().parse().unwrap();
            assert!(tps > 0.0, "{line}{rate}");
        }
    }
}

/// `--cache-type` picks the KV cache's element type (f16 by default), which the output names; a
/// name that is not a cache type is refused before anything loads.
#[test]
fn bench_cache_type_is_chosen_and_reported() {
    let (dir, model) = common::tiny_gguf("bench", "cache-type");
    for (flag, name) in [(None, "f16"), (Some("f32"), "f32"), (Some("F16"), "f16")] {
        let mut args = vec!["--ctx", "16", "-n", "2", "--prefill", "0"];
        if let Some(f) = flag {
            args.extend(["--cache-type", f]);
        }
        let (ok, out, err) = bench(&model, &args);
        assert!(ok, "bench-thinker {args:?} failed: {err}\n{out}");
        assert!(out.contains(&format!("· KV cache {name} ·")), "{args:?}: no cache type in:\n{out}");
        assert!(out.contains(&format!("KV cache: {name} (")), "{args:?}: no cache line in:\n{out}");
        assert!(out.contains("MB/token"), "{args:?}: no KV bytes per token in:\n{out}");
    }
    let (ok, _, err) = bench(&model, &["--ctx", "16", "--cache-type", "q4_0"]);
    let _ = std::fs::remove_dir_all(dir);
    assert!(!ok && err.contains("not a KV cache type"), "{err}");
}

#[test]
fn bench_variants_malformed_is_refused_before_loading() {
    // No such file: a list that parsed would fail on the model instead.
    let model = Path::new("/nonexistent/model.gguf");
    for bad in ["QWEN3VK_FUSED_WG", "=3", "A B=1"] {
        let (ok, out, err) = bench(model, &["--ctx", "16", "-n", "2", "--prefill", "0", "--variants", bad]);
        assert!(!ok, "'{bad}' was accepted");
        assert!(err.contains("--variants"), "'{bad}': {err}");
        assert!(!out.contains("device:"), "'{bad}': the model was loaded first:\n{out}");
    }
}

#[test]
fn bench_clock_marks_report_every_instrumented_kernel() {
    // lavapipe has VK_KHR_shader_clock; the tiny model runs the float path, whose attention and
    // merge kernels have `_clk` variants.
    let (dir, model) = common::tiny_gguf("bench", "clocks");
    let out = Command::new(env!("CARGO_BIN_EXE_qwen3-omni-vk"))
        .args(["bench-thinker", "-m"])
        .arg(&model)
        .args(["--ctx", "16", "-n", "2", "--prefill", "0"])
        .env("QWEN3VK_CLOCKS", "1")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "bench-thinker failed: {stderr}\n{stdout}");
    assert!(
        !stdout.contains("no VK_KHR_shader_clock"),
        "the device has no VK_KHR_shader_clock, so the clock marks cannot be checked:\n{stdout}"
    );
    assert!(stdout.contains("clock marks, one decode step"), "{stdout}");
    // The default KV cache is f16: its attention kernel's `_clk` copy.
    for kernel in ["attn_decode_gqa_dyn_f16_clk", "attn_reduce_dyn_f32_clk"] {
        let row = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(kernel))
            .unwrap_or_else(|| panic!("no {kernel} row:\n{stdout}"));
        let cols: Vec<f64> = row.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect();
        // n, gap, spread, prologue, main, epilogue, span: at least one dispatch, a positive span.
        assert!(cols.len() == 7 && cols[0] >= 1.0 && cols[6] > 0.0, "{row}");
    }
}
