//! Updates written to a serial port (a microcontroller, an LED sign, a PLC), one line each, from a thread of
//! their own: the loop hands a line over and goes on. Lines wait in a bounded queue (the oldest is dropped and
//! counted when it is full); a port that goes away (unplugged adapter, the far end closing) is reopened with
//! backoff, and the line being written is sent again once it is back.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::capture::backoff;

/// Lines held while the port is slow or away.
pub const QUEUE_LINES: usize = 32;

/// How long one write may block before the port is treated as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Counters of a serial output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SerialStats {
    pub sent: u64,
    /// Lines dropped because the queue was full.
    pub dropped: u64,
    /// Times the port was opened again after failing.
    pub reconnects: u64,
    /// Failed opens and writes.
    pub errors: u64,
}

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    stats: SerialStats,
    closing: bool,
    /// The writer thread has ended.
    done: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A serial port written from its own thread.
pub struct SerialOut {
    path: PathBuf,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SerialOut {
    /// Start writing to `path` at `baud`. The port is opened on the writer thread (and reopened as needed), so
    /// a port that is not there yet is not an error: lines wait (up to the queue) until it comes.
    pub fn start(path: impl Into<PathBuf>, baud: u32) -> SerialOut {
        let path = path.into();
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), wake: Condvar::new() });
        let (p, s) = (path.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("sail-serial".into())
            .spawn(move || writer(p, baud, s))
            .map_err(|e| tracing::error!("cannot start the serial thread: {e}"))
            .ok();
        SerialOut { path, shared, thread }
    }

    /// Queue one line (a newline is added); never blocks.
    pub fn send(&self, line: &str) {
        let mut st = self.shared.lock();
        if st.queue.len() >= QUEUE_LINES {
            st.queue.pop_front();
            st.stats.dropped += 1;
        }
        st.queue.push_back(format!("{}\n", line.trim_end_matches('\n')));
        self.shared.wake.notify_all();
    }

    pub fn stats(&self) -> SerialStats {
        self.shared.lock().stats
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Lines still waiting.
    pub fn pending(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// Wait up to `timeout` for the queue to empty (at exit), then stop the writer.
    pub fn close(mut self, timeout: Duration) -> SerialStats {
        let deadline = std::time::Instant::now() + timeout;
        let mut st = self.shared.lock();
        while !st.queue.is_empty() {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            st = self
                .shared
                .wake
                .wait_timeout(st, (deadline - now).min(Duration::from_millis(50)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st.closing = true;
        self.shared.wake.notify_all();
        // The writer notices `closing` within one write timeout; one that is stuck in the OS longer is left
        // behind (it holds only the port) rather than holding up the exit.
        let join_by = std::time::Instant::now() + WRITE_TIMEOUT + Duration::from_millis(500);
        while !st.done && self.thread.is_some() {
            let now = std::time::Instant::now();
            if now >= join_by {
                break;
            }
            st = self.shared.wake.wait_timeout(st, join_by - now).unwrap_or_else(|p| p.into_inner()).0;
        }
        let (stats, done) = (st.stats, st.done);
        drop(st);
        if let Some(t) = self.thread.take() {
            if done {
                let _ = t.join();
            }
        }
        stats
    }
}

impl Drop for SerialOut {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_all();
    }
}

fn writer(path: PathBuf, baud: u32, shared: Arc<Shared>) {
    let name = path.display().to_string();
    let mut port: Option<Box<dyn serialport::SerialPort>> = None;
    let mut failures = 0u32;
    loop {
        let line = {
            let mut st = shared.lock();
            while st.queue.is_empty() && !st.closing {
                st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.closing {
                st.done = true;
                shared.wake.notify_all();
                return;
            }
            st.queue.front().cloned().unwrap_or_default()
        };
        if port.is_none() {
            match serialport::new(name.as_str(), baud).timeout(WRITE_TIMEOUT).open() {
                Ok(p) => {
                    let mut st = shared.lock();
                    if failures > 0 {
                        st.stats.reconnects += 1;
                        tracing::info!("serial {name}: open again");
                    }
                    failures = 0;
                    port = Some(p);
                }
                Err(e) => {
                    shared.lock().stats.errors += 1;
                    if failures == 0 {
                        tracing::warn!("serial {name}: {e}; retrying with backoff");
                    }
                    pause(&shared, backoff(failures));
                    failures = failures.saturating_add(1);
                    continue;
                }
            }
        }
        // No flush: it waits for the line to drain with no timeout (a stalled flow control would hold the
        // thread for good); the write itself is bounded by the port's timeout.
        let result = port.as_mut().map(|p| p.write_all(line.as_bytes()));
        match result {
            Some(Ok(())) => {
                let mut st = shared.lock();
                // The line may have been dropped from the front meanwhile (a full queue): pop only if it is
                // still the one written.
                if st.queue.front() == Some(&line) {
                    st.queue.pop_front();
                }
                st.stats.sent += 1;
                shared.wake.notify_all();
            }
            Some(Err(e)) => {
                tracing::warn!("serial {name}: write failed: {e}; reopening");
                port = None;
                shared.lock().stats.errors += 1;
                pause(&shared, backoff(failures));
                failures = failures.saturating_add(1);
            }
            None => {}
        }
    }
}

/// A serial port this machine has, for `sail-edge doctor`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PortInfo {
    /// The device path (`/dev/ttyUSB0`, `COM3`).
    pub name: String,
    /// `usb VID:PID product`, `pci`, `bluetooth` or `unknown`.
    pub kind: String,
}

/// The serial ports the OS lists (without libudev: sysfs on Linux).
pub fn list_ports() -> Result<Vec<PortInfo>, String> {
    let ports = serialport::available_ports().map_err(|e| e.to_string())?;
    Ok(ports
        .into_iter()
        .map(|p| PortInfo {
            name: p.port_name,
            kind: match p.port_type {
                serialport::SerialPortType::UsbPort(u) => {
                    let product = u.product.map(|s| format!(" {s}")).unwrap_or_default();
                    format!("usb {:04x}:{:04x}{product}", u.vid, u.pid)
                }
                serialport::SerialPortType::PciPort => "pci".into(),
                serialport::SerialPortType::BluetoothPort => "bluetooth".into(),
                serialport::SerialPortType::Unknown => "unknown".into(),
            },
        })
        .collect())
}

/// Sleep, waking early when closing.
fn pause(shared: &Shared, d: Duration) {
    let st = shared.lock();
    if !st.closing {
        let _ = shared.wake.wait_timeout(st, d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serialport::SerialPort;

    /// Read lines from `port` until `n` have come or 10 s passed.
    fn read_lines(port: &mut dyn serialport::SerialPort, n: usize) -> Vec<String> {
        let mut text = String::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 256];
        while text.matches('\n').count() < n && std::time::Instant::now() < deadline {
            match port.read(&mut buf) {
                Ok(k) => text.push_str(&String::from_utf8_lossy(&buf[..k])),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("{e}"),
            }
        }
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn lines_cross_a_pseudo_terminal_pair_and_a_closed_far_end_does_not_block() {
        let (mut master, slave) = serialport::TTYPort::pair().expect("a pty pair");
        master.set_timeout(Duration::from_millis(100)).unwrap();
        let path = slave.name().expect("the pty has a name");
        let out = SerialOut::start(&path, 115_200);
        out.send("first");
        out.send("second\n");
        assert_eq!(read_lines(&mut master, 2), ["first", "second"]);
        // The far end goes away: sends still return at once, and lines beyond the queue are dropped.
        drop(master);
        drop(slave);
        let start = std::time::Instant::now();
        for i in 0..(QUEUE_LINES + 10) {
            out.send(&format!("line {i}"));
        }
        assert!(start.elapsed() < Duration::from_secs(1), "send never blocks");
        let stats = out.close(Duration::from_millis(300));
        assert!(stats.dropped >= 10, "{stats:?}");
        assert_eq!(stats.sent, 2);
    }

    #[test]
    fn the_queue_is_bounded() {
        // A port that never opens: lines pile up to the bound, the oldest go first.
        let out = SerialOut::start("/nonexistent/tty", 9600);
        for i in 0..100 {
            out.send(&format!("{i}"));
        }
        assert_eq!(out.pending(), QUEUE_LINES);
        let stats = out.close(Duration::from_millis(10));
        assert_eq!(stats.dropped, 100 - QUEUE_LINES as u64);
        assert!(stats.errors >= 1);
    }
}
