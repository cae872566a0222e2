use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use runtime::gguf::GgufFile;

use super::human_bytes;

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// GGUF file to describe.
    pub file: PathBuf,
    /// Print long strings and arrays in full.
    #[arg(long)]
    pub full: bool,
    /// Skip the tensor table.
    #[arg(long)]
    pub no_tensors: bool,
}

pub fn run(a: InfoArgs) -> Result<()> {
    let f = GgufFile::open(&a.file)?;
    let h = f.header();
    println!(
        "{}: GGUF v{}, {} tensors, {} metadata keys, alignment {}",
        a.file.display(),
        h.version,
        h.tensors.len(),
        h.metadata.len(),
        h.alignment
    );
    println!("\nmetadata:");
    for (k, v) in &h.metadata {
        if a.full {
            println!("  {k} = {v:?}");
        } else {
            println!("  {k} = {v}");
        }
    }
    let mut by_type: BTreeMap<runtime::GgmlType, (usize, u64, u64)> = BTreeMap::new();
    if !a.no_tensors {
        println!("\ntensors:");
        println!("  {:<40} {:>6}  {:<24} {:>12}", "name", "type", "shape", "bytes");
    }
    for t in &h.tensors {
        let e = by_type.entry(t.ty).or_default();
        e.0 += 1;
        e.1 += t.n_elements();
        e.2 += t.size;
        if !a.no_tensors {
            let shape = format!("{:?}", t.dims);
            println!("  {:<40} {:>6}  {:<24} {:>12}", t.name, t.ty.to_string(), shape, t.size);
        }
    }
    let elements: u64 = by_type.values().map(|v| v.1).sum();
    let bytes: u64 = by_type.values().map(|v| v.2).sum();
    println!("\ntotals:");
    for (ty, (n, e, b)) in &by_type {
        println!("  {:>6}: {:>4} tensors, {:>14} weights, {:>12}", ty.to_string(), n, e, human_bytes(*b));
    }
    println!(
        "  all: {} weights, {} of tensor data, {:.3} bits/weight, file {}",
        elements,
        human_bytes(bytes),
        if elements == 0 { 0.0 } else { bytes as f64 * 8.0 / elements as f64 },
        human_bytes(f.file_size())
    );
    Ok(())
}
