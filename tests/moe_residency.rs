//! Lazy expert residency, measured with `mincore`: on a synthetic MoE file whose experts span many pages,
//! decoding a few tokens brings into memory the routed experts' pages and (up to the pages they share with
//! a neighbour) nothing else; with a memory budget the resident expert bytes stay within it.

mod common;

use common::{fixtures, sail_edge};

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use convert::synth::{self, MoeDims, Preset, SynthSpec};
use convert::ConvertOptions;
use runtime::gguf::{GgufFile, TensorInfo};
use runtime::mmap::{evict_from_page_cache, page_size};
use runtime::model::decoder::{Decoder, Logits};
use runtime::model::{ExpertStats, ExpertUsage, LoadOptions};

const LAYERS: usize = 2;
const EXPERTS: usize = 64;
const TOP_K: usize = 8;

/// The synthetic model, written once: hidden 256, 2 layers of 64 experts (top-8) 512 wide, Q8_0, so each
/// expert is 3 × 136 KiB (34 pages per slice) and a layer's experts 26 MiB. Written under the target dir (a
/// real disk: the page cache of a tmpfs file cannot be dropped), rewritten by each run.
fn model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("moe-residency");
        std::fs::create_dir_all(&dir).unwrap();
        let spec = SynthSpec {
            hidden: 256,
            intermediate: 512,
            layers: LAYERS,
            heads: 4,
            kv_heads: 2,
            head_dim: 64,
            moe: Some(MoeDims {
                num_experts: EXPERTS,
                num_experts_per_tok: TOP_K,
                moe_intermediate_size: 512,
                norm_topk_prob: true,
            }),
            ..SynthSpec::preset(Preset::TinyMoe, 11)
        };
        let mut opts = ConvertOptions::defaults(&dir, &dir, quantize::Mix::Q8_0, None);
        opts.name = Some("synth-moe".into());
        opts.lm_out = dir.join("synth-moe-q8_0.gguf");
        opts.mmproj_out = dir.join("mmproj-synth-moe-q8_0.gguf");
        let start = std::time::Instant::now();
        let summary =
            synth::write_gguf(&spec, &fixtures().join("sailvl2-moe-tiny"), &opts, &indicatif::ProgressBar::hidden())
                .unwrap();
        eprintln!("synthetic MoE: {} bytes in {:.1} s", summary.lm.file_bytes, start.elapsed().as_secs_f64());
        opts.lm_out
    })
}

/// The tests share one file and the page cache: one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `(tensor, slice bytes)` of layer `l`'s gate, up and down experts.
fn expert_tensors(file: &GgufFile, l: usize) -> Vec<(&TensorInfo, usize)> {
    ["gate", "up", "down"]
        .iter()
        .map(|k| {
            let t = file.tensor_info(&format!("blk.{l}.ffn_{k}_exps.weight")).unwrap();
            (t, (t.size / EXPERTS as u64) as usize)
        })
        .collect()
}

/// Resident bytes (mincore) of each expert, `[layer][expert]`, and the bytes of one expert.
fn measure(file: &GgufFile) -> (Vec<Vec<usize>>, usize) {
    let mut out = vec![vec![0; EXPERTS]; LAYERS];
    let mut expert_bytes = 0;
    for (l, row) in out.iter_mut().enumerate() {
        let tensors = expert_tensors(file, l);
        expert_bytes = tensors.iter().map(|(_, b)| b).sum();
        for (e, r) in row.iter_mut().enumerate() {
            *r =
                tensors.iter().map(|(t, b)| file.resident_bytes(t, e * b, *b).expect("mincore works on this OS")).sum();
        }
    }
    (out, expert_bytes)
}

/// Drop the file from the page cache, map it, and check that the drop worked: the experts are not resident.
fn open_cold(path: &Path) -> GgufFile {
    evict_from_page_cache(path).unwrap();
    let file = GgufFile::open(path).unwrap();
    let (resident, _) = measure(&file);
    let total: usize = resident.iter().flatten().sum();
    assert!(
        total <= 4 * page_size(),
        "{total} expert bytes of {} are resident right after evicting the file from the page cache: \
         posix_fadvise(POSIX_FADV_DONTNEED) has no effect on this filesystem (tmpfs?), so residency cannot be \
         measured here",
        path.display()
    );
    file
}

/// Prefill two tokens, then decode two greedily: four tokens through both layers.
fn decode(dec: &Decoder<'_>) {
    let mut cache = dec.new_cache();
    let mut logits = dec.forward(dec.embed(&[9707, 1879]).unwrap(), &mut cache, Logits::Last).unwrap();
    for _ in 0..2 {
        let id = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
        logits = dec.forward(dec.embed(&[id]).unwrap(), &mut cache, Logits::Last).unwrap();
    }
}

fn usage_of(usage: &[ExpertUsage], l: usize, e: usize) -> ExpertUsage {
    usage[l * EXPERTS + e]
}

#[test]
fn only_routed_experts_become_resident() {
    let _g = serial();
    let path = model();
    let file = open_cold(path);
    let dec = Decoder::load_with(
        &file,
        &LoadOptions { max_expert_memory: None, prefetch_experts: false, ..LoadOptions::default() },
    )
    .unwrap();
    decode(&dec);
    let usage = dec.expert_usage().unwrap();
    let (resident, expert_bytes) = measure(&file);
    let page = page_size();
    let (mut routed, mut routed_bytes, mut routed_resident) = (0, 0, 0);
    let (mut other, mut other_resident, mut slack) = (0, 0, 0);
    for u in &usage {
        let (l, e) = (u.layer, u.expert);
        let r = resident[l][e];
        if u.uses > 0 {
            routed += 1;
            routed_bytes += expert_bytes;
            routed_resident += r;
            assert!(r * 100 >= expert_bytes * 99, "routed expert {l}/{e}: only {r} of {expert_bytes} bytes resident");
        } else {
            other += 1;
            other_resident += r;
            // A page it shares with a routed neighbour (or, at the tensor's ends, with the next tensor) is
            // resident: at most one per side of each of its three slices.
            let sides = [e.checked_sub(1), Some(e + 1)]
                .iter()
                .filter(|n| n.is_none_or(|n| n >= EXPERTS || usage_of(&usage, l, n).uses > 0))
                .count();
            let allowed = 3 * sides * page;
            slack += allowed;
            assert!(r <= allowed, "expert {l}/{e} was never routed, yet {r} bytes are resident (allowed {allowed})");
        }
    }
    let stats = dec.expert_stats().unwrap();
    eprintln!(
        "no budget, no prefetch: {routed} routed experts ({routed_bytes} bytes) have {routed_resident} bytes \
         resident; {other} others have {other_resident} bytes resident (boundary-page allowance {slack}); \
         stats: {stats:?}"
    );
    assert!(routed > TOP_K && routed < LAYERS * EXPERTS, "{routed} routed experts: the test needs a spread");
    assert_eq!(stats.misses as usize, routed, "each routed expert missed once");
    assert_eq!(stats.resident_experts as usize, routed);
    assert_eq!(stats.evictions, 0);
}

/// Decode under a budget of ten experts' worth: smaller than what four tokens route to over two layers,
/// larger than one batch. Returns (budget, routed bytes, mincore total, slack, stats).
fn run_with_budget(path: &Path, prefetch: bool) -> (usize, usize, usize, usize, ExpertStats) {
    let file = open_cold(path);
    let expert_bytes: usize = expert_tensors(&file, 0).iter().map(|(_, b)| b).sum();
    let budget = 10 * expert_bytes;
    let dec = Decoder::load_with(
        &file,
        &LoadOptions { max_expert_memory: Some(budget as u64), prefetch_experts: prefetch, ..LoadOptions::default() },
    )
    .unwrap();
    decode(&dec);
    let routed = dec.expert_usage().unwrap().iter().filter(|u| u.uses > 0).count();
    let (resident, _) = measure(&file);
    let total: usize = resident.iter().flatten().sum();
    let stats = dec.expert_stats().unwrap();
    // Whole experts by the accounting, plus the pages their slices share with a neighbour (≤ 2 per slice),
    // plus pages at the tensors' ends.
    let slack = stats.resident_experts as usize * 6 * page_size() + LAYERS * 6 * page_size();
    eprintln!(
        "budget {budget} bytes (10 experts), prefetch {prefetch}: {routed} experts routed ({} bytes); mincore: \
         {total} expert bytes resident (allowed {budget} + {slack}); stats: {stats:?}",
        routed * expert_bytes
    );
    assert!(routed * expert_bytes > budget, "the routed set must exceed the budget");
    assert!(stats.evictions > 0);
    assert!(stats.resident_bytes as usize <= budget, "accounting: {} > {budget}", stats.resident_bytes);
    assert_eq!(stats.measured_resident_bytes, Some(total as u64));
    (budget, routed * expert_bytes, total, slack, stats)
}

#[test]
fn a_budget_bounds_resident_expert_memory() {
    let _g = serial();
    let (budget, _, total, slack, _) = run_with_budget(model(), false);
    assert!(total <= budget + slack, "{total} expert bytes resident with a budget of {budget} (+ {slack})");
    // With look-ahead prefetch too. A prefetch evicted before its read completes may leave its pages in the
    // page cache (the kernel does not drop pages under I/O), so those may come on top.
    let (budget, _, total, slack, stats) = run_with_budget(model(), true);
    let in_flight = stats.prefetched as usize * (stats.total_bytes / stats.total_experts) as usize;
    assert!(total <= budget + slack + in_flight, "{total} expert bytes resident with a budget of {budget} (+ {slack})");
}

#[test]
fn prefetched_experts_are_the_only_extra_residents() {
    let _g = serial();
    let path = model();
    let file = open_cold(path);
    let dec = Decoder::load_with(&file, &LoadOptions::default()).unwrap();
    decode(&dec);
    let usage = dec.expert_usage().unwrap();
    let (resident, expert_bytes) = measure(&file);
    let page = page_size();
    let mut untouched_resident = 0;
    let mut prefetched_only = 0;
    for u in &usage {
        let (l, e) = (u.layer, u.expert);
        if u.uses == 0 && u.prefetches == 0 {
            untouched_resident += resident[l][e];
            assert!(
                resident[l][e] <= 6 * page,
                "expert {l}/{e}: neither routed nor prefetched, {} bytes",
                resident[l][e]
            );
        } else if u.uses == 0 {
            prefetched_only += 1;
        } else {
            assert!(resident[l][e] * 100 >= expert_bytes * 99, "routed expert {l}/{e}");
        }
    }
    let stats = dec.expert_stats().unwrap();
    eprintln!(
        "prefetch on: {prefetched_only} experts prefetched but not routed; experts neither routed nor \
         prefetched have {untouched_resident} bytes resident; stats: {stats:?}"
    );
    assert!(stats.prefetched > 0);
    // Layer 0 is never prefetched (nothing comes before it).
    assert!(usage[..EXPERTS].iter().all(|u| u.prefetches == 0));
}

/// A converted tiny fixture, in a fresh folder.
fn tiny(fixture: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let lm = dir.path().join("model.gguf");
    let o = sail_edge(&[
        "convert",
        fixtures().join(fixture).to_str().unwrap(),
        "--type",
        "f32",
        "-o",
        lm.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (dir, lm)
}

#[test]
fn describe_reports_expert_stats_with_a_budget() {
    let (_dir, lm) = tiny("sailvl2-moe-tiny");
    let o = sail_edge(&[
        "describe",
        "-m",
        lm.to_str().unwrap(),
        "-p",
        "hi",
        "-n",
        "4",
        "-t",
        "1",
        "--max-memory",
        "1M",
        "-v",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let line = err.lines().find(|l| l.starts_with("experts: hit rate")).unwrap_or_else(|| panic!("no stats: {err}"));
    for needle in ["hits", "misses", "read", "resident", "budget 1.00 MiB", "evictions", "prefetch hits"] {
        assert!(line.contains(needle), "{needle:?} missing from {line}");
    }
    // Without -v: no stats line.
    let o =
        sail_edge(&["describe", "-m", lm.to_str().unwrap(), "-p", "hi", "-n", "2", "-t", "1", "--max-memory", "1M"]);
    assert!(o.status.success());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("experts: hit rate"));
    // A bad size is refused by name.
    let o = sail_edge(&["describe", "-m", lm.to_str().unwrap(), "-p", "hi", "--max-memory", "lots"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("'lots'"));
}

#[test]
fn dense_models_accept_a_budget_and_say_it_does_not_apply() {
    let (_dir, lm) = tiny("sailvl2-tiny");
    let o = sail_edge(&[
        "describe",
        "-m",
        lm.to_str().unwrap(),
        "-p",
        "hi",
        "-n",
        "2",
        "-t",
        "1",
        "--max-memory",
        "8G",
        "-v",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("only applies to the experts of MoE models"), "{err}");
    assert!(!err.contains("experts: hit rate"), "{err}");
}
