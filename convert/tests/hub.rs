//! `convert::hub` against a local stand-in for the Hugging Face hub (127.0.0.1 only): download → convert →
//! cache, cache hits without a request, resumed and retried transfers, checksum failures, unknown models,
//! private models and an unreachable hub.

#![cfg(feature = "hub")]

#[path = "support/hub_server.rs"]
mod hub_server;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use convert::hub::{Hub, HubConfig, HubError, ModelId, CHECKPOINT_DIR};
use convert::ConvertOptions;
use hub_server::{HubServer, Repo};
use quantize::Mix;
use runtime::gguf::GgufFile;

const SHARD1: &str = "model-00001-of-00002.safetensors";
const SHARD2: &str = "model-00002-of-00002.safetensors";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/sailvl2-tiny")
}

fn server_with(repo: Repo) -> HubServer {
    let server = HubServer::start();
    server.add_repo("sail/tiny", repo);
    server
}

fn hub(server: &HubServer, cache: &Path, keep: bool) -> Hub {
    let mut c = HubConfig::new(&server.endpoint(), cache);
    c.keep_checkpoint = keep;
    Hub::new(c).unwrap()
}

fn id(s: &str) -> ModelId {
    ModelId::parse(s).unwrap()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn resolves_downloads_converts_then_reuses_the_cache_without_a_request() {
    let mut repo = Repo::from_dir(&fixture());
    repo.files.insert("README.md".into(), b"# SAIL-VL2 tiny".to_vec());
    repo.files.insert("pytorch_model.bin".into(), vec![0; 4096]);
    let server = server_with(repo);
    let cache = tempfile::tempdir().unwrap();
    let hub = hub(&server, cache.path(), false);
    let model = id("sail/tiny:q8_0");

    let r = hub.resolve(&model).unwrap();
    assert!(!r.cached);
    let dir = cache.path().join("models/sail--tiny/main");
    assert_eq!(r.model, dir.join("tiny-q8_0.gguf"));
    assert_eq!(r.mmproj, dir.join("mmproj-tiny-q8_0.gguf"));
    // Only the GGUF pair stays: the checkpoint is deleted after conversion by default.
    assert_eq!(files_under(&dir), vec!["mmproj-tiny-q8_0.gguf", "tiny-q8_0.gguf"]);

    // The files the converter needs, and nothing else (the fixture's golden/ folder is not a repo file; the
    // server lists every top-level file).
    let got: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(got[0], "/api/models/sail/tiny/revision/main", "{got:?}");
    assert!(got.iter().all(|p| !p.contains("golden") && !p.contains("README") && !p.ends_with(".bin")), "{got:?}");
    for f in ["config.json", "tokenizer.json", "preprocessor_config.json", "model.safetensors.index.json", SHARD1] {
        assert!(got.iter().any(|p| p.ends_with(&format!("/resolve/main/{f}"))), "{f} not fetched: {got:?}");
    }
    // Weight files went through the hub's redirect.
    assert!(got.iter().any(|p| p == &format!("/cdn/sail/tiny/{SHARD2}")));

    // Byte-identical to converting the fixture folder directly.
    let direct = tempfile::tempdir().unwrap();
    let mut opts = ConvertOptions::defaults(&fixture(), direct.path(), Mix::Q8_0, None);
    opts.name = Some("tiny".into());
    convert::convert(&fixture(), &opts, &indicatif::ProgressBar::hidden()).unwrap();
    assert!(fs::read(&r.model).unwrap() == fs::read(&opts.lm_out).unwrap(), "language model differs");
    assert!(fs::read(&r.mmproj).unwrap() == fs::read(&opts.mmproj_out).unwrap(), "mmproj differs");

    // Second time: straight from the cache, no request at all (also from a fresh client).
    let before = server.request_count();
    let again = hub.resolve(&model).unwrap();
    assert!(again.cached);
    assert_eq!((again.model, again.mmproj), (r.model, r.mmproj));
    let fresh = self::hub(&server, cache.path(), false);
    assert!(fresh.resolve(&model).unwrap().cached);
    assert_eq!(server.request_count(), before);
}

#[test]
fn a_kept_checkpoint_converts_another_mix_without_the_network() {
    let server = server_with(Repo::from_dir(&fixture()));
    let cache = tempfile::tempdir().unwrap();
    let hub = hub(&server, cache.path(), true);
    let q4 = hub.resolve(&id("sail/tiny")).unwrap();
    assert!(q4.model.ends_with("tiny-q4_k_m.gguf"), "{}", q4.model.display());
    let ckpt = cache.path().join("models/sail--tiny/main").join(CHECKPOINT_DIR);
    assert!(ckpt.join(SHARD1).is_file() && ckpt.join(".complete").is_file());
    let f = GgufFile::open(&q4.model).unwrap();
    assert_eq!(f.header().architecture(), Some("qwen3"));

    let before = server.request_count();
    let q8 = hub.resolve(&id("sail/tiny:q8_0")).unwrap();
    assert!(!q8.cached && q8.model.ends_with("tiny-q8_0.gguf"));
    assert_eq!(server.request_count(), before, "the complete checkpoint should be reused");
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let server = server_with(Repo::from_dir(&fixture()));
    let cache = tempfile::tempdir().unwrap();
    let hub = hub(&server, cache.path(), true);
    let ckpt = cache.path().join("models/sail--tiny/main").join(CHECKPOINT_DIR);
    fs::create_dir_all(&ckpt).unwrap();
    let shard = fs::read(fixture().join(SHARD1)).unwrap();
    let half = shard.len() / 2;
    fs::write(ckpt.join(format!("{SHARD1}.partial")), &shard[..half]).unwrap();

    hub.resolve(&id("sail/tiny")).unwrap();
    let shard_gets: Vec<_> = server.requests().into_iter().filter(|r| r.path.ends_with(SHARD1)).collect();
    assert!(
        shard_gets.iter().all(|r| r.range.as_deref() == Some(&format!("bytes={half}-"))),
        "expected only resumed requests: {shard_gets:?}"
    );
    assert!(!shard_gets.is_empty());
    assert!(fs::read(ckpt.join(SHARD1)).unwrap() == shard, "resumed file differs");
    assert!(!ckpt.join(format!("{SHARD1}.partial")).exists());
}

#[test]
fn a_transfer_cut_short_is_retried_from_where_it_stopped() {
    let mut repo = Repo::from_dir(&fixture());
    repo.cut = Some((SHARD2.to_string(), 1 << 20, 1));
    let server = server_with(repo);
    let cache = tempfile::tempdir().unwrap();
    let hub = hub(&server, cache.path(), true);
    hub.resolve(&id("sail/tiny")).unwrap();
    let ranges: Vec<Option<String>> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/cdn/") && r.path.ends_with(SHARD2))
        .map(|r| r.range)
        .collect();
    assert_eq!(ranges, vec![None, Some(format!("bytes={}-", 1 << 20))]);
    let ckpt = cache.path().join("models/sail--tiny/main").join(CHECKPOINT_DIR);
    assert!(fs::read(ckpt.join(SHARD2)).unwrap() == fs::read(fixture().join(SHARD2)).unwrap());
}

#[test]
fn a_checksum_mismatch_is_detected_and_leaves_no_file() {
    let mut repo = Repo::from_dir(&fixture());
    repo.corrupt = vec![SHARD2.to_string()];
    let server = server_with(repo);
    let cache = tempfile::tempdir().unwrap();
    let hub = hub(&server, cache.path(), false);
    let err = hub.resolve(&id("sail/tiny")).unwrap_err();
    assert!(matches!(&err, HubError::Checksum { file, .. } if file == SHARD2), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("checksum mismatch") && msg.contains(SHARD2), "{msg}");
    let left = files_under(cache.path());
    assert!(!left.iter().any(|f| f.contains(SHARD2) || f.ends_with(".gguf")), "{left:?}");
    // A corrupt partial left by someone else is caught the same way on resume.
    let ckpt = cache.path().join("models/sail--tiny/main").join(CHECKPOINT_DIR);
    assert!(ckpt.join(SHARD1).is_file(), "the verified first shard stays for the next try");
    fs::remove_file(ckpt.join(SHARD1)).unwrap();
    let mut bad = fs::read(fixture().join(SHARD1)).unwrap();
    bad.truncate(1000);
    bad[10] ^= 1;
    fs::write(ckpt.join(format!("{SHARD1}.partial")), &bad).unwrap();
    let err = hub.download_checkpoint(&id("sail/tiny")).unwrap_err();
    assert!(matches!(&err, HubError::Checksum { file, .. } if file == SHARD1), "{err}");
    assert!(!ckpt.join(format!("{SHARD1}.partial")).exists() && !ckpt.join(SHARD1).exists());
}

#[test]
fn an_unknown_model_or_revision_is_a_clear_error() {
    let server = server_with(Repo::from_dir(&fixture()));
    let cache = tempfile::tempdir().unwrap();
    let hub = hub(&server, cache.path(), false);
    let err = hub.resolve(&id("nobody/nothing")).unwrap_err();
    assert!(matches!(err, HubError::NotFound { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("'nobody/nothing'") && msg.contains("not found") && msg.contains(&server.endpoint()), "{msg}");
    let err = hub.resolve(&id("sail/tiny@v9")).unwrap_err();
    assert!(err.to_string().contains("revision 'v9'"), "{err}");
    assert!(files_under(cache.path()).is_empty());
}

#[test]
fn a_folder_without_a_checkpoint_is_refused() {
    let server = HubServer::start();
    let mut repo = Repo::default();
    repo.files.insert("README.md".into(), b"# hello".to_vec());
    server.add_repo("some/dataset", repo);
    let cache = tempfile::tempdir().unwrap();
    let err = hub(&server, cache.path(), false).resolve(&id("some/dataset")).unwrap_err();
    assert!(err.to_string().contains("no config.json"), "{err}");
}

#[test]
fn a_private_model_needs_the_token_and_gets_it() {
    let mut repo = Repo::from_dir(&fixture());
    repo.token = Some("hf_secret".into());
    let server = server_with(repo);
    let cache = tempfile::tempdir().unwrap();
    let err = hub(&server, cache.path(), false).download_checkpoint(&id("sail/tiny")).unwrap_err();
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");

    let mut c = HubConfig::new(&server.endpoint(), cache.path());
    c.token = Some("hf_secret".into());
    Hub::new(c).unwrap().download_checkpoint(&id("sail/tiny")).unwrap();
    let reqs = server.requests();
    let with_token = reqs.iter().filter(|r| r.authorization.as_deref() == Some("Bearer hf_secret")).count();
    assert!(with_token > 5, "{reqs:?}");
}

#[test]
fn an_unreachable_hub_fails_quickly_and_clearly() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cache = tempfile::tempdir().unwrap();
    let mut c = HubConfig::new(&format!("http://127.0.0.1:{port}"), cache.path());
    c.connect_timeout = Duration::from_secs(5);
    let hub = Hub::new(c).unwrap();
    let t = Instant::now();
    let err = hub.resolve(&id("BytedanceDouyinContent/SAIL-VL2-2B")).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
    assert!(matches!(err, HubError::Unreachable { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("cannot reach") && msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
}

#[test]
fn bad_endpoints_and_ids_are_refused() {
    assert!(matches!(Hub::new(HubConfig::new("ftp://x", "/tmp")), Err(HubError::BadEndpoint(_))));
    let e = ModelId::parse("a/b:q3_x").unwrap_err().to_string();
    assert!(e.contains("unknown type 'q3_x'"), "{e}");
}
