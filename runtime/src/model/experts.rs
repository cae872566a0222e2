//! Lazy expert residency for MoE decoders: only the experts a token is routed to are read from the mapped
//! file, and an optional budget keeps the resident expert bytes bounded on small boards.
//!
//! * At load, the whole MoE file is advised `MADV_RANDOM`, so a fault reads only its own page, never the
//!   neighbouring experts' (nor, from a dense tensor's fault, the experts next to it in the file). Dense
//!   weights (attention, norms, router, output) are then prefetched with `MADV_WILLNEED` to make up for the
//!   lost read-ahead, and are never released. The token embedding is left to fault row by row (unless it is
//!   also the output projection).
//! * Each MoE layer tells [`ExpertResidency`] which experts its batch routes to before computing them: uses
//!   of resident experts are hits, the others misses (their bytes are then faulted in by the matmuls).
//! * With a budget ([`LoadOptions::max_expert_memory`]), least-recently-used experts are evicted until the
//!   resident total fits, before the batch computes, never one the batch uses: their ranges get
//!   `MADV_DONTNEED` plus `POSIX_FADV_DONTNEED`, so the pages leave the page cache too. All expert ranges are
//!   dropped at load so that the accounting starts true.
//! * Look-ahead prefetch (speculative): before layer L computes its experts, layer L+1's router is applied to
//!   layer L's normalized hidden state and the experts it would pick get `MADV_WILLNEED`, so their pages
//!   stream in while layer L computes. The real input of layer L+1 differs (attention comes in between), so
//!   some guesses miss; [`ExpertStats::prefetch_hits`] counts the ones that were then used. Under a budget a
//!   prefetch only evicts experts older than layer L's batch, and stops when it would have to evict more.
//!
//! The bookkeeping ([`ResidencyTracker`]) is pure and tested without files; [`ExpertResidency`] binds it to
//! the expert byte ranges of a mapped GGUF file.

use std::sync::{Mutex, MutexGuard};

use crate::gguf::names::{self, tensor};
use crate::gguf::{GgufFile, TensorInfo};
use crate::model::ModelError;

/// How a model is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Most bytes of MoE expert weights kept resident (`--max-memory`); `None`: no bound. Dense weights are
    /// not counted and never released. Ignored (with a warning) by dense models.
    pub max_expert_memory: Option<u64>,
    /// Prefetch the next layer's likely experts while the current layer computes (look-ahead routing).
    pub prefetch_experts: bool,
    /// Row type of the KV cache: F16 (default), Q8_0 (half of that) or F32 (reference-exact runs).
    pub kv_type: crate::GgmlType,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions { max_expert_memory: None, prefetch_experts: true, kv_type: crate::GgmlType::F16 }
    }
}

/// Counters of expert residency since load (all MoE layers together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpertStats {
    /// Uses of an expert (one layer's batch routing to it) that found it resident.
    pub hits: u64,
    /// Uses that had to fault it in.
    pub misses: u64,
    /// Expert bytes brought into memory: misses plus issued prefetches, each a whole expert.
    pub bytes_read: u64,
    /// Expert bytes resident by the accounting (touched or prefetched, not evicted since).
    pub resident_bytes: u64,
    /// Experts resident by the accounting.
    pub resident_experts: u64,
    /// Experts evicted to stay within the budget.
    pub evictions: u64,
    /// Experts prefetched by look-ahead routing (not already resident).
    pub prefetched: u64,
    /// Prefetched experts that were then used while still resident.
    pub prefetch_hits: u64,
    /// Experts in the model (layers × experts per layer) and their total bytes.
    pub total_experts: u64,
    pub total_bytes: u64,
    /// The budget, if any.
    pub budget: Option<u64>,
    /// Expert bytes actually resident in the page cache, as `mincore` reports (`None` where unknown).
    pub measured_resident_bytes: Option<u64>,
}

impl ExpertStats {
    /// Hits over uses (0 before any use).
    pub fn hit_rate(&self) -> f64 {
        let uses = self.hits + self.misses;
        if uses == 0 {
            0.0
        } else {
            self.hits as f64 / uses as f64
        }
    }
}

/// One expert's state, for reports and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpertUsage {
    pub layer: usize,
    pub expert: usize,
    /// Batches that routed to it.
    pub uses: u64,
    /// Times it was prefetched.
    pub prefetches: u64,
    /// Resident by the accounting.
    pub resident: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    last_used: u64,
    uses: u64,
    prefetches: u64,
    resident: bool,
    /// Prefetched and not used since.
    pending_prefetch: bool,
}

/// The LRU/budget bookkeeping of expert residency, with no I/O: callers act on what it returns.
#[derive(Debug, Clone)]
pub struct ResidencyTracker {
    n_experts: usize,
    /// Bytes of one expert, per layer.
    expert_bytes: Vec<u64>,
    slots: Vec<Slot>,
    tick: u64,
    budget: Option<u64>,
    resident_bytes: u64,
    resident_experts: u64,
    hits: u64,
    misses: u64,
    bytes_read: u64,
    evictions: u64,
    prefetched: u64,
    prefetch_hits: u64,
}

impl ResidencyTracker {
    /// `expert_bytes[l]`: bytes of one expert of layer `l`; `n_experts` per layer; nothing resident yet.
    pub fn new(expert_bytes: Vec<u64>, n_experts: usize, budget: Option<u64>) -> ResidencyTracker {
        let slots = vec![Slot::default(); expert_bytes.len() * n_experts];
        ResidencyTracker {
            n_experts,
            expert_bytes,
            slots,
            tick: 0,
            budget,
            resident_bytes: 0,
            resident_experts: 0,
            hits: 0,
            misses: 0,
            bytes_read: 0,
            evictions: 0,
            prefetched: 0,
            prefetch_hits: 0,
        }
    }

    fn slot(&mut self, layer: usize, expert: usize) -> &mut Slot {
        assert!(expert < self.n_experts, "expert {expert} of {}", self.n_experts);
        &mut self.slots[layer * self.n_experts + expert]
    }

    fn make_resident(&mut self, layer: usize) {
        self.resident_bytes += self.expert_bytes[layer];
        self.resident_experts += 1;
    }

    /// `layer`'s batch is about to use `experts` (distinct): count hits and misses, mark them resident and
    /// most recently used. Returns the misses.
    pub fn touch(&mut self, layer: usize, experts: &[usize]) -> Vec<usize> {
        self.tick += 1;
        let tick = self.tick;
        let mut missed = Vec::new();
        for &e in experts {
            let s = *self.slot(layer, e);
            if s.resident {
                self.hits += 1;
                if s.pending_prefetch {
                    self.prefetch_hits += 1;
                }
            } else {
                self.misses += 1;
                self.bytes_read += self.expert_bytes[layer];
                self.make_resident(layer);
                missed.push(e);
            }
            let s = self.slot(layer, e);
            s.resident = true;
            s.pending_prefetch = false;
            s.last_used = tick;
            s.uses += 1;
        }
        missed
    }

    /// `experts` of `layer` (most likely first) are predicted to be needed soon. Call right after the
    /// current layer's [`touch`](Self::touch) and [`enforce_budget`](Self::enforce_budget). Returns the
    /// experts to read ahead (those not resident, now counted resident and most recent) and the experts
    /// evicted to make room for them under the budget: least recently used first, never one of the last
    /// touch nor of this prefetch; prefetching stops at the first expert that does not fit.
    pub fn prefetch(&mut self, layer: usize, experts: &[usize]) -> (Vec<usize>, Vec<(usize, usize)>) {
        let current = self.tick; // the batch of the last touch
        self.tick += 1;
        let tick = self.tick;
        let (mut issued, mut evicted) = (Vec::new(), Vec::new());
        for &e in experts {
            if self.slot(layer, e).resident {
                continue;
            }
            let bytes = self.expert_bytes[layer];
            if let Some(budget) = self.budget {
                let Some(target) = budget.checked_sub(bytes) else { break };
                evicted.extend(self.evict_until(target, |_, s| s.last_used >= current));
                if self.resident_bytes > target {
                    break;
                }
            }
            self.prefetched += 1;
            self.bytes_read += bytes;
            self.make_resident(layer);
            let s = self.slot(layer, e);
            s.resident = true;
            s.pending_prefetch = true;
            s.last_used = tick;
            s.prefetches += 1;
            issued.push(e);
        }
        (issued, evicted)
    }

    /// Evict least-recently-used experts until the resident bytes fit the budget, never one of `protect`
    /// (`layer`'s current batch). Returns the evicted `(layer, expert)`s, for the caller to release. With
    /// only protected experts left the total may stay above the budget (a batch needs its experts).
    pub fn enforce_budget(&mut self, layer: usize, protect: &[usize]) -> Vec<(usize, usize)> {
        let Some(budget) = self.budget else { return Vec::new() };
        let n = self.n_experts;
        self.evict_until(budget, |i, _| i / n == layer && protect.contains(&(i % n)))
    }

    /// Evict resident experts, oldest first (ties: lower layer, then lower expert), until at most `target`
    /// bytes are resident, skipping those `protected(slot index, slot)` keeps.
    fn evict_until(&mut self, target: u64, protected: impl Fn(usize, &Slot) -> bool) -> Vec<(usize, usize)> {
        let mut evicted = Vec::new();
        if self.resident_bytes <= target {
            return evicted;
        }
        let mut candidates: Vec<(u64, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|&(i, s)| s.resident && !protected(i, s))
            .map(|(i, s)| (s.last_used, i))
            .collect();
        candidates.sort_unstable();
        for (_, i) in candidates {
            if self.resident_bytes <= target {
                break;
            }
            let (l, e) = (i / self.n_experts, i % self.n_experts);
            let s = &mut self.slots[i];
            s.resident = false;
            s.pending_prefetch = false;
            self.resident_bytes -= self.expert_bytes[l];
            self.resident_experts -= 1;
            self.evictions += 1;
            evicted.push((l, e));
        }
        evicted
    }

    /// Whether an expert is resident by the accounting.
    pub fn is_resident(&self, layer: usize, expert: usize) -> bool {
        self.slots[layer * self.n_experts + expert].resident
    }

    pub fn budget(&self) -> Option<u64> {
        self.budget
    }

    pub fn stats(&self) -> ExpertStats {
        ExpertStats {
            hits: self.hits,
            misses: self.misses,
            bytes_read: self.bytes_read,
            resident_bytes: self.resident_bytes,
            resident_experts: self.resident_experts,
            evictions: self.evictions,
            prefetched: self.prefetched,
            prefetch_hits: self.prefetch_hits,
            total_experts: self.slots.len() as u64,
            total_bytes: self.expert_bytes.iter().sum::<u64>() * self.n_experts as u64,
            budget: self.budget,
            measured_resident_bytes: None,
        }
    }

    /// Every expert's state, by layer then expert.
    pub fn usage(&self) -> Vec<ExpertUsage> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, s)| ExpertUsage {
                layer: i / self.n_experts,
                expert: i % self.n_experts,
                uses: s.uses,
                prefetches: s.prefetches,
                resident: s.resident,
            })
            .collect()
    }
}

/// The stacked expert tensors of one layer: `(tensor, bytes of one expert's slice)` for gate, up, down.
type LayerExperts<'a> = [(&'a TensorInfo, usize); 3];

/// Expert residency of a mapped MoE file: the tracker plus the byte ranges it acts on. Shared by all MoE
/// layers of a decoder (`forward` takes `&self`, hence the mutex).
#[derive(Debug)]
pub struct ExpertResidency<'a> {
    file: &'a GgufFile,
    layers: Vec<LayerExperts<'a>>,
    n_experts: usize,
    prefetch: bool,
    tracker: Mutex<ResidencyTracker>,
}

impl<'a> ExpertResidency<'a> {
    /// Set up residency for `n_layers` MoE layers of `n_experts` each, and advise the file (see the module
    /// docs): random access everywhere, dense weights prefetched, experts dropped when there is a budget.
    pub fn new(
        file: &'a GgufFile,
        n_layers: usize,
        n_experts: usize,
        options: &LoadOptions,
    ) -> Result<ExpertResidency<'a>, ModelError> {
        let mut layers = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            let slice = |kind: &str| -> Result<(&'a TensorInfo, usize), ModelError> {
                let info = file.tensor_info(&tensor::blk(l, kind))?;
                Ok((info, (info.size / n_experts as u64) as usize))
            };
            layers.push([slice(tensor::FFN_GATE_EXPS)?, slice(tensor::FFN_UP_EXPS)?, slice(tensor::FFN_DOWN_EXPS)?]);
        }
        let expert_bytes = layers.iter().map(|t| t.iter().map(|(_, b)| *b as u64).sum()).collect();
        let tracker = ResidencyTracker::new(expert_bytes, n_experts, options.max_expert_memory);

        file.advise_random_all();
        let tied = file.header().tensor(names::tensor::OUTPUT).is_none();
        for t in file.tensors() {
            let expert = t.name.ends_with("_exps.weight");
            if !expert && (t.name != names::tensor::TOKEN_EMBD || tied) {
                file.prefetch(t, 0, t.size as usize);
            }
        }
        if options.max_expert_memory.is_some() {
            for layer in &layers {
                for (info, _) in layer {
                    file.evict(info, 0, info.size as usize);
                }
            }
        }
        Ok(ExpertResidency {
            file,
            layers,
            n_experts,
            prefetch: options.prefetch_experts,
            tracker: Mutex::new(tracker),
        })
    }

    fn lock(&self) -> MutexGuard<'_, ResidencyTracker> {
        self.tracker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether look-ahead prefetch is on.
    pub fn prefetch_enabled(&self) -> bool {
        self.prefetch
    }

    /// The byte ranges (tensor, start, len) of one expert: its gate, up and down slices.
    pub fn ranges(&self, layer: usize, expert: usize) -> impl Iterator<Item = (&'a TensorInfo, usize, usize)> + '_ {
        self.layers[layer].iter().map(move |&(info, bytes)| (info, expert * bytes, bytes))
    }

    /// `layer`'s batch routes to `experts` (distinct): account for them and, over budget, evict the least
    /// recently used others; then start reading `next`, the experts layer `layer + 1` is predicted to route
    /// to (most likely first; empty when prefetch is off), within the budget. Call before computing.
    pub fn use_experts(&self, layer: usize, experts: &[usize], next: &[usize]) {
        let (evictions, issued) = {
            let mut t = self.lock();
            t.touch(layer, experts);
            let mut evicted = t.enforce_budget(layer, experts);
            let mut issued = Vec::new();
            if self.prefetch && !next.is_empty() && layer + 1 < self.layers.len() {
                let (i, e) = t.prefetch(layer + 1, next);
                issued = i;
                evicted.extend(e);
            }
            // Whether each side's neighbour (in the same stacked tensors) is out of memory too.
            let free = |l: usize, e: Option<usize>| e.is_some_and(|e| e < self.n_experts && !t.is_resident(l, e));
            let evictions: Vec<_> =
                evicted.into_iter().map(|(l, e)| (l, e, free(l, e.checked_sub(1)), free(l, Some(e + 1)))).collect();
            (evictions, issued)
        };
        // Only whole pages are dropped from the page cache: a page an expert shares with a neighbour is
        // dropped too when that neighbour is out of memory (the range widens by a page less one byte on that
        // side), so that boundary pages do not pile up over a long run.
        let widen = crate::mmap::page_size() - 1;
        for (l, e, free_before, free_after) in evictions {
            for (info, start, len) in self.ranges(l, e) {
                let lo = if free_before { start.saturating_sub(widen) } else { start };
                let hi = if free_after { start + len + widen } else { start + len };
                self.file.evict(info, lo, hi - lo);
            }
        }
        for e in issued {
            for (info, start, len) in self.ranges(layer + 1, e) {
                self.file.prefetch(info, start, len);
            }
        }
    }

    /// Counters, with the expert bytes resident in the page cache measured by `mincore`.
    pub fn stats(&self) -> ExpertStats {
        let mut s = self.lock().stats();
        let mut measured = Some(0u64);
        for layer in &self.layers {
            for (info, _) in layer {
                measured =
                    measured.zip(self.file.resident_bytes(info, 0, info.size as usize)).map(|(a, b)| a + b as u64);
            }
        }
        s.measured_resident_bytes = measured;
        s
    }

    /// Every expert's state, by layer then expert.
    pub fn usage(&self) -> Vec<ExpertUsage> {
        self.lock().usage()
    }

    pub fn n_experts(&self) -> usize {
        self.n_experts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_and_misses_are_counted_per_use() {
        let mut t = ResidencyTracker::new(vec![100, 100], 4, None);
        assert_eq!(t.touch(0, &[1, 2]), vec![1, 2]);
        assert_eq!(t.touch(0, &[2, 3]), vec![3]);
        assert_eq!(t.touch(1, &[2]), vec![2], "layers are separate");
        let s = t.stats();
        assert_eq!((s.hits, s.misses, s.bytes_read), (1, 4, 400));
        assert_eq!((s.resident_experts, s.resident_bytes, s.evictions), (4, 400, 0));
        assert_eq!((s.total_experts, s.total_bytes), (8, 800));
        assert!(t.enforce_budget(1, &[2]).is_empty(), "no budget, no eviction");
    }

    #[test]
    fn budget_evicts_least_recently_used_first_never_the_current_batch() {
        let mut t = ResidencyTracker::new(vec![10, 10], 8, Some(30));
        t.touch(0, &[0]);
        t.touch(0, &[1]);
        t.touch(0, &[2]);
        t.touch(0, &[0]); // 0 becomes the most recent
        assert!(t.enforce_budget(0, &[0]).is_empty(), "30 bytes fit");
        t.touch(1, &[5, 6]);
        // 50 bytes: drop the two least recently used, 1 then 2.
        assert_eq!(t.enforce_budget(1, &[5, 6]), vec![(0, 1), (0, 2)]);
        let s = t.stats();
        assert_eq!((s.resident_bytes, s.resident_experts, s.evictions), (30, 3, 2));
        // A use of an evicted expert is a miss again.
        assert_eq!(t.touch(0, &[1]), vec![1]);
        // A batch larger than the budget keeps all its experts.
        t.touch(1, &[0, 1, 2, 3, 4]);
        let ev = t.enforce_budget(1, &[0, 1, 2, 3, 4]);
        assert!(ev.iter().all(|&(l, e)| !(l == 1 && e <= 4)), "{ev:?}");
        assert_eq!(t.stats().resident_bytes, 50);
        let resident: Vec<(usize, usize)> =
            t.usage().iter().filter(|u| u.resident).map(|u| (u.layer, u.expert)).collect();
        assert_eq!(resident, vec![(1, 0), (1, 1), (1, 2), (1, 3), (1, 4)]);
    }

    #[test]
    fn same_expert_in_another_layer_is_not_protected() {
        let mut t = ResidencyTracker::new(vec![10, 10], 2, Some(10));
        t.touch(0, &[1]);
        t.touch(1, &[1]);
        assert_eq!(t.enforce_budget(1, &[1]), vec![(0, 1)]);
    }

    #[test]
    fn prefetches_are_counted_and_hit_once() {
        let mut t = ResidencyTracker::new(vec![10, 10], 4, None);
        t.touch(0, &[0]);
        assert_eq!(t.prefetch(1, &[0, 1]), (vec![0, 1], vec![]));
        assert_eq!(t.prefetch(1, &[1]), (vec![], vec![]), "already resident: nothing to issue");
        assert_eq!(t.touch(1, &[1, 2]), vec![2]);
        assert!(t.touch(1, &[1]).is_empty());
        let s = t.stats();
        assert_eq!((s.prefetched, s.prefetch_hits, s.hits, s.misses), (2, 1, 2, 2));
        assert_eq!(s.bytes_read, 40, "2 misses and 2 prefetches, 10 bytes each");
        let u = t.usage();
        assert_eq!((u[4].uses, u[4].prefetches), (0, 1));
    }

    #[test]
    fn prefetched_experts_are_evicted_after_older_ones() {
        let mut t = ResidencyTracker::new(vec![10, 10], 4, Some(30));
        t.touch(0, &[0]);
        t.touch(0, &[1]);
        assert_eq!(t.prefetch(1, &[3]), (vec![3], vec![]), "fits the budget");
        t.touch(0, &[2]);
        // 40 > 30: expert (0, 0) is the oldest; the prefetched (1, 3) is newer than (0, 1).
        assert_eq!(t.enforce_budget(0, &[2]), vec![(0, 0)]);
        t.touch(0, &[0]);
        assert_eq!(t.enforce_budget(0, &[0]), vec![(0, 1)]);
        t.touch(1, &[0]);
        assert_eq!(t.enforce_budget(1, &[0]), vec![(1, 3)]);
        assert_eq!(t.stats().prefetch_hits, 0);
    }

    #[test]
    fn prefetch_under_a_budget_never_evicts_the_current_batch() {
        let mut t = ResidencyTracker::new(vec![10, 10], 4, Some(40));
        t.touch(1, &[0]); // the previous token's layer 1: oldest
        t.touch(0, &[0, 1]);
        assert!(t.enforce_budget(0, &[0, 1]).is_empty());
        // Room for one more without eviction, then (1, 0) may go; layer 0's batch and the prefetches stay.
        let (issued, evicted) = t.prefetch(1, &[2, 3, 1]);
        assert_eq!(issued, vec![2, 3]);
        assert_eq!(evicted, vec![(1, 0)]);
        let s = t.stats();
        assert_eq!((s.resident_bytes, s.prefetched, s.evictions), (40, 2, 1));
        // A budget below one expert prefetches nothing.
        let mut t = ResidencyTracker::new(vec![10], 4, Some(5));
        t.touch(0, &[0]);
        assert_eq!(t.prefetch(0, &[1]), (vec![], vec![]));
    }

    #[test]
    fn hit_rate() {
        let s = ExpertStats { hits: 3, misses: 1, ..Default::default() };
        assert_eq!(s.hit_rate(), 0.75);
        assert_eq!(ExpertStats::default().hit_rate(), 0.0);
    }
}
