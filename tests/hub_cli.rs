//! `sail-edge describe -m owner/name` end to end against a local stand-in for the Hugging Face hub
//! (127.0.0.1 only, via HF_ENDPOINT) with the cache in a temporary folder (SAIL_EDGE_CACHE).

#![cfg(feature = "hub")]

mod common;

use common::{fixtures, stderr};

#[path = "../convert/tests/support/hub_server.rs"]
mod hub_server;

use std::path::Path;
use std::process::{Command, Output};

use hub_server::{HubServer, Repo};

fn sail_edge(endpoint: &str, cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sail-edge"))
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("SAIL_EDGE_CACHE", cache)
        .env_remove("HF_TOKEN")
        .output()
        .expect("binary runs")
}

#[test]
fn describe_from_a_model_id_downloads_once_then_runs_from_the_cache() {
    let server = HubServer::start();
    server.add_repo("sail/tiny", Repo::from_dir(&fixtures().join("sailvl2-tiny")));
    let cache = tempfile::tempdir().unwrap();
    let page = fixtures().join("images/page.png");
    let args = ["describe", "-m", "sail/tiny", "--image", page.to_str().unwrap(), "-p", "What does it say?", "-n", "2"];

    let o = sail_edge(&server.endpoint(), cache.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("downloading sail/tiny") && err.contains("converting sail/tiny"), "{err}");
    assert!(err.contains("generation: "), "{err}");
    let dir = cache.path().join("models/sail--tiny/main");
    assert!(dir.join("tiny-q4_k_m.gguf").is_file() && dir.join("mmproj-tiny-q8_0.gguf").is_file());
    assert!(!dir.join("checkpoint").exists(), "the checkpoint is deleted after conversion by default");
    let first_answer = o.stdout.clone();

    // Again: no request, same answer (greedy).
    let before = server.request_count();
    let o = sail_edge(&server.endpoint(), cache.path(), &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("downloading"), "{}", stderr(&o));
    assert_eq!(server.request_count(), before);
    assert_eq!(o.stdout, first_answer);
}

#[test]
fn model_ids_and_paths_that_lead_nowhere_are_clear_errors() {
    let server = HubServer::start();
    let cache = tempfile::tempdir().unwrap();
    let prompt = ["-p", "hi", "-n", "1"];

    let o = sail_edge(&server.endpoint(), cache.path(), &[&["describe", "-m", "nobody/nothing"][..], &prompt].concat());
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("'nobody/nothing'") && err.contains("not found"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    for missing in ["missing-model.gguf", "models/tiny.gguf", "no/such/folder/model"] {
        let o = sail_edge(&server.endpoint(), cache.path(), &[&["describe", "-m", missing][..], &prompt].concat());
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains(missing) && err.contains("no such file"), "{missing}: {err}");
    }
    assert_eq!(server.request_count(), 1, "only the unknown id reached the hub");

    let o = sail_edge(&server.endpoint(), cache.path(), &[&["describe", "-m", "sail/tiny:q3_x"][..], &prompt].concat());
    assert!(stderr(&o).contains("unknown type 'q3_x'"), "{}", stderr(&o));

    // Offline: a closed local port answers at once with a clear message.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = std::time::Instant::now();
    let o = sail_edge(
        &format!("http://127.0.0.1:{port}"),
        cache.path(),
        &[&["chat", "-m", "sail/tiny"][..], &["-n", "1"]].concat(),
    );
    assert!(!o.status.success());
    assert!(t.elapsed().as_secs() < 20);
    assert!(stderr(&o).contains("cannot reach the model hub"), "{}", stderr(&o));
}
