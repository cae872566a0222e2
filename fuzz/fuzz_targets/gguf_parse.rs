//! Arbitrary bytes into the GGUF header parser: it must return an error or a header, never panic,
//! overflow or allocate without bound. On success every tensor info and metadata value is touched.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime::gguf::{GgufHeader, Value};

fn touch(v: &Value) -> usize {
    // Display, the typed accessors and (for arrays) every element.
    let mut n = v.to_string().len();
    n += v.as_u64().is_some() as usize + v.as_i64().is_some() as usize + v.as_f32().is_some() as usize;
    n += v.as_bool().is_some() as usize + v.as_str().map_or(0, str::len);
    if let Some(items) = v.as_array() {
        for i in items {
            assert_ne!(i.value_type(), runtime::gguf::ValueType::Array, "nested array accepted");
            n += touch(i);
        }
    }
    n
}

fuzz_target!(|data: &[u8]| {
    let Ok(h) = GgufHeader::parse(data) else { return };
    let mut n = h.version as usize + h.alignment as usize;
    assert!(h.alignment.is_power_of_two());
    assert_eq!(h.data_offset % h.alignment, 0);
    for (k, v) in &h.metadata {
        assert!(std::ptr::eq(h.get(k).unwrap(), v), "key index points elsewhere");
        n += k.len() + touch(v);
    }
    let _ = h.architecture();
    let len = data.len() as u64;
    for t in &h.tensors {
        assert!(std::ptr::eq(h.tensor(&t.name).unwrap(), t), "tensor index points elsewhere");
        assert!((1..=4).contains(&t.dims.len()));
        assert!(t.name.len() < 64);
        assert_eq!(t.offset % h.alignment, 0);
        let start = h.data_offset + t.offset;
        assert!(start + t.size <= len, "tensor data outside the input");
        // The bytes exist and the shape helpers do not overflow.
        let bytes = &data[start as usize..(start + t.size) as usize];
        let row = t.ty.row_size(t.row_len() as usize).expect("ne0 is a whole number of blocks") as u64;
        assert_eq!(row.checked_mul(t.n_rows()), Some(t.size));
        n += bytes.first().copied().unwrap_or(0) as usize + t.n_elements() as usize;
    }
    std::hint::black_box(n);
});
