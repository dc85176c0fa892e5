//! What continuous CPU profiling costs (issue 6: "profiling <= 1 % CPU").
//!
//!     cargo build --release -p fertivision --example profiler_cost
//!     target/release/examples/profiler_cost [--rounds 6] [--seconds 5]
//!
//! The same CPU-bound work, the worker's document analysis of the committed lab reports (text
//! and PDF extraction, value parsing), runs in rounds that alternate between no profiler and a
//! pprof guard at 99 Hz, as `app/src/otel/profiling.rs` runs it. Each profiled round also
//! builds and encodes its pprof report, as a profile window does at its end, so a round of
//! `--seconds` pays a whole window's report (the service's windows are 15 s: this overstates
//! the report's share). The cost is the extra CPU time per unit of work, from the process's
//! own CPU clock (user + system), median over the rounds.

#[path = "common/cpu.rs"]
mod cpu;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use cpu::cpu_seconds;

const FREQUENCY: i32 = 99;

fn documents() -> Vec<(&'static str, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lab_reports");
    let mut documents = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the lab report fixtures") {
        let path = entry.expect("a fixture").path();
        let kind = match path.extension().and_then(|e| e.to_str()) {
            Some("pdf") => "application/pdf",
            Some("txt") => "text/plain",
            _ => continue,
        };
        documents.push((kind, std::fs::read(&path).expect("readable")));
    }
    assert!(!documents.is_empty(), "no fixtures under {}", dir.display());
    documents
}

/// Analyses every document `passes` times; returns the CPU seconds it took.
fn work(documents: &[(&'static str, Vec<u8>)], passes: usize) -> f64 {
    let before = cpu_seconds(std::process::id());
    for _ in 0..passes {
        for (kind, bytes) in documents {
            black_box(fertivision::analysis::analyse_document(
                kind,
                black_box(bytes),
            ));
        }
    }
    cpu_seconds(std::process::id()) - before
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut rounds = 6usize;
    let mut seconds = 5.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--rounds" => rounds = value.parse().expect("--rounds takes a number"),
            "--seconds" => seconds = value.parse().expect("--seconds takes a number"),
            _ => panic!("usage: profiler_cost [--rounds N] [--seconds S]"),
        }
    }
    let documents = documents();
    // Calibrate: how many passes take about `seconds` of CPU.
    let started = Instant::now();
    let (mut probe, mut done) = (1, 0);
    while started.elapsed() < Duration::from_millis(300) {
        work(&documents, probe);
        done += probe;
        probe *= 2;
    }
    let per_pass = started.elapsed().as_secs_f64() / done as f64;
    let passes = ((seconds / per_pass) as usize).max(1);
    println!(
        "{} documents, {passes} passes per round ({seconds} s), {rounds} rounds each way",
        documents.len()
    );
    let (mut plain, mut profiled) = (Vec::new(), Vec::new());
    let mut samples = 0usize;
    for round in 0..rounds {
        let off = work(&documents, passes);
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(FREQUENCY)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .expect("the profiler starts");
        let before = cpu_seconds(std::process::id());
        work(&documents, passes);
        let report = guard.report().build().expect("a report");
        let profile = report.pprof().expect("pprof");
        let encoded = pprof::protos::Message::encode_to_vec(&profile);
        let on = cpu_seconds(std::process::id()) - before;
        drop(guard);
        samples += profile.sample.len();
        println!(
            "round {round}: {off:.2} CPU s plain, {on:.2} CPU s profiled ({} bytes of pprof)",
            encoded.len()
        );
        plain.push(off);
        profiled.push(on);
    }
    let (off, on) = (median(plain), median(profiled));
    println!(
        "median: {off:.3} CPU s plain, {on:.3} CPU s profiled: profiling costs {:.2} % CPU ({samples} stacks sampled)",
        (on - off) / off * 100.0
    );
}
