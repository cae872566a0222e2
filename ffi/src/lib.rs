//! The C API of sail-edge: an engine (a loaded model, thread-safe, shared) and sessions on it (one
//! conversation each), for C programs, Android apps through JNI and iOS apps through Swift.
//!
//! Every exported function catches panics and reports them as `SAIL_ERR_INTERNAL` with the message; handles
//! are checked against a registry of live ones, so NULL, freed or made-up handles give `SAIL_ERR_ARG`
//! instead of a crash. The header, `include/sail_edge.h`, is generated from this crate by cbindgen and
//! checked in; `tests/header.rs` fails when it is stale (`SAIL_EDGE_BLESS=1` rewrites it).
//!
//! `unsafe` lives here because this is the C boundary: every raw pointer is checked before it is read.

#![allow(non_camel_case_types)]
// The exported functions take raw pointers from C and check them before use; marking them `unsafe fn`
// would say nothing to a C caller.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod board;
mod engine;
mod guard;
mod handles;
mod log;
mod session;
mod types;

pub use engine::*;
pub use guard::{sail_last_error, sail_status_name, sail_version};
pub use log::*;
pub use session::*;
pub use types::*;
