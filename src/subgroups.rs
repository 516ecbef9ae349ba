//! The driver self-check of subgroups, run when [`crate::Kernels`] binds a device: a tiny probe
//! kernel (`glsl/subgroup_probe.comp`) records what each invocation's subgroup builtins say, at the
//! workgroup sizes the kernels use and at every subgroup size the device lets a pipeline require,
//! and the host checks that they agree with each other and with the device's reported sizes. A
//! device whose builtins disagree (lavapipe at `LP_NATIVE_VECTOR_WIDTH=1024 / 2048` reports
//! subgroups of 32 / 64 while they run 16 wide) is refused with the driver and the numbers: a
//! kernel that rightly strides by `gl_SubgroupSize` would silently skip data there.

use std::fmt::Write as _;

use vk_runtime::{Binding, Gpu, KernelSource, MemoryIntent, Result, SpecConst};

/// One probe dispatch: what its invocations saw.
#[derive(Debug, Clone)]
pub struct ProbeRun {
    /// Invocations per workgroup.
    pub wg: u32,
    /// The subgroup size the pipeline required (VK_EXT_subgroup_size_control), if any.
    pub required: Option<u32>,
    /// `gl_SubgroupSize` (the largest any invocation saw).
    pub size: u32,
    /// The smallest `subgroupAdd(1)`: the lanes that really run together.
    pub active: u32,
    /// The largest `gl_SubgroupInvocationID` + 1.
    pub lanes: u32,
    /// `gl_NumSubgroups` (the largest any invocation saw).
    pub num_subgroups: u32,
    /// The largest `gl_SubgroupID` + 1.
    pub ids: u32,
    /// What disagrees; empty when the run is consistent.
    pub problems: Vec<String>,
}

/// The self-check's result for one device.
#[derive(Debug, Clone)]
pub struct SubgroupReport {
    pub device: String,
    pub driver: String,
    /// `subgroupSize`, `minSubgroupSize`, `maxSubgroupSize` as the device reports them.
    pub reported: u32,
    pub min: u32,
    pub max: u32,
    pub runs: Vec<ProbeRun>,
}

impl SubgroupReport {
    pub fn ok(&self) -> bool {
        self.runs.iter().all(|r| r.problems.is_empty())
    }

    /// The refusal: the driver, the reported sizes and what each inconsistent run saw.
    pub fn refusal(&self) -> Option<String> {
        if self.ok() {
            return None;
        }
        let mut s = format!(
            "the subgroup self-check failed on {} (driver {}): the device reports subgroupSize {} (min {}, max {}), but",
            self.device, self.driver, self.reported, self.min, self.max
        );
        let bad: Vec<&ProbeRun> = self.runs.iter().filter(|r| !r.problems.is_empty()).collect();
        write!(s, " at {}: {}", bad[0].label(), bad[0].problems.join("; ")).ok();
        if bad.len() > 1 {
            let rest: Vec<String> = bad[1..].iter().map(|r| r.label()).collect();
            write!(s, " (and likewise at {})", rest.join(", ")).ok();
        }
        s.push_str(
            "; kernels that stride by gl_SubgroupSize would compute wrong results, so this device is refused \
             (lavapipe: LP_NATIVE_VECTOR_WIDTH of 1024 or more does this; use 128, 256 or 512)",
        );
        Some(s)
    }

    /// One line per run, for `devices --selftest`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "subgroup self-check: reported {} (min {}, max {}): {}\n",
            self.reported,
            self.min,
            self.max,
            if self.ok() { "consistent" } else { "INCONSISTENT, device refused" }
        );
        for r in &self.runs {
            writeln!(
                s,
                "  {}: gl_SubgroupSize {}, subgroupAdd(1) {}, lanes 0..{}, gl_NumSubgroups {} (ids 0..{}){}",
                r.label(),
                r.size,
                r.active,
                r.lanes.saturating_sub(1),
                r.num_subgroups,
                r.ids.saturating_sub(1),
                if r.problems.is_empty() { String::new() } else { format!(" — {}", r.problems.join("; ")) }
            )
            .ok();
        }
        s
    }
}

impl ProbeRun {
    fn label(&self) -> String {
        match self.required {
            Some(r) => format!("workgroup {} with required subgroup size {r}", self.wg),
            None => format!("workgroup {}", self.wg),
        }
    }
}

/// The probe's configurations: the kernels' workgroup sizes as the driver picks the subgroup
/// size, then (with subgroup size control) every power-of-two size the device allows, required.
fn configs(caps: &vk_runtime::Caps) -> Vec<(u32, Option<u32>)> {
    let maxwg = caps.max_workgroup_invocations.max(1);
    let mut v: Vec<(u32, Option<u32>)> = [64u32, 128, 256, 1024].iter().map(|&w| (w.min(maxwg), None)).collect();
    v.dedup();
    if caps.subgroup_size_control {
        let mut r = caps.min_subgroup_size.max(1).next_power_of_two();
        while r <= caps.max_subgroup_size {
            let wg = r.max(128).min(r * caps.max_compute_workgroup_subgroups.max(1)).min(maxwg);
            if wg % r == 0 {
                v.push((wg, Some(r)));
            }
            r *= 2;
        }
    }
    v
}

/// Runs the probe on `gpu` (a few tiny dispatches).
pub fn probe(gpu: &Gpu) -> Result<SubgroupReport> {
    let caps = gpu.caps();
    let info =
        crate::kernels::find(crate::kernels::names::SUBGROUP_PROBE).ok_or_else(|| vk_runtime::Error::Kernel {
            kernel: crate::kernels::names::SUBGROUP_PROBE.into(),
            what: "not in the kernel table".into(),
        })?;
    let src = KernelSource {
        name: info.name,
        spirv: info.spirv,
        bindings: info.bindings as u32,
        access: info.access,
        push_size: 0,
    };
    let mut runs = Vec::new();
    for (wg, required) in configs(caps) {
        let p = gpu.pipeline(&src, &[SpecConst { id: 0, value: wg }], required)?;
        let out = gpu.buffer("subgroup probe", wg as u64 * 32, MemoryIntent::Readback)?;
        let mut rec = gpu.recorder(false)?;
        rec.dispatch(&p, &[Binding::write(&out)], &[], [1, 1, 1])?;
        rec.submit()?;
        let words: Vec<u32> = out.read_vec()?;
        runs.push(check_run(&ReportedSizes::of(caps), wg, required, &words));
    }
    Ok(SubgroupReport {
        device: caps.name.clone(),
        driver: format!("{} {}", caps.driver_name, caps.driver_info).trim().to_string(),
        reported: caps.subgroup_size,
        min: caps.min_subgroup_size,
        max: caps.max_subgroup_size,
        runs,
    })
}

/// The subgroup sizes a device reports.
#[derive(Debug, Clone, Copy)]
pub struct ReportedSizes {
    /// `subgroupSize`, `minSubgroupSize`, `maxSubgroupSize`.
    pub size: u32,
    pub min: u32,
    pub max: u32,
    /// VK_EXT_subgroup_size_control for compute: kernels may run at any size in min..=max.
    pub size_control: bool,
}

impl ReportedSizes {
    pub fn of(caps: &vk_runtime::Caps) -> ReportedSizes {
        ReportedSizes {
            size: caps.subgroup_size,
            min: caps.min_subgroup_size,
            max: caps.max_subgroup_size,
            size_control: caps.subgroup_size_control,
        }
    }
}

/// Checks one run's records (8 words per invocation: size, subgroupAdd(1), lane, subgroup id,
/// subgroup count, subgroupMax(lane) + 1, subgroupMin(lane), local index).
pub fn check_run(caps: &ReportedSizes, wg: u32, required: Option<u32>, words: &[u32]) -> ProbeRun {
    let rec: Vec<&[u32]> = words.chunks_exact(8).take(wg as usize).collect();
    let col = |c: usize| rec.iter().map(move |r| r[c]);
    let size = col(0).max().unwrap_or(0);
    let active = col(1).min().unwrap_or(0);
    let lanes = col(2).max().map_or(0, |l| l + 1);
    let num_subgroups = col(4).max().unwrap_or(0);
    let ids = col(3).max().map_or(0, |g| g + 1);
    let mut problems = Vec::new();
    if rec.len() != wg as usize || col(7).enumerate().any(|(i, v)| v != i as u32) {
        problems.push(format!("the probe wrote {} of {wg} records", rec.len()));
    }
    if col(0).any(|s| s != size) {
        problems.push("gl_SubgroupSize differs between invocations".into());
    }
    if size == 0 || size > caps.max.max(caps.size) || size < caps.min.min(caps.size) {
        problems.push(format!("gl_SubgroupSize {size} is outside the reported range {}..={}", caps.min, caps.max));
    }
    if let Some(r) = required {
        if size != r {
            problems.push(format!("gl_SubgroupSize is {size}, not the required {r}"));
        }
    } else if !caps.size_control && size != caps.size {
        problems.push(format!("gl_SubgroupSize is {size}, the device reports subgroupSize {}", caps.size));
    }
    if size > 0 && wg % size == 0 {
        // Whole subgroups: every lane runs, every count agrees.
        if let Some(a) = col(1).find(|&a| a != size) {
            problems.push(format!("subgroupAdd(1) is {a}, not gl_SubgroupSize {size}"));
        }
        if lanes != size {
            problems.push(format!("gl_SubgroupInvocationID runs 0..{}, not 0..{}", lanes.saturating_sub(1), size - 1));
        }
        if let Some(m) = col(5).find(|&m| m != size) {
            problems.push(format!("subgroupMax(gl_SubgroupInvocationID) + 1 is {m}, not {size}"));
        }
        if wg / size != num_subgroups || col(4).any(|n| n != num_subgroups) {
            problems.push(format!("gl_NumSubgroups is {num_subgroups}, not {wg} / {size} = {}", wg / size));
        }
    }
    if col(6).any(|m| m != 0) && size > 0 && wg % size == 0 {
        problems.push("the lowest lane of a whole subgroup is not 0".into());
    }
    if rec.iter().any(|r| r[2] >= size.max(1)) {
        problems.push("some gl_SubgroupInvocationID is not below gl_SubgroupSize".into());
    }
    if rec.iter().any(|r| r[3] >= r[4]) {
        problems.push("some gl_SubgroupID is not below gl_NumSubgroups".into());
    }
    if ids != num_subgroups {
        problems.push(format!("gl_SubgroupID runs 0..{}, gl_NumSubgroups is {num_subgroups}", ids.saturating_sub(1)));
    }
    // Each (subgroup, lane) pair belongs to exactly one invocation, and each subgroup's lane count is
    // its subgroupAdd(1).
    let mut pairs: Vec<(u32, u32)> = rec.iter().map(|r| (r[3], r[2])).collect();
    pairs.sort_unstable();
    pairs.dedup();
    if pairs.len() != rec.len() {
        problems.push(format!("{} invocations share {} (gl_SubgroupID, lane) pairs", rec.len(), pairs.len()));
    }
    for g in 0..ids {
        let members: Vec<&&[u32]> = rec.iter().filter(|r| r[3] == g).collect();
        if let Some(r) = members.first() {
            if r[1] as usize != members.len() {
                problems.push(format!(
                    "subgroup {g} has {} invocations but subgroupAdd(1) says {}",
                    members.len(),
                    r[1]
                ));
                break;
            }
        }
    }
    ProbeRun { wg, required, size, active, lanes, num_subgroups, ids, problems }
}
