//! A quick check of the kernels on the chosen device against the CPU references, for
//! `qwen3-omni-vk devices --selftest`: each kernel's error and GPU time.

use std::fmt::Write as _;

use vk_runtime::{Gpu, MemoryIntent, Result};

use crate::reference::{self as r, Rng};
use crate::{Kernels, Matrix, MatvecPath, WType};

/// Runs the self-check; the report has one line per kernel.
pub fn run(o: &crate::EngineOptions) -> Result<String> {
    let gpu = Gpu::new(&o.gpu)?;
    let mut k = Kernels::from_engine(gpu.clone(), o)?;
    // The driver's subgroup builtins first: a device that fails is refused with its numbers.
    let mut out = k.subgroup_check()?.summary();
    let (rows, cols) = (512usize, 2048usize);
    let mut rng = Rng::new(7);
    let w = rng.vec(rows * cols, 1.0);
    let x = rng.vec(cols, 1.0);
    let (bytes, deq) = r::quantize_matrix_q8_0(&w, cols);
    // Planar Q8_0, as the model's weights are on the device.
    let bytes = crate::layout::repack_q8_0_planar(&bytes, rows, cols).map_err(vk_runtime::Error::Unsuitable)?;
    let want = r::matvec(&deq, &x, rows, cols);
    let wb = gpu.buffer_from("selftest weights", &bytes, MemoryIntent::Weights)?;
    let xb = gpu.buffer_from("selftest x", &x, MemoryIntent::Upload)?;
    let yb = gpu.buffer("selftest y", rows as u64 * 4, MemoryIntent::Readback)?;
    let s = k.q8_1_scratch(cols as u64)?;
    let mut paths = vec![MatvecPath::Float];
    if gpu.caps().int_dot {
        paths.push(MatvecPath::IntDot);
    }
    for p in paths {
        k.set_matvec_path(p)?;
        let mut rec = gpu.recorder(true)?;
        k.matvec(&mut rec, Matrix::new(&wb, WType::Q8_0Planar, rows as u32, cols as u32), &xb, &yb, Some(&s))?;
        let prof = rec.submit()?;
        let y: Vec<f32> = yb.read_vec()?;
        let us: f64 = prof.kernels.iter().map(|t| t.ns).sum::<f64>() / 1e3;
        writeln!(
            out,
            "planar Q8_0 matrix × vector {rows}×{cols} ({p:?}): relative error {:.2e}, GPU {us:.1} µs",
            r::rel_l2(&y, &want)
        )
        .ok();
    }
    let nb = gpu.buffer("selftest norm", cols as u64 * 4, MemoryIntent::Readback)?;
    let mut rec = gpu.recorder(true)?;
    k.rms_norm(&mut rec, &xb, &xb, &nb, cols as u32, 1, 1e-6)?;
    let prof = rec.submit()?;
    let got: Vec<f32> = nb.read_vec()?;
    writeln!(
        out,
        "RMSNorm {cols}: relative error {:.2e}, GPU {:.1} µs",
        r::rel_l2(&got, &r::rms_norm(&x, &x, cols, 1e-6)),
        prof.kernels.iter().map(|t| t.ns).sum::<f64>() / 1e3
    )
    .ok();
    Ok(out)
}
