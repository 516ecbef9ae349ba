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
