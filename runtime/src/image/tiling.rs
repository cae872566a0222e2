//! Tile-grid selection, identical to upstream `dynamic_preprocess` + `find_closest_aspect_ratio`.
//!
//! Upstream builds the candidates as a Python `set` of `(i, j)` tuples and then `sorted(key=i*j)`, a stable
//! sort, so among equal products the order is CPython's set iteration order. That order is reproduced here
//! by replaying CPython's set (open addressing with 9 linear probes then perturbed probing, resize at 3/5
//! fill to `4*used`) with CPython's tuple hash (xxHash-style, since 3.8), fed with the tuples in the order
//! the upstream generator yields them. This matches `candidate_order` of the fixtures and CPython 3.11
//! for every `max_num` up to 128 (see the tests).

/// Upstream `find_closest_aspect_ratio` over [`candidate_order`] with `image_size` 448.
/// Returns `(cols, rows)`: the grid is `cols` tiles wide and `rows` tiles high.
pub fn tile_grid(width: u32, height: u32, min_tiles: u32, max_tiles: u32) -> (u32, u32) {
    select_grid(width, height, min_tiles, max_tiles, 448)
}

/// [`tile_grid`] for any tile size (`image_size` enters the tie rule).
///
/// Python semantics, in f64: `aspect = width / height`; candidates are scanned in [`candidate_order`];
/// a candidate replaces the best one if `|aspect - i/j|` is strictly smaller, or on an exact tie if
/// `width*height > 0.5 * image_size * image_size * i * j`. With no candidate (`min_tiles > max_tiles`,
/// `max_tiles == 0`) the result is upstream's initial `(1, 1)`. `height` must be > 0.
pub fn select_grid(width: u32, height: u32, min_tiles: u32, max_tiles: u32, image_size: u32) -> (u32, u32) {
    let aspect = width as f64 / height as f64;
    let area = (width as u64 * height as u64) as f64;
    let mut best_diff = f64::INFINITY;
    let mut best = (1, 1);
    for (i, j) in candidate_order(min_tiles, max_tiles) {
        let diff = (aspect - i as f64 / j as f64).abs();
        if diff < best_diff {
            best_diff = diff;
            best = (i, j);
        } else if diff == best_diff && area > 0.5 * image_size as f64 * image_size as f64 * i as f64 * j as f64 {
            best = (i, j);
        }
    }
    best
}

/// The order in which upstream scans the grid candidates `(i, j)` (`min_tiles <= i*j <= max_tiles`):
/// CPython's iteration order of
/// `set((i, j) for n in range(min, max + 1) for i in range(1, n + 1) for j in range(1, n + 1) if min <= i*j <= max)`
/// followed by a stable sort on `i*j`.
pub fn candidate_order(min_tiles: u32, max_tiles: u32) -> Vec<(u32, u32)> {
    // The generator first yields (i, j) at n = max(i, j, min); within one n it goes by i, then j.
    // Later duplicates leave a Python set untouched, so only first occurrences matter.
    let mut first: Vec<(u32, u32, u32)> = Vec::new();
    for i in 1..=max_tiles {
        for j in 1..=max_tiles / i {
            if i * j >= min_tiles {
                first.push((i.max(j).max(min_tiles), i, j));
            }
        }
    }
    first.sort_unstable();
    let mut set = PySet::new();
    for &(_, i, j) in &first {
        set.add((i, j));
    }
    let mut order = set.iter_order();
    order.sort_by_key(|&(i, j)| i * j); // stable, like Python's sorted
    order
}

const XXPRIME_1: u64 = 11400714785074694791;
const XXPRIME_2: u64 = 14029467366897019727;
const XXPRIME_5: u64 = 2870177450012600261;

/// CPython's `hash((a, b))` for small non-negative ints (whose hash is the value), as an unsigned word.
fn tuple_hash(a: u32, b: u32) -> u64 {
    let mut acc = XXPRIME_5;
    for lane in [a as u64, b as u64] {
        acc = acc.wrapping_add(lane.wrapping_mul(XXPRIME_2));
        acc = acc.rotate_left(31);
        acc = acc.wrapping_mul(XXPRIME_1);
    }
    acc = acc.wrapping_add(2 ^ (XXPRIME_5 ^ 3527539));
    if acc == u64::MAX {
        1546275796
    } else {
        acc
    }
}

const PYSET_MINSIZE: usize = 8;
const LINEAR_PROBES: u64 = 9;
const PERTURB_SHIFT: u32 = 5;

/// The parts of CPython's `setobject.c` (3.8 .. 3.13) that decide the iteration order of a set built by
/// adding keys one by one (no deletions, so no dummies).
struct PySet {
    table: Vec<Option<(u64, (u32, u32))>>,
    fill: usize,
}

impl PySet {
    fn new() -> Self {
        PySet { table: vec![None; PYSET_MINSIZE], fill: 0 }
    }

    /// `set_add_entry`.
    fn add(&mut self, key: (u32, u32)) {
        let hash = tuple_hash(key.0, key.1);
        let mask = (self.table.len() - 1) as u64;
        let mut i = hash & mask;
        let mut perturb = hash;
        loop {
            let probes = if i + LINEAR_PROBES <= mask { LINEAR_PROBES } else { 0 };
            for slot in i..=i + probes {
                match self.table[slot as usize] {
                    None => {
                        self.table[slot as usize] = Some((hash, key));
                        self.fill += 1;
                        if self.fill * 5 >= mask as usize * 3 {
                            let used = self.fill;
                            self.resize(if used > 50000 { used * 2 } else { used * 4 });
                        }
                        return;
                    }
                    Some((h, k)) if h == hash && k == key => return,
                    Some(_) => {}
                }
            }
            perturb >>= PERTURB_SHIFT;
            i = (i.wrapping_mul(5).wrapping_add(1).wrapping_add(perturb)) & mask;
        }
    }

    /// `set_table_resize` + `set_insert_clean`.
    fn resize(&mut self, minused: usize) {
        let mut newsize = PYSET_MINSIZE;
        while newsize <= minused {
            newsize <<= 1;
        }
        let old = std::mem::replace(&mut self.table, vec![None; newsize]);
        let mask = (newsize - 1) as u64;
        for (hash, key) in old.into_iter().flatten() {
            let mut i = hash & mask;
            let mut perturb = hash;
            'probe: loop {
                let probes = if i + LINEAR_PROBES <= mask { LINEAR_PROBES } else { 0 };
                for slot in i..=i + probes {
                    if self.table[slot as usize].is_none() {
                        self.table[slot as usize] = Some((hash, key));
                        break 'probe;
                    }
                }
                perturb >>= PERTURB_SHIFT;
                i = (i.wrapping_mul(5).wrapping_add(1).wrapping_add(perturb)) & mask;
            }
        }
    }

    fn iter_order(&self) -> Vec<(u32, u32)> {
        self.table.iter().flatten().map(|&(_, k)| k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_cpython() {
        // python3 -c "print(hash((1, 2)) % 2**64, hash((3, 1)) % 2**64)"
        assert_eq!(tuple_hash(1, 2), 14896688948223909699);
        assert_eq!(tuple_hash(3, 1), 8756109708711196808);
    }

    #[test]
    fn fixture_orders() {
        assert_eq!(candidate_order(1, 1), vec![(1, 1)]);
        assert_eq!(
            candidate_order(1, 10),
            vec![
                (1, 1),
                (1, 2),
                (2, 1),
                (3, 1),
                (1, 3),
                (2, 2),
                (4, 1),
                (1, 4),
                (5, 1),
                (1, 5),
                (1, 6),
                (6, 1),
                (3, 2),
                (2, 3),
                (7, 1),
                (1, 7),
                (4, 2),
                (2, 4),
                (1, 8),
                (8, 1),
                (1, 9),
                (3, 3),
                (9, 1),
                (2, 5),
                (5, 2),
                (10, 1),
                (1, 10)
            ]
        );
    }
}
