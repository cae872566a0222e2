//! What machine this is (CPU model and features, core clusters, memory, the device-tree model) and pinning
//! threads to cores. Detection reads procfs/sysfs below a root folder so tests can point it at a fake tree;
//! [`HostInfo::detect`] reads `/` and adds what the CPU itself reports (macOS and iOS have no `/proc`).

use std::collections::BTreeMap;
use std::path::Path;

/// The feature names `doctor` reports, in this order.
pub const FEATURE_NAMES: [&str; 7] = ["avx2", "avx512-vnni", "avx-vnni", "neon", "dotprod", "i8mm", "sve"];

/// Cores of one kind: same `cpu_capacity`, or else the same maximum frequency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Cluster {
    /// Logical CPU numbers, ascending.
    pub cores: Vec<usize>,
    /// The scheduler's relative capacity (`cpu_capacity`, 1024 = the biggest core), where the kernel has it.
    pub capacity: Option<u32>,
    /// `cpufreq/cpuinfo_max_freq` in kHz, where readable.
    pub max_khz: Option<u64>,
    /// The core type from `/proc/cpuinfo`'s "CPU part" (e.g. "Cortex-A76"), when known.
    pub core_type: Option<String>,
}

/// `/proc/meminfo`'s totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Memory {
    pub total_bytes: u64,
    /// `MemAvailable` (what can be had without swapping); `None` on old kernels.
    pub available_bytes: Option<u64>,
}

/// What [`HostInfo::detect`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostInfo {
    /// `x86_64`, `aarch64`… (`std::env::consts::ARCH` for the real host).
    pub arch: String,
    /// `linux`, `android`, `macos`, `ios`…
    pub os: String,
    /// "model name" (x86), else the core types ("Cortex-A55 + Cortex-A78"), else "unknown".
    pub cpu_model: String,
    /// The subset of [`FEATURE_NAMES`] every core reports.
    pub features: Vec<String>,
    /// Distinct "CPU part" ids (`0xd0b`), in core order: what board matching keys on.
    pub cpu_parts: Vec<String>,
    /// Big cores last (ascending capacity or frequency).
    pub clusters: Vec<Cluster>,
    pub memory: Option<Memory>,
    /// `/proc/device-tree/model` (e.g. "Raspberry Pi 5 Model B Rev 1.0"), trailing NUL removed.
    pub device_model: Option<String>,
    /// Logical CPUs found.
    pub cpus: usize,
}

/// Arm core names by "CPU part" id (implementer 0x41, Arm Ltd; ids from the Linux kernel's cputype.h).
const ARM_PARTS: [(u32, &str); 21] = [
    (0xd03, "Cortex-A53"),
    (0xd04, "Cortex-A35"),
    (0xd05, "Cortex-A55"),
    (0xd07, "Cortex-A57"),
    (0xd08, "Cortex-A72"),
    (0xd09, "Cortex-A73"),
    (0xd0a, "Cortex-A75"),
    (0xd0b, "Cortex-A76"),
    (0xd0c, "Neoverse-N1"),
    (0xd0d, "Cortex-A77"),
    (0xd41, "Cortex-A78"),
    (0xd42, "Cortex-A78AE"),
    (0xd44, "Cortex-X1"),
    (0xd46, "Cortex-A510"),
    (0xd47, "Cortex-A710"),
    (0xd48, "Cortex-X2"),
    (0xd4d, "Cortex-A715"),
    (0xd4e, "Cortex-X3"),
    (0xd80, "Cortex-A520"),
    (0xd81, "Cortex-A720"),
    (0xd82, "Cortex-X4"),
];

fn arm_part_name(part: &str) -> Option<&'static str> {
    let id = u32::from_str_radix(part.trim().trim_start_matches("0x"), 16).ok()?;
    ARM_PARTS.iter().find(|(p, _)| *p == id).map(|(_, n)| *n)
}

/// One `processor` block of `/proc/cpuinfo`.
#[derive(Debug, Default)]
struct CpuBlock {
    index: Option<usize>,
    fields: BTreeMap<String, String>,
}

fn parse_cpuinfo(text: &str) -> Vec<CpuBlock> {
    let mut blocks = vec![CpuBlock::default()];
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            if line.trim().is_empty() && !blocks.last().is_some_and(|b| b.fields.is_empty()) {
                blocks.push(CpuBlock::default());
            }
            continue;
        };
        let (key, value) = (key.trim().to_string(), value.trim().to_string());
        let block = blocks.last_mut().expect("never empty");
        if key == "processor" {
            block.index = value.parse().ok();
        }
        block.fields.insert(key, value);
    }
    blocks.retain(|b| !b.fields.is_empty());
    blocks
}

/// Our feature names for one block's "flags" (x86) or "Features" (Arm) line.
fn block_features(block: &CpuBlock) -> Option<Vec<&'static str>> {
    let words: Vec<&str> =
        block.fields.get("flags").or_else(|| block.fields.get("Features"))?.split_whitespace().collect();
    let has = |w: &str| words.contains(&w);
    let mut out = Vec::new();
    for name in FEATURE_NAMES {
        let present = match name {
            "avx2" => has("avx2"),
            "avx512-vnni" => has("avx512_vnni"),
            "avx-vnni" => has("avx_vnni"),
            // 64-bit kernels say asimd, 32-bit ones neon.
            "neon" => has("asimd") || has("neon"),
            "dotprod" => has("asimddp"),
            "i8mm" => has("i8mm"),
            "sve" => has("sve"),
            _ => false,
        };
        if present {
            out.push(name);
        }
    }
    Some(out)
}

fn read_trimmed(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

/// `cpuN` folders under `sys/devices/system/cpu`, by number.
fn cpu_dirs(root: &Path) -> Vec<(usize, std::path::PathBuf)> {
    let dir = root.join("sys/devices/system/cpu");
    let mut v: Vec<(usize, std::path::PathBuf)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("cpu")?;
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then(|| (n.parse().ok(), e.path()))
        })
        .filter_map(|(n, p)| Some((n?, p)))
        .collect();
    v.sort();
    v
}

fn parse_meminfo(text: &str) -> Option<Memory> {
    let kib = |key: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok().map(|k| k * 1024)
        })
    };
    Some(Memory { total_bytes: kib("MemTotal")?, available_bytes: kib("MemAvailable") })
}

impl HostInfo {
    /// This machine: `/proc` and `/sys`, with the features the CPU reports to the process (on x86-64 and
    /// aarch64 those replace `/proc/cpuinfo`'s flags: the only source on Apple systems, and the right one
    /// under qemu-user, whose `/proc/cpuinfo` is the host's).
    pub fn detect() -> HostInfo {
        let mut info = HostInfo::detect_at(Path::new("/"), std::env::consts::ARCH, std::env::consts::OS);
        #[cfg_attr(not(any(target_arch = "x86_64", target_arch = "aarch64")), allow(unused_mut, unused_variables))]
        let mut extra: Vec<&str> = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                extra.push("avx2");
            }
            if is_x86_feature_detected!("avx512vnni") {
                extra.push("avx512-vnni");
            }
            if is_x86_feature_detected!("avxvnni") {
                extra.push("avx-vnni");
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                extra.push("neon");
            }
            if std::arch::is_aarch64_feature_detected!("dotprod") {
                extra.push("dotprod");
            }
            if std::arch::is_aarch64_feature_detected!("i8mm") {
                extra.push("i8mm");
            }
            if std::arch::is_aarch64_feature_detected!("sve") {
                extra.push("sve");
            }
        }
        // On the architectures the kernels know, what the CPU reports to this process is the truth:
        // /proc/cpuinfo may describe another machine (qemu-user shows the host's) or hide flags.
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        {
            info.features = FEATURE_NAMES.iter().filter(|n| extra.contains(n)).map(|n| n.to_string()).collect();
        }
        if info.cpus == 0 {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            info.cpus = n;
            info.clusters = vec![Cluster { cores: (0..n).collect(), capacity: None, max_khz: None, core_type: None }];
        }
        info
    }

    /// Read a procfs/sysfs tree rooted at `root` (`/` for the real machine): `proc/cpuinfo`,
    /// `proc/meminfo`, `proc/device-tree/model` (or `sys/firmware/devicetree/base/model`) and
    /// `sys/devices/system/cpu/cpuN/{cpu_capacity,cpufreq/cpuinfo_max_freq}`. Missing files give empty
    /// fields, never an error.
    pub fn detect_at(root: &Path, arch: &str, os: &str) -> HostInfo {
        let blocks = std::fs::read_to_string(root.join("proc/cpuinfo")).map(|t| parse_cpuinfo(&t)).unwrap_or_default();

        // Features every core has (a core without a flags line does not count).
        let mut features: Option<Vec<&str>> = None;
        for f in blocks.iter().filter_map(block_features) {
            features = Some(match features {
                None => f,
                Some(prev) => prev.into_iter().filter(|n| f.contains(n)).collect(),
            });
        }
        let features: Vec<String> = features.unwrap_or_default().into_iter().map(String::from).collect();

        // "CPU part" per logical core.
        let part_of: BTreeMap<usize, String> =
            blocks.iter().filter_map(|b| Some((b.index?, b.fields.get("CPU part")?.to_ascii_lowercase()))).collect();
        let mut cpu_parts: Vec<String> = Vec::new();
        for p in part_of.values() {
            if !cpu_parts.contains(p) {
                cpu_parts.push(p.clone());
            }
        }

        let model_name = blocks.iter().find_map(|b| b.fields.get("model name").cloned());
        let part_names: Vec<&str> = cpu_parts.iter().filter_map(|p| arm_part_name(p)).collect();
        let cpu_model = match model_name {
            // 32-bit Arm kernels say "ARMv7 Processor rev 3 (v7l)": the core names say more.
            Some(m) if part_names.is_empty() || !m.starts_with("ARM") => m,
            _ if !part_names.is_empty() => part_names.join(" + "),
            _ => blocks.iter().find_map(|b| b.fields.get("Hardware").cloned()).unwrap_or_else(|| "unknown".into()),
        };

        // Clusters: cpu_capacity where the kernel has it (Arm big.LITTLE), else the maximum frequency.
        let cpus = cpu_dirs(root);
        let capacity: Vec<Option<u32>> =
            cpus.iter().map(|(_, d)| read_trimmed(&d.join("cpu_capacity"))?.parse().ok()).collect();
        let max_khz: Vec<Option<u64>> =
            cpus.iter().map(|(_, d)| read_trimmed(&d.join("cpufreq/cpuinfo_max_freq"))?.parse().ok()).collect();
        let by_capacity = capacity.iter().any(Option::is_some);
        let mut groups: BTreeMap<(u64, String), Cluster> = BTreeMap::new();
        for (i, (n, _)) in cpus.iter().enumerate() {
            let key = if by_capacity { capacity[i].map_or(0, u64::from) } else { max_khz[i].unwrap_or(0) };
            let core_type = part_of.get(n).and_then(|p| arm_part_name(p)).map(String::from);
            let c = groups.entry((key, core_type.clone().unwrap_or_default())).or_insert_with(|| Cluster {
                cores: Vec::new(),
                capacity: capacity[i],
                max_khz: max_khz[i],
                core_type,
            });
            c.cores.push(*n);
            // Cores of one cluster may differ slightly in frequency limits: keep the highest.
            c.max_khz = c.max_khz.max(max_khz[i]);
        }
        let mut clusters: Vec<Cluster> = groups.into_values().collect();
        clusters.sort_by_key(|c| {
            (if by_capacity { c.capacity.map_or(0, u64::from) } else { c.max_khz.unwrap_or(0) }, c.cores[0])
        });

        let memory = std::fs::read_to_string(root.join("proc/meminfo")).ok().and_then(|t| parse_meminfo(&t));
        let device_model = read_trimmed(&root.join("proc/device-tree/model"))
            .or_else(|| read_trimmed(&root.join("sys/firmware/devicetree/base/model")));
        let cpus = if cpus.is_empty() { blocks.iter().filter(|b| b.index.is_some()).count() } else { cpus.len() };
        HostInfo {
            arch: arch.to_string(),
            os: os.to_string(),
            cpu_model,
            features,
            cpu_parts,
            clusters,
            memory,
            device_model,
            cpus,
        }
    }

    pub fn has_feature(&self, name: &str) -> bool {
        self.features.iter().any(|f| f == name)
    }

    /// The cores of the fastest cluster (all cores when they are all alike).
    pub fn big_cores(&self) -> Vec<usize> {
        self.clusters.last().map(|c| c.cores.clone()).unwrap_or_default()
    }
}

/// Why pinning failed.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("pinning threads to cores is not supported on this system ({0})")]
    Unsupported(&'static str),
    #[error("sched_setaffinity({cores:?}): {source}")]
    Os { cores: Vec<usize>, source: std::io::Error },
    #[error("no core to pin to: none of {wanted:?} exists here")]
    NoCores { wanted: Vec<usize> },
}

/// The cores this process may run on now (`sched_getaffinity`); `None` where that cannot be asked.
pub fn allowed_cores() -> Option<Vec<usize>> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: `set` is a plain bit set owned by this frame; sched_getaffinity writes at most
        // size_of::<cpu_set_t>() bytes into it and CPU_ISSET only reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return None;
            }
            Some((0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect())
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        None
    }
}

/// Pin the calling thread to exactly `cores`. Threads it starts afterwards inherit the mask.
pub fn pin_current_thread(cores: &[usize]) -> Result<(), PinError> {
    if cores.is_empty() {
        return Err(PinError::NoCores { wanted: Vec::new() });
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        if let Some(&c) = cores.iter().find(|&&c| c >= libc::CPU_SETSIZE as usize) {
            return Err(PinError::NoCores { wanted: vec![c] });
        }
        // SAFETY: `set` is a zeroed bit set owned by this frame; CPU_SET writes bits below CPU_SETSIZE
        // (checked above) and sched_setaffinity only reads size_of::<cpu_set_t>() bytes of it.
        let rc = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &c in cores {
                libc::CPU_SET(c, &mut set);
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
        };
        if rc != 0 {
            return Err(PinError::Os { cores: cores.to_vec(), source: std::io::Error::last_os_error() });
        }
        Ok(())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        Err(PinError::Unsupported(std::env::consts::OS))
    }
}

/// Pin the calling thread, and so the worker threads started after it (an engine's pool), to the cores of
/// `cores` that exist here; the others are skipped with a warning (a profile written for an 8-core phone
/// run on a 4-core box). Returns the cores pinned to.
pub fn pin_threads(cores: &[usize]) -> Result<Vec<usize>, PinError> {
    let allowed = allowed_cores().ok_or(PinError::Unsupported(std::env::consts::OS))?;
    let (usable, missing): (Vec<usize>, Vec<usize>) = cores.iter().partition(|c| allowed.contains(c));
    if !missing.is_empty() {
        tracing::warn!("cores {missing:?} do not exist here (or are not allowed to this process): not pinned to");
    }
    if usable.is_empty() {
        return Err(PinError::NoCores { wanted: cores.to_vec() });
    }
    pin_current_thread(&usable)?;
    Ok(usable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn arm_cpuinfo(parts: &[&str], features: &str) -> String {
        parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                format!(
                    "processor\t: {i}\nBogoMIPS\t: 38.40\nFeatures\t: {features}\nCPU implementer\t: 0x41\n\
                     CPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: {p}\nCPU revision\t: 0\n\n"
                )
            })
            .collect()
    }

    #[test]
    fn big_little_phone_from_cpu_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Snapdragon 8 Gen 2 layout: 3×A510, 2×A715, 2×A710, 1×X3.
        let parts = ["0xd46", "0xd46", "0xd46", "0xd4d", "0xd4d", "0xd47", "0xd47", "0xd4e"];
        let caps = [325, 325, 325, 870, 870, 870, 870, 1024];
        let freq = [2016000, 2016000, 2016000, 2803200, 2803200, 2803200, 2803200, 3187200];
        let feats = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop \
                     asimddp sha512 asimdfhm dit uscat ilrcpc flagm ssbs sb paca pacg dcpodp flagm2 frint i8mm bf16";
        write(root, "proc/cpuinfo", &arm_cpuinfo(&parts, feats));
        for i in 0..8 {
            write(root, &format!("sys/devices/system/cpu/cpu{i}/cpu_capacity"), &format!("{}\n", caps[i]));
            write(root, &format!("sys/devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq"), &format!("{}\n", freq[i]));
        }
        write(root, "proc/meminfo", "MemTotal:       7812500 kB\nMemFree:  100 kB\nMemAvailable:   3906250 kB\n");
        let h = HostInfo::detect_at(root, "aarch64", "android");
        assert_eq!(h.features, ["neon", "dotprod", "i8mm"]);
        assert_eq!(h.cpu_parts, ["0xd46", "0xd4d", "0xd47", "0xd4e"]);
        assert_eq!(h.cpu_model, "Cortex-A510 + Cortex-A715 + Cortex-A710 + Cortex-X3");
        assert_eq!(h.cpus, 8);
        let shape: Vec<(Vec<usize>, Option<u32>, Option<&str>)> =
            h.clusters.iter().map(|c| (c.cores.clone(), c.capacity, c.core_type.as_deref())).collect();
        assert_eq!(
            shape,
            [
                (vec![0, 1, 2], Some(325), Some("Cortex-A510")),
                (vec![3, 4], Some(870), Some("Cortex-A715")),
                (vec![5, 6], Some(870), Some("Cortex-A710")),
                (vec![7], Some(1024), Some("Cortex-X3")),
            ]
        );
        assert_eq!(h.big_cores(), [7]);
        assert_eq!(h.memory, Some(Memory { total_bytes: 7812500 * 1024, available_bytes: Some(3906250 * 1024) }));
        assert_eq!(h.device_model, None);
    }

    #[test]
    fn raspberry_pi_5_device_tree_model() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "proc/cpuinfo",
            &(arm_cpuinfo(
                &["0xd0b"; 4],
                "fp asimd evtstrm crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
            ) + "Revision\t: d04170\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"),
        );
        write(root, "proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\0");
        for i in 0..4 {
            write(root, &format!("sys/devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq"), "2400000\n");
        }
        let h = HostInfo::detect_at(root, "aarch64", "linux");
        assert_eq!(h.device_model.as_deref(), Some("Raspberry Pi 5 Model B Rev 1.0"));
        assert_eq!(h.cpu_model, "Cortex-A76");
        assert_eq!(h.features, ["neon", "dotprod"]);
        assert_eq!(h.clusters.len(), 1);
        assert_eq!(h.clusters[0].cores, [0, 1, 2, 3]);
        assert_eq!(h.clusters[0].max_khz, Some(2_400_000));
        assert_eq!(h.clusters[0].capacity, None);
        assert_eq!(h.memory, None);
    }

    #[test]
    fn x86_box_without_capacity_groups_by_max_frequency() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // A hybrid Intel part: 2 P-cores at 4.7 GHz, 2 E-cores at 3.6 GHz; the kernel gives no cpu_capacity.
        let flags = "fpu vme sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2";
        let cpuinfo: String = (0..4)
            .map(|i| format!("processor\t: {i}\nvendor_id\t: GenuineIntel\nmodel name\t: 12th Gen Intel(R) Core(TM) i5-1235U\nflags\t\t: {flags}\n\n"))
            .collect();
        write(root, "proc/cpuinfo", &cpuinfo);
        for (i, f) in [4_700_000, 4_700_000, 3_600_000, 3_600_000].iter().enumerate() {
            write(root, &format!("sys/devices/system/cpu/cpu{i}/cpufreq/cpuinfo_max_freq"), &f.to_string());
        }
        // Not a CPU folder: must be ignored.
        write(root, "sys/devices/system/cpu/cpufreq/boost", "1");
        write(root, "proc/meminfo", "MemTotal:       16000000 kB\n");
        let h = HostInfo::detect_at(root, "x86_64", "linux");
        assert_eq!(h.cpu_model, "12th Gen Intel(R) Core(TM) i5-1235U");
        assert_eq!(h.features, ["avx2"]);
        assert!(h.cpu_parts.is_empty());
        let shape: Vec<(Vec<usize>, Option<u64>)> = h.clusters.iter().map(|c| (c.cores.clone(), c.max_khz)).collect();
        assert_eq!(shape, [(vec![2, 3], Some(3_600_000)), (vec![0, 1], Some(4_700_000))]);
        assert_eq!(h.big_cores(), [0, 1]);
        assert_eq!(h.memory, Some(Memory { total_bytes: 16_000_000 * 1024, available_bytes: None }));
    }

    #[test]
    fn avx512_vnni_is_reported_only_when_every_core_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            root,
            "proc/cpuinfo",
            "processor : 0\nmodel name : X\nflags : avx2 avx512_vnni\n\nprocessor : 1\nmodel name : X\nflags : avx2\n",
        );
        assert_eq!(HostInfo::detect_at(root, "x86_64", "linux").features, ["avx2"]);
        write(root, "proc/cpuinfo", "processor : 0\nflags : avx2 avx512_vnni avx_vnni sve\n");
        // `sve` in an x86 flags line would be a different flag name space, but we only map names: fine here.
        assert_eq!(HostInfo::detect_at(root, "x86_64", "linux").features, ["avx2", "avx512-vnni", "avx-vnni", "sve"]);
    }

    #[test]
    fn an_empty_tree_gives_empty_fields() {
        let dir = tempfile::tempdir().unwrap();
        let h = HostInfo::detect_at(dir.path(), "aarch64", "macos");
        assert_eq!(h.cpu_model, "unknown");
        assert!(h.features.is_empty() && h.clusters.is_empty() && h.memory.is_none());
        assert_eq!(h.cpus, 0);
    }

    #[test]
    fn the_real_host_has_at_least_one_core() {
        let h = HostInfo::detect();
        assert!(h.cpus >= 1);
        assert!(!h.clusters.is_empty());
        assert_eq!(h.clusters.iter().map(|c| c.cores.len()).sum::<usize>(), h.cpus);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn pinning_skips_cores_that_do_not_exist() {
        // On a thread of its own: the test harness's other threads keep their mask.
        std::thread::spawn(|| {
            let allowed = allowed_cores().unwrap();
            let first = allowed[0];
            let pinned = pin_threads(&[first, 1000]).unwrap();
            assert_eq!(pinned, [first]);
            assert_eq!(allowed_cores().unwrap(), [first]);
            assert!(matches!(pin_threads(&[1000]), Err(PinError::NoCores { .. })));
            assert!(matches!(pin_current_thread(&[]), Err(PinError::NoCores { .. })));
        })
        .join()
        .unwrap();
    }
}
