//! A deterministic synthetic moving scene, for demos and tests: a sky-to-ground gradient, a sun that crosses
//! it, and a coloured block that moves; every 4 seconds of stream time the scene changes (another palette
//! and block shape). Frame `i` depends only on `i`, and frames come at the given rate on the wall clock (a
//! live origin: a slow consumer drops frames).

use std::time::{Duration, Instant};

use ::image::{Rgb, RgbImage};

use super::{CapturedFrame, FrameSource, Payload, SourceError};

/// Stream seconds each scene lasts.
pub const SCENE_SECONDS: u64 = 4;

const PALETTES: [([u8; 3], [u8; 3], [u8; 3]); 4] = [
    ([70, 130, 200], [60, 140, 60], [200, 40, 40]),
    ([250, 170, 90], [150, 110, 70], [30, 60, 200]),
    ([20, 20, 60], [40, 40, 40], [240, 240, 80]),
    ([200, 200, 210], [230, 230, 235], [20, 160, 160]),
];

pub struct TestPattern {
    width: u32,
    height: u32,
    fps: u32,
    index: u64,
    start: Option<Instant>,
}

impl TestPattern {
    pub fn new(width: u32, height: u32, fps: u32) -> Result<TestPattern, SourceError> {
        let bad = |reason: &str| SourceError::Fatal { origin: "test pattern".into(), reason: reason.into() };
        if width < 16 || height < 16 || width > 4096 || height > 4096 {
            return Err(bad("the size must be between 16x16 and 4096x4096"));
        }
        if fps == 0 || fps > 1000 {
            return Err(bad("--fps must be between 1 and 1000"));
        }
        Ok(TestPattern { width, height, fps, index: 0, start: None })
    }

    /// Frame `index` of a `width`×`height` pattern at `fps`.
    pub fn frame(width: u32, height: u32, fps: u32, index: u64) -> RgbImage {
        let t = index as f64 / fps as f64;
        let scene = (t as u64 / SCENE_SECONDS) as usize;
        let (sky, ground, block) = PALETTES[scene % PALETTES.len()];
        let horizon = height * 3 / 5;
        let (w, h) = (width as f64, height as f64);
        // The sun crosses the sky once a scene; the block slides back and forth on the ground.
        let phase = (t % SCENE_SECONDS as f64) / SCENE_SECONDS as f64;
        let sun = (w * (0.1 + 0.8 * phase), h * 0.25);
        let radius = h * 0.08;
        let slide = (phase * std::f64::consts::TAU).sin() * 0.5 + 0.5;
        let bw = w * if scene.is_multiple_of(2) { 0.2 } else { 0.12 };
        let bh = h * if scene.is_multiple_of(2) { 0.15 } else { 0.3 };
        let bx = (w - bw) * slide;
        let by = horizon as f64 - bh * 0.5;
        RgbImage::from_fn(width, height, |x, y| {
            let (xf, yf) = (x as f64, y as f64);
            if xf >= bx && xf < bx + bw && yf >= by && yf < by + bh {
                return Rgb(block);
            }
            if (xf - sun.0).powi(2) + (yf - sun.1).powi(2) < radius * radius {
                return Rgb([255, 230, 120]);
            }
            let (base, shade) = if y < horizon { (sky, yf / h) } else { (ground, 1.0 - yf / h) };
            Rgb(base.map(|c| (c as f64 * (0.75 + 0.25 * shade)).round() as u8))
        })
    }
}

impl FrameSource for TestPattern {
    fn name(&self) -> String {
        format!("test pattern {}x{} at {} fps", self.width, self.height, self.fps)
    }

    fn next_frame(&mut self) -> Result<Option<CapturedFrame>, SourceError> {
        let start = *self.start.get_or_insert_with(Instant::now);
        let timestamp = Duration::from_secs_f64(self.index as f64 / self.fps as f64);
        if let Some(wait) = timestamp.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let image = TestPattern::frame(self.width, self.height, self.fps, self.index);
        let frame = CapturedFrame {
            index: self.index,
            timestamp,
            width: self.width,
            height: self.height,
            payload: Payload::Rgb(image),
        };
        self.index += 1;
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_moving_and_changing() {
        let a = TestPattern::frame(64, 48, 10, 5);
        assert_eq!(a, TestPattern::frame(64, 48, 10, 5));
        assert_ne!(a, TestPattern::frame(64, 48, 10, 6), "the scene moves");
        let next_scene = TestPattern::frame(64, 48, 10, 10 * SCENE_SECONDS);
        assert_ne!(a.get_pixel(0, 0), next_scene.get_pixel(0, 0), "the scene changes");
        assert!(TestPattern::new(8, 8, 10).is_err());
        assert!(TestPattern::new(64, 48, 0).is_err());
    }
}
