//! Kernel throughput on model-shaped products: `cargo bench -p runtime --bench kernels`.
//!
//! Prints one row per case with the best-of-N time and the rate (GOP/s: 2 ops per multiply-add). Run it
//! once as is and once with `SAIL_EDGE_ISA=scalar` to compare paths on the same machine and load.

use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use runtime::kernels;
use runtime::quant;
use runtime::tensor::Matrix;
use runtime::GgmlType;

struct Case {
    name: &'static str,
    ty: GgmlType,
    /// Q4_0 repacked 8 rows at a time.
    repacked: bool,
    n: usize,
    k: usize,
    m: usize,
}

/// Single-token products over many distinct matrices (~256 MiB of weights, far beyond the caches), one
/// pass per repetition: the rate at which decoding streams weights from memory.
/// `repacked`: Q4_0 with its rows interleaved 8 at a time (the repack cache's layout).
fn stream_case(pool: &rayon::ThreadPool, rng: &mut SmallRng, ty: GgmlType, repacked: bool, reps: usize) {
    let (k, m) = (2048usize, 6144usize);
    let one = ty.row_size(k).unwrap() * m;
    let count = (256usize << 20).div_ceil(one);
    let wf: Vec<f32> = (0..k * m).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let mut bytes = vec![0u8; one];
    quant::quantize_rows(ty, &wf, k, &mut bytes).unwrap();
    // Distinct copies so that every pass reads memory, not cache.
    let all: Vec<Vec<u8>> = (0..count).map(|_| bytes.clone()).collect();
    let packed = if repacked { interleave(ty, &bytes, k) } else { Vec::new() };
    let packed_all: Vec<Vec<u8>> = (0..if repacked { count } else { 0 }).map(|_| packed.clone()).collect();
    let mats: Vec<Matrix<'_>> = all
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let w = Matrix::from_bytes("stream", ty, m, k, b).unwrap();
            if repacked {
                w.with_repacked(&packed_all[i]).unwrap()
            } else {
                w
            }
        })
        .collect();
    let x: Vec<f32> = (0..k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let mut out = vec![0f32; m];
    let mut best = f64::INFINITY;
    pool.install(|| {
        for rep in 0..=reps {
            let t = Instant::now();
            for w in &mats {
                kernels::matmul(&x, 1, w, &mut out).unwrap();
            }
            if rep > 0 {
                best = best.min(t.elapsed().as_secs_f64());
            }
        }
    });
    let total = (one * count) as f64;
    println!(
        "| decode stream {count}x 2048x6144 {} | {:.2} | {:.1} | {:.2} |",
        label(ty, repacked),
        best * 1e3,
        2.0 * (k * m * count) as f64 / best / 1e9,
        total / best / 1e9
    );
}

/// Rows repacked 8 at a time.
fn interleave(ty: GgmlType, rows: &[u8], k: usize) -> Vec<u8> {
    let kb = k / ty.block_size();
    let group = 8 * kb * ty.type_size();
    let mut packed = vec![0u8; rows.len()];
    for (src, dst) in rows.chunks(group).zip(packed.chunks_mut(group)) {
        kernels::interleaved::interleave_x8(ty, src, kb, dst);
    }
    packed
}

/// The name of a weight format in the rows: `q4_0x8` for repacked Q4_0.
fn label(ty: GgmlType, repacked: bool) -> String {
    if repacked {
        format!("{ty}x8")
    } else {
        ty.to_string()
    }
}

fn main() {
    let threads = std::env::var("SAIL_EDGE_BENCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let reps: usize = std::env::var("SAIL_EDGE_BENCH_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cases = [
        Case { name: "decode ffn_up 2048x6144 q4_0", ty: GgmlType::Q4_0, repacked: false, n: 1, k: 2048, m: 6144 },
        Case { name: "decode ffn_up 2048x6144 q4_0x8", ty: GgmlType::Q4_0, repacked: true, n: 1, k: 2048, m: 6144 },
        Case { name: "decode ffn_up 2048x6144 q8_0", ty: GgmlType::Q8_0, repacked: false, n: 1, k: 2048, m: 6144 },
        Case { name: "decode ffn_up 2048x6144 q8_0x8", ty: GgmlType::Q8_0, repacked: true, n: 1, k: 2048, m: 6144 },
        Case { name: "decode ffn_up 2048x6144 q4_K", ty: GgmlType::Q4K, repacked: false, n: 1, k: 2048, m: 6144 },
        Case { name: "decode ffn_up 2048x6144 q4_Kx8", ty: GgmlType::Q4K, repacked: true, n: 1, k: 2048, m: 6144 },
        Case { name: "decode ffn_up 2048x6144 q6_K", ty: GgmlType::Q6K, repacked: false, n: 1, k: 2048, m: 6144 },
        Case { name: "decode ffn_up 2048x6144 q6_Kx8", ty: GgmlType::Q6K, repacked: true, n: 1, k: 2048, m: 6144 },
        Case { name: "decode lm_head 2048x151936 q6_K", ty: GgmlType::Q6K, repacked: false, n: 1, k: 2048, m: 151936 },
        Case { name: "decode lm_head 2048x151936 q6_Kx8", ty: GgmlType::Q6K, repacked: true, n: 1, k: 2048, m: 151936 },
        Case {
            name: "prefill512 ffn_up 2048x6144 q4_0",
            ty: GgmlType::Q4_0,
            repacked: false,
            n: 512,
            k: 2048,
            m: 6144,
        },
        Case {
            name: "prefill512 ffn_up 2048x6144 q4_0x8",
            ty: GgmlType::Q4_0,
            repacked: true,
            n: 512,
            k: 2048,
            m: 6144,
        },
        Case {
            name: "prefill512 ffn_up 2048x6144 q8_0",
            ty: GgmlType::Q8_0,
            repacked: false,
            n: 512,
            k: 2048,
            m: 6144,
        },
        Case { name: "prefill512 ffn_up 2048x6144 q4_K", ty: GgmlType::Q4K, repacked: false, n: 512, k: 2048, m: 6144 },
        Case {
            name: "prefill512 ffn_up 2048x6144 q4_Kx8",
            ty: GgmlType::Q4K,
            repacked: true,
            n: 512,
            k: 2048,
            m: 6144,
        },
        Case { name: "vit tile ffn_up 1536x4096 q8_0", ty: GgmlType::Q8_0, repacked: false, n: 1024, k: 1536, m: 4096 },
        Case { name: "vit tile ffn_up 1536x4096 f16", ty: GgmlType::F16, repacked: false, n: 1024, k: 1536, m: 4096 },
    ];
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
    println!("isa {:?}, {threads} threads, best of {reps}", kernels::isa());
    println!("| case | ms | GOP/s | GB/s weights |");
    println!("|---|---|---|---|");
    let mut rng = SmallRng::seed_from_u64(1);
    for (ty, repacked) in [
        (GgmlType::Q4_0, false),
        (GgmlType::Q4_0, true),
        (GgmlType::Q8_0, false),
        (GgmlType::Q8_0, true),
        (GgmlType::Q4K, false),
        (GgmlType::Q4K, true),
        (GgmlType::Q6K, false),
        (GgmlType::Q6K, true),
    ] {
        if filter.as_deref().is_none_or(|f| format!("decode stream {}", label(ty, repacked)).contains(f)) {
            stream_case(&pool, &mut rng, ty, repacked, reps);
        }
    }
    for c in cases.iter().filter(|c| filter.as_deref().is_none_or(|f| c.name.contains(f))) {
        let wf: Vec<f32> = (0..c.k * c.m).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let mut bytes = vec![0u8; c.ty.row_size(c.k).unwrap() * c.m];
        quant::quantize_rows(c.ty, &wf, c.k, &mut bytes).unwrap();
        drop(wf);
        let packed = if c.repacked { interleave(c.ty, &bytes, c.k) } else { Vec::new() };
        let mut w = Matrix::from_bytes("bench", c.ty, c.m, c.k, &bytes).unwrap();
        if c.repacked {
            w = w.with_repacked(&packed).unwrap();
        }
        let x: Vec<f32> = (0..c.n * c.k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let mut out = vec![0f32; c.n * c.m];
        let mut best = f64::INFINITY;
        pool.install(|| {
            kernels::matmul(&x, c.n, &w, &mut out).unwrap();
            for _ in 0..reps {
                let t = Instant::now();
                kernels::matmul(&x, c.n, &w, &mut out).unwrap();
                best = best.min(t.elapsed().as_secs_f64());
            }
        });
        let ops = 2.0 * (c.n * c.k * c.m) as f64;
        println!(
            "| {} | {:.2} | {:.1} | {:.2} |",
            c.name,
            best * 1e3,
            ops / best / 1e9,
            bytes.len() as f64 / best / 1e9
        );
    }
}
