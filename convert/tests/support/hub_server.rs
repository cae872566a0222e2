//! A tiny local stand-in for the Hugging Face hub, for tests: a threaded HTTP/1.1 server on 127.0.0.1 (port 0)
//! serving checkpoint folders in the hub's URL layout, and logging every request.
//!
//! - `GET /api/models/{owner}/{name}/revision/{rev}` → `{"sha", "siblings": [{rfilename, size, lfs?}]}`
//!   (`lfs: {sha256, size}` for `*.safetensors`, as the hub does); 404 for unknown repos or revisions.
//! - `GET|HEAD /{owner}/{name}/resolve/{rev}/{file}` → the file (`Range: bytes=N-[M]` → 206); weight files
//!   answer 302 to `/cdn/...` with the hub's `x-linked-etag` / `x-linked-size` headers.
//! - Knobs per repo: serve a corrupted file (the metadata keeps the true sha), cut a file's first transfers
//!   short, require a token.
//!
//! Only loopback traffic; every connection is closed after one response; the server stops when dropped.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

/// A repository: file name → bytes, plus the knobs.
#[derive(Debug, Clone, Default)]
pub struct Repo {
    pub files: BTreeMap<String, Vec<u8>>,
    /// Files served with one byte flipped (the API and `x-linked-etag` keep the true sha256).
    pub corrupt: Vec<String>,
    /// (file, bytes, times): the first `times` transfers of `file` stop after `bytes` bytes.
    pub cut: Option<(String, usize, usize)>,
    /// Bearer token required (401 without it).
    pub token: Option<String>,
}

impl Repo {
    /// Every file directly inside `dir` (sub-folders skipped).
    pub fn from_dir(dir: &Path) -> Repo {
        let mut files = BTreeMap::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                files.insert(e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap());
            }
        }
        Repo { files, ..Repo::default() }
    }
}

#[derive(Default)]
struct State {
    repos: Mutex<HashMap<String, Repo>>,
    log: Mutex<Vec<Logged>>,
    cuts_done: Mutex<usize>,
}

pub struct HubServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl HubServer {
    pub fn start() -> HubServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = handle(conn, &st);
                });
            }
        });
        HubServer { addr, state, stop, accept: Some(accept) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add_repo(&self, repo_id: &str, repo: Repo) {
        self.state.repos.lock().unwrap().insert(repo_id.to_string(), repo);
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.log.lock().unwrap().len()
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// A fake 40-hex git blob id, like the `etag` of a small (non-LFS) file.
fn git_etag(name: &str) -> String {
    let mut h = 0xcbf29ce484222325u64;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}{h:016x}{:08x}", h as u32)
}

fn respond(
    s: &mut TcpStream,
    status: &str,
    headers: &[(String, String)],
    body: &[u8],
    head: bool,
) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    s.write_all(out.as_bytes())?;
    if !head {
        s.write_all(body)?;
    }
    s.flush()
}

fn handle(stream: TcpStream, state: &State) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut headers: HashMap<String, String> = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    state.log.lock().unwrap().push(Logged {
        method: method.clone(),
        path: path.clone(),
        range: headers.get("range").cloned(),
        authorization: headers.get("authorization").cloned(),
    });
    let mut s = stream;
    let head = method == "HEAD";
    if method != "GET" && !head {
        return respond(&mut s, "405 Method Not Allowed", &[], b"", false);
    }
    let not_found = |s: &mut TcpStream, what: &str| {
        respond(
            s,
            "404 Not Found",
            &[("Content-Type".into(), "application/json".into())],
            format!("{{\"error\":\"{what} not found\"}}").as_bytes(),
            head,
        )
    };
    let segs: Vec<String> = path.trim_start_matches('/').split('/').map(percent_decode).collect();
    let repos = state.repos.lock().unwrap().clone();
    let authorized = |repo: &Repo| match &repo.token {
        None => true,
        Some(t) => headers.get("authorization").is_some_and(|a| a == &format!("Bearer {t}")),
    };

    // /api/models/{owner}/{name}/revision/{rev}
    if segs.len() == 6 && segs[0] == "api" && segs[1] == "models" && segs[4] == "revision" {
        let id = format!("{}/{}", segs[2], segs[3]);
        let Some(repo) = repos.get(&id) else { return not_found(&mut s, "Repository") };
        if !authorized(repo) {
            return respond(&mut s, "401 Unauthorized", &[], b"{\"error\":\"Invalid credentials\"}", head);
        }
        if segs[5] != "main" {
            return not_found(&mut s, "Revision");
        }
        let siblings: Vec<serde_json::Value> = repo
            .files
            .iter()
            .map(|(name, bytes)| {
                let mut v = serde_json::json!({ "rfilename": name, "size": bytes.len() });
                if name.ends_with(".safetensors") {
                    v["lfs"] = serde_json::json!({
                        "sha256": convert::hub::sha256_hex(bytes),
                        "size": bytes.len(),
                        "pointerSize": 134,
                    });
                }
                v
            })
            .collect();
        let body =
            serde_json::json!({ "id": id, "sha": "0123456789abcdef0123456789abcdef01234567", "siblings": siblings });
        return respond(
            &mut s,
            "200 OK",
            &[("Content-Type".into(), "application/json".into())],
            body.to_string().as_bytes(),
            head,
        );
    }

    // /{owner}/{name}/resolve/{rev}/{file} and /cdn/{owner}/{name}/{file}
    let (id, file, cdn) = if segs.len() == 5 && segs[2] == "resolve" {
        if segs[3] != "main" {
            return not_found(&mut s, "Revision");
        }
        (format!("{}/{}", segs[0], segs[1]), segs[4].clone(), false)
    } else if segs.len() == 4 && segs[0] == "cdn" {
        (format!("{}/{}", segs[1], segs[2]), segs[3].clone(), true)
    } else {
        return not_found(&mut s, "Entry");
    };
    let Some(repo) = repos.get(&id) else { return not_found(&mut s, "Repository") };
    if !cdn && !authorized(repo) {
        return respond(&mut s, "401 Unauthorized", &[], b"", head);
    }
    let Some(true_bytes) = repo.files.get(&file) else { return not_found(&mut s, "Entry") };
    let lfs = file.ends_with(".safetensors");
    if lfs && !cdn {
        let headers = vec![
            ("Location".to_string(), format!("/cdn/{id}/{file}")),
            ("X-Linked-Etag".to_string(), format!("\"{}\"", convert::hub::sha256_hex(true_bytes))),
            ("X-Linked-Size".to_string(), true_bytes.len().to_string()),
        ];
        return respond(&mut s, "302 Found", &headers, b"", head);
    }
    let mut bytes = true_bytes.clone();
    if repo.corrupt.contains(&file) {
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
    }
    let total = bytes.len();
    let (status, start, end) = match headers.get("range").and_then(|r| r.strip_prefix("bytes=")) {
        Some(r) => {
            let (a, b) = r.split_once('-').unwrap_or((r, ""));
            let start: usize = a.parse().unwrap_or(0);
            if start >= total {
                let h = vec![("Content-Range".to_string(), format!("bytes */{total}"))];
                return respond(&mut s, "416 Range Not Satisfiable", &h, b"", head);
            }
            let end = b.parse::<usize>().map_or(total, |e| (e + 1).min(total));
            ("206 Partial Content", start, end)
        }
        None => ("200 OK", 0, total),
    };
    let mut h = vec![("ETag".to_string(), format!("\"{}\"", git_etag(&file)))];
    if status.starts_with("206") {
        h.push(("Content-Range".to_string(), format!("bytes {start}-{}/{total}", end - 1)));
    }
    let body = &bytes[start..end];
    // A transfer cut short: announce the full length, send part of it, close.
    if let Some((cut_file, n, times)) = &repo.cut {
        if cut_file == &file && !head {
            let mut done = state.cuts_done.lock().unwrap();
            if *done < *times && body.len() > *n {
                *done += 1;
                drop(done);
                let mut out = format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
                for (k, v) in &h {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                s.write_all(out.as_bytes())?;
                s.write_all(&body[..*n])?;
                s.flush()?;
                return s.shutdown(Shutdown::Both);
            }
        }
    }
    respond(&mut s, status, &h, body, head)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
