//! Give the shared library its SONAME on ELF targets, so apps, the JNI shim and CMake's imported targets
//! record `libsail_edge.so` rather than the path it was linked from.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "android" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsail_edge.so");
    }
}
