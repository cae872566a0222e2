//! The scene gate: which frames are worth an answer. Each frame's luma thumbnail is compared with the one of
//! the last frame answered; a difference above the threshold that holds for `min_stable` frames in a row
//! (the new scene settled: not a hand passing by, not motion blur) triggers an update, and so does the
//! heartbeat when no update came for `every`. A threshold of 0 answers every frame.

use std::time::Duration;

use crate::luma::Thumbnail;

/// The gate's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateConfig {
    /// Mean absolute luma difference (levels, 0–255) of the 32×32 thumbnails above which the scene changed;
    /// 0 answers every frame.
    pub threshold: f32,
    /// Frames the changed scene must hold (each within the threshold of the previous) before it is answered.
    pub min_stable: u32,
    /// Answer at least this often, changed or not (stream time).
    pub every: Option<Duration>,
}

impl Default for GateConfig {
    fn default() -> GateConfig {
        GateConfig { threshold: 6.0, min_stable: 2, every: None }
    }
}

/// Why a frame is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GateReason {
    /// The first frame.
    First,
    /// The scene changed and settled.
    Changed,
    /// The heartbeat came due.
    Heartbeat,
    /// The threshold is 0: every frame.
    Always,
    /// The question changed (`--prompt-file` edited).
    Prompt,
}

#[derive(Debug, Clone)]
pub struct SceneGate {
    config: GateConfig,
    answered: Option<Thumbnail>,
    last_update: Option<Duration>,
    /// The changed scene being watched for stability, and for how many frames it held.
    candidate: Option<(Thumbnail, u32)>,
}

impl SceneGate {
    pub fn new(config: GateConfig) -> SceneGate {
        SceneGate { config, answered: None, last_update: None, candidate: None }
    }

    pub fn config(&self) -> &GateConfig {
        &self.config
    }

    /// Whether the frame with this thumbnail, taken at stream time `t`, should be answered.
    pub fn consider(&mut self, thumb: &Thumbnail, t: Duration) -> Option<GateReason> {
        if self.config.threshold <= 0.0 {
            return Some(GateReason::Always);
        }
        let Some(answered) = &self.answered else { return Some(GateReason::First) };
        if answered.difference(thumb) > self.config.threshold {
            let held = match &self.candidate {
                Some((c, n)) if c.difference(thumb) <= self.config.threshold => n + 1,
                _ => 1,
            };
            self.candidate = Some((thumb.clone(), held));
            if held >= self.config.min_stable.max(1) {
                return Some(GateReason::Changed);
            }
        } else {
            self.candidate = None;
        }
        if self.last_update.is_some_and(|last| t < last) {
            // The stream's clock went back (a source restarted its timestamps): count from here.
            self.last_update = Some(t);
        }
        match (self.config.every, self.last_update) {
            (Some(every), Some(last)) if t.saturating_sub(last) >= every => Some(GateReason::Heartbeat),
            _ => None,
        }
    }

    /// The frame with this thumbnail was answered at stream time `t`.
    pub fn answered(&mut self, thumb: Thumbnail, t: Duration) {
        self.answered = Some(thumb);
        self.last_update = Some(t);
        self.candidate = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(v: f32) -> Thumbnail {
        Thumbnail(vec![v; crate::luma::THUMB * crate::luma::THUMB])
    }

    /// Feed (luma, time) frames; return which were answered and why.
    fn run(config: GateConfig, frames: &[(f32, u64)]) -> Vec<(usize, GateReason)> {
        let mut gate = SceneGate::new(config);
        let mut out = Vec::new();
        for (i, &(v, t)) in frames.iter().enumerate() {
            let t = Duration::from_secs(t);
            if let Some(r) = gate.consider(&flat(v), t) {
                gate.answered(flat(v), t);
                out.push((i, r));
            }
        }
        out
    }

    #[test]
    fn identical_frames_are_answered_once_a_settled_change_again() {
        let c = GateConfig { threshold: 5.0, min_stable: 2, every: None };
        let frames = [(100.0, 0), (100.0, 1), (102.0, 2), (160.0, 3), (100.0, 4), (160.0, 5), (161.0, 6), (161.0, 7)];
        // 160 at frame 3 does not hold (back to 100 at 4); from 5 it holds two frames: answered at 6.
        assert_eq!(run(c, &frames), vec![(0, GateReason::First), (6, GateReason::Changed)]);
        let c1 = GateConfig { min_stable: 1, ..c };
        assert_eq!(
            run(c1, &frames),
            vec![(0, GateReason::First), (3, GateReason::Changed), (4, GateReason::Changed), (5, GateReason::Changed)]
        );
    }

    #[test]
    fn the_heartbeat_fires_on_an_unchanged_scene_and_zero_answers_all() {
        let c = GateConfig { threshold: 5.0, min_stable: 1, every: Some(Duration::from_secs(2)) };
        let frames: Vec<(f32, u64)> = (0..6).map(|t| (100.0, t)).collect();
        assert_eq!(
            run(c, &frames),
            vec![(0, GateReason::First), (2, GateReason::Heartbeat), (4, GateReason::Heartbeat)]
        );
        let all = GateConfig { threshold: 0.0, ..c };
        assert_eq!(run(all, &frames).len(), 6);
    }
}
