//! `sail-edge bench`: llama-bench-style throughput rows (pp, tg) and, with a vision file, image encode time
//! and time to first token. The measuring is `runtime::bench`; this is flags and printing.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use runtime::bench::{self, BenchConfig, BenchReport, ModelSummary, TestResult};
use runtime::engine::{Engine, EngineOptions};
use runtime::pipeline::ModelFiles;

use super::human_bytes;
use super::infer::{ModelArgs, ModelRef};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt tokens of the pp test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Generated tokens of the tg test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub repetitions: usize,
    /// Seed of the random token ids.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Skip the untimed warm-up runs.
    #[arg(long)]
    pub no_warmup: bool,
    /// Skip the image tests even when a vision file is present.
    #[arg(long)]
    pub no_image: bool,
    /// Skip the session tests (follow-up and shared-prefix time to first token, memory per session).
    #[arg(long)]
    pub no_session: bool,
    /// Sessions open on the engine for the memory figure.
    #[arg(long, default_value_t = 4)]
    pub sessions: usize,
    /// One JSON object on stdout instead of the markdown table.
    #[arg(long)]
    pub json: bool,
}

/// `1.72 B`, `3.45 M`, as llama-bench prints parameter counts.
fn human_count(n: u64) -> String {
    let v = n as f64;
    if v >= 1e9 {
        format!("{:.2} B", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.2} K", v / 1e3)
    } else {
        n.to_string()
    }
}

struct Table<'a> {
    model: &'a ModelSummary,
    isa: &'a str,
    threads: usize,
}

impl Table<'_> {
    fn header(&self, unit: &str) -> String {
        format!(
            "| model | size | params | isa | threads | test | {unit} |\n| --- | ---: | ---: | --- | ---: | --- | ---: |"
        )
    }

    fn row(&self, test: &str, value: &str) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {test} | {value} |",
            self.model.label(),
            human_bytes(self.model.file_size),
            human_count(self.model.params),
            self.isa,
            self.threads
        )
    }
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{elapsed_precise}] {wide_bar} {pos}/{len}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar
}

pub fn run(a: BenchArgs) -> Result<()> {
    if a.repetitions == 0 {
        anyhow::bail!("-r/--repetitions must be at least 1");
    }
    let profile = a.model.profile()?;
    let files = match &a.model.model {
        // Without the image tests the vision file is neither looked for nor opened.
        ModelRef::File(path) if a.no_image && a.model.mmproj.is_none() && path.exists() => {
            ModelFiles::open_lm(path, a.model.repack_mode()).with_context(|| format!("loading {}", path.display()))?
        }
        _ => a.model.open()?,
    };
    // One engine holds the files, the threads and the model for every test (the session tests need one).
    let mut options = EngineOptions { repack: a.model.repack_mode(), ..EngineOptions::new(files.lm.path()) };
    // The flags, then what `--board` sets that they do not (and pinning, before the threads start).
    a.model.fill_options(&mut options, None, profile.as_ref())?;
    let kv_type = options.kv_type;
    let wants_device = options.placement.wants_device();
    let engine = std::sync::Arc::new(Engine::from_files(files, options).context("loading the model")?);
    if wants_device {
        eprintln!("backend: {}", engine.placement().summary());
    }
    let files = engine.files();
    let config = BenchConfig {
        n_prompt: a.n_prompt,
        n_gen: a.n_gen,
        repetitions: a.repetitions,
        seed: a.seed,
        warmup: !a.no_warmup,
    };
    engine.install(|vlm| {
        config.validate(&vlm.decoder)?;
        let threads = rayon::current_num_threads();
        let isa = format!("{:?}", runtime::kernels::isa()).to_ascii_lowercase();
        let model = ModelSummary::of(&files.lm);
        let mmproj = files.mmproj.as_ref().map(ModelSummary::of);
        // The markdown rows say when Q4_0 weights come from the repack cache (the JSON names the file).
        let mut isa_label = if files.repack.is_some() { format!("{isa}+repack") } else { isa.clone() };
        // A device's rows say so (the JSON has the whole placement); lavapipe's are never GPU figures.
        let placement = engine.placement().clone();
        if let Some(device) = &placement.device {
            isa_label += &format!("+vulkan ({device}: {})", placement.parts());
            if device.contains("CPU implementation") {
                tracing::warn!("{device} is Vulkan on the CPU: its timings check the path, they are not GPU figures");
            }
        }
        let table = Table { model: &model, isa: &isa_label, threads };
        let image = vlm.vision.is_some() && !a.no_image;
        if config.n_prompt == 0 && config.n_gen == 0 && !image {
            anyhow::bail!("nothing to measure: -p 0 and -n 0, and no image test (no vision file, or --no-image)");
        }
        let mut out = std::io::stdout().lock();
        let mut print = |line: String| -> Result<()> {
            if !a.json {
                writeln!(out, "{line}")?;
                out.flush()?;
            }
            Ok(())
        };

        let bar = progress_bar();
        let mut progress = |name: &str, done: usize, total: usize| {
            bar.set_message(name.to_string());
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            if done == 0 {
                tracing::info!("{name}: {total} runs");
            }
        };
        let mut tests: Vec<TestResult> = Vec::new();
        if config.n_prompt > 0 || config.n_gen > 0 {
            print(table.header("t/s"))?;
            if config.warmup {
                progress("warm-up", 0, 1);
                bench::warmup(&vlm.decoder, &config)?;
            }
            if config.n_prompt > 0 {
                let t = bench::bench_prompt(&vlm.decoder, &config, &mut progress)?;
                print(table.row(&t.name, &t.display(2)))?;
                tests.push(t);
            }
            if config.n_gen > 0 {
                let t = bench::bench_generation(&vlm.decoder, &config, &mut progress)?;
                print(table.row(&t.name, &t.display(2)))?;
                tests.push(t);
            }
        }
        if image {
            let r = bench::bench_image(vlm, &config, &mut progress)?;
            let side = r.encode.info.get("tile_size").copied().unwrap_or(0);
            let (q, p) = (
                r.ttft.info.get("question_tokens").copied().unwrap_or(0),
                r.ttft.info.get("prompt_tokens").copied().unwrap_or(0),
            );
            if !tests.is_empty() {
                print(String::new())?;
            }
            print(table.header("ms"))?;
            print(table.row(&format!("image encode ({side}×{side} tile)"), &r.encode.display(1)))?;
            print(table.row(&format!("ttft (1 tile + {q}-token question, {p} tokens)"), &r.ttft.display(1)))?;
            tests.push(r.encode);
            tests.push(r.ttft);
            if !a.no_session {
                // Sessions run their work on the engine's threads themselves.
                let s = bench::bench_sessions(&engine, &config, a.sessions, &mut progress)?;
                // A row whose label gives its ratio to the baseline measured in the same run.
                let against = |label: &str, x: &TestResult, base: &TestResult, of: &str| {
                    let ratio = x.mean / base.mean.max(1e-9);
                    table.row(&format!("{label} ({ratio:.3}× {of})"), &x.display(1))
                };
                print(table.row("ttft first question (new image)", &s.ttft_first.display(1)))?;
                print(against(
                    "ttft_followup: same image, same session",
                    &s.ttft_followup,
                    &s.ttft_first,
                    "the first",
                ))?;
                print(table.row("ttft new session, no shared prefix", &s.ttft_no_shared_prefix.display(1)))?;
                print(against(
                    "ttft_shared_prefix: new session",
                    &s.ttft_shared_prefix,
                    &s.ttft_no_shared_prefix,
                    "without",
                ))?;
                print(String::new())?;
                print(table.header("bytes"))?;
                let maps = s.weights_rss.info.get("mappings").copied().unwrap_or(0);
                print(table.row(
                    &format!("weights resident, {} sessions ({maps} mapping of the model)", a.sessions),
                    &human_bytes(s.weights_rss.mean as u64),
                ))?;
                print(table.row(
                    &format!("one session at 4096 positions ({kv_type} KV)"),
                    &human_bytes(s.session_bytes_4096.mean as u64),
                ))?;
                tests.extend([
                    s.ttft_first,
                    s.ttft_followup,
                    s.ttft_shared_prefix,
                    s.ttft_no_shared_prefix,
                    s.weights_rss,
                    s.session_bytes_4096,
                ]);
            }
        } else if vlm.vision.is_none() {
            tracing::info!("no vision file: image tests skipped (--mmproj names one)");
        }
        bar.finish_and_clear();
        if a.json {
            let repack = files.repack.as_ref().map(|r| r.path().display().to_string());
            let report = BenchReport { model, mmproj, threads, isa, repack, placement, config: config.clone(), tests };
            writeln!(std::io::stdout(), "{:#}", report.to_json())?;
        }
        Ok(())
    })
}
