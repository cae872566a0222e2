//! `sail-edge doctor`: what this machine is and what will run on it (CPU features, core clusters, memory,
//! cameras, serial ports, the kernel path, the matching board profile), for bug reports and CI checks.

use anyhow::Result;
use clap::Args;
use runtime::boards::Profile;
use runtime::host::{HostInfo, FEATURE_NAMES};
use serde_json::{json, Value};

use super::human_bytes;

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// One JSON object on stdout (cpu_model, arch, features, clusters, memory_bytes, cameras, serial_ports,
    /// kernel_path, profile, …) instead of the text report.
    #[arg(long)]
    pub json: bool,
}

/// Cameras as JSON values, or why there are none to list.
fn cameras() -> (Vec<Value>, Option<String>) {
    match live::source::camera::list() {
        Ok(list) => {
            let v = list
                .iter()
                .map(|c| {
                    json!({
                        "path": c.path.display().to_string(),
                        "name": c.name,
                        "driver": c.driver,
                        "formats": c.offers.iter().map(|o| String::from_utf8_lossy(&o.fourcc).into_owned()).collect::<Vec<_>>(),
                        "error": c.error,
                    })
                })
                .collect();
            (v, None)
        }
        Err(e) => (Vec::new(), Some(e)),
    }
}

/// Serial ports as JSON values, or why there are none to list.
fn serial_ports() -> (Vec<Value>, Option<String>) {
    #[cfg(feature = "serial")]
    {
        match live::serial::list_ports() {
            Ok(ports) => (ports.iter().map(|p| json!({ "name": p.name, "kind": p.kind })).collect(), None),
            Err(e) => (Vec::new(), Some(e)),
        }
    }
    #[cfg(not(feature = "serial"))]
    {
        (Vec::new(), Some("this build has no serial support (the `serial` feature)".into()))
    }
}

/// Vulkan devices as JSON values, or why there are none to list (no loader, no driver, or a build without
/// the `vulkan` feature).
fn vulkan_devices() -> (Vec<Value>, Option<String>) {
    #[cfg(feature = "vulkan")]
    {
        match runtime::vulkan::Vulkan::load().and_then(|vk| vk.devices()) {
            Ok(list) => {
                let described = list.iter().map(|d| {
                    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
                    // Whether `--backend auto` would use it (discrete GPUs and NVIDIA's integrated ones).
                    if let Some(o) = v.as_object_mut() {
                        o.insert("backend_auto".into(), Value::Bool(runtime::backend::auto_takes(d.kind, d.vendor_id)));
                    }
                    v
                });
                (described.collect(), None)
            }
            Err(e) => (Vec::new(), Some(e.to_string())),
        }
    }
    #[cfg(not(feature = "vulkan"))]
    {
        (Vec::new(), Some("this build has no Vulkan support (the `vulkan` feature)".into()))
    }
}

/// The report as one JSON object.
pub fn report(host: &HostInfo, profile: Option<&Profile>) -> Value {
    let features: serde_json::Map<String, Value> =
        FEATURE_NAMES.iter().map(|f| (f.to_string(), Value::Bool(host.has_feature(f)))).collect();
    let (cams, cam_error) = cameras();
    let (ports, port_error) = serial_ports();
    let (gpus, gpu_error) = vulkan_devices();
    let isa = runtime::kernels::isa();
    json!({
        "cpu_model": host.cpu_model,
        "arch": host.arch,
        "os": host.os,
        "cpus": host.cpus,
        "physical_cores": runtime::bench::physical_cores(),
        "features": features,
        "cpu_parts": host.cpu_parts,
        "clusters": host.clusters,
        "memory_bytes": host.memory.map(|m| json!({ "total": m.total_bytes, "available": m.available_bytes })),
        "device_model": host.device_model,
        "cameras": cams,
        "cameras_error": cam_error,
        "serial_ports": ports,
        "serial_ports_error": port_error,
        "vulkan_devices": gpus,
        "vulkan_error": gpu_error,
        "kernel_path": isa.name(),
        "kernel_path_forced": std::env::var("SAIL_EDGE_ISA").ok(),
        "profile": profile.map(|p| p.name.clone()),
        "profile_kernel_path": profile.map(|p| p.kernel_path.clone()),
    })
}

/// `cpu0-3`, `cpu4,6`.
fn core_list(cores: &[usize]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cores.len() {
        let mut j = i;
        while j + 1 < cores.len() && cores[j + 1] == cores[j] + 1 {
            j += 1;
        }
        parts.push(if j > i { format!("{}-{}", cores[i], cores[j]) } else { cores[i].to_string() });
        i = j + 1;
    }
    format!("cpu{}", parts.join(","))
}

pub fn run(a: DoctorArgs) -> Result<()> {
    let host = HostInfo::detect();
    let profile = Profile::auto(&host);
    let r = report(&host, profile.as_ref());
    if a.json {
        println!("{r:#}");
        return Ok(());
    }
    println!("cpu:       {} ({}, {}, {} logical CPUs)", host.cpu_model, host.arch, host.os, host.cpus);
    if let Some(m) = &host.device_model {
        println!("device:    {m}");
    }
    let (have, lack): (Vec<&str>, Vec<&str>) = FEATURE_NAMES.iter().partition(|f| host.has_feature(f));
    println!("features:  {} (not: {})", if have.is_empty() { "none".into() } else { have.join(" ") }, lack.join(" "));
    for c in &host.clusters {
        let mut line = format!("cluster:   {} ({} cores)", core_list(&c.cores), c.cores.len());
        if let Some(t) = &c.core_type {
            line += &format!(" {t}");
        }
        if let Some(cap) = c.capacity {
            line += &format!(", capacity {cap}");
        }
        if let Some(k) = c.max_khz {
            line += &format!(", up to {:.2} GHz", k as f64 / 1e6);
        }
        println!("{line}");
    }
    match host.memory {
        Some(m) => println!(
            "memory:    {} total{}",
            human_bytes(m.total_bytes),
            m.available_bytes.map(|a| format!(", {} available", human_bytes(a))).unwrap_or_default()
        ),
        None => println!("memory:    unknown (no /proc/meminfo)"),
    }
    println!("kernels:   {}", r["kernel_path"].as_str().unwrap_or("?"));
    match &profile {
        Some(p) => {
            let rt = &p.runtime;
            let threads = rt.threads.map_or("one per physical core".into(), |t| t.to_string());
            let pin = if rt.pin_cores.is_empty() { "no pinning".into() } else { core_list(&rt.pin_cores) };
            println!("profile:   {} ({}): --board {} or --board auto", p.name, p.title, p.name);
            println!(
                "           threads {threads} ({pin}), {} KV, context {}, {} tiles, quant mix {}",
                rt.kv_type, rt.context_length, rt.max_tiles, rt.quant_mix
            );
            if p.kernel_path != r["kernel_path"] {
                println!("           note: the profile expects the {} kernels", p.kernel_path);
            }
            if let Some(cmd) = &p.camera.command {
                println!("           camera ({}): {cmd}", p.camera.path.name());
            }
        }
        None => println!("profile:   none fits this machine (defaults apply; --board NAME picks one)"),
    }
    match (r["cameras"].as_array(), r["cameras_error"].as_str()) {
        (_, Some(e)) => println!("cameras:   {e}"),
        (Some(list), None) if list.is_empty() => println!("cameras:   none (/dev/video*)"),
        (Some(list), None) => {
            for c in list {
                println!(
                    "camera:    {} {} ({})",
                    c["path"].as_str().unwrap_or(""),
                    c["name"].as_str().unwrap_or(""),
                    c["driver"].as_str().unwrap_or("")
                );
            }
        }
        _ => {}
    }
    match (r["serial_ports"].as_array(), r["serial_ports_error"].as_str()) {
        (_, Some(e)) => println!("serial:    {e}"),
        (Some(list), None) if list.is_empty() => println!("serial:    no ports"),
        (Some(list), None) => {
            for p in list {
                println!("serial:    {} ({})", p["name"].as_str().unwrap_or(""), p["kind"].as_str().unwrap_or(""));
            }
        }
        _ => {}
    }
    match (r["vulkan_devices"].as_array(), r["vulkan_error"].as_str()) {
        (_, Some(e)) => println!("vulkan:    {e}"),
        (Some(list), None) if list.is_empty() => println!("vulkan:    no devices"),
        (Some(list), None) => {
            for d in list {
                let flag =
                    |k: &str, name: &str| if d[k].as_bool() == Some(true) { Some(name.to_string()) } else { None };
                let features: Vec<String> = [
                    flag("subgroup_arithmetic", "subgroup-arithmetic"),
                    flag("shader_int8", "int8"),
                    flag("storage_8bit", "storage8"),
                    flag("shader_float16", "float16"),
                    flag("storage_16bit", "storage16"),
                    flag("integer_dot_product", "integer-dot"),
                    flag("unified_memory", "unified-memory"),
                ]
                .into_iter()
                .flatten()
                .collect();
                println!(
                    "vulkan:    {} {} ({}, Vulkan {}, {})",
                    d["index"],
                    d["name"].as_str().unwrap_or(""),
                    d["kind"].as_str().unwrap_or(""),
                    d["api_version"].as_str().unwrap_or(""),
                    d["driver"].as_str().unwrap_or("")
                );
                println!(
                    "           {} device-local, {} B shared memory, {} invocations per workgroup, subgroup {}, \
                     buffers up to {}; {}",
                    human_bytes(d["device_local_bytes"].as_u64().unwrap_or(0)),
                    d["max_shared_memory_bytes"],
                    d["max_workgroup_invocations"],
                    d["subgroup_size"],
                    human_bytes(d["max_storage_buffer_range"].as_u64().unwrap_or(0)),
                    if features.is_empty() { "no optional features".to_string() } else { features.join(" ") }
                );
                println!(
                    "           --backend auto: {}",
                    if d["backend_auto"].as_bool() == Some(true) {
                        "uses it"
                    } else {
                        "the CPU (not a discrete GPU nor NVIDIA's; --backend vulkan forces it)"
                    }
                );
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quantize::recipe::Mix;

    #[test]
    fn core_lists_are_compact() {
        assert_eq!(core_list(&[0, 1, 2, 3]), "cpu0-3");
        assert_eq!(core_list(&[3, 4, 5, 7]), "cpu3-5,7");
        assert_eq!(core_list(&[2]), "cpu2");
    }

    #[test]
    fn every_profile_names_a_mix_the_converter_knows() {
        for p in Profile::all().unwrap() {
            assert!(
                p.runtime.quant_mix.parse::<Mix>().is_ok(),
                "boards/{}.toml: quant_mix {}",
                p.name,
                p.runtime.quant_mix
            );
        }
    }
}
