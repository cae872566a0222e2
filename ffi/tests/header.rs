//! The committed C header is what cbindgen generates from the crate now. A change to the API that was not
//! followed by regenerating the header fails here; `SAIL_EDGE_BLESS=1` rewrites it.

use std::path::Path;

#[test]
fn the_committed_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("ffi/cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not read ffi/src")
        .write(&mut generated);
    let path = crate_dir.join("include/sail_edge.h");
    if std::env::var_os("SAIL_EDGE_BLESS").is_some() {
        // Written whole beside it and renamed, so a failed write never leaves half a header.
        let tmp = path.with_extension("h.tmp");
        std::fs::write(&tmp, &generated).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "ffi/include/sail_edge.h is stale: regenerate it with SAIL_EDGE_BLESS=1 cargo test -p sail-edge-ffi --test header"
    );
}
