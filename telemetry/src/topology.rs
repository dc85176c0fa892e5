//! From a validated pipeline to what each sink runs: for every sink, the transform chains
//! ([`Path`]s) its data goes through, and which batches each chain carries.
//!
//! The collector runs one reader of the write-ahead log per sink. For each batch it reads, it
//! runs every path of that sink that carries the batch, and writes what comes out. A path is
//! found by walking the sink's inputs back to the sources:
//!
//! ```text
//! otlp_grpc ─┐
//!            ├─> phi ─> keep ─> forward      forward: one path, sources [otlp_grpc, otlp_http],
//! otlp_http ─┘                                        transforms [phi, keep]
//! ```
//!
//! Paths through the same transforms are one path with several sources. Paths through
//! different transforms stay apart, and a batch carried by two paths reaches the sink twice,
//! once from each (a diamond `s -> a -> c`, `s -> b -> c` delivers every batch of `s` twice,
//! as in Vector). Each path builds its own instances of its transforms ([`Chain`]), so state
//! such as held traces is not shared; the sampler's decisions are deterministic, so copies
//! agree.
//!
//! **What a path carries.** Records in the log do not say which source they came from yet,
//! and all OTLP sources append to the same log. So a path carries every OTLP batch (traces,
//! metrics, logs) if any OTLP source is among its sources, and every profile if a `pyroscope`
//! source is: see [`Path::carries`].

use std::time::Instant;

use crate::batch::Batch;
use crate::config::{TransformOptions, ValidatedPipeline};
use crate::transforms::Transform;
use crate::transforms::redact::Redact;
use crate::transforms::sample::TailSample;
use crate::wal::Signal;

/// One way from sources to a sink: the sources it starts from and the transforms applied, in
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// Names of the sources, in the order first found from the sink's inputs.
    pub sources: Vec<String>,
    /// Names of the transforms, in the order data goes through them (empty: straight from the
    /// sources).
    pub transforms: Vec<String>,
    /// Whether an OTLP source (`otlp_grpc`, `otlp_http`) is among the sources.
    pub carries_otlp: bool,
    /// Whether a `pyroscope` source is among the sources.
    pub carries_profiles: bool,
}

impl Path {
    /// Whether this path carries batches of `signal` (see the module docs: by kind of source,
    /// as the log does not record the source yet).
    pub fn carries(&self, signal: Signal) -> bool {
        match signal {
            Signal::Profiles => self.carries_profiles,
            Signal::Traces | Signal::Metrics | Signal::Logs => self.carries_otlp,
        }
    }
}

/// What one sink runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkPlan {
    /// The sink's name.
    pub sink: String,
    /// Its paths, in the order of its inputs; never empty for a validated pipeline.
    pub paths: Vec<Path>,
}

/// The plan of every sink, in name order.
pub fn plan(pipeline: &ValidatedPipeline) -> Vec<SinkPlan> {
    pipeline
        .sinks()
        .iter()
        .map(|(name, sink)| SinkPlan {
            sink: name.clone(),
            paths: paths_from(pipeline, &sink.inputs),
        })
        .collect()
}

/// Paths from the sources to a component reading `inputs`, merged by transform chain.
fn paths_from(pipeline: &ValidatedPipeline, inputs: &[String]) -> Vec<Path> {
    let mut walks = Vec::new();
    for input in inputs {
        walk(pipeline, input, &mut walks);
    }
    let mut paths: Vec<Path> = Vec::new();
    for (source, transforms) in walks {
        let path = match paths.iter_mut().find(|p| p.transforms == transforms) {
            Some(path) => path,
            None => {
                paths.push(Path {
                    sources: Vec::new(),
                    transforms,
                    carries_otlp: false,
                    carries_profiles: false,
                });
                paths.last_mut().expect("just pushed")
            }
        };
        if !path.sources.contains(&source) {
            let config = &pipeline.sources()[&source];
            path.carries_otlp |= config.yields_otlp();
            path.carries_profiles |= config.yields_profiles();
            path.sources.push(source);
        }
    }
    paths
}

/// Every (source, transforms in data order) by which data reaches the output of `name`.
/// Terminates: validation rejected cycles and inputs that are not sources or transforms.
fn walk(pipeline: &ValidatedPipeline, name: &str, walks: &mut Vec<(String, Vec<String>)>) {
    if pipeline.sources().contains_key(name) {
        walks.push((name.to_owned(), Vec::new()));
        return;
    }
    let transform = pipeline
        .transforms()
        .get(name)
        .expect("validated: inputs are sources or transforms");
    for input in &transform.inputs {
        let start = walks.len();
        walk(pipeline, input, walks);
        for (_, transforms) in &mut walks[start..] {
            transforms.push(name.to_owned());
        }
    }
}

/// A fresh instance of the named transform, or `None` if the pipeline has no such transform.
pub fn build_transform(pipeline: &ValidatedPipeline, name: &str) -> Option<Box<dyn Transform>> {
    let config = pipeline.transforms().get(name)?;
    Some(match &config.options {
        TransformOptions::Redact(redact) => {
            Box::new(Redact::new(redact).expect("validated: the patterns compiled"))
                as Box<dyn Transform>
        }
        TransformOptions::Sample(sample) => Box::new(TailSample::new(sample)),
    })
}

/// A path with its transforms built: what a sink's log reader pushes batches through.
pub struct Chain {
    path: Path,
    transforms: Vec<Box<dyn Transform>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Chain {
    /// Builds the path's transforms. `path` must come from [`plan`] of this pipeline.
    pub fn new(pipeline: &ValidatedPipeline, path: Path) -> Self {
        let transforms = path
            .transforms
            .iter()
            .map(|name| build_transform(pipeline, name).expect("the path comes from this pipeline"))
            .collect();
        Self { path, transforms }
    }

    /// A chain over transforms built elsewhere, in data order (tests, benchmarks).
    pub fn from_parts(path: Path, transforms: Vec<Box<dyn Transform>>) -> Self {
        debug_assert_eq!(path.transforms.len(), transforms.len());
        Self { path, transforms }
    }

    /// The path it runs.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path carries batches of `signal`.
    pub fn carries(&self, signal: Signal) -> bool {
        self.path.carries(signal)
    }

    /// Runs a batch through every transform; returns what comes out now. A batch the path does
    /// not carry gives nothing.
    pub fn apply(&mut self, batch: Batch, now: Instant) -> Vec<Batch> {
        if !self.path.carries(batch.signal()) {
            return Vec::new();
        }
        run(&mut self.transforms, vec![batch], now)
    }

    /// When the oldest data any of the transforms holds arrived (see
    /// [`Transform::held_since`]). Data one transform releases into a later one that holds it
    /// again counts from its release, so the guarantee covers one holding transform per path.
    pub fn held_since(&self) -> Option<Instant> {
        self.transforms.iter().filter_map(|t| t.held_since()).min()
    }

    /// Releases what the transforms held back and is due at `now`, each release going
    /// through the transforms after the one that held it.
    pub fn flush_due(&mut self, now: Instant) -> Vec<Batch> {
        let mut out = Vec::new();
        for i in 0..self.transforms.len() {
            let (done, rest) = self.transforms.split_at_mut(i + 1);
            let released = done[i].flush_due(now);
            if !released.is_empty() {
                out.extend(run(rest, released, now));
            }
        }
        out
    }
}

/// `batches` through `transforms` in order.
fn run(transforms: &mut [Box<dyn Transform>], mut batches: Vec<Batch>, now: Instant) -> Vec<Batch> {
    for transform in transforms {
        if batches.is_empty() {
            break;
        }
        batches = batches
            .into_iter()
            .flat_map(|b| transform.apply(b, now))
            .collect();
    }
    batches
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;

    use super::*;
    use crate::batch::Profile;
    use crate::config::PipelineConfig;

    fn path(sources: &[&str], transforms: &[&str], otlp: bool, profiles: bool) -> Path {
        Path {
            sources: sources.iter().map(|s| (*s).to_owned()).collect(),
            transforms: transforms.iter().map(|s| (*s).to_owned()).collect(),
            carries_otlp: otlp,
            carries_profiles: profiles,
        }
    }

    fn plans(toml: &str) -> Vec<SinkPlan> {
        plan(&PipelineConfig::from_toml_str(toml).unwrap())
    }

    const SOURCES: &str = r#"
        [sources.otlp_grpc]
        type = "otlp_grpc"
        [sources.otlp_http]
        type = "otlp_http"
        [sources.pyroscope]
        type = "pyroscope"
    "#;

    #[test]
    fn chain_merges_sources_of_the_same_transforms() {
        let plans = plans(&format!(
            r#"{SOURCES}
            [transforms.phi]
            type = "redact"
            inputs = ["otlp_grpc", "otlp_http"]
            [transforms.keep]
            type = "sample"
            inputs = ["phi"]
            [sinks.forward]
            type = "otlp"
            inputs = ["keep"]
            endpoint = "http://other:4317"
            [sinks.devnull]
            type = "blackhole"
            inputs = ["otlp_grpc", "pyroscope"]
            "#
        ));
        assert_eq!(
            plans,
            [
                SinkPlan {
                    sink: "devnull".to_owned(),
                    paths: vec![path(&["otlp_grpc", "pyroscope"], &[], true, true)],
                },
                SinkPlan {
                    sink: "forward".to_owned(),
                    paths: vec![path(
                        &["otlp_grpc", "otlp_http"],
                        &["phi", "keep"],
                        true,
                        false
                    )],
                },
            ]
        );
    }

    #[test]
    fn diamond_gives_one_path_per_branch() {
        let plans = plans(&format!(
            r#"{SOURCES}
            [transforms.left]
            type = "redact"
            inputs = ["otlp_grpc"]
            [transforms.right]
            type = "sample"
            inputs = ["otlp_grpc", "pyroscope"]
            [transforms.join]
            type = "redact"
            inputs = ["left", "right"]
            [sinks.out]
            type = "blackhole"
            inputs = ["join", "otlp_http"]
            "#
        ));
        assert_eq!(
            plans,
            [SinkPlan {
                sink: "out".to_owned(),
                paths: vec![
                    path(&["otlp_grpc"], &["left", "join"], true, false),
                    path(&["otlp_grpc", "pyroscope"], &["right", "join"], true, true),
                    path(&["otlp_http"], &[], true, false),
                ],
            }]
        );
    }

    #[test]
    fn default_pipeline_runs_everything_through_redact() {
        let plans = plan(&PipelineConfig::from_toml_str(crate::config::DEFAULT_PIPELINE).unwrap());
        let sinks: Vec<&str> = plans.iter().map(|p| p.sink.as_str()).collect();
        assert_eq!(sinks, ["logs", "metrics", "profiles", "spans"]);
        for plan in &plans {
            assert_eq!(
                plan.paths,
                [path(
                    &["otlp_grpc", "otlp_http", "pyroscope"],
                    &["redact"],
                    true,
                    true
                )]
            );
        }
    }

    #[test]
    fn chain_applies_transforms_to_the_batches_it_carries() {
        let pipeline = PipelineConfig::from_toml_str(&format!(
            r#"{SOURCES}
            [transforms.phi]
            type = "redact"
            inputs = ["otlp_grpc"]
            [sinks.logs]
            type = "log_index"
            inputs = ["phi"]
            [sinks.profiles]
            type = "profiles"
            inputs = ["pyroscope"]
            "#
        ))
        .unwrap();
        let plans = plan(&pipeline);
        let mut logs = Chain::new(&pipeline, plans[0].paths[0].clone());
        let profile = Batch::Profile(Profile {
            service: "api".to_owned(),
            labels: Vec::new(),
            from: 0,
            until: 1,
            pprof: bytes::Bytes::new(),
        });
        let now = Instant::now();
        assert!(logs.apply(profile.clone(), now).is_empty());
        let batch = Batch::Logs(ExportLogsServiceRequest::default());
        assert_eq!(logs.apply(batch.clone(), now), [batch]);
        let mut profiles = Chain::new(&pipeline, plans[1].paths[0].clone());
        assert_eq!(profiles.apply(profile.clone(), now), [profile]);
        assert!(build_transform(&pipeline, "nothing").is_none());
    }

    /// Holds every batch until flushed; counts what it saw.
    struct Hold(Vec<Batch>);

    impl Transform for Hold {
        fn apply(&mut self, batch: Batch, _now: Instant) -> Vec<Batch> {
            self.0.push(batch);
            Vec::new()
        }

        fn flush_due(&mut self, _now: Instant) -> Vec<Batch> {
            std::mem::take(&mut self.0)
        }
    }

    /// Doubles every batch.
    struct Twice;

    impl Transform for Twice {
        fn apply(&mut self, batch: Batch, _now: Instant) -> Vec<Batch> {
            vec![batch.clone(), batch]
        }
    }

    #[test]
    fn released_batches_go_through_the_later_transforms() {
        let mut chain = Chain::from_parts(
            path(&["otlp_grpc"], &["twice", "hold", "twice"], true, false),
            vec![Box::new(Twice), Box::new(Hold(Vec::new())), Box::new(Twice)],
        );
        let now = Instant::now();
        let batch = Batch::Logs(ExportLogsServiceRequest::default());
        assert!(chain.apply(batch, now).is_empty());
        assert_eq!(chain.flush_due(now).len(), 4);
        assert!(chain.flush_due(now).is_empty());
    }
}
