//! Arbitrary bytes into the safetensors header validator: an error or a header, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match convert::hf::parse_safetensors_header(data) {
        Ok(h) => {
            let mut n = h.data_start + h.metadata.len();
            assert!(h.data_start <= data.len());
            for t in &h.tensors {
                let (s, e) = t.data_offsets;
                assert!(s <= e && h.data_start + e <= data.len(), "tensor {} outside the input", t.name);
                n += t.name.len() + t.shape.iter().sum::<usize>() + format!("{:?}", t.dtype).len();
            }
            std::hint::black_box(n);
        }
        Err(e) => {
            std::hint::black_box(e.to_string());
        }
    }
});
