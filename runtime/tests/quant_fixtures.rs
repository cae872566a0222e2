//! Goldens from ggml itself (`../shared/fixtures/quant`, see its README): our quantizer must write
//! ggml's bytes exactly and our dequantizer must reproduce ggml's `to_float` bit for bit.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use runtime::quant::{dequantize, dequantize_rows, quantize, quantize_rows};
use runtime::GgmlType;

const MATRICES: [&str; 3] = ["normal", "outliers", "zero_row"];
const TYPES: [(GgmlType, &str); 8] = [
    (GgmlType::Q4_0, "Q4_0"),
    (GgmlType::Q4_1, "Q4_1"),
    (GgmlType::Q5_0, "Q5_0"),
    (GgmlType::Q5_1, "Q5_1"),
    (GgmlType::Q8_0, "Q8_0"),
    (GgmlType::Q4K, "Q4_K"),
    (GgmlType::Q5K, "Q5_K"),
    (GgmlType::Q6K, "Q6_K"),
];
const ROWS: usize = 8;
const COLS: usize = 512;

fn fixture_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/quant"));
    assert!(
        dir.join("README.md").is_file(),
        "quant fixtures missing: expected ggml goldens in {} (the shared/ folder beside the checkout)",
        dir.display()
    );
    dir
}

fn read_npy_f32(path: &PathBuf) -> Vec<f32> {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let npy = npyz::NpyFile::new(BufReader::new(file)).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    assert_eq!(npy.shape(), &[ROWS as u64, COLS as u64], "{}", path.display());
    npy.into_vec::<f32>().unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn read_bin(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Panics naming the first differing block (row, block-in-row, byte offsets and both byte runs).
fn assert_bytes_eq(ty: GgmlType, ctx: &str, ours: &[u8], golden: &[u8]) {
    assert_eq!(ours.len(), golden.len(), "{ctx}: length");
    if ours == golden {
        return;
    }
    let bs = ty.type_size();
    let row_bytes = ty.row_size(COLS).unwrap();
    let first = ours.iter().zip(golden).position(|(a, b)| a != b).unwrap();
    let block = first / bs;
    let bad_blocks = ours.chunks(bs).zip(golden.chunks(bs)).filter(|(a, b)| a != b).count();
    let range = block * bs..(block + 1) * bs;
    panic!(
        "{ctx}: {bad_blocks} of {} blocks differ; first at byte {first} = row {}, block {} \
         (byte {} in block)\n ours:   {:02x?}\n golden: {:02x?}",
        ours.len() / bs,
        first / row_bytes,
        (first % row_bytes) / bs,
        first - range.start,
        &ours[range.clone()],
        &golden[range],
    );
}

fn assert_f32_bits_eq(ctx: &str, ours: &[f32], golden: &[f32]) {
    assert_eq!(ours.len(), golden.len(), "{ctx}: length");
    let bad: Vec<usize> = (0..ours.len()).filter(|&i| ours[i].to_bits() != golden[i].to_bits()).collect();
    if let Some(&i) = bad.first() {
        panic!(
            "{ctx}: {} of {} values differ; first at [{}, {}]: ours {:e} ({:#010x}), golden {:e} ({:#010x})",
            bad.len(),
            ours.len(),
            i / COLS,
            i % COLS,
            ours[i],
            ours[i].to_bits(),
            golden[i],
            golden[i].to_bits()
        );
    }
}

#[test]
fn quantize_matches_ggml_bytes() {
    let dir = fixture_dir();
    for m in MATRICES {
        let x = read_npy_f32(&dir.join(format!("{m}.f32.npy")));
        for (ty, name) in TYPES {
            let golden = read_bin(&dir.join(format!("{m}.{name}.bin")));
            let mut ours = vec![0u8; ty.row_size(ROWS * COLS).unwrap()];
            quantize(ty, &x, &mut ours).unwrap();
            assert_bytes_eq(ty, &format!("quantize {m} {name}"), &ours, &golden);

            let mut rows = vec![0xAAu8; ours.len()];
            quantize_rows(ty, &x, COLS, &mut rows).unwrap();
            assert_bytes_eq(ty, &format!("quantize_rows {m} {name}"), &rows, &golden);
        }
    }
}

#[test]
fn dequantize_matches_ggml_to_float() {
    let dir = fixture_dir();
    for m in MATRICES {
        for (ty, name) in TYPES {
            let bytes = read_bin(&dir.join(format!("{m}.{name}.bin")));
            let golden = read_npy_f32(&dir.join(format!("{m}.{name}.deq.npy")));

            let mut ours = vec![f32::NAN; ROWS * COLS];
            dequantize(ty, &bytes, &mut ours).unwrap();
            assert_f32_bits_eq(&format!("dequantize {m} {name}"), &ours, &golden);

            let mut rows = vec![f32::NAN; ROWS * COLS];
            dequantize_rows(ty, &bytes, COLS, &mut rows).unwrap();
            assert_f32_bits_eq(&format!("dequantize_rows {m} {name}"), &rows, &golden);

            // GGUF data may sit at any offset in a buffer: an odd start must decode the same.
            let mut shifted = vec![0u8; bytes.len() + 1];
            shifted[1..].copy_from_slice(&bytes);
            let mut unaligned = vec![f32::NAN; ROWS * COLS];
            dequantize(ty, &shifted[1..], &mut unaligned).unwrap();
            assert_f32_bits_eq(&format!("unaligned {m} {name}"), &unaligned, &golden);
        }
    }
}

#[test]
fn fixture_sizes_match_row_size() {
    let dir = fixture_dir();
    for m in MATRICES {
        for (ty, name) in TYPES {
            let len = std::fs::metadata(dir.join(format!("{m}.{name}.bin"))).unwrap().len() as usize;
            assert_eq!(Some(len), ty.row_size(ROWS * COLS), "{m}.{name}.bin");
        }
    }
}
