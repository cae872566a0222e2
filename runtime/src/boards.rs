//! Board profiles: per-device defaults (threads, cores to pin to, KV type, context, tiles, expert memory,
//! quant mix, camera pipe, scene gate) kept as `boards/<name>.toml` and embedded in the binary, so
//! `--board rpi5` works from any folder. A profile only fills in what the user did not set
//! ([`Profile::apply`]); [`Profile::auto`] picks one from [`HostInfo`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::EngineOptions;
use crate::host::HostInfo;
use crate::kernels::Isa;
use crate::GgmlType;

/// The profiles shipped in `boards/`, in the order ties are broken when matching.
const EMBEDDED: [(&str, &str); 8] = [
    ("rpi4", include_str!("../../boards/rpi4.toml")),
    ("rpi5", include_str!("../../boards/rpi5.toml")),
    ("jetson-orin-nano", include_str!("../../boards/jetson-orin-nano.toml")),
    ("jetson-agx-orin", include_str!("../../boards/jetson-agx-orin.toml")),
    ("snapdragon-8-gen2", include_str!("../../boards/snapdragon-8-gen2.toml")),
    ("snapdragon-8-gen3", include_str!("../../boards/snapdragon-8-gen3.toml")),
    ("apple-a-m", include_str!("../../boards/apple-a-m.toml")),
    ("x86-64", include_str!("../../boards/x86-64.toml")),
];

/// What can go wrong finding or reading a profile. `file` is `boards/<name>.toml` for embedded ones.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    #[error("unknown board '{name}' (known: {known}; or a path to a .toml profile)")]
    Unknown { name: String, known: String },
    #[error("{file}: {error}")]
    Read { file: String, error: std::io::Error },
    #[error("{file}: line {line}: {message}")]
    Parse { file: String, line: usize, message: String },
    #[error("{file}: field `{field}`: {reason}")]
    Field { file: String, field: &'static str, reason: String },
}

/// A board profile. See `boards/*.toml` and the README's "Boards" section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The `--board` name (the file's stem for embedded profiles).
    pub name: String,
    pub title: String,
    pub description: String,
    /// The SoC and its cores, in words.
    pub cpu: String,
    /// `aarch64` or `x86_64`.
    pub arch: String,
    /// ISA features the board's CPU is expected to report (names as in [`crate::host::FEATURE_NAMES`]).
    pub features: Vec<String>,
    /// The kernel path expected to run there ([`Isa::name`]).
    pub kernel_path: String,
    pub runtime: RuntimeDefaults,
    pub camera: CameraDefaults,
    pub watch: WatchDefaults,
    #[serde(rename = "match")]
    pub rules: MatchRules,
    /// Where each value comes from: a public source (title and URL), or "ours: why".
    pub source: BTreeMap<String, String>,
}

/// `[runtime]`: engine defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeDefaults {
    /// Worker threads; absent: one per physical core.
    pub threads: Option<usize>,
    /// Cores the process is pinned to (the big cores); empty: no pinning.
    #[serde(default)]
    pub pin_cores: Vec<usize>,
    /// `f16`, `q8_0` or `f32`.
    pub kv_type: String,
    pub context_length: usize,
    pub max_tiles: u32,
    /// Most MiB of MoE expert weights kept resident; absent: no bound.
    pub max_expert_memory_mib: Option<u64>,
    /// The type mix to convert to (`convert --type`, `-m owner/name:MIX`).
    pub quant_mix: String,
}

/// How frames reach `watch` on this board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CameraPath {
    /// A UVC camera through V4L2 (`--camera`).
    V4l2,
    /// A CSI camera through libcamera: `rpicam-vid … --codec mjpeg -o -` piped into `--stdin mjpeg`.
    RpicamVid,
    /// A CSI camera through NVIDIA Argus: a GStreamer `nvarguscamerasrc … jpegenc ! fdsink` pipe.
    Argus,
    /// No camera pipe: the app hands frames to the C API (phones, Apple).
    None,
}

impl CameraPath {
    pub fn name(self) -> &'static str {
        match self {
            CameraPath::V4l2 => "v4l2",
            CameraPath::RpicamVid => "rpicam-vid",
            CameraPath::Argus => "argus",
            CameraPath::None => "none",
        }
    }
}

/// `[camera]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraDefaults {
    pub path: CameraPath,
    /// The source in the examples' one-word form (`camera:/dev/video0`, `stdin:mjpeg`); absent for `none`.
    pub source: Option<String>,
    /// The command a user runs (the pipe into `sail-edge watch`).
    pub command: Option<String>,
}

/// `[watch]`: the scene gate (`--gate`, `--min-stable`) and heartbeat (`--every`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchDefaults {
    pub gate: f32,
    pub min_stable: u32,
    /// Seconds between answers when nothing changes; absent: none.
    pub heartbeat_s: Option<u64>,
}

/// `[match]`: how `--board auto` recognises the board. `arch`, `os` and the CPU count bound who may match;
/// a device-tree model substring is the strongest evidence, then "CPU part" ids.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchRules {
    #[serde(default)]
    pub arch: Vec<String>,
    #[serde(default)]
    pub os: Vec<String>,
    #[serde(default)]
    pub device_tree: Vec<String>,
    /// `/proc/cpuinfo` "CPU part" ids, lower-case hex (`0xd0b`).
    #[serde(default)]
    pub cpu_parts: Vec<String>,
    pub min_cpus: Option<usize>,
    pub max_cpus: Option<usize>,
}

/// Which engine settings the user gave explicitly (those a profile must not touch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Explicit {
    pub threads: bool,
    pub kv_type: bool,
    pub max_expert_memory: bool,
    pub max_tiles: bool,
    pub context_length: bool,
}

fn parse_kv(s: &str) -> Option<GgmlType> {
    match s {
        "f16" => Some(GgmlType::F16),
        "q8_0" => Some(GgmlType::Q8_0),
        "f32" => Some(GgmlType::F32),
        _ => None,
    }
}

impl Profile {
    /// The names of the embedded profiles.
    pub fn names() -> Vec<&'static str> {
        EMBEDDED.iter().map(|(n, _)| *n).collect()
    }

    /// Every embedded profile.
    pub fn all() -> Result<Vec<Profile>, BoardError> {
        EMBEDDED.iter().map(|(n, text)| Profile::parse(text, &format!("boards/{n}.toml"))).collect()
    }

    /// An embedded profile by name, or a profile file when `name` ends in `.toml` or names a path.
    pub fn by_name(name: &str) -> Result<Profile, BoardError> {
        if let Some((n, text)) = EMBEDDED.iter().find(|(n, _)| *n == name) {
            return Profile::parse(text, &format!("boards/{n}.toml"));
        }
        if name.ends_with(".toml") || name.contains('/') || name.contains('\\') {
            return Profile::from_file(Path::new(name));
        }
        Err(BoardError::Unknown { name: name.to_string(), known: Profile::names().join(", ") })
    }

    pub fn from_file(path: &Path) -> Result<Profile, BoardError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| BoardError::Read { file: file.clone(), error })?;
        Profile::parse(&text, &file)
    }

    /// Parse and check a profile; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Profile, BoardError> {
        let profile: Profile = toml::from_str(text).map_err(|e| BoardError::Parse {
            file: file.to_string(),
            line: e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1),
            message: e.message().trim().to_string(),
        })?;
        profile.check(file)?;
        Ok(profile)
    }

    fn check(&self, file: &str) -> Result<(), BoardError> {
        let bad =
            |field: &'static str, reason: String| Err(BoardError::Field { file: file.to_string(), field, reason });
        if self.name.is_empty() || !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return bad("name", format!("'{}': letters, digits, - and _ only", self.name));
        }
        if let Some(f) = self.features.iter().find(|f| !crate::host::FEATURE_NAMES.contains(&f.as_str())) {
            return bad("features", format!("'{f}' is not one of {}", crate::host::FEATURE_NAMES.join(", ")));
        }
        if Isa::parse(&self.kernel_path).is_none_or(|isa| isa.name() != self.kernel_path) {
            return bad(
                "kernel_path",
                format!("'{}': scalar, avx2, avx2vnni, neon, dotprod or i8mm", self.kernel_path),
            );
        }
        let r = &self.runtime;
        if r.threads == Some(0) {
            return bad("runtime.threads", "must be at least 1 (leave it out for one per physical core)".into());
        }
        if let (Some(t), false) = (r.threads, r.pin_cores.is_empty()) {
            if t > r.pin_cores.len() {
                return bad("runtime.threads", format!("{t} threads on {} pinned cores", r.pin_cores.len()));
            }
        }
        if parse_kv(&r.kv_type).is_none() {
            return bad("runtime.kv_type", format!("'{}': f16, q8_0 or f32", r.kv_type));
        }
        if r.context_length == 0 {
            return bad("runtime.context_length", "must be at least 1".into());
        }
        if r.max_tiles == 0 {
            return bad("runtime.max_tiles", "must be at least 1".into());
        }
        if r.max_expert_memory_mib == Some(0) {
            return bad("runtime.max_expert_memory_mib", "must be at least 1 (leave it out for no bound)".into());
        }
        if r.quant_mix.is_empty() {
            return bad("runtime.quant_mix", "empty".into());
        }
        if (self.camera.path == CameraPath::None) != self.camera.source.is_none() {
            return bad("camera.source", "give a source exactly when the camera path is not \"none\"".into());
        }
        if !self.watch.gate.is_finite() || self.watch.gate < 0.0 {
            return bad("watch.gate", format!("{} is not a number ≥ 0", self.watch.gate));
        }
        if self.watch.min_stable == 0 {
            return bad("watch.min_stable", "must be at least 1".into());
        }
        if self.watch.heartbeat_s == Some(0) {
            return bad("watch.heartbeat_s", "must be at least 1 (leave it out for no heartbeat)".into());
        }
        let m = &self.rules;
        if m.arch.is_empty() && m.os.is_empty() && m.device_tree.is_empty() && m.cpu_parts.is_empty() {
            return bad("match", "no rule: give at least one of arch, os, device_tree, cpu_parts".into());
        }
        if let Some(p) = m.cpu_parts.iter().find(|p| {
            p.strip_prefix("0x")
                .is_none_or(|h| h.is_empty() || !h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        }) {
            return bad("match.cpu_parts", format!("'{p}': lower-case hex like 0xd0b"));
        }
        Ok(())
    }

    /// The KV row type.
    pub fn kv_type(&self) -> GgmlType {
        parse_kv(&self.runtime.kv_type).unwrap_or(GgmlType::F16)
    }

    /// The expert budget in bytes.
    pub fn max_expert_memory(&self) -> Option<u64> {
        self.runtime.max_expert_memory_mib.map(|m| m << 20)
    }

    /// Fill in the settings the user did not give; returns what was set (`threads=4`, …) for the log.
    pub fn apply(&self, options: &mut EngineOptions, explicit: Explicit) -> Vec<String> {
        let r = &self.runtime;
        let mut set = Vec::new();
        if let (false, Some(t)) = (explicit.threads, r.threads) {
            options.threads = t;
            set.push(format!("threads={t}"));
        }
        if !explicit.kv_type {
            options.kv_type = self.kv_type();
            set.push(format!("kv_type={}", r.kv_type));
        }
        if let (false, Some(b)) = (explicit.max_expert_memory, self.max_expert_memory()) {
            options.max_expert_memory = Some(b);
            set.push(format!("max_expert_memory={b}"));
        }
        if !explicit.max_tiles {
            options.max_tiles = Some(r.max_tiles);
            set.push(format!("max_tiles={}", r.max_tiles));
        }
        if !explicit.context_length {
            options.context_length = Some(r.context_length);
            set.push(format!("context_length={}", r.context_length));
        }
        set
    }

    /// How well this profile fits `host`: `None` when a bounding rule (arch, os, CPU count) fails or the
    /// profile names device-tree models / CPU parts and none is there.
    pub fn match_score(&self, host: &HostInfo) -> Option<u32> {
        let m = &self.rules;
        if !m.arch.is_empty() && !m.arch.contains(&host.arch) {
            return None;
        }
        if !m.os.is_empty() && !m.os.contains(&host.os) {
            return None;
        }
        if m.min_cpus.is_some_and(|n| host.cpus < n) || m.max_cpus.is_some_and(|n| host.cpus > n) {
            return None;
        }
        let model = host.device_model.as_deref().unwrap_or("").to_ascii_lowercase();
        if !model.is_empty() && m.device_tree.iter().any(|d| model.contains(&d.to_ascii_lowercase())) {
            return Some(100);
        }
        let parts = m.cpu_parts.iter().filter(|p| host.cpu_parts.contains(p)).count() as u32;
        if parts > 0 {
            return Some(10 * parts);
        }
        (m.device_tree.is_empty() && m.cpu_parts.is_empty()).then_some(1)
    }

    /// The embedded profile that fits `host` best (ties: the earlier in [`Profile::names`]); `None` when
    /// none fits (an aarch64 server, say). Any x86-64 machine gets `x86-64`.
    pub fn auto(host: &HostInfo) -> Option<Profile> {
        let all = match Profile::all() {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!("board profiles: {e}");
                return None;
            }
        };
        let mut best: Option<(u32, Profile)> = None;
        for p in all {
            if let Some(s) = p.match_score(host) {
                if best.as_ref().is_none_or(|(b, _)| s > *b) {
                    best = Some((s, p));
                }
            }
        }
        best.map(|(_, p)| p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(arch: &str, os: &str, parts: &[&str], model: Option<&str>, cpus: usize) -> HostInfo {
        HostInfo {
            arch: arch.into(),
            os: os.into(),
            cpu_model: String::new(),
            features: Vec::new(),
            cpu_parts: parts.iter().map(|s| s.to_string()).collect(),
            clusters: Vec::new(),
            memory: None,
            device_model: model.map(String::from),
            cpus,
        }
    }

    #[test]
    fn every_embedded_profile_parses_and_is_complete() {
        let all = Profile::all().unwrap();
        assert_eq!(all.len(), EMBEDDED.len());
        for p in &all {
            let file = format!("boards/{}.toml", p.name);
            assert!(Profile::names().contains(&p.name.as_str()), "{file}: name must be the file's stem");
            assert!(!p.title.is_empty() && !p.description.is_empty() && !p.cpu.is_empty(), "{file}");
            assert!(!p.features.is_empty(), "{file}: features");
            assert!(["aarch64", "x86_64"].contains(&p.arch.as_str()), "{file}: arch");
            // Every value we set says where it comes from (a public source, or "ours: why").
            let mut keys = vec!["cpu", "runtime.kv_type", "runtime.context_length", "runtime.max_tiles"];
            keys.extend(["runtime.quant_mix", "camera.path", "watch.gate"]);
            if p.runtime.threads.is_some() {
                keys.push("runtime.threads");
            }
            if !p.runtime.pin_cores.is_empty() {
                keys.push("runtime.pin_cores");
            }
            if p.runtime.max_expert_memory_mib.is_some() {
                keys.push("runtime.max_expert_memory_mib");
            }
            if p.watch.heartbeat_s.is_some() {
                keys.push("watch.heartbeat_s");
            }
            for k in keys {
                let s = p.source.get(k).unwrap_or_else(|| panic!("{file}: [source] has no \"{k}\""));
                assert!(
                    s.starts_with("ours:") || s.contains("http"),
                    "{file}: source of {k} is neither a URL nor ours: {s}"
                );
            }
            // The camera command feeds the source it names.
            if let (Some(src), Some(cmd)) = (&p.camera.source, &p.camera.command) {
                let flag = match src.split_once(':') {
                    Some(("stdin", f)) => format!("--stdin {f}"),
                    Some(("camera", d)) => format!("--camera {d}"),
                    _ => panic!("{file}: camera.source {src}"),
                };
                assert!(cmd.contains(&flag) && cmd.contains("sail-edge watch"), "{file}: {cmd} should use {flag}");
            }
            // The expected kernel path is reachable with the expected features.
            let needs = match p.kernel_path.as_str() {
                "i8mm" => vec!["neon", "dotprod", "i8mm"],
                "dotprod" => vec!["neon", "dotprod"],
                "neon" => vec!["neon"],
                "avx2" => vec!["avx2"],
                other => panic!("{file}: kernel path {other}"),
            };
            for f in needs {
                assert!(p.features.iter().any(|x| x == f), "{file}: kernel path {} needs {f}", p.kernel_path);
            }
        }
    }

    #[test]
    fn auto_matches_each_board() {
        let pick = |h: &HostInfo| Profile::auto(h).map(|p| p.name);
        let pi5 = host("aarch64", "linux", &["0xd0b"], Some("Raspberry Pi 5 Model B Rev 1.0"), 4);
        assert_eq!(pick(&pi5).as_deref(), Some("rpi5"));
        let pi4 = host("aarch64", "linux", &["0xd08"], Some("Raspberry Pi 4 Model B Rev 1.4"), 4);
        assert_eq!(pick(&pi4).as_deref(), Some("rpi4"));
        // A Pi 4 without a device tree (a container) still matches by its cores.
        let pi4_parts = host("aarch64", "linux", &["0xd08"], None, 4);
        assert_eq!(pick(&pi4_parts).as_deref(), Some("rpi4"));
        let nano = host("aarch64", "linux", &["0xd42"], Some("NVIDIA Jetson Orin Nano Developer Kit"), 6);
        assert_eq!(pick(&nano).as_deref(), Some("jetson-orin-nano"));
        let agx = host("aarch64", "linux", &["0xd42"], Some("Jetson AGX Orin"), 12);
        assert_eq!(pick(&agx).as_deref(), Some("jetson-agx-orin"));
        // No device tree: the core count tells the two Orins apart.
        assert_eq!(pick(&host("aarch64", "linux", &["0xd42"], None, 12)).as_deref(), Some("jetson-agx-orin"));
        assert_eq!(pick(&host("aarch64", "linux", &["0xd42"], None, 6)).as_deref(), Some("jetson-orin-nano"));
        let gen2 = host("aarch64", "android", &["0xd46", "0xd4d", "0xd47", "0xd4e"], None, 8);
        assert_eq!(pick(&gen2).as_deref(), Some("snapdragon-8-gen2"));
        let gen3 = host("aarch64", "android", &["0xd80", "0xd81", "0xd82"], None, 8);
        assert_eq!(pick(&gen3).as_deref(), Some("snapdragon-8-gen3"));
        assert_eq!(pick(&host("aarch64", "macos", &[], None, 8)).as_deref(), Some("apple-a-m"));
        assert_eq!(pick(&host("aarch64", "ios", &[], None, 6)).as_deref(), Some("apple-a-m"));
        assert_eq!(pick(&host("x86_64", "linux", &[], None, 2)).as_deref(), Some("x86-64"));
        // An aarch64 server (Neoverse-N1) is none of these.
        assert_eq!(pick(&host("aarch64", "linux", &["0xd0c"], None, 64)), None);
    }

    #[test]
    fn explicit_settings_win() {
        let p = Profile::by_name("rpi5").unwrap();
        let mut o = EngineOptions::new("m.gguf");
        let set = p.apply(&mut o, Explicit::default());
        assert_eq!(o.threads, p.runtime.threads.unwrap());
        assert_eq!(o.kv_type, p.kv_type());
        assert_eq!(o.max_tiles, Some(p.runtime.max_tiles));
        assert_eq!(o.context_length, Some(p.runtime.context_length));
        assert_eq!(o.max_expert_memory, p.max_expert_memory());
        assert!(set.iter().any(|s| s.starts_with("threads=")), "{set:?}");

        let mut o = EngineOptions { threads: 1, kv_type: GgmlType::F32, max_tiles: Some(7), ..EngineOptions::new("m") };
        let explicit = Explicit { threads: true, kv_type: true, max_tiles: true, ..Explicit::default() };
        let set = p.apply(&mut o, explicit);
        assert_eq!((o.threads, o.kv_type, o.max_tiles), (1, GgmlType::F32, Some(7)));
        assert_eq!(o.context_length, Some(p.runtime.context_length));
        assert!(!set.iter().any(|s| s.starts_with("threads=") || s.starts_with("kv_type=")), "{set:?}");
    }

    #[test]
    fn bad_profiles_name_the_file_and_field() {
        let good = EMBEDDED[1].1;
        let cases = [
            (good.replace("kv_type = \"q8_0\"", "kv_type = \"q5\""), "runtime.kv_type"),
            (good.replace("max_tiles = ", "max_tiles = 0 #"), "runtime.max_tiles"),
            (good.replace("kernel_path = \"dotprod\"", "kernel_path = \"sse\""), "kernel_path"),
            (good.replace("gate = ", "gate = -1.0 #"), "watch.gate"),
            (good.replace("\"0xd0b\"", "\"d0b\""), "match.cpu_parts"),
        ];
        for (text, field) in cases {
            assert_ne!(text, good, "the replacement for {field} must apply");
            let e = Profile::parse(&text, "boards/bad.toml").unwrap_err().to_string();
            assert!(e.contains("boards/bad.toml") && e.contains(field), "{field}: {e}");
        }
        // A missing field and a misspelled one are named with the line.
        let missing = good.replace("context_length = ", "# context_length = ");
        let e = Profile::parse(&missing, "boards/bad.toml").unwrap_err().to_string();
        assert!(e.contains("boards/bad.toml") && e.contains("context_length"), "{e}");
        let typo = good.replace("max_tiles = ", "max_tile = ");
        let e = Profile::parse(&typo, "boards/bad.toml").unwrap_err().to_string();
        assert!(e.contains("boards/bad.toml: line ") && e.contains("max_tile"), "{e}");
        // Not TOML at all.
        let e = Profile::parse("name = [", "x.toml").unwrap_err().to_string();
        assert!(e.starts_with("x.toml: line 1"), "{e}");
    }

    #[test]
    fn names_and_paths() {
        assert!(matches!(Profile::by_name("rpi9"), Err(BoardError::Unknown { .. })));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.toml");
        std::fs::write(&path, EMBEDDED[1].1.replace("name = \"rpi5\"", "name = \"mine\"")).unwrap();
        assert_eq!(Profile::by_name(path.to_str().unwrap()).unwrap().name, "mine");
        let e = Profile::by_name(dir.path().join("none.toml").to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("none.toml"), "{e}");
    }
}
