//! The Vulkan runtime: validation as an oracle, device choice, memory intents, limits, barriers,
//! profiling, descriptor paths, the pipeline cache, and a missing driver.

mod common;

use common::{assert_clean, gpu, options};
use qwen3_omni_vk::reference::Rng;
use qwen3_omni_vk::vk_runtime::{self, vk, Error, Gpu, GpuOptions, MemoryIntent};
use qwen3_omni_vk::{Kernels, Matrix, MatvecPath, WType};

#[test]
fn validation_layer_is_really_active() {
    let g = gpu();
    let v = g.validation().expect("validation requested");
    assert_eq!(v.total(), 0);
    // A buffer with no usage flags violates VUID-VkBufferCreateInfo-usage-requiredbitmask.
    let info = vk::BufferCreateInfo::default().size(64).usage(vk::BufferUsageFlags::empty());
    // SAFETY: deliberately invalid create info; the layer reports it and the driver tolerates it.
    unsafe {
        if let Ok(b) = g.raw_device().create_buffer(&info, None) {
            g.raw_device().destroy_buffer(b, None);
        }
    }
    assert!(v.errors() >= 1, "the validation layer did not catch a buffer without usage flags");
    assert!(v.first_messages().iter().any(|m| m.contains("usage")), "{:?}", v.first_messages());
}

#[test]
fn devices_are_listed_and_one_is_chosen() {
    let (list, choice) = vk_runtime::list_devices(None).unwrap();
    assert!(!list.is_empty());
    let i = choice.unwrap();
    let c = &list[i].caps;
    assert!(list[i].unsuitable.is_none());
    assert!(c.subgroup_size >= 1 && c.max_storage_buffer_range > 0 && c.max_push_constants >= 128);
    assert!(!c.heaps.is_empty() && !c.memory_types.is_empty());
    let text = c.to_string();
    assert!(text.contains("maxStorageBufferRange") && text.contains("int8 dot product"), "{text}");
    // An index that does not exist is an error that names the count.
    let e = Gpu::new(&GpuOptions { device: Some(99), ..options() }).err().expect("device 99 must not exist");
    assert!(matches!(e, Error::DeviceIndex { index: 99, .. }), "{e}");
}

#[test]
fn limits_are_errors_not_panics() {
    let g = gpu();
    let c = g.caps().clone();
    // Beyond the heap (or the allocation / buffer-size limits before it).
    let e = g.buffer("huge", 1 << 52, MemoryIntent::Weights).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("huge"), "{e}");
    let e = g.buffer("empty", 0, MemoryIntent::Scratch).unwrap_err();
    assert!(matches!(e, Error::ZeroSize { .. }), "{e}");
    // A binding beyond maxStorageBufferRange.
    let k = Kernels::new(g.clone());
    let big = c.max_storage_buffer_range + 1024;
    if big <= c.max_memory_allocation_size {
        let src = g.buffer("too wide", big, MemoryIntent::Scratch).unwrap();
        let dst = g.buffer("dst", big, MemoryIntent::Scratch).unwrap();
        let mut rec = g.recorder(false).unwrap();
        let e = k.stream_copy(&mut rec, &src, &dst, big / 16 * 16).unwrap_err();
        assert!(matches!(e, Error::BindingRange { .. }), "{e}");
        assert!(e.to_string().contains("maxStorageBufferRange"), "{e}");
    }
    // Reads and writes outside a buffer.
    let b = g.buffer("small", 16, MemoryIntent::Upload).unwrap();
    assert!(matches!(b.write(8, &[0u8; 16]).unwrap_err(), Error::OutOfBounds { .. }));
    assert!(matches!(b.read(0, &mut [0u8; 17]).unwrap_err(), Error::OutOfBounds { .. }));
    assert_clean(&g);
}

#[test]
fn staging_and_pooled_descriptors_give_the_same_results() {
    let mut rng = Rng::new(5);
    let (rows, cols) = (77usize, 256usize);
    let w = rng.vec(rows * cols, 1.0);
    let x = rng.vec(cols, 1.0);
    let (bytes, _) = qwen3_omni_vk::reference::quantize_matrix_q8_0(&w, cols);
    let bytes = qwen3_omni_vk::layout::repack_q8_0_planar(&bytes, rows, cols).unwrap();
    let mut results = Vec::new();
    for (staging, pooled) in [(false, false), (true, false), (false, true), (true, true)] {
        let g = Gpu::new(&GpuOptions { force_staging: staging, no_push_descriptors: pooled, ..options() }).unwrap();
        assert_eq!(g.uses_push_descriptors(), !pooled && g.caps().push_descriptor);
        let mut k = Kernels::new(g.clone());
        k.set_matvec_path(MatvecPath::Float).unwrap();
        let wb = g.buffer_from("w", &bytes, MemoryIntent::Weights).unwrap();
        assert_eq!(wb.is_host_mapped(), !staging && g.caps().direct_weight_writes());
        let xb = g.buffer_from("x", &x, MemoryIntent::Scratch).unwrap();
        let yb = g.buffer("y", rows as u64 * 4, MemoryIntent::Scratch).unwrap();
        let mut rec = g.recorder(false).unwrap();
        for _ in 0..3 {
            k.matvec(&mut rec, Matrix::new(&wb, WType::Q8_0Planar, rows as u32, cols as u32), &xb, &yb, None).unwrap();
        }
        rec.submit().unwrap();
        // Round trip of the weights through whichever path.
        let mut back = vec![0u8; bytes.len()];
        wb.read(0, &mut back).unwrap();
        assert_eq!(back, bytes);
        results.push(yb.read_vec::<f32>().unwrap());
        assert_clean(&g);
    }
    for r in &results[1..] {
        assert_eq!(r, &results[0]);
    }
}

#[test]
fn barriers_only_on_hazards_and_batches_replay() {
    let g = gpu();
    let k = Kernels::new(g.clone());
    let n = 4096u64;
    let a = g.buffer_from("a", &Rng::new(1).vec(n as usize, 1.0), MemoryIntent::Upload).unwrap();
    let b = g.buffer_from("b", &Rng::new(2).vec(n as usize, 1.0), MemoryIntent::Upload).unwrap();
    let t1 = g.buffer("t1", n * 4, MemoryIntent::Scratch).unwrap();
    let t2 = g.buffer("t2", n * 4, MemoryIntent::Scratch).unwrap();
    let out = g.buffer("out", n * 4, MemoryIntent::Readback).unwrap();
    let mut rec = g.recorder(false).unwrap();
    k.add(&mut rec, &a, &b, &t1, n, n).unwrap(); // writes t1
    k.mul(&mut rec, &a, &b, &t2, n, n).unwrap(); // independent: no barrier
    k.add(&mut rec, &t1, &t2, &out, n, n).unwrap(); // reads both: one barrier
    k.mul(&mut rec, &a, &a, &t1, n, n).unwrap(); // rewrites t1 after a read of it: one barrier
    let mut batch = rec.finish().unwrap();
    assert_eq!(batch.dispatches(), 4);
    assert_eq!(batch.barriers(), 2);
    let p1 = batch.submit().unwrap();
    let first: Vec<f32> = out.read_vec().unwrap();
    let p2 = batch.submit().unwrap();
    assert_eq!(out.read_vec::<f32>().unwrap(), first);
    let (av, bv): (Vec<f32>, Vec<f32>) = (a.read_vec().unwrap(), b.read_vec().unwrap());
    for i in 0..n as usize {
        assert_eq!(first[i], (av[i] + bv[i]) + av[i] * bv[i]);
    }
    if g.caps().timestamp_valid_bits > 0 {
        assert!(p1.total_ns.unwrap() > 0.0 && p2.total_ns.unwrap() > 0.0);
    }
    drop(batch);
    assert_clean(&g);
}

/// Barriers between dispatches are compute-to-compute; a copy must still be ordered after a
/// dispatch that wrote its source before such a barrier (and a dispatch after a copy that wrote its
/// input). tools/test.sh runs the suite with synchronization validation, which reports a missing
/// dependency here as a hazard.
#[test]
fn copies_are_ordered_across_compute_only_barriers() {
    let g = gpu();
    let k = Kernels::new(g.clone());
    let n = 1024u64;
    let a = g.buffer_from("a", &Rng::new(3).vec(n as usize, 1.0), MemoryIntent::Upload).unwrap();
    let x = g.buffer("x", n * 4, MemoryIntent::Scratch).unwrap();
    let y = g.buffer("y", n * 4, MemoryIntent::Scratch).unwrap();
    let z = g.buffer("z", n * 4, MemoryIntent::Scratch).unwrap();
    let w = g.buffer("w", n * 4, MemoryIntent::Readback).unwrap();
    let out = g.buffer("out", n * 4, MemoryIntent::Readback).unwrap();
    let mut rec = g.recorder(false).unwrap();
    k.add(&mut rec, &a, &a, &x, n, n).unwrap(); // x = 2a
    k.add(&mut rec, &a, &a, &y, n, n).unwrap(); // y = 2a (independent)
    k.mul(&mut rec, &y, &y, &z, n, n).unwrap(); // reads y: a compute-to-compute barrier
    rec.copy(&x, 0, &w, 0, n * 4).unwrap(); // reads x, written before that barrier
    k.add(&mut rec, &w, &z, &out, n, n).unwrap(); // reads the copy's output
    rec.submit().unwrap();
    let av: Vec<f32> = a.read_vec().unwrap();
    let got: Vec<f32> = out.read_vec().unwrap();
    for i in 0..n as usize {
        let t = av[i] + av[i];
        assert_eq!(got[i], t + t * t, "element {i}");
    }
    assert_clean(&g);
}

#[test]
fn profile_mode_names_and_times_each_dispatch() {
    let g = gpu();
    let k = Kernels::new(g.clone());
    let n = 1 << 16;
    let x = g.buffer_from("x", &Rng::new(3).vec(n, 1.0), MemoryIntent::Upload).unwrap();
    let w = g.buffer_from("w", &Rng::new(4).vec(256, 1.0), MemoryIntent::Weights).unwrap();
    let y = g.buffer("y", n as u64 * 4, MemoryIntent::Scratch).unwrap();
    let z = g.buffer("z", n as u64 * 4, MemoryIntent::Scratch).unwrap();
    let mut rec = g.recorder(true).unwrap();
    k.rms_norm(&mut rec, &x, &w, &y, 256, (n / 256) as u32, 1e-6).unwrap();
    k.softmax(&mut rec, &y, &z, 256, (n / 256) as u32, 1.0).unwrap();
    let p = rec.submit().unwrap();
    if g.caps().timestamp_valid_bits > 0 {
        let names: Vec<&str> = p.kernels.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["rms_norm_f32", "softmax_f32"]);
        assert!(p.kernels.iter().all(|t| t.ns > 0.0), "{:?}", p.kernels);
    }
    assert_clean(&g);
}

#[test]
fn pipeline_cache_is_written_at_teardown() {
    let dir = std::env::temp_dir().join(format!("qwen3vk-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let g = Gpu::new(&GpuOptions { pipeline_cache: Some(dir.clone()), ..options() }).unwrap();
        let k = Kernels::new(g.clone());
        let a = g.buffer_from("a", &[1.0f32; 64], MemoryIntent::Upload).unwrap();
        let y = g.buffer("y", 256, MemoryIntent::Scratch).unwrap();
        let mut rec = g.recorder(false).unwrap();
        k.add(&mut rec, &a, &a, &y, 64, 64).unwrap();
        rec.submit().unwrap();
        assert_clean(&g);
    }
    let files: Vec<_> = std::fs::read_dir(&dir).map(|d| d.filter_map(|e| e.ok()).collect()).unwrap_or_default();
    assert_eq!(files.len(), 1, "one cache file expected in {}", dir.display());
    // At least VkPipelineCacheHeaderVersionOne (lavapipe stores nothing past it).
    let data = std::fs::read(files[0].path()).unwrap();
    assert!(data.len() >= 32 && data[4..8] == 1u32.to_le_bytes(), "{} bytes", data.len());
    // A second open reads it back without complaint.
    let g = Gpu::new(&GpuOptions { pipeline_cache: Some(dir.clone()), ..options() }).unwrap();
    assert_clean(&g);
    drop(g);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn live_allocations_are_tracked_by_name() {
    let g = gpu();
    let before = g.live_allocations().len();
    let b = g.buffer("kv cache layer 3", 4096, MemoryIntent::Scratch).unwrap();
    let live = g.live_allocations();
    assert_eq!(live.len(), before + 1);
    assert!(live.iter().any(|a| a.name == "kv cache layer 3" && a.size == 4096 && a.intent == "scratch"));
    drop(b);
    assert_eq!(g.live_allocations().len(), before);
    assert_clean(&g);
}

/// Runs in a child process whose loader sees no driver (see `missing_driver_is_a_clear_error`,
/// which runs it with `--ignored`); ignored in the normal run, where a driver is present.
#[test]
#[ignore]
fn child_no_driver() {
    assert!(
        std::env::var_os("QWEN3VK_TEST_NO_DRIVER_CHILD").is_some(),
        "child_no_driver only runs inside missing_driver_is_a_clear_error's child process (no driver)"
    );
    let e = Gpu::new(&GpuOptions { validation: false, pipeline_cache: None, ..GpuOptions::default() })
        .err()
        .expect("no driver");
    let msg = e.to_string();
    assert!(matches!(e, Error::NoDevice), "{msg}");
    assert!(msg.contains("mesa-vulkan-drivers"), "{msg}");
}

#[test]
fn missing_driver_is_a_clear_error() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--exact", "child_no_driver", "--ignored", "--nocapture", "--test-threads=1"])
        .env("QWEN3VK_TEST_NO_DRIVER_CHILD", "1")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(text.contains("1 passed"), "the child test did not run:\n{text}");
}
