//! The streaming GGUF writer: what it writes reads back identically, and it is atomic (an error, a
//! cancellation or a drop before `finish` leaves neither the target nor a temporary file behind).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use runtime::gguf::{align_up, GgufError, GgufFile, GgufWriter, TensorSpec, Value, ValueType};
use runtime::GgmlType;

/// Names of everything in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn assert_empty(dir: &Path) {
    assert_eq!(entries(dir), Vec::<String>::new(), "files left behind in {}", dir.display());
}

/// Deterministic bytes for a tensor.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// One metadata value of every type, arrays of every element type, and empty arrays.
fn all_value_types() -> Vec<(String, Value)> {
    let kv = |k: &str, v: Value| (k.to_string(), v);
    vec![
        kv("general.architecture", Value::String("qwen3".into())),
        kv("test.u8", Value::U8(0xfe)),
        kv("test.i8", Value::I8(-128)),
        kv("test.u16", Value::U16(0xbeef)),
        kv("test.i16", Value::I16(-12345)),
        kv("test.u32", Value::U32(0xdead_beef)),
        kv("test.i32", Value::I32(i32::MIN)),
        kv("test.f32", Value::F32(-1.5e-7)),
        kv("test.bool.true", Value::Bool(true)),
        kv("test.bool.false", Value::Bool(false)),
        kv("test.string", Value::String("héllo\nwörld ✓ \u{0}".into())),
        kv("test.string.empty", Value::String(String::new())),
        kv("test.u64", Value::U64(u64::MAX)),
        kv("test.i64", Value::I64(i64::MIN)),
        kv("test.f64", Value::F64(std::f64::consts::PI)),
        kv("test.array.u8", Value::Array(ValueType::U8, vec![Value::U8(0), Value::U8(255)])),
        kv("test.array.i8", Value::Array(ValueType::I8, vec![Value::I8(-1), Value::I8(1)])),
        kv("test.array.u16", Value::Array(ValueType::U16, vec![Value::U16(1), Value::U16(65535)])),
        kv("test.array.i16", Value::Array(ValueType::I16, vec![Value::I16(-2)])),
        kv("test.array.u32", Value::Array(ValueType::U32, vec![Value::U32(7); 5])),
        kv("test.array.i32", Value::i32s([1, -2, 3, 4, 5, 6])),
        kv("test.array.f32", Value::f32s([0.5, -0.25, f32::INFINITY, f32::MIN_POSITIVE])),
        kv("test.array.bool", Value::Array(ValueType::Bool, vec![Value::Bool(true), Value::Bool(false)])),
        kv("test.array.string", Value::strings(["a", "", "Ġ Ġ", "<|im_end|>"])),
        kv("test.array.u64", Value::Array(ValueType::U64, vec![Value::U64(u64::MAX), Value::U64(0)])),
        kv("test.array.i64", Value::Array(ValueType::I64, vec![Value::I64(-1)])),
        kv("test.array.f64", Value::Array(ValueType::F64, vec![Value::F64(1e300), Value::F64(-0.0)])),
        kv("test.array.empty.string", Value::Array(ValueType::String, vec![])),
        kv("test.array.empty.u32", Value::Array(ValueType::U32, vec![])),
        kv("test.array.empty.f64", Value::Array(ValueType::F64, vec![])),
    ]
}

fn specs() -> Vec<TensorSpec> {
    vec![
        TensorSpec::new("token_embd.weight", vec![64, 3], GgmlType::Q8_0), // 3 rows × 2 blocks × 34 = 204 bytes
        TensorSpec::new("blk.0.attn_norm.weight", vec![7], GgmlType::F32), // 28 bytes
        TensorSpec::new("blk.0.attn_q.weight", vec![256, 2], GgmlType::Q4K), // 288 bytes
        TensorSpec::new("blk.0.ffn_up.weight", vec![32, 2, 2], GgmlType::F16), // 256 bytes
        TensorSpec::new("blk.0.ffn_gate_exps.weight", vec![32, 1, 1, 3], GgmlType::Q4_0), // 54 bytes
        TensorSpec::new("blk.0.empty", vec![0, 4], GgmlType::F32),         // 0 bytes, in the middle
        TensorSpec::new("blk.0.ids", vec![5], GgmlType::I32),              // 20 bytes
        TensorSpec::new("output_norm.weight", vec![3], GgmlType::BF16),    // 6 bytes
        TensorSpec::new("trailing.empty", vec![0], GgmlType::F32),         // 0 bytes, last: finish skips it
    ]
}

fn expected_sizes() -> Vec<usize> {
    vec![204, 28, 288, 256, 54, 0, 20, 6, 0]
}

/// Write `specs()` with `metadata`: odd tensors in one `write_tensor` call, even ones in uneven chunks.
fn write_file(path: &Path, metadata: &[(String, Value)]) -> (u64, Vec<Vec<u8>>) {
    let specs = specs();
    let data: Vec<Vec<u8>> = expected_sizes().iter().enumerate().map(|(i, &n)| pattern(n, i as u8)).collect();
    let mut w = GgufWriter::create(path, metadata, specs.clone()).unwrap();
    assert_eq!(w.specs(), &specs[..]);
    for (i, (spec, bytes)) in specs.iter().zip(&data).enumerate() {
        if spec.name == "trailing.empty" {
            break;
        }
        assert_eq!(w.next_tensor().map(|s| s.name.as_str()), Some(spec.name.as_str()));
        if i % 2 == 1 || bytes.is_empty() {
            w.write_tensor(&spec.name, bytes).unwrap();
        } else {
            // Chunks of 1, 2, 3, ... bytes, plus an empty write.
            w.write(&[]).unwrap();
            let mut rest = &bytes[..];
            let mut n = 1;
            while !rest.is_empty() {
                let k = n.min(rest.len());
                w.write(&rest[..k]).unwrap();
                rest = &rest[k..];
                n += 1;
            }
        }
    }
    let n = w.finish().unwrap();
    (n, data)
}

fn check_round_trip(path: &Path, metadata: &[(String, Value)], alignment: u64) {
    let (written, data) = write_file(path, metadata);
    let f = GgufFile::open(path).unwrap();
    assert_eq!(written, f.file_size(), "finish() returns the file size");
    let h = f.header();
    assert_eq!(h.version, 3);
    assert_eq!(h.alignment, alignment);
    assert_eq!(h.data_offset % alignment, 0);
    // Metadata: same keys, same order, identical values (incl. empty arrays and their element type).
    assert_eq!(f.metadata(), metadata);
    for (k, v) in metadata {
        assert_eq!(f.get(k), Some(v), "{k}");
    }
    // Tensors: same names, order, dims, types and bytes; offsets back to back, each padded.
    let specs = specs();
    assert_eq!(f.tensors().len(), specs.len());
    let mut expect_offset = 0u64;
    for ((t, spec), bytes) in f.tensors().iter().zip(&specs).zip(&data) {
        assert_eq!(t.name, spec.name);
        assert_eq!(t.dims, spec.dims, "{}", t.name);
        assert_eq!(t.ty, spec.ty, "{}", t.name);
        assert_eq!(t.size, bytes.len() as u64, "{}", t.name);
        assert_eq!(Some(t.size), spec.size(), "{}", t.name);
        assert_eq!(t.offset, expect_offset, "{}: offsets are contiguous as llama.cpp requires", t.name);
        assert_eq!(t.offset % alignment, 0, "{}", t.name);
        assert_eq!((h.data_offset + t.offset) % alignment, 0, "{}", t.name);
        assert_eq!(f.data(t), &bytes[..], "{}", t.name);
        expect_offset += align_up(t.size, alignment);
    }
    assert_eq!(f.file_size(), h.data_offset + expect_offset, "the last tensor is padded too");
    // Padding is zeros.
    let raw = std::fs::read(path).unwrap();
    for t in f.tensors() {
        let end = (h.data_offset + t.offset + t.size) as usize;
        let padded = (h.data_offset + align_up(t.offset + t.size, alignment)) as usize;
        assert!(raw[end..padded].iter().all(|&b| b == 0), "{}: padding is not zero", t.name);
    }
}

#[test]
fn round_trip_every_value_type_and_several_tensor_types() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    check_round_trip(&path, &all_value_types(), 32);
    assert_eq!(entries(dir.path()), vec!["model.gguf"], "no temporary file is left after finish");
}

#[test]
fn round_trip_custom_alignment_64() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aligned.gguf");
    let mut md = all_value_types();
    md.insert(1, ("general.alignment".to_string(), Value::U32(64)));
    check_round_trip(&path, &md, 64);
}

#[test]
fn round_trip_without_metadata_or_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.gguf");
    let n = GgufWriter::create(&path, &[], vec![]).unwrap().finish().unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(n, 32, "24-byte header padded to the alignment");
    assert_eq!(f.file_size(), 32);
    assert!(f.metadata().is_empty() && f.tensors().is_empty());
}

#[test]
fn replaces_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, b"old contents").unwrap();
    check_round_trip(&path, &all_value_types(), 32);
    assert_eq!(entries(dir.path()), vec!["model.gguf"]);
}

#[test]
fn create_rejects_bad_metadata_and_tensor_lists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    let t = || vec![TensorSpec::new("t", vec![32], GgmlType::F32)];
    let kv = |k: &str, v: Value| (k.to_string(), v);
    type Case = (Vec<(String, Value)>, Vec<TensorSpec>, &'static str);
    let cases: Vec<Case> = vec![
        (vec![kv("a", Value::U8(1)), kv("a", Value::U8(2))], t(), "duplicate metadata key 'a'"),
        (vec![kv("general.alignment", Value::U32(48))], t(), "general.alignment"),
        (vec![kv("general.alignment", Value::U64(64))], t(), "general.alignment"),
        (vec![kv("x", Value::Array(ValueType::Array, vec![]))], t(), "'x'"),
        (vec![kv("x", Value::Array(ValueType::U32, vec![Value::I32(1)]))], t(), "'x'"),
        (vec![], vec![TensorSpec::new("t", vec![32], GgmlType::F32); 2], "duplicate tensor name 't'"),
        (vec![], vec![TensorSpec::new("n".repeat(64), vec![32], GgmlType::F32)], "nnnn"),
        (vec![], vec![TensorSpec::new("t", vec![], GgmlType::F32)], "'t' has 0 dimensions"),
        (vec![], vec![TensorSpec::new("t", vec![1; 5], GgmlType::F32)], "'t' has 5 dimensions"),
        (vec![], vec![TensorSpec::new("t", vec![33], GgmlType::Q8_0)], "first dimension 33"),
    ];
    for (md, tensors, needle) in cases {
        match GgufWriter::create(&path, &md, tensors) {
            Err(e @ GgufError::Write { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(needle) && msg.contains("bad.gguf"), "{msg:?} lacks {needle:?}");
            }
            Err(e) => panic!("expected a Write error for {needle:?}, got {e:?}"),
            Ok(_) => panic!("accepted: {needle}"),
        }
        assert_empty(dir.path());
    }
}

// ---------------------------------------------------------------------------------------------------------
// Atomicity
// ---------------------------------------------------------------------------------------------------------

fn two_tensors() -> Vec<TensorSpec> {
    vec![TensorSpec::new("a", vec![32], GgmlType::F32), TensorSpec::new("b", vec![64], GgmlType::Q8_0)]
}

fn md() -> Vec<(String, Value)> {
    vec![("general.architecture".to_string(), Value::String("qwen3".into()))]
}

fn expect_io_naming(err: GgufError, path: &Path) {
    let msg = err.to_string();
    match err {
        GgufError::Io { path: p, .. } => assert_eq!(p, path),
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(msg.contains(&path.display().to_string()), "{msg:?} does not name {}", path.display());
}

#[test]
fn unwritable_path_nonexistent_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no").join("such").join("dir").join("out.gguf");
    let err = GgufWriter::create(&path, &md(), two_tensors()).err().expect("create must fail");
    expect_io_naming(err, &path);
    assert_empty(dir.path());
}

#[test]
fn unwritable_path_under_a_regular_file() {
    // Tests may run as root, so a permission-less directory would still be writable: use a file as "dir".
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file.txt");
    std::fs::write(&file, b"not a directory").unwrap();
    let path = file.join("out.gguf");
    let err = GgufWriter::create(&path, &md(), two_tensors()).err().expect("create must fail");
    expect_io_naming(err, &path);
    assert_eq!(entries(dir.path()), vec!["file.txt"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"not a directory");
}

#[test]
fn temporary_file_lives_beside_the_target_until_finish() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.gguf");
    let mut w = GgufWriter::create(&path, &md(), two_tensors()).unwrap();
    assert_eq!(w.path(), path);
    let names = entries(dir.path());
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with(".out.gguf.") && names[0].ends_with(".partial"), "{names:?}");
    w.write_tensor("a", &[1; 128]).unwrap();
    w.write_tensor("b", &[2; 68]).unwrap();
    assert!(!path.exists(), "target appears only at finish");
    w.finish().unwrap();
    assert_eq!(entries(dir.path()), vec!["out.gguf"]);
}

/// Runs `f` on a fresh writer for `two_tensors()`; it must fail, and nothing may remain in the directory,
/// neither right after the error nor after the writer is dropped. An existing target must be untouched.
fn fails_cleanly(f: impl Fn(&mut GgufWriter) -> Result<(), GgufError>) -> GgufError {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.gguf");
    let mut w = GgufWriter::create(&path, &md(), two_tensors()).unwrap();
    let err = f(&mut w).expect_err("operation must fail");
    assert!(!path.exists());
    drop(w);
    assert_empty(dir.path());

    // Same with an older file already under the target name: it stays as it was.
    std::fs::write(&path, b"previous model").unwrap();
    let mut w = GgufWriter::create(&path, &md(), two_tensors()).unwrap();
    let _ = f(&mut w).expect_err("operation must fail");
    drop(w);
    assert_eq!(entries(dir.path()), vec!["out.gguf"]);
    assert_eq!(std::fs::read(&path).unwrap(), b"previous model");
    err
}

fn expect_write_error(err: GgufError, needle: &str) {
    let msg = err.to_string();
    assert!(matches!(err, GgufError::Write { .. }), "expected Write, got {err:?}");
    assert!(msg.contains(needle) && msg.contains("out.gguf"), "{msg:?} lacks {needle:?}");
}

#[test]
fn too_many_bytes_for_a_tensor_via_write() {
    let err = fails_cleanly(|w| {
        w.write(&[0; 100])?;
        w.write(&[0; 29]) // 129 > 128
    });
    expect_write_error(err, "tensor 'a' is 128 bytes, but 129 were written");
}

#[test]
fn too_many_bytes_for_a_tensor_via_write_tensor() {
    let err = fails_cleanly(|w| w.write_tensor("a", &[0; 129]));
    expect_write_error(err, "tensor 'a' is 128 bytes, got 129");
}

#[test]
fn too_few_bytes_via_write_tensor() {
    let err = fails_cleanly(|w| w.write_tensor("a", &[0; 127]));
    expect_write_error(err, "tensor 'a' is 128 bytes, got 127");
}

#[test]
fn bytes_after_the_last_tensor() {
    let err = fails_cleanly(|w| {
        w.write_tensor("a", &[0; 128])?;
        w.write_tensor("b", &[0; 68])?;
        w.write(&[0; 1])
    });
    expect_write_error(err, "after the last tensor");
}

#[test]
fn wrong_tensor_order() {
    let err = fails_cleanly(|w| w.write_tensor("b", &[0; 68]));
    expect_write_error(err, "tensor 'b' written out of order (expected 'a')");
}

#[test]
fn write_tensor_after_a_partial_write() {
    let err = fails_cleanly(|w| {
        w.write(&[0; 64])?;
        w.write_tensor("a", &[0; 128])
    });
    expect_write_error(err, "out of order");
}

#[test]
fn writes_after_a_failure_keep_failing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.gguf");
    let mut w = GgufWriter::create(&path, &md(), two_tensors()).unwrap();
    assert!(w.write_tensor("b", &[0; 68]).is_err());
    assert_empty(dir.path());
    assert!(w.write_tensor("a", &[0; 128]).is_err(), "a failed writer stays failed");
    let err = w.finish().unwrap_err();
    assert!(err.to_string().contains("already failed") || err.to_string().contains("never written"), "{err}");
    assert_empty(dir.path());
}

#[test]
fn finish_with_a_tensor_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.gguf");
    let mut w = GgufWriter::create(&path, &md(), two_tensors()).unwrap();
    w.write_tensor("a", &[0; 128]).unwrap();
    let err = w.finish().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, GgufError::Write { .. }), "{err:?}");
    assert!(msg.contains("tensor 'b' was never written") && msg.contains("out.gguf"), "{msg}");
    assert_empty(dir.path());

    // A tensor half written is missing too.
    let mut w = GgufWriter::create(&path, &md(), two_tensors()).unwrap();
    w.write_tensor("a", &[0; 128]).unwrap();
    w.write(&[0; 10]).unwrap();
    assert!(w.finish_pending().is_err());
    assert_empty(dir.path());
}

#[test]
fn cancel_flag_set_midway() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.gguf");
    let flag = Arc::new(AtomicBool::new(false));
    let mut w = GgufWriter::create(&path, &md(), two_tensors()).unwrap().with_cancel_flag(flag.clone());
    w.write(&[0; 64]).unwrap();
    flag.store(true, Ordering::SeqCst);
    let err = w.write(&[0; 64]).unwrap_err();
    match &err {
        GgufError::Cancelled { path: p } => assert_eq!(p, &path),
        other => panic!("expected Cancelled, got {other:?}"),
    }
    assert!(err.to_string().contains("out.gguf"));
    assert_empty(dir.path());
    assert!(w.write(&[0; 64]).is_err());
    assert!(w.finish().is_err());
    assert_empty(dir.path());
}

#[test]
fn cancel_flag_set_before_the_first_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.gguf");
    let flag = Arc::new(AtomicBool::new(true));
    let mut w = GgufWriter::create(&path, &md(), two_tensors()).unwrap().with_cancel_flag(flag);
    assert!(matches!(w.write_tensor("a", &[0; 128]), Err(GgufError::Cancelled { .. })));
    drop(w);
    assert_empty(dir.path());
}

#[test]
fn drop_without_finish_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.gguf");
    // Right after create, half way, and with every tensor written but finish never called.
    for n_written in [0usize, 1, 2] {
        let mut w = GgufWriter::create(&path, &md(), two_tensors()).unwrap();
        if n_written >= 1 {
            w.write_tensor("a", &[0; 128]).unwrap();
        }
        if n_written >= 2 {
            w.write_tensor("b", &[0; 68]).unwrap();
        }
        assert_eq!(entries(dir.path()).len(), 1);
        drop(w);
        assert_empty(dir.path());
    }
}

fn complete(path: &Path) -> GgufWriter {
    let mut w = GgufWriter::create(path, &md(), two_tensors()).unwrap();
    w.write_tensor("a", &pattern(128, 1)).unwrap();
    w.write_tensor("b", &pattern(68, 2)).unwrap();
    w
}

#[test]
fn finish_pending_then_drop_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.gguf");
    let pending = complete(&path).finish_pending().unwrap();
    assert_eq!(pending.path(), path);
    assert!(pending.bytes > 0);
    assert!(!path.exists(), "still under its temporary name");
    assert_eq!(entries(dir.path()).len(), 1);
    drop(pending);
    assert_empty(dir.path());
}

#[test]
fn finish_pending_then_persist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.gguf");
    let mmproj: PathBuf = dir.path().join("mmproj.gguf");
    // Two outputs, renamed into place only once both are complete.
    let a = complete(&path).finish_pending().unwrap();
    let b = complete(&mmproj).finish_pending().unwrap();
    assert!(!path.exists() && !mmproj.exists());
    let (na, nb) = (a.bytes, b.bytes);
    a.persist().unwrap();
    b.persist().unwrap();
    assert_eq!(entries(dir.path()), vec!["mmproj.gguf", "out.gguf"]);
    for (p, n) in [(&path, na), (&mmproj, nb)] {
        let f = GgufFile::open(p).unwrap();
        assert_eq!(f.file_size(), n);
        assert_eq!(f.tensor_data("a").unwrap(), &pattern(128, 1)[..]);
        assert_eq!(f.tensor_data("b").unwrap(), &pattern(68, 2)[..]);
    }
}

#[test]
fn bytes_written_counts_header_padding_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.gguf");
    let mut w = GgufWriter::create(&path, &md(), two_tensors()).unwrap();
    let header = w.bytes_written();
    assert_eq!(header % 32, 0);
    w.write_tensor("a", &[0; 128]).unwrap();
    assert_eq!(w.bytes_written(), header + 128);
    w.write(&[0; 68]).unwrap();
    assert_eq!(w.bytes_written(), header + 128 + 96, "68 bytes padded to 96");
    assert_eq!(w.finish().unwrap(), header + 224);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), header + 224);
}
