//! What the loop reports after each answer: a text line, or one JSON object per line (`--json`).

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::gate::GateReason;

/// Milliseconds spent in each stage of an update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageMs {
    /// Turning the captured buffer into RGB (JPEG decode, YUV conversion).
    pub capture: f64,
    /// Resizing and normalising the frames into tiles.
    pub preprocess: f64,
    /// ViT and projector (tiles not in the feature cache).
    pub vit: f64,
    /// Computing the KV of the new prompt positions.
    pub prefill: f64,
    /// Generating the answer.
    pub decode: f64,
    /// From taking the frame to the answer.
    pub total: f64,
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// One answer about the frames in the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Update {
    /// When the answer was ready, RFC 3339 with milliseconds.
    #[serde(serialize_with = "rfc3339")]
    pub t: SystemTime,
    /// Source indices of the frames in the prompt, oldest first (the last one is the newest).
    pub frames: Vec<u64>,
    pub text: String,
    /// Whether the text differs from the previous update's.
    pub changed: bool,
    pub ms: StageMs,
    /// Frames dropped by the live slot since the previous update.
    pub dropped: u64,
    /// Whether frames already in the window were prefilled again (the window slid).
    pub reprefill: bool,
    /// Why this frame was answered.
    pub reason: GateReason,
    /// The update's number, from 1.
    pub update: u64,
    /// Frames since the previous update that were unusable (reported by the source, or not decodable).
    pub bad: u64,
    /// Frames considered by the gate since the previous update and not answered.
    pub skipped: u64,
    /// Tiles of the prompt, and how many came from the feature cache.
    pub tiles: usize,
    pub tiles_cached: usize,
    /// Positions the answer attended to, and how many of them were computed for this update.
    pub prompt_tokens: usize,
    pub prefilled_tokens: usize,
    /// The generated token ids.
    pub ids: Vec<u32>,
    /// Why the answer ended: `end_of_turn`, `max_tokens` or `context_full`.
    pub stop: &'static str,
    /// The process's resident memory and open file descriptors (Linux; absent elsewhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_fds: Option<u64>,
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_rfc3339_millis(*t).to_string())
}

impl Update {
    /// The update as one JSON line (no newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("updates serialize")
    }

    /// The answer on one line (newlines inside it become spaces).
    pub fn text_line(&self) -> String {
        self.text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Resident memory of this process (Linux `/proc/self/status` `VmRSS`, in kB whatever the page size).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Open file descriptors of this process (Linux `/proc/self/fd`).
pub fn open_fds() -> Option<u64> {
    // The listing itself holds one descriptor while it runs.
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count().saturating_sub(1) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_contract_fields() {
        let u = Update {
            t: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            frames: vec![3, 4],
            text: "a cat\non a mat".into(),
            changed: true,
            ms: StageMs { capture: 1.5, ..StageMs::default() },
            dropped: 2,
            reprefill: false,
            reason: GateReason::Changed,
            update: 1,
            bad: 0,
            skipped: 0,
            tiles: 2,
            tiles_cached: 1,
            prompt_tokens: 600,
            prefilled_tokens: 270,
            ids: vec![1, 2],
            stop: "end_of_turn",
            rss_bytes: None,
            open_fds: None,
        };
        let v: serde_json::Value = serde_json::from_str(&u.to_json()).unwrap();
        assert_eq!(v["t"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["frames"], serde_json::json!([3, 4]));
        assert_eq!(v["changed"], true);
        assert_eq!(v["dropped"], 2);
        assert_eq!(v["reprefill"], false);
        assert_eq!(v["reason"], "changed");
        for stage in ["capture", "preprocess", "vit", "prefill", "decode", "total"] {
            assert!(v["ms"][stage].is_number(), "{stage}");
        }
        assert!(v.get("rss_bytes").is_none());
        assert_eq!(u.text_line(), "a cat on a mat");
    }
}
