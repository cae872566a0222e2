//! The engine's vision-feature cache: projected tile embeddings keyed by the SHA-256 of the preprocessed
//! tile's pixels, bounded in bytes, least recently used out first. An unchanged image, or a video frame
//! still in a window, is never encoded twice while its features fit.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// A tile's projected embeddings, `[tokens_per_tile, hidden]`, shared by the cache and the sessions using them.
pub type TileEmbeddings = Arc<Vec<f32>>;

/// What a tile's pixels hash to.
pub type TileKey = [u8; 32];

/// The key of a preprocessed tile (`[3, S, S]` f32 values, hashed as their in-memory bytes: keys live only
/// as long as the process, so the byte order does not matter).
pub fn tile_key(pixels: &[f32]) -> TileKey {
    Sha256::digest(bytemuck::cast_slice::<f32, u8>(pixels)).into()
}

/// Counters since the engine opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeatureCacheStats {
    /// Tiles found in the cache.
    pub hits: u64,
    /// Tiles encoded.
    pub misses: u64,
    /// Entries dropped to stay within the budget.
    pub evictions: u64,
    /// Entries held now.
    pub entries: usize,
    /// Bytes held now.
    pub bytes: usize,
    /// The budget.
    pub budget: usize,
}

pub(crate) struct FeatureCache {
    budget: usize,
    bytes: usize,
    clock: u64,
    map: HashMap<TileKey, (TileEmbeddings, u64)>,
    hits: u64,
    misses: u64,
    evictions: u64,
}

impl FeatureCache {
    pub fn new(budget: usize) -> FeatureCache {
        FeatureCache { budget, bytes: 0, clock: 0, map: HashMap::new(), hits: 0, misses: 0, evictions: 0 }
    }

    fn entry_bytes(v: &[f32]) -> usize {
        std::mem::size_of_val(v)
    }

    /// The embeddings of `key`, marking them used.
    pub fn get(&mut self, key: &TileKey) -> Option<TileEmbeddings> {
        self.clock += 1;
        let clock = self.clock;
        match self.map.get_mut(key) {
            Some((v, used)) => {
                *used = clock;
                self.hits += 1;
                Some(v.clone())
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Change the budget, dropping least recently used entries beyond it.
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
        self.evict_to(budget);
    }

    /// Drop least recently used entries until at most `bytes` are held.
    fn evict_to(&mut self, bytes: usize) {
        while self.bytes > bytes {
            let Some(oldest) = self.map.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| *k) else { break };
            if let Some((v, _)) = self.map.remove(&oldest) {
                self.bytes -= Self::entry_bytes(&v);
                self.evictions += 1;
            }
        }
    }

    /// Keep `value` under `key`, dropping the least recently used entries beyond the budget. A value larger
    /// than the whole budget is not kept.
    pub fn insert(&mut self, key: TileKey, value: TileEmbeddings) {
        let size = Self::entry_bytes(&value);
        if size > self.budget || self.map.contains_key(&key) {
            return;
        }
        self.evict_to(self.budget - size);
        self.clock += 1;
        self.bytes += size;
        self.map.insert(key, (value, self.clock));
    }

    pub fn stats(&self) -> FeatureCacheStats {
        FeatureCacheStats {
            hits: self.hits,
            misses: self.misses,
            evictions: self.evictions,
            entries: self.map.len(),
            bytes: self.bytes,
            budget: self.budget,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_goes_first_and_the_budget_holds() {
        // Entries of 4 floats = 16 bytes; a budget of 40 bytes holds two.
        let mut c = FeatureCache::new(40);
        let v = |x: f32| Arc::new(vec![x; 4]);
        let (a, b, d) = (tile_key(&[1.0]), tile_key(&[2.0]), tile_key(&[3.0]));
        c.insert(a, v(1.0));
        c.insert(b, v(2.0));
        assert_eq!(c.get(&a).unwrap()[0], 1.0); // a is now the most recent
        c.insert(d, v(3.0)); // evicts b
        assert!(c.get(&b).is_none());
        assert_eq!(c.get(&a).unwrap()[0], 1.0);
        assert_eq!(c.get(&d).unwrap()[0], 3.0);
        let s = c.stats();
        assert_eq!((s.entries, s.bytes, s.evictions, s.hits, s.misses), (2, 32, 1, 3, 1));
        // Too large for the budget: not kept, nothing evicted.
        c.insert(tile_key(&[4.0]), Arc::new(vec![0.0; 11]));
        assert_eq!(c.stats().entries, 2);
        // A zero budget keeps nothing.
        let mut z = FeatureCache::new(0);
        z.insert(a, v(1.0));
        assert!(z.get(&a).is_none());
    }

    #[test]
    fn keys_tell_pixels_apart() {
        assert_ne!(tile_key(&[0.0]), tile_key(&[-0.0]));
        assert_ne!(tile_key(&[1.0, 2.0]), tile_key(&[2.0, 1.0]));
        assert_eq!(tile_key(&[1.0; 5000]), tile_key(&[1.0; 5000]));
    }
}
