//! Models from the Hugging Face hub: a model id (`owner/name[@revision][:mix]`) → the checkpoint files the
//! converter needs, downloaded into a local cache (resumable, checksummed) → a GGUF pair converted once and
//! reused by every later run.
//!
//! Cache layout (`$SAIL_EDGE_CACHE`, else `$XDG_CACHE_HOME/sail-edge`, else `~/.cache/sail-edge`):
//!
//! ```text
//! models/<owner>--<name>/<revision>/
//!     <name>-<mix>.gguf                 the language model
//!     mmproj-<name>-<vision type>.gguf  the vision tower + projector
//!     checkpoint/                       the downloaded files (deleted after conversion unless kept)
//!         config.json, tokenizer.json, ..., model-00001-of-00002.safetensors, ...
//!         <file>.partial                an interrupted download, resumed with an HTTP Range request
//!         .complete                     written once every file is in place: later conversions need no network
//! ```
//!
//! Hub protocol: the file list and the LFS sha256 of each weight file come from
//! `{endpoint}/api/models/{owner}/{name}/revision/{revision}?blobs=true`; files from
//! `{endpoint}/{owner}/{name}/resolve/{revision}/{file}`. The endpoint is `$HF_ENDPOINT` (default
//! `https://huggingface.co`) and `$HF_TOKEN`, when set, is sent as a bearer token to the endpoint's host only.
//! A file whose sha256 is known (the API's `lfs.sha256`, else a 64-hex `x-linked-etag`/`etag` header) is
//! verified before it is renamed into place; a mismatch deletes it.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use quantize::Mix;
use runtime::gguf::GgufFile;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::hf::checkpoint::INDEX_FILE;
use crate::{ConvertError, ConvertOptions};

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The language-model mix made when the id names none.
pub const DEFAULT_MIX: Mix = Mix::Q4KM;
/// The revision fetched when the id names none.
pub const DEFAULT_REVISION: &str = "main";
/// Name of the folder the checkpoint is downloaded to, inside a model's cache folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// Written into the checkpoint folder once every file is in place.
const COMPLETE_MARKER: &str = ".complete";
/// Attempts per file when a transfer breaks off (each one resumes where the last stopped).
const ATTEMPTS: usize = 3;
/// At most this many redirects per request.
const MAX_REDIRECTS: usize = 5;
const DOWNLOAD_BAR: &str = "{msg:30!} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} eta {eta}";
const CONVERT_BAR: &str = "{msg} [{elapsed_precise}] {wide_bar} {percent:>3}% eta {eta}";

/// A model on the hub: `owner/name`, optionally `@revision` (branch, tag or commit; default `main`) and
/// `:mix` (the language-model type mix; default `q4_k_m`), e.g. `BytedanceDouyinContent/SAIL-VL2-2B@main:q8_0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId {
    pub owner: String,
    pub name: String,
    pub revision: String,
    pub mix: Mix,
}

impl ModelId {
    /// Parse a model id. The error says what is wrong with it.
    pub fn parse(s: &str) -> Result<ModelId, HubError> {
        let bad = |reason: String| HubError::InvalidId { id: s.to_string(), reason };
        let (rest, mix) = match s.rsplit_once(':') {
            Some((rest, m)) => (rest, Mix::from_str(m).map_err(bad)?),
            None => (s, DEFAULT_MIX),
        };
        let (repo, revision) = match rest.split_once('@') {
            Some((repo, rev)) => (repo, rev),
            None => (rest, DEFAULT_REVISION),
        };
        let Some((owner, name)) = repo.split_once('/') else {
            return Err(bad("expected owner/name".into()));
        };
        for (what, part) in [("owner", owner), ("name", name)] {
            if !valid_repo_part(part) {
                return Err(bad(format!(
                    "invalid {what} '{part}' (letters, digits, '-', '_' and '.'; not starting with '-' or '.')"
                )));
            }
        }
        if !valid_revision(revision) {
            return Err(bad(format!("invalid revision '{revision}'")));
        }
        Ok(ModelId { owner: owner.into(), name: name.into(), revision: revision.into(), mix })
    }

    /// Whether `s` has the shape of a model id (what [`ModelId::parse`] accepts), as opposed to a file path.
    /// Names ending in `.gguf` are always paths.
    pub fn looks_like_id(s: &str) -> bool {
        !s.to_ascii_lowercase().ends_with(".gguf") && ModelId::parse(s).is_ok()
    }

    /// `owner/name`.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

impl FromStr for ModelId {
    type Err = HubError;
    fn from_str(s: &str) -> Result<ModelId, HubError> {
        ModelId::parse(s)
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}:{}", self.owner, self.name, self.revision, self.mix)
    }
}

fn valid_repo_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 96
        && !s.starts_with(['-', '.'])
        && !s.contains("..")
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn valid_revision(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with(['-', '.', '/'])
        && !s.ends_with('/')
        && !s.contains("..")
        && !s.contains("//")
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// A file name with no directory part that cannot escape the folder it is joined to.
fn plain_file_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.starts_with('.')
        && !s.contains(['/', '\\'])
        && !s.chars().any(|c| c.is_control())
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("'{id}' is not a model id: {reason}")]
    InvalidId { id: String, reason: String },
    #[error("model '{repo}' (revision '{revision}') was not found on {endpoint}: check the id and revision{hint}")]
    NotFound { repo: String, revision: String, endpoint: String, hint: &'static str },
    #[error("model '{repo}': access denied by {endpoint} (HTTP {status}): it is private or gated; {hint}")]
    Denied { repo: String, endpoint: String, status: u16, hint: &'static str },
    #[error("cannot reach the model hub at {endpoint}: {detail} (check the network connection, or set HF_ENDPOINT to a reachable mirror)")]
    Unreachable { endpoint: String, detail: String },
    #[error("{url}: the server answered HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: unexpected answer: {detail}")]
    Protocol { url: String, detail: String },
    #[error("downloading {file}: {detail}; run the command again to resume")]
    Transfer { file: String, detail: String },
    #[error("{file}: checksum mismatch: got sha256 {found}, the hub says {expected}; the download was deleted, run the command again")]
    Checksum { file: String, expected: String, found: String },
    #[error("model '{repo}' has no {missing}: not a SAIL-VL2 checkpoint in Hugging Face layout")]
    NotACheckpoint { repo: String, missing: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("no cache folder: set SAIL_EDGE_CACHE (or XDG_CACHE_HOME or HOME)")]
    NoCacheDir,
    #[error("HF_ENDPOINT '{0}': expected an http:// or https:// address")]
    BadEndpoint(String),
    #[error("converting {id}: {source}")]
    Convert { id: String, source: Box<ConvertError> },
    #[error("{path}: the converted model in the cache does not open ({detail}); delete the folder and run again")]
    BadCache { path: PathBuf, detail: String },
}

impl HubError {
    /// Worth another attempt (resuming) rather than giving up at once.
    fn retryable(&self) -> bool {
        matches!(self, HubError::Transfer { .. })
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> HubError + '_ {
    move |source| HubError::Io { path: path.to_path_buf(), source }
}

/// Where models are cached: `$SAIL_EDGE_CACHE`, else `$XDG_CACHE_HOME/sail-edge`, else `~/.cache/sail-edge`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(d) = var("SAIL_EDGE_CACHE") {
        return Some(d);
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return Some(d.join("sail-edge"));
    }
    var("HOME").map(|h| h.join(".cache").join("sail-edge"))
}

/// How to reach the hub and where to cache.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Hub address without a trailing slash, e.g. `https://huggingface.co`.
    pub endpoint: String,
    /// Bearer token for private or gated models.
    pub token: Option<String>,
    /// Cache root (models live under `models/`).
    pub cache_dir: PathBuf,
    /// Time allowed to open a connection.
    pub connect_timeout: Duration,
    /// Time allowed without a byte arriving (or leaving).
    pub io_timeout: Duration,
    /// Keep the downloaded checkpoint after a successful conversion (default: delete it, only the GGUF
    /// pair stays).
    pub keep_checkpoint: bool,
    /// Status lines and progress bars on stderr (bars only when stderr is a terminal).
    pub show_progress: bool,
}

impl HubConfig {
    /// Defaults for an endpoint and a cache folder: 15 s to connect, 30 s without data, no token, checkpoint
    /// deleted after conversion, no output.
    pub fn new(endpoint: &str, cache_dir: impl Into<PathBuf>) -> HubConfig {
        HubConfig {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: None,
            cache_dir: cache_dir.into(),
            connect_timeout: Duration::from_secs(15),
            io_timeout: Duration::from_secs(30),
            keep_checkpoint: false,
            show_progress: false,
        }
    }

    /// From the environment: `HF_ENDPOINT`, `HF_TOKEN` and the cache folder of [`default_cache_dir`].
    pub fn from_env() -> Result<HubConfig, HubError> {
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let mut c = HubConfig::new(&endpoint, default_cache_dir().ok_or(HubError::NoCacheDir)?);
        c.token = var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN"));
        Ok(c)
    }
}

/// The converted pair a model id resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    pub model: PathBuf,
    pub mmproj: PathBuf,
    /// True when both files were already in the cache (no network, no conversion).
    pub cached: bool,
}

/// One file of the repository as the API lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Sibling {
    pub rfilename: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub lfs: Option<LfsInfo>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LfsInfo {
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
}

/// The API's answer about one revision.
#[derive(Debug, Clone, Deserialize)]
pub struct RepoInfo {
    /// The commit the revision points at.
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub siblings: Vec<Sibling>,
}

impl Sibling {
    fn sha256(&self) -> Option<String> {
        self.lfs.as_ref().and_then(|l| l.sha256.as_deref()).filter(|s| is_sha256(s)).map(|s| s.to_ascii_lowercase())
    }
    fn byte_size(&self) -> Option<u64> {
        self.lfs.as_ref().and_then(|l| l.size).or(self.size)
    }
}

/// The files (besides the weights) the converter reads, when the repository has them.
pub fn is_wanted_file(name: &str) -> bool {
    matches!(
        name,
        "config.json"
            | "preprocessor_config.json"
            | "tokenizer.json"
            | "tokenizer_config.json"
            | "vocab.json"
            | "merges.txt"
            | "added_tokens.json"
            | "special_tokens_map.json"
            | "chat_template.jinja"
            | "chat_template.json"
            | "generation_config.json"
    ) || (name.starts_with("tokenizer") && name.ends_with(".json") && plain_file_name(name))
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A sha256 from an `x-linked-etag` / `etag` header value (`"<hex>"`, `W/"<hex>"`), if it is one.
fn sha_from_etag(v: &str) -> Option<String> {
    let v = v.trim().trim_start_matches("W/").trim_matches('"');
    is_sha256(v).then(|| v.to_ascii_lowercase())
}

/// Percent-encode one path segment.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Resolve a `Location` header against the URL it answered.
fn join_location(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        loc.to_string()
    } else if let Some(rest) = loc.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("https");
        format!("{scheme}://{rest}")
    } else if loc.starts_with('/') {
        format!("{}{loc}", origin(base))
    } else {
        let path_end = base.find(['?', '#']).unwrap_or(base.len());
        let dir_end = base[..path_end].rfind('/').map_or(base.len(), |i| i + 1);
        format!("{}{loc}", &base[..dir_end.max(origin(base).len())])
    }
}

fn is_loopback(endpoint: &str) -> bool {
    let host = origin(endpoint).split("://").nth(1).unwrap_or("");
    let host = host.rsplit_once(':').filter(|(h, p)| !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host = host.map_or(origin(endpoint).split("://").nth(1).unwrap_or(""), |(h, _)| h);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

/// A response body and what its headers said.
struct Fetched {
    status: u16,
    response: ureq::Response,
    /// A sha256 announced by any hop (`x-linked-etag` on the hub's redirect, or an `etag`).
    sha256: Option<String>,
}

/// The hub client: resolves ids, downloads, converts, caches.
pub struct Hub {
    config: HubConfig,
    agent: ureq::Agent,
}

impl Hub {
    pub fn new(config: HubConfig) -> Result<Hub, HubError> {
        if !(config.endpoint.starts_with("http://") || config.endpoint.starts_with("https://")) {
            return Err(HubError::BadEndpoint(config.endpoint.clone()));
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(config.connect_timeout)
            .timeout_read(config.io_timeout)
            .timeout_write(config.io_timeout)
            .redirects(0)
            .try_proxy_from_env(!is_loopback(&config.endpoint))
            .user_agent(concat!("sail-edge/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Hub { config, agent })
    }

    /// From the environment ([`HubConfig::from_env`]).
    pub fn from_env() -> Result<Hub, HubError> {
        Hub::new(HubConfig::from_env()?)
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// `<cache>/models/<owner>--<name>/<revision>` (a `/` in the revision becomes `--`).
    pub fn model_dir(&self, id: &ModelId) -> PathBuf {
        self.config
            .cache_dir
            .join("models")
            .join(format!("{}--{}", id.owner, id.name))
            .join(id.revision.replace('/', "--"))
    }

    /// Where the converted pair of `id` lives: `<name>-<mix>.gguf` and `mmproj-<name>-<vision type>.gguf`.
    pub fn gguf_paths(&self, id: &ModelId) -> (PathBuf, PathBuf) {
        let dir = self.model_dir(id);
        let vision = id.mix.default_vision_type().name().to_ascii_lowercase();
        (dir.join(format!("{}-{}.gguf", id.name, id.mix)), dir.join(format!("mmproj-{}-{vision}.gguf", id.name)))
    }

    /// The converted pair, if both files are in the cache and open as GGUF files.
    pub fn cached(&self, id: &ModelId) -> Option<(PathBuf, PathBuf)> {
        let (lm, mm) = self.gguf_paths(id);
        (lm.is_file() && mm.is_file() && GgufFile::open(&lm).is_ok() && GgufFile::open(&mm).is_ok()).then_some((lm, mm))
    }

    /// The GGUF pair of `id`: from the cache when it is there (no network at all), else downloaded,
    /// converted into the cache and checked.
    pub fn resolve(&self, id: &ModelId) -> Result<ResolvedModel, HubError> {
        if let Some((model, mmproj)) = self.cached(id) {
            return Ok(ResolvedModel { model, mmproj, cached: true });
        }
        let ckpt = self.download_checkpoint(id)?;
        let (model, mmproj) = self.gguf_paths(id);
        let dir = self.model_dir(id);
        remove_stale_temps(&dir);
        self.status(&format!("converting {} to {} (vision {})…", id.repo(), id.mix, id.mix.default_vision_type()));
        let opts = ConvertOptions {
            mix: id.mix,
            vision_type: None,
            lm_out: model.clone(),
            mmproj_out: mmproj.clone(),
            name: Some(id.name.clone()),
            cancel: None,
        };
        let bar = self.bar(0, CONVERT_BAR, "converting");
        let summary = crate::convert(&ckpt, &opts, &bar)
            .map_err(|e| HubError::Convert { id: id.to_string(), source: Box::new(e) })?;
        bar.finish_and_clear();
        for p in [&model, &mmproj] {
            GgufFile::open(p).map_err(|e| HubError::BadCache { path: p.clone(), detail: e.to_string() })?;
        }
        self.status(&format!(
            "converted in {:.1} s: {} and {}",
            summary.elapsed.as_secs_f64(),
            model.display(),
            mmproj.display()
        ));
        if !self.config.keep_checkpoint {
            if let Err(e) = fs::remove_dir_all(&ckpt) {
                tracing::warn!("could not delete the downloaded checkpoint {}: {e}", ckpt.display());
            }
        }
        Ok(ResolvedModel { model, mmproj, cached: false })
    }

    /// Download the files the converter needs into `<model dir>/checkpoint` and return that folder. Files
    /// already complete are kept; an interrupted one resumes; once everything is there, a marker makes later
    /// calls return at once without the network.
    pub fn download_checkpoint(&self, id: &ModelId) -> Result<PathBuf, HubError> {
        let dir = self.model_dir(id).join(CHECKPOINT_DIR);
        if let Some(files) = read_marker(&dir) {
            if files.iter().all(|f| dir.join(f).is_file()) {
                return Ok(dir);
            }
        }
        let info = self.repo_info(id)?;
        let find = |name: &str| info.siblings.iter().find(|s| s.rfilename == name);
        if find("config.json").is_none() {
            return Err(HubError::NotACheckpoint { repo: id.repo(), missing: "config.json".into() });
        }
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut small: Vec<&Sibling> = info.siblings.iter().filter(|s| is_wanted_file(&s.rfilename)).collect();
        small.sort_by(|a, b| a.rfilename.cmp(&b.rfilename));

        // The weights: the shards the index names, or the single file.
        let weights: Vec<&Sibling> = if let Some(index) = find(INDEX_FILE) {
            self.status(&format!("downloading {} ({}) from {}", id.repo(), id.revision, self.config.endpoint));
            self.fetch(id, index, &dir, None)?;
            let shards = index_shards(&dir.join(INDEX_FILE))?;
            shards
                .iter()
                .map(|s| {
                    find(s).ok_or_else(|| HubError::NotACheckpoint {
                        repo: id.repo(),
                        missing: format!("{s} (named by {INDEX_FILE})"),
                    })
                })
                .collect::<Result<_, _>>()?
        } else if let Some(single) = find("model.safetensors") {
            self.status(&format!("downloading {} ({}) from {}", id.repo(), id.revision, self.config.endpoint));
            vec![single]
        } else {
            return Err(HubError::NotACheckpoint {
                repo: id.repo(),
                missing: format!("model.safetensors or {INDEX_FILE}"),
            });
        };

        let files: Vec<&Sibling> = small.into_iter().chain(weights).collect();
        let total: u64 = files.iter().filter_map(|s| s.byte_size()).sum();
        let bar = self.bar(total, DOWNLOAD_BAR, "");
        for s in &files {
            bar.set_message(s.rfilename.clone());
            self.fetch(id, s, &dir, Some(&bar))?;
        }
        bar.finish_and_clear();
        let mut names: Vec<String> = files.iter().map(|s| s.rfilename.clone()).collect();
        names.push(INDEX_FILE.to_string());
        names.retain(|n| dir.join(n).is_file());
        write_marker(&dir, info.sha.as_deref(), &names)?;
        Ok(dir)
    }

    /// The file list of a revision (`/api/models/{repo}/revision/{rev}?blobs=true`).
    pub fn repo_info(&self, id: &ModelId) -> Result<RepoInfo, HubError> {
        let url = format!(
            "{}/api/models/{}/{}/revision/{}?blobs=true",
            self.config.endpoint,
            id.owner,
            id.name,
            encode_segment(&id.revision)
        );
        let fetched = self.get(id, &url, None)?;
        let text = fetched
            .response
            .into_string()
            .map_err(|e| HubError::Protocol { url: url.clone(), detail: e.to_string() })?;
        let info: RepoInfo = serde_json::from_str(&text).map_err(|e| HubError::Protocol {
            url: url.clone(),
            detail: format!("not the model JSON the hub sends: {e}"),
        })?;
        if let Some(bad) = info.siblings.iter().find(|s| s.rfilename.split('/').any(|p| p == "..")) {
            return Err(HubError::Protocol { url, detail: format!("bad file name '{}'", bad.rfilename) });
        }
        Ok(info)
    }

    /// Download one file of the repository into `dir` (through `<file>.partial`), resuming, verifying.
    fn fetch(&self, id: &ModelId, file: &Sibling, dir: &Path, bar: Option<&ProgressBar>) -> Result<(), HubError> {
        let name = &file.rfilename;
        if !plain_file_name(name) {
            return Err(HubError::Protocol {
                url: self.config.endpoint.clone(),
                detail: format!("bad file name '{name}'"),
            });
        }
        let dest = dir.join(name);
        let size = file.byte_size();
        if let Ok(meta) = fs::metadata(&dest) {
            // Complete files were verified before they were renamed into place.
            if size.is_none_or(|s| s == meta.len()) {
                if let Some(b) = bar {
                    b.inc(meta.len());
                }
                return Ok(());
            }
            fs::remove_file(&dest).map_err(io_err(&dest))?;
        }
        let url = format!(
            "{}/{}/{}/resolve/{}/{}",
            self.config.endpoint,
            id.owner,
            id.name,
            encode_segment(&id.revision),
            encode_segment(name)
        );
        let partial = dir.join(format!("{name}.partial"));
        let start = bar.map_or(0, |b| b.position());
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(b) = bar {
                b.set_position(start);
            }
            match self.fetch_once(id, &url, name, &partial, file.sha256(), size, bar) {
                Ok(()) => break,
                Err(e) if e.retryable() && attempt < ATTEMPTS => {
                    tracing::warn!("{e}; retrying ({attempt}/{ATTEMPTS})");
                    std::thread::sleep(Duration::from_millis(500 * attempt as u64));
                }
                Err(e) => return Err(e),
            }
        }
        fs::rename(&partial, &dest).map_err(io_err(&dest))?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn fetch_once(
        &self,
        id: &ModelId,
        url: &str,
        name: &str,
        partial: &Path,
        api_sha: Option<String>,
        size: Option<u64>,
        bar: Option<&ProgressBar>,
    ) -> Result<(), HubError> {
        let mut have = fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
        if size.is_some_and(|s| have > s) {
            have = 0;
        }
        let mut file = OpenOptions::new().create(true).append(true).open(partial).map_err(io_err(partial))?;
        file.set_len(have).map_err(io_err(partial))?;

        // What is already there counts towards the checksum.
        let mut hasher = Sha256::new();
        if have > 0 {
            let mut f = File::open(partial).map_err(io_err(partial))?;
            let n = io::copy(&mut (&mut f).take(have), &mut HashWriter(&mut hasher)).map_err(io_err(partial))?;
            if n != have {
                return Err(HubError::Transfer { file: name.into(), detail: "the partial download changed".into() });
            }
            if let Some(b) = bar {
                b.inc(have);
            }
        }

        let mut header_sha = None;
        let mut total = size;
        if size != Some(have) || have == 0 {
            let fetched = match self.get(id, url, (have > 0).then_some(have)) {
                Err(HubError::Http { status: 416, .. }) if have > 0 => {
                    // Asked past the end: the partial is as long as the file or longer than it; start over.
                    drop(file);
                    fs::remove_file(partial).map_err(io_err(partial))?;
                    return Err(HubError::Transfer {
                        file: name.into(),
                        detail: "the server refused to resume".into(),
                    });
                }
                r => r?,
            };
            header_sha = fetched.sha256;
            let resp = fetched.response;
            let content_len = resp.header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
            match fetched.status {
                206 => {
                    let range = resp.header("content-range").unwrap_or("").to_string();
                    let (first, len) = parse_content_range(&range).ok_or_else(|| HubError::Protocol {
                        url: url.into(),
                        detail: format!("bad Content-Range '{range}'"),
                    })?;
                    if first != have {
                        return Err(HubError::Protocol {
                            url: url.into(),
                            detail: format!("asked for bytes from {have}, got a range from {first}"),
                        });
                    }
                    total = total.or(len);
                }
                _ => {
                    // A full body: start over.
                    if have > 0 {
                        file.set_len(0).map_err(io_err(partial))?;
                        hasher = Sha256::new();
                        if let Some(b) = bar {
                            b.set_position(b.position().saturating_sub(have));
                        }
                        have = 0;
                    }
                    total = total.or(content_len);
                }
            }
            let mut reader = resp.into_reader();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        file.flush().map_err(io_err(partial))?;
                        return Err(HubError::Transfer { file: name.into(), detail: format!("connection lost: {e}") });
                    }
                };
                file.write_all(&buf[..n]).map_err(io_err(partial))?;
                hasher.update(&buf[..n]);
                have += n as u64;
                if let Some(b) = bar {
                    b.inc(n as u64);
                }
            }
            file.flush().map_err(io_err(partial))?;
        }
        file.sync_all().map_err(io_err(partial))?;
        drop(file);

        if let Some(t) = total {
            if have != t {
                return Err(HubError::Transfer {
                    file: name.into(),
                    detail: format!("the transfer stopped at {have} of {t} bytes"),
                });
            }
        }
        let found = hex(&hasher.finalize());
        if let Some(expected) = api_sha.or(header_sha) {
            if found != expected {
                let _ = fs::remove_file(partial);
                return Err(HubError::Checksum { file: name.into(), expected, found });
            }
        }
        Ok(())
    }

    /// GET `url` (from byte `from` on), following redirects by hand so the hub's `x-linked-etag` is seen,
    /// sending the token to the endpoint's host only. Errors are mapped to what they mean for the user.
    fn get(&self, id: &ModelId, url: &str, from: Option<u64>) -> Result<Fetched, HubError> {
        let endpoint_origin = origin(&self.config.endpoint).to_string();
        let mut url = url.to_string();
        let mut sha256 = None;
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.agent.get(&url);
            if let Some(from) = from {
                req = req.set("Range", &format!("bytes={from}-"));
            }
            if let Some(t) = &self.config.token {
                if origin(&url) == endpoint_origin {
                    req = req.set("Authorization", &format!("Bearer {t}"));
                }
            }
            let resp = match req.call() {
                Ok(r) => r,
                Err(ureq::Error::Status(status, _)) => return Err(self.status_error(id, &url, status)),
                Err(ureq::Error::Transport(t)) => {
                    return Err(match t.kind() {
                        ureq::ErrorKind::Dns
                        | ureq::ErrorKind::ConnectionFailed
                        | ureq::ErrorKind::Io
                        | ureq::ErrorKind::ProxyConnect => {
                            HubError::Unreachable { endpoint: origin(&url).to_string(), detail: transport_detail(&t) }
                        }
                        _ => HubError::Protocol { url: url.clone(), detail: t.to_string() },
                    })
                }
            };
            for h in ["x-linked-etag", "etag"] {
                if sha256.is_none() {
                    sha256 = resp.header(h).and_then(sha_from_etag);
                }
            }
            let status = resp.status();
            if (300..400).contains(&status) {
                let Some(loc) = resp.header("location") else {
                    return Err(HubError::Protocol { url, detail: format!("HTTP {status} without a Location") });
                };
                url = join_location(&url, loc);
                continue;
            }
            return Ok(Fetched { status, response: resp, sha256 });
        }
        Err(HubError::Protocol { url, detail: format!("more than {MAX_REDIRECTS} redirects") })
    }

    fn status_error(&self, id: &ModelId, url: &str, status: u16) -> HubError {
        let has_token = self.config.token.is_some();
        let on_endpoint = origin(url) == origin(&self.config.endpoint);
        match status {
            404 if on_endpoint => HubError::NotFound {
                repo: id.repo(),
                revision: id.revision.clone(),
                endpoint: self.config.endpoint.clone(),
                hint: if has_token { "" } else { " (a private model also needs HF_TOKEN)" },
            },
            401 if on_endpoint && !has_token => HubError::NotFound {
                repo: id.repo(),
                revision: id.revision.clone(),
                endpoint: self.config.endpoint.clone(),
                hint: " (a private or gated model needs HF_TOKEN)",
            },
            401 | 403 if on_endpoint => HubError::Denied {
                repo: id.repo(),
                endpoint: self.config.endpoint.clone(),
                status,
                hint: if has_token {
                    "check that HF_TOKEN can read it (gated models need their terms accepted on the hub)"
                } else {
                    "set HF_TOKEN"
                },
            },
            _ => HubError::Http { url: url.to_string(), status },
        }
    }

    fn status(&self, line: &str) {
        if self.config.show_progress {
            eprintln!("{line}");
        }
    }

    fn bar(&self, len: u64, template: &str, msg: &str) -> ProgressBar {
        if !self.config.show_progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(msg.to_string());
        bar
    }
}

/// The underlying cause of a transport error, in words (`Connection refused`, `timed out`, ...).
fn transport_detail(t: &ureq::Transport) -> String {
    use std::error::Error as _;
    let mut detail = t.message().map(str::to_string).unwrap_or_default();
    let mut src = t.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !detail.contains(&text) {
            if !detail.is_empty() {
                detail.push_str(": ");
            }
            detail.push_str(&text);
        }
        src = s.source();
    }
    if detail.is_empty() {
        detail = t.kind().to_string();
    }
    detail
}

/// `bytes FIRST-LAST/TOTAL` → (FIRST, TOTAL if known).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let v = v.trim().strip_prefix("bytes")?.trim();
    let (range, total) = v.split_once('/')?;
    let (first, _) = range.split_once('-')?;
    Some((first.trim().parse().ok()?, total.trim().parse().ok()))
}

/// The sha256 of `bytes` in lowercase hex, as the hub writes it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The shard file names `model.safetensors.index.json` maps tensors to, sorted, each a plain file name.
fn index_shards(path: &Path) -> Result<BTreeSet<String>, HubError> {
    #[derive(Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    let index: Index = serde_json::from_str(&text).map_err(|e| HubError::Protocol {
        url: path.display().to_string(),
        detail: format!("not a safetensors index: {e}"),
    })?;
    let shards: BTreeSet<String> = index.weight_map.into_values().collect();
    if let Some(bad) = shards.iter().find(|s| !plain_file_name(s)) {
        return Err(HubError::Protocol { url: path.display().to_string(), detail: format!("bad shard name '{bad}'") });
    }
    Ok(shards)
}

#[derive(serde::Serialize, Deserialize)]
struct Marker {
    commit: Option<String>,
    files: Vec<String>,
}

fn read_marker(dir: &Path) -> Option<Vec<String>> {
    let text = fs::read_to_string(dir.join(COMPLETE_MARKER)).ok()?;
    serde_json::from_str::<Marker>(&text).ok().map(|m| m.files)
}

fn write_marker(dir: &Path, commit: Option<&str>, files: &[String]) -> Result<(), HubError> {
    let path = dir.join(COMPLETE_MARKER);
    let text = serde_json::to_string_pretty(&Marker { commit: commit.map(str::to_string), files: files.to_vec() })
        .expect("plain data serializes");
    fs::write(&path, text).map_err(io_err(&path))
}

/// Remove GGUF temporaries (`.<file>.XXXX.partial`) that a killed conversion left in `dir`: those untouched
/// for ten minutes (a live writer writes continuously).
fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with('.') && name.ends_with(".partial")) {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600));
        if old {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids() {
        let id = ModelId::parse("BytedanceDouyinContent/SAIL-VL2-2B").unwrap();
        assert_eq!(
            (id.owner.as_str(), id.name.as_str(), id.revision.as_str()),
            ("BytedanceDouyinContent", "SAIL-VL2-2B", "main")
        );
        assert_eq!(id.mix, Mix::Q4KM);
        let id = ModelId::parse("a/b.c@v1.0:q8_0").unwrap();
        assert_eq!((id.name.as_str(), id.revision.as_str(), id.mix), ("b.c", "v1.0", Mix::Q8_0));
        let id = ModelId::parse("a/b@refs/pr/1").unwrap();
        assert_eq!(id.revision, "refs/pr/1");
        assert_eq!(id.to_string(), "a/b@refs/pr/1:q4_k_m");
        for bad in
            ["a", "a/b/c", "/b", "a/", "../b", "a/..", "a/b@", "a/b:q3", "a/b c", "C:\\x\\y", "-a/b", "a/b@x/../y"]
        {
            assert!(ModelId::parse(bad).is_err(), "{bad}");
        }
        assert!(!ModelId::looks_like_id("models/tiny.gguf"));
        assert!(ModelId::looks_like_id("owner/name"));
    }

    #[test]
    fn urls_and_headers() {
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(join_location("http://h:1/a/b?x", "/c"), "http://h:1/c");
        assert_eq!(join_location("http://h:1/a/b", "c"), "http://h:1/a/c");
        assert_eq!(join_location("https://h/a", "//cdn/x"), "https://cdn/x");
        assert_eq!(join_location("https://h/a", "http://o/x"), "http://o/x");
        assert_eq!(parse_content_range("bytes 10-19/20"), Some((10, Some(20))));
        assert_eq!(parse_content_range("bytes 10-19/*"), Some((10, None)));
        let sha = "a".repeat(64);
        assert_eq!(sha_from_etag(&format!("W/\"{sha}\"")), Some(sha.clone()));
        assert_eq!(sha_from_etag("\"0123abcd\""), None);
        assert!(is_loopback("http://127.0.0.1:9"));
        assert!(is_loopback("http://localhost"));
        assert!(!is_loopback("https://huggingface.co"));
        assert!(is_wanted_file("tokenizer.json") && is_wanted_file("merges.txt") && !is_wanted_file("README.md"));
        for t in [DOWNLOAD_BAR, CONVERT_BAR] {
            assert!(ProgressStyle::with_template(t).is_ok(), "{t}");
        }
        assert!(!plain_file_name("../x") && !plain_file_name(".x") && plain_file_name("model-1.safetensors"));
    }
}
