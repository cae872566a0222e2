//! Luma measures of a frame: the small thumbnail the scene gate compares, and the sharpness (variance of the
//! Laplacian) the kiosk waits for.

use ::image::RgbImage;

/// Thumbnail side: 32×32 block means, coarse enough that sensor noise averages out, fine enough that a
/// person entering a corner of the view moves it.
pub const THUMB: usize = 32;

/// BT.601 luma of an RGB pixel, 0–255.
fn luma(p: [u8; 3]) -> f32 {
    0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
}

/// A 32×32 luma thumbnail (block means over the whole frame, ignoring its aspect).
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail(pub Vec<f32>);

impl Thumbnail {
    pub fn of(img: &RgbImage) -> Thumbnail {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut sum = vec![0f32; THUMB * THUMB];
        let mut count = vec![0u32; THUMB * THUMB];
        for (x, y, p) in img.enumerate_pixels() {
            let cell = (y as usize * THUMB / h) * THUMB + x as usize * THUMB / w;
            sum[cell] += luma(p.0);
            count[cell] += 1;
        }
        Thumbnail(sum.iter().zip(&count).map(|(s, &c)| if c > 0 { s / c as f32 } else { 0.0 }).collect())
    }

    /// Mean absolute difference, in luma levels (0–255).
    pub fn difference(&self, other: &Thumbnail) -> f32 {
        self.0.iter().zip(&other.0).map(|(a, b)| (a - b).abs()).sum::<f32>() / self.0.len() as f32
    }
}

/// Variance of the 4-neighbour Laplacian of the luma (higher: sharper). Computed on the frame scaled to at
/// most 640 pixels wide, so the figure does not depend much on the camera's resolution.
pub fn sharpness(img: &RgbImage) -> f64 {
    let scaled;
    let img = if img.width() > 640 {
        let h = (img.height() as u64 * 640 / img.width() as u64).max(1) as u32;
        scaled = ::image::imageops::resize(img, 640, h, ::image::imageops::FilterType::Triangle);
        &scaled
    } else {
        img
    };
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let y: Vec<f64> = img.pixels().map(|p| luma(p.0) as f64).collect();
    let (mut sum, mut sum2, mut n) = (0f64, 0f64, 0f64);
    for r in 1..h - 1 {
        for c in 1..w - 1 {
            let i = r * w + c;
            let lap = y[i - 1] + y[i + 1] + y[i - w] + y[i + w] - 4.0 * y[i];
            sum += lap;
            sum2 += lap * lap;
            n += 1.0;
        }
    }
    let mean = sum / n;
    sum2 / n - mean * mean
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::image::Rgb;

    #[test]
    fn thumbnails_differ_by_what_changed() {
        let a = RgbImage::from_pixel(64, 48, Rgb([100, 100, 100]));
        let mut b = a.clone();
        assert_eq!(Thumbnail::of(&a).difference(&Thumbnail::of(&b)), 0.0);
        // A quarter of the frame 40 levels brighter: a mean difference of 10 levels.
        for y in 0..24 {
            for x in 0..32 {
                b.put_pixel(x, y, Rgb([140, 140, 140]));
            }
        }
        let d = Thumbnail::of(&a).difference(&Thumbnail::of(&b));
        assert!((d - 10.0).abs() < 1e-3, "{d}");
    }

    #[test]
    fn sharp_edges_score_higher_than_a_blur_of_them() {
        let sharp =
            RgbImage::from_fn(64, 64, |x, y| if (x / 4 + y / 4) % 2 == 0 { Rgb([255; 3]) } else { Rgb([0; 3]) });
        let blurred = ::image::imageops::blur(&sharp, 2.0);
        assert!(sharpness(&sharp) > 10.0 * sharpness(&blurred));
        assert_eq!(sharpness(&RgbImage::from_pixel(8, 8, Rgb([9; 3]))), 0.0);
    }
}
