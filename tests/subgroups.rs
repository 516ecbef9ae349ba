//! The subgroup self-check: its host-side rules on recorded builtins (a consistent wave64 device,
//! lavapipe's 16-lane subgroups that say 64), the probe on this device, lavapipe at each
//! `LP_NATIVE_VECTOR_WIDTH` in child processes, and kernels built at a required subgroup size.

mod common;

use common::{assert_clean, gpu, kernels};
use qwen3_omni_vk::reference::{self as r, Rng};
use qwen3_omni_vk::subgroups::{check_run, ReportedSizes};
use qwen3_omni_vk::vk_runtime::MemoryIntent;
use qwen3_omni_vk::{KernelOptions, Kernels, Matrix, MatvecPath, WType};

/// Records as `subgroup_probe.comp` writes them for a device whose subgroups are `real` lanes wide
/// while `gl_SubgroupSize` says `said`.
fn records(wg: u32, said: u32, real: u32) -> Vec<u32> {
    (0..wg)
        .flat_map(|i| {
            let (g, lane) = (i / real, i % real);
            let n = wg.div_ceil(real);
            [said, real.min(wg - g * real), lane, g, n, real.min(wg - g * real), 0, i]
        })
        .collect()
}

const WAVE64: ReportedSizes = ReportedSizes { size: 64, min: 32, max: 64, size_control: true };

#[test]
fn consistent_builtins_pass() {
    for (sizes, wg, req, sg) in [
        (WAVE64, 128, None, 64),
        (WAVE64, 128, Some(32), 32),
        (WAVE64, 256, Some(64), 64),
        (ReportedSizes { size: 8, min: 8, max: 8, size_control: true }, 64, None, 8),
        (ReportedSizes { size: 4, min: 4, max: 4, size_control: false }, 1024, None, 4),
        (ReportedSizes { size: 32, min: 32, max: 32, size_control: true }, 96, None, 32),
    ] {
        let run = check_run(&sizes, wg, req, &records(wg, sg, sg));
        assert!(run.problems.is_empty(), "{sizes:?} wg {wg} at {sg}: {:?}", run.problems);
        assert_eq!((run.size, run.active, run.lanes, run.num_subgroups), (sg, sg, sg, wg.div_ceil(sg)));
    }
}

#[test]
fn lavapipe_wide_builtins_are_caught() {
    // LP_NATIVE_VECTOR_WIDTH=2048: gl_SubgroupSize 64, but subgroupAdd(1) is 16, lanes 0..15,
    // gl_SubgroupID steps every 16 invocations and gl_NumSubgroups is WG / 16.
    let lp64 = ReportedSizes { size: 64, min: 64, max: 64, size_control: true };
    let run = check_run(&lp64, 128, None, &records(128, 64, 16));
    let all = run.problems.join("; ");
    assert!(all.contains("subgroupAdd(1) is 16, not gl_SubgroupSize 64"), "{all}");
    assert!(all.contains("gl_SubgroupInvocationID runs 0..15, not 0..63"), "{all}");
    assert!(all.contains("gl_NumSubgroups is 8, not 128 / 64 = 2"), "{all}");
    let lp32 = ReportedSizes { size: 32, min: 32, max: 32, size_control: true };
    assert!(!check_run(&lp32, 64, None, &records(64, 32, 16)).problems.is_empty());
}

#[test]
fn other_disagreements_are_caught() {
    // A required size the pipeline did not get.
    let run = check_run(&WAVE64, 128, Some(32), &records(128, 64, 64));
    assert!(run.problems.iter().any(|p| p.contains("not the required 32")), "{:?}", run.problems);
    // A size outside the reported range.
    let run = check_run(&WAVE64, 128, None, &records(128, 16, 16));
    assert!(run.problems.iter().any(|p| p.contains("outside the reported range")), "{:?}", run.problems);
    // No size control: kernels must see the reported size.
    let fixed = ReportedSizes { size: 64, min: 64, max: 64, size_control: false };
    assert!(check_run(&fixed, 128, None, &records(128, 32, 32)).problems.iter().any(|p| p.contains("reports")));
    // Two invocations claiming one lane; a record missing.
    let mut w = records(64, 32, 32);
    w[8 + 2] = 0;
    assert!(check_run(&WAVE64, 64, None, &w).problems.iter().any(|p| p.contains("pairs")));
    let run = check_run(&WAVE64, 64, None, &records(64, 32, 32)[..8 * 63]);
    assert!(run.problems.iter().any(|p| p.contains("63 of 64 records")), "{:?}", run.problems);
}

#[test]
fn probe_is_consistent_on_this_device() {
    let k = kernels();
    let rep = k.subgroup_check().unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", rep.summary());
    let caps = k.gpu().caps();
    assert!(rep.ok() && !rep.runs.is_empty());
    for run in &rep.runs {
        assert!(run.size >= caps.min_subgroup_size && run.size <= caps.max_subgroup_size, "{run:?}");
        if let Some(req) = run.required {
            assert_eq!(run.size, req);
        }
    }
    assert_eq!(rep.runs.iter().any(|r| r.required.is_some()), caps.subgroup_size_control);
    assert_clean(k.gpu());
}

/// The child of `lavapipe_widths`: prints the self-check's verdict on the device it gets.
#[test]
#[ignore = "run by lavapipe_widths in a child process with LP_NATIVE_VECTOR_WIDTH set"]
fn probe_child() {
    let k = Kernels::new(gpu());
    match k.subgroup_check() {
        Ok(rep) => println!("PROBE-OK {} {}", k.gpu().caps().subgroup_size, rep.summary().replace('\n', " | ")),
        Err(e) => println!("PROBE-REFUSED {e}"),
    }
    // A refused device builds no subgroup kernel, but the subgroup-free ones still run.
    let x = k.gpu().buffer_from("x", &[1.0f32; 64], MemoryIntent::Upload).unwrap();
    let y = k.gpu().buffer("y", 256, MemoryIntent::Readback).unwrap();
    let mut rec = k.gpu().recorder(false).unwrap();
    match k.rms_norm(&mut rec, &x, &x, &y, 64, 1, 1e-6) {
        Ok(()) => println!("RMSNORM built"),
        Err(e) => println!("RMSNORM refused: {e}"),
    }
    drop(rec);
    let mut rec = k.gpu().recorder(false).unwrap();
    k.add(&mut rec, &x, &x, &y, 64, 64).unwrap();
    rec.submit().unwrap();
    let sum: Vec<f32> = y.read_vec().unwrap();
    assert!(sum[..64].iter().all(|&v| v == 2.0), "the subgroup-free add ran wrong: {:?}", &sum[..4]);
    assert_clean(k.gpu());
}

#[test]
fn lavapipe_widths() {
    let name = gpu().caps().name.clone();
    assert!(
        name.contains("llvmpipe"),
        "this test drives lavapipe's LP_NATIVE_VECTOR_WIDTH; the device here is {name} (skip it with --skip lavapipe_widths)"
    );
    let exe = std::env::current_exe().unwrap();
    for (width, want) in [(128, Some(4)), (256, Some(8)), (512, Some(16)), (1024, None), (2048, None)] {
        let out = std::process::Command::new(&exe)
            .args(["--exact", "probe_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env("LP_NATIVE_VECTOR_WIDTH", width.to_string())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "width {width}: child failed:\n{text}");
        match want {
            Some(sg) => {
                assert!(text.contains(&format!("PROBE-OK {sg} ")), "width {width}: expected subgroup {sg}:\n{text}");
                assert!(text.contains("RMSNORM built"), "{text}");
            }
            None => {
                let line = text.lines().find(|l| l.contains("PROBE-REFUSED")).unwrap_or_else(|| {
                    panic!("width {width}: lavapipe's inconsistent subgroups were not refused:\n{text}")
                });
                eprintln!("width {width}: {line}");
                assert!(line.contains("llvmpipe") && line.contains("subgroupAdd(1) is 16"), "{line}");
                assert!(text.contains("RMSNORM refused") && text.contains("subgroup self-check failed"), "{text}");
            }
        }
    }
}

#[test]
fn required_subgroup_sizes_run_the_kernels() {
    let g = gpu();
    let caps = g.caps().clone();
    let bad = caps.max_subgroup_size * 2;
    let e = Kernels::with_options(g.clone(), KernelOptions { subgroup_size: Some(bad), ..Default::default() })
        .err()
        .expect("refused");
    assert!(e.to_string().contains(&format!("subgroup size {bad}")), "{e}");
    assert!(caps.subgroup_size_control, "{}: no subgroup size control; lavapipe and every target have it", caps.name);
    let mut sizes = vec![];
    let mut s = caps.min_subgroup_size.next_power_of_two();
    while s <= caps.max_subgroup_size {
        sizes.push(s);
        s *= 2;
    }
    let (rows, cols) = (37usize, 1024usize);
    let mut rng = Rng::new(5);
    let w = rng.vec(rows * cols, 1.0);
    let x = rng.vec(cols, 1.0);
    let (bytes, deq) = r::quantize_matrix_q8_0(&w, cols);
    let planar = qwen3_omni_vk::layout::repack_q8_0_planar(&bytes, rows, cols).unwrap();
    let want = r::matvec(&deq, &x, rows, cols);
    let want_q = r::matvec(&deq, &r::q8_1_roundtrip(&x), rows, cols);
    for sg in sizes {
        let mut k =
            Kernels::with_options(g.clone(), KernelOptions { subgroup_size: Some(sg), ..Default::default() }).unwrap();
        assert_eq!(k.options().subgroup_size, Some(sg));
        let wb = g.buffer_from("w", &planar, MemoryIntent::Weights).unwrap();
        let xb = g.buffer_from("x", &x, MemoryIntent::Upload).unwrap();
        let yb = g.buffer("y", rows as u64 * 4, MemoryIntent::Readback).unwrap();
        let nb = g.buffer("n", cols as u64 * 4, MemoryIntent::Readback).unwrap();
        let sc = k.q8_1_scratch(cols as u64).unwrap();
        for path in [MatvecPath::Float, MatvecPath::IntDot] {
            k.set_matvec_path(path).unwrap();
            let mut rec = g.recorder(false).unwrap();
            let m = Matrix::new(&wb, WType::Q8_0Planar, rows as u32, cols as u32);
            k.matvec(&mut rec, m, &xb, &yb, Some(&sc)).unwrap();
            rec.submit().unwrap();
            let y: Vec<f32> = yb.read_vec().unwrap();
            let e = r::rel_l2(&y, if path == MatvecPath::Float { &want } else { &want_q });
            assert!(e <= 1e-5, "subgroup {sg}, {path:?}: relative error {e:e}");
        }
        let mut rec = g.recorder(false).unwrap();
        k.rms_norm(&mut rec, &xb, &xb, &nb, cols as u32, 1, 1e-6).unwrap();
        rec.submit().unwrap();
        let got: Vec<f32> = nb.read_vec().unwrap();
        let e = r::rel_l2(&got, &r::rms_norm(&x, &x, cols, 1e-6));
        assert!(e <= 1e-5, "subgroup {sg}: RMSNorm relative error {e:e}");
    }
    assert_clean(&g);
}

#[test]
fn kernels_md_states_every_files_subgroup_class() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/kernels.md")).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(root.join("glsl"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".comp"))
        .collect();
    files.sort();
    for f in files {
        let src = std::fs::read_to_string(root.join("glsl").join(&f)).unwrap();
        let line = src.lines().find_map(|l| l.strip_prefix("// Subgroup: ")).unwrap();
        let class = line.split(" — ").next().unwrap();
        let row = format!("| `{f}` | {class} |");
        assert!(doc.contains(&row), "docs/kernels.md has no row `{row}` (the header of glsl/{f} says {class})");
    }
}
