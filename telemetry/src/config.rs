//! The pipeline in the config file: which sources, transforms and sinks run, and how they
//! connect. Read raw ([`PipelineConfig`], straight from TOML, unknown keys rejected), then
//! checked as a whole into a [`ValidatedPipeline`], the only form the collector runs.
//!
//! Every component has a unique name and a `type`; transforms and sinks name their `inputs`
//! (sources or transforms, never sinks). Data flows from sources through transforms to sinks:
//!
//! ```toml
//! [sources.otlp_grpc]
//! type = "otlp_grpc"
//! address = "0.0.0.0:4317"
//!
//! [transforms.phi]
//! type = "redact"
//! inputs = ["otlp_grpc"]
//!
//! [sinks.metrics]
//! type = "prometheus"
//! inputs = ["phi"]
//! ```
//!
//! Validation reports every problem at once, each line naming the component
//! (`sinks.metrics: input 'phy' does not exist; known: otlp_grpc, phi`): unknown types and
//! keys, dangling inputs, sinks used as inputs, cycles among transforms, components without
//! inputs, names used twice, invalid redaction patterns, out-of-range options. What is legal
//! but probably a mistake (a source nothing reads) becomes a warning.
//!
//! ```
//! use telemetry::config::{DEFAULT_PIPELINE, PipelineConfig};
//!
//! let pipeline = PipelineConfig::from_toml_str(DEFAULT_PIPELINE).unwrap();
//! assert!(pipeline.sinks().contains_key("metrics"));
//! assert!(pipeline.warnings().is_empty());
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::transforms::redact::Redact;

/// The pipeline of `fertivision up`: the OTLP receivers on loopback and the Pyroscope
/// `/ingest` endpoint, personal health information redacted from everything, then the
/// Prometheus endpoint, the profile store, and the log and span indexes behind the search
/// API.
pub const DEFAULT_PIPELINE: &str = r#"# The collector pipeline of `fertivision up`.

[sources.otlp_grpc]
type = "otlp_grpc"
address = "127.0.0.1:4317"

[sources.otlp_http]
type = "otlp_http"
address = "127.0.0.1:4318"

# Pyroscope-compatible `/ingest`, served on the query server (:7070).
[sources.pyroscope]
type = "pyroscope"

# Personal health information out of everything (DOMAIN.md, Privacy), as a second line.
[transforms.redact]
type = "redact"
inputs = ["otlp_grpc", "otlp_http", "pyroscope"]

[sinks.metrics]
type = "prometheus"
inputs = ["redact"]

[sinks.profiles]
type = "profiles"
inputs = ["redact"]

# Logs and traces, searchable at /api/v1/logs/search and /api/v1/traces/{id}; 7 days, 10 GiB each.
[sinks.logs]
type = "log_index"
inputs = ["redact"]

[sinks.spans]
type = "span_index"
inputs = ["redact"]
"#;

/// Longest accepted `decision_wait_ms` of a `sample` transform: one hour.
pub const MAX_DECISION_WAIT_MS: u64 = 3_600_000;

/// The pipeline as written: `[sources.NAME]`, `[transforms.NAME]`, `[sinks.NAME]`. Not yet
/// checked as a whole; [`PipelineConfig::validate`] does that.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Where telemetry enters, by name.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// What is done to it on the way, by name.
    #[serde(default)]
    pub transforms: BTreeMap<String, TransformConfig>,
    /// Where it leaves, by name.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
}

/// One source: a protocol telemetry arrives by.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    /// OTLP over gRPC: traces, metrics and logs.
    OtlpGrpc(OtlpGrpcSourceConfig),
    /// OTLP over HTTP, protobuf or JSON: traces, metrics and logs.
    OtlpHttp(OtlpHttpSourceConfig),
    /// Pyroscope-compatible `/ingest` for pprof profiles, on the query server.
    Pyroscope(PyroscopeSourceConfig),
}

/// `type = "otlp_grpc"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpGrpcSourceConfig {
    /// Address to listen on. Default `127.0.0.1:4317` (loopback; `0.0.0.0:4317` to accept
    /// other machines).
    #[serde(default = "default_otlp_grpc_address")]
    pub address: SocketAddr,
}

/// `type = "otlp_http"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpSourceConfig {
    /// Address to listen on. Default `127.0.0.1:4318`.
    #[serde(default = "default_otlp_http_address")]
    pub address: SocketAddr,
}

/// `type = "pyroscope"`: no options; it is served at `/ingest` on the query server (:7070).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PyroscopeSourceConfig {}

fn default_otlp_grpc_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4317))
}

fn default_otlp_http_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4318))
}

/// One transform: its inputs and its type-specific options.
///
/// Unknown keys are rejected by the options of its `type` (serde cannot deny them on a struct
/// with a flattened field, so the options structs do it).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TransformConfig {
    /// Names of the sources and transforms it reads.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// `type` and the options of that type.
    #[serde(flatten)]
    pub options: TransformOptions,
}

/// A transform's `type` and options.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TransformOptions {
    /// Replaces personal health information with `[REDACTED:kind]`.
    Redact(RedactConfig),
    /// Tail-based sampling of traces; other signals pass unchanged.
    Sample(SampleConfig),
}

/// `type = "redact"`: see [`crate::transforms::redact`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    /// Extra regular expressions (Rust `regex` syntax); their matches in string values become
    /// `[REDACTED:custom]`.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Extra attribute keys whose whole value is personal data (matched like the built-in
    /// ones: case-insensitively, as the whole key or its last `.`/`_`/`-` separated part).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Whether the built-in patterns (emails, phone numbers, medical record numbers, dates of
    /// birth) and keys (`email`, `phone`, `mrn`, `patient.name`, ...) apply. Default true.
    #[serde(default = "default_true")]
    pub defaults: bool,
}

impl Default for RedactConfig {
    fn default() -> Self {
        Self {
            patterns: Vec::new(),
            keys: Vec::new(),
            defaults: true,
        }
    }
}

fn default_true() -> bool {
    true
}

/// `type = "sample"`: see [`crate::transforms::sample`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Share of the unremarkable traces (no error, nothing slow) kept, in `0..=1`, chosen by
    /// a hash of the trace id so every collector keeps the same ones. Default 0.1.
    #[serde(default = "default_keep_ratio")]
    pub keep_ratio: f64,
    /// A trace with a span longer than this many milliseconds is always kept; 0 turns the
    /// rule off. Default 500.
    #[serde(default = "default_slow_ms")]
    pub slow_ms: u64,
    /// Milliseconds after its first span by which a trace is decided, complete or not.
    /// Default 5000; at most one hour.
    #[serde(default = "default_decision_wait_ms")]
    pub decision_wait_ms: u64,
    /// Once the root span has arrived, a trace is decided after this many milliseconds
    /// without a new span. Default 1000; at most `decision_wait_ms`.
    #[serde(default = "default_quiet_ms")]
    pub quiet_ms: u64,
    /// Traces held undecided at most; past it the oldest are decided early. Default 50000.
    #[serde(default = "default_max_traces")]
    pub max_traces: usize,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            keep_ratio: default_keep_ratio(),
            slow_ms: default_slow_ms(),
            decision_wait_ms: default_decision_wait_ms(),
            quiet_ms: default_quiet_ms(),
            max_traces: default_max_traces(),
        }
    }
}

fn default_keep_ratio() -> f64 {
    0.1
}

fn default_slow_ms() -> u64 {
    500
}

fn default_decision_wait_ms() -> u64 {
    5000
}

fn default_quiet_ms() -> u64 {
    1000
}

fn default_max_traces() -> usize {
    50_000
}

/// One sink: its inputs and its type-specific options. Unknown keys are rejected by the
/// options of its `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SinkConfig {
    /// Names of the sources and transforms it reads.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// `type` and the options of that type.
    #[serde(flatten)]
    pub options: SinkOptions,
}

/// A sink's `type` and options.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkOptions {
    /// The Prometheus exposition on `/metrics` (metrics only).
    Prometheus(PrometheusSinkConfig),
    /// The profile store behind the flamegraph API (profiles only).
    Profiles(ProfilesSinkConfig),
    /// Forwards traces, metrics and logs to another OTLP endpoint.
    Otlp(OtlpSinkConfig),
    /// Discards everything (benchmarks).
    Blackhole(BlackholeSinkConfig),
    /// Appends OTLP/JSON lines to a file, exactly once across crashes.
    File(FileSinkConfig),
    /// The tantivy log index (logs only).
    LogIndex(LogIndexSinkConfig),
    /// The tantivy span index behind the Jaeger-compatible API (traces only).
    SpanIndex(SpanIndexSinkConfig),
}

/// `type = "prometheus"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSinkConfig {
    /// Series kept at most; new series past it are dropped and counted. Default 50000.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Longer label values are truncated to this many bytes. Default 256.
    #[serde(default = "default_max_label_value_bytes")]
    pub max_label_value_bytes: usize,
    /// A series not updated for this many seconds leaves the exposition. Default 300.
    #[serde(default = "default_stale_after_secs")]
    pub stale_after_secs: u64,
}

fn default_max_series() -> usize {
    50_000
}

fn default_max_label_value_bytes() -> usize {
    256
}

fn default_stale_after_secs() -> u64 {
    300
}

/// `type = "profiles"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilesSinkConfig {
    /// Hours a profile is kept. Default 72.
    #[serde(default = "default_retention_hours")]
    pub retention_hours: u64,
}

fn default_retention_hours() -> u64 {
    72
}

/// `type = "otlp"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpSinkConfig {
    /// The OTLP/gRPC endpoint to forward to, `http://host:port` or `https://host:port`.
    pub endpoint: String,
}

/// `type = "blackhole"`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeSinkConfig {
    /// Items per second the sink takes at most (as Vector's blackhole `rate`), to model a slow
    /// backend; none: as fast as they come.
    #[serde(default)]
    pub rate: Option<u64>,
}

/// `type = "file"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file; a relative path is under the collector's data directory.
    pub path: std::path::PathBuf,
}

/// `type = "log_index"`: the tantivy log index in `<data_dir>/index/logs/`, one partition per
/// UTC day.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogIndexSinkConfig {
    /// Days of partitions kept, today included. Default 7.
    #[serde(default = "default_index_retention_days")]
    pub retention_days: u32,
    /// Bytes the partitions may take; past it the oldest are dropped. Default 10 GiB.
    #[serde(default = "default_index_max_bytes")]
    pub max_bytes: u64,
    /// CPU priority of the indexing threads, as a nice value: 0 (that of the rest of the
    /// collector) to 19 (the lowest, the default: indexing takes only CPU nothing else wants,
    /// and falls behind, not the services sharing the machine, when there is none).
    #[serde(default = "default_index_nice")]
    pub nice: i32,
}

/// `type = "span_index"`: the tantivy span index in `<data_dir>/index/spans/`, behind the
/// trace API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanIndexSinkConfig {
    /// Days of partitions kept, today included. Default 7.
    #[serde(default = "default_index_retention_days")]
    pub retention_days: u32,
    /// Bytes the partitions may take; past it the oldest are dropped. Default 10 GiB.
    #[serde(default = "default_index_max_bytes")]
    pub max_bytes: u64,
    /// CPU priority of the indexing threads, as a nice value: 0 (that of the rest of the
    /// collector) to 19 (the lowest, the default: indexing takes only CPU nothing else wants,
    /// and falls behind, not the services sharing the machine, when there is none).
    #[serde(default = "default_index_nice")]
    pub nice: i32,
}

fn default_index_retention_days() -> u32 {
    7
}

fn default_index_max_bytes() -> u64 {
    10 << 30
}

fn default_index_nice() -> i32 {
    19
}

impl SourceConfig {
    /// The `type` as written in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::OtlpGrpc(_) => "otlp_grpc",
            SourceConfig::OtlpHttp(_) => "otlp_http",
            SourceConfig::Pyroscope(_) => "pyroscope",
        }
    }

    /// Whether it yields OTLP batches (traces, metrics, logs).
    pub fn yields_otlp(&self) -> bool {
        matches!(self, SourceConfig::OtlpGrpc(_) | SourceConfig::OtlpHttp(_))
    }

    /// Whether it yields profiles.
    pub fn yields_profiles(&self) -> bool {
        matches!(self, SourceConfig::Pyroscope(_))
    }
}

impl TransformOptions {
    /// The `type` as written in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            TransformOptions::Redact(_) => "redact",
            TransformOptions::Sample(_) => "sample",
        }
    }
}

impl SinkOptions {
    /// The `type` as written in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkOptions::Prometheus(_) => "prometheus",
            SinkOptions::Profiles(_) => "profiles",
            SinkOptions::Otlp(_) => "otlp",
            SinkOptions::Blackhole(_) => "blackhole",
            SinkOptions::File(_) => "file",
            SinkOptions::LogIndex(_) => "log_index",
            SinkOptions::SpanIndex(_) => "span_index",
        }
    }

    /// Whether it writes any OTLP signal (traces, metrics or logs).
    pub fn accepts_otlp(&self) -> bool {
        !matches!(self, SinkOptions::Profiles(_))
    }

    /// Whether it writes profiles.
    pub fn accepts_profiles(&self) -> bool {
        matches!(
            self,
            SinkOptions::Profiles(_) | SinkOptions::Blackhole(_) | SinkOptions::File(_)
        )
    }
}

/// The pipeline config is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not TOML, or a key outside `sources`, `transforms` and `sinks`.
    #[error("pipeline config: {0}")]
    Parse(String),
    /// One or more components are wrong; each problem starts with the component
    /// (`sinks.metrics: ...`) or says what the whole pipeline lacks.
    #[error("pipeline config: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

impl ConfigError {
    /// The individual problems (one for a parse error).
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Parse(message) => vec![message.clone()],
            ConfigError::Invalid(problems) => problems.clone(),
        }
    }
}

/// A pipeline that passed [`PipelineConfig::validate`]: every input exists and is a source or
/// a transform, transforms form no cycle, every transform and sink has inputs, names are
/// unique, options are in range and redaction patterns compile.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedPipeline {
    sources: BTreeMap<String, SourceConfig>,
    transforms: BTreeMap<String, TransformConfig>,
    sinks: BTreeMap<String, SinkConfig>,
    warnings: Vec<String>,
}

impl ValidatedPipeline {
    /// Sources by name.
    pub fn sources(&self) -> &BTreeMap<String, SourceConfig> {
        &self.sources
    }

    /// Transforms by name.
    pub fn transforms(&self) -> &BTreeMap<String, TransformConfig> {
        &self.transforms
    }

    /// Sinks by name.
    pub fn sinks(&self) -> &BTreeMap<String, SinkConfig> {
        &self.sinks
    }

    /// Legal but probably unintended (a source nothing reads, a sink that can receive
    /// nothing), one line each, naming the component. To be logged at start.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

/// What a name refers to, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Source,
    Transform,
    Sink,
}

impl Kind {
    fn section(self) -> &'static str {
        match self {
            Kind::Source => "sources",
            Kind::Transform => "transforms",
            Kind::Sink => "sinks",
        }
    }
}

impl PipelineConfig {
    /// Parses and validates: the way the collector reads its pipeline.
    pub fn from_toml_str(text: &str) -> Result<ValidatedPipeline, ConfigError> {
        Self::parse_toml(text)?.validate()
    }

    /// Parses without checking the pipeline as a whole. Each component is parsed on its own,
    /// so an unknown `type` or key is reported with the component's name.
    pub fn parse_toml(text: &str) -> Result<PipelineConfig, ConfigError> {
        /// The three sections, each component still raw TOML.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Sections {
            #[serde(default)]
            sources: toml::Table,
            #[serde(default)]
            transforms: toml::Table,
            #[serde(default)]
            sinks: toml::Table,
        }
        let sections: Sections =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let mut problems = Vec::new();
        let config = PipelineConfig {
            sources: parse_section(Kind::Source, sections.sources, &mut problems),
            transforms: parse_section(Kind::Transform, sections.transforms, &mut problems),
            sinks: parse_section(Kind::Sink, sections.sinks, &mut problems),
        };
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Checks the pipeline as a whole; reports every problem found, not just the first.
    pub fn validate(self) -> Result<ValidatedPipeline, ConfigError> {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();

        if self.sources.is_empty() {
            problems.push("the pipeline has no sources; add a [sources.NAME] table".to_owned());
        }
        if self.sinks.is_empty() {
            problems.push("the pipeline has no sinks; add a [sinks.NAME] table".to_owned());
        }

        // Names are unique across kinds: an input must name exactly one component.
        let mut kind_of: BTreeMap<&str, Kind> = BTreeMap::new();
        let named = (self.sources.keys().map(|n| (n, Kind::Source)))
            .chain(self.transforms.keys().map(|n| (n, Kind::Transform)))
            .chain(self.sinks.keys().map(|n| (n, Kind::Sink)));
        for (name, kind) in named {
            if let Some(first) = kind_of.get(name.as_str()) {
                problems.push(format!(
                    "{}.{name}: the name '{name}' is already used by {}.{name}; names must be unique across sources, transforms and sinks",
                    kind.section(),
                    first.section()
                ));
            } else {
                kind_of.insert(name, kind);
            }
        }
        let known_inputs = kind_of
            .iter()
            .filter(|(_, kind)| **kind != Kind::Sink)
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", ");

        self.check_sources(&mut problems);
        self.check_one_index_each(&mut problems);

        let consumers = self
            .transforms
            .iter()
            .map(|(name, t)| (Kind::Transform, name, &t.inputs))
            .chain(
                self.sinks
                    .iter()
                    .map(|(name, s)| (Kind::Sink, name, &s.inputs)),
            );
        for (kind, name, inputs) in consumers {
            let component = format!("{}.{name}", kind.section());
            if inputs.is_empty() {
                problems.push(format!(
                    "{component}: no inputs; name at least one source or transform in `inputs`"
                ));
            }
            let mut seen = BTreeSet::new();
            for input in inputs {
                if !seen.insert(input) {
                    problems.push(format!("{component}: input '{input}' is listed twice"));
                    continue;
                }
                match kind_of.get(input.as_str()) {
                    None => problems.push(format!(
                        "{component}: input '{input}' does not exist; known: {known_inputs}"
                    )),
                    Some(Kind::Sink) => problems.push(format!(
                        "{component}: input '{input}' is a sink; a sink is never an input, name a source or a transform"
                    )),
                    Some(Kind::Source | Kind::Transform) => {}
                }
            }
        }

        for (name, transform) in &self.transforms {
            check_transform_options(
                &format!("transforms.{name}"),
                &transform.options,
                &mut problems,
            );
        }
        for (name, sink) in &self.sinks {
            check_sink_options(&format!("sinks.{name}"), &sink.options, &mut problems);
        }

        problems.extend(self.cycles());

        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }

        // Only on a sound graph: what reads what.
        let read: BTreeSet<&str> = (self.transforms.values().flat_map(|t| &t.inputs))
            .chain(self.sinks.values().flat_map(|s| &s.inputs))
            .map(String::as_str)
            .collect();
        for name in self.sources.keys().filter(|n| !read.contains(n.as_str())) {
            warnings.push(format!(
                "sources.{name}: nothing reads this source; its data is accepted and never used"
            ));
        }
        for name in self
            .transforms
            .keys()
            .filter(|n| !read.contains(n.as_str()))
        {
            warnings.push(format!("transforms.{name}: nothing reads this transform"));
        }
        for (name, sink) in &self.sinks {
            let sources = self.upstream_sources(&sink.inputs);
            let otlp = sources.iter().any(|s| self.sources[*s].yields_otlp());
            let profiles = sources.iter().any(|s| self.sources[*s].yields_profiles());
            let receives = (otlp && sink.options.accepts_otlp())
                || (profiles && sink.options.accepts_profiles());
            if !receives {
                let listed = sources.iter().copied().collect::<Vec<_>>().join(", ");
                warnings.push(format!(
                    "sinks.{name}: a {} sink receives nothing from its sources ({listed})",
                    sink.options.type_name()
                ));
            }
        }

        Ok(ValidatedPipeline {
            sources: self.sources,
            transforms: self.transforms,
            sinks: self.sinks,
            warnings,
        })
    }

    /// Two `log_index` or two `span_index` sinks: each kind has one index directory and one
    /// query API.
    fn check_one_index_each(&self, problems: &mut Vec<String>) {
        for kind in ["log_index", "span_index"] {
            let names: Vec<&str> = self
                .sinks
                .iter()
                .filter(|(_, sink)| sink.options.type_name() == kind)
                .map(|(name, _)| name.as_str())
                .collect();
            if let [first, rest @ ..] = names.as_slice() {
                for name in rest {
                    problems.push(format!(
                        "sinks.{name}: only one {kind} sink can exist (sinks.{first} already is one)"
                    ));
                }
            }
        }
    }

    /// Two sources on one address, or two Pyroscope sources (both would be `/ingest`).
    fn check_sources(&self, problems: &mut Vec<String>) {
        let mut addresses: BTreeMap<SocketAddr, &str> = BTreeMap::new();
        let mut pyroscope: Option<&str> = None;
        for (name, source) in &self.sources {
            let address = match source {
                SourceConfig::OtlpGrpc(c) => c.address,
                SourceConfig::OtlpHttp(c) => c.address,
                SourceConfig::Pyroscope(_) => {
                    if let Some(first) = pyroscope {
                        problems.push(format!(
                            "sources.{name}: only one pyroscope source can exist (sources.{first} already serves /ingest)"
                        ));
                    }
                    pyroscope = Some(name);
                    continue;
                }
            };
            if let Some(first) = addresses.insert(address, name) {
                problems.push(format!(
                    "sources.{name}: address {address} is already used by sources.{first}"
                ));
            }
        }
    }

    /// Cycles among transforms, each reported once, written in the direction data flows and
    /// starting from its alphabetically first member: `transforms.a: cycle: a -> b -> a`.
    fn cycles(&self) -> Vec<String> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Unvisited,
            OnStack,
            Done,
        }
        fn visit<'a>(
            config: &'a PipelineConfig,
            name: &'a str,
            marks: &mut BTreeMap<&'a str, Mark>,
            stack: &mut Vec<&'a str>,
            found: &mut BTreeSet<Vec<&'a str>>,
        ) {
            marks.insert(name, Mark::OnStack);
            stack.push(name);
            for input in &config.transforms[name].inputs {
                match marks.get(input.as_str()) {
                    // Not a transform: a source, a sink or nothing; reported elsewhere.
                    None => {}
                    Some(Mark::Done) => {}
                    Some(Mark::Unvisited) => visit(config, input, marks, stack, found),
                    Some(Mark::OnStack) => {
                        // stack[i] reads stack[i + 1]; data flows from the end back to `input`.
                        let start = stack
                            .iter()
                            .position(|s| *s == input)
                            .expect("on the stack");
                        let mut cycle: Vec<&str> = stack[start..].iter().rev().copied().collect();
                        let first = (0..cycle.len())
                            .min_by_key(|i| cycle[*i])
                            .expect("not empty");
                        cycle.rotate_left(first);
                        found.insert(cycle);
                    }
                }
            }
            stack.pop();
            marks.insert(name, Mark::Done);
        }

        let mut marks: BTreeMap<&str, Mark> = self
            .transforms
            .keys()
            .map(|n| (n.as_str(), Mark::Unvisited))
            .collect();
        let mut found = BTreeSet::new();
        for name in self.transforms.keys() {
            if marks[name.as_str()] == Mark::Unvisited {
                visit(self, name, &mut marks, &mut Vec::new(), &mut found);
            }
        }
        found
            .into_iter()
            .map(|cycle| {
                let mut path = cycle.clone();
                path.push(cycle[0]);
                format!("transforms.{}: cycle: {}", cycle[0], path.join(" -> "))
            })
            .collect()
    }

    /// The sources that reach these inputs through transforms (the graph is acyclic here).
    fn upstream_sources<'a>(&'a self, inputs: &'a [String]) -> BTreeSet<&'a str> {
        let mut found = BTreeSet::new();
        let mut todo: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let mut seen = BTreeSet::new();
        while let Some(name) = todo.pop() {
            if !seen.insert(name) {
                continue;
            }
            if self.sources.contains_key(name) {
                found.insert(name);
            } else if let Some(transform) = self.transforms.get(name) {
                todo.extend(transform.inputs.iter().map(String::as_str));
            }
        }
        found
    }
}

fn parse_section<T: DeserializeOwned>(
    kind: Kind,
    table: toml::Table,
    problems: &mut Vec<String>,
) -> BTreeMap<String, T> {
    let mut parsed = BTreeMap::new();
    for (name, value) in table {
        if !value.is_table() {
            problems.push(format!(
                "{}.{name}: expected a table ([{}.{name}])",
                kind.section(),
                kind.section()
            ));
            continue;
        }
        match value.try_into::<T>() {
            Ok(component) => {
                parsed.insert(name, component);
            }
            Err(e) => problems.push(format!("{}.{name}: {}", kind.section(), e.message().trim())),
        }
    }
    parsed
}

fn check_transform_options(
    component: &str,
    options: &TransformOptions,
    problems: &mut Vec<String>,
) {
    match options {
        TransformOptions::Redact(redact) => {
            if let Err(e) = Redact::new(redact) {
                problems.push(format!("{component}: {e}"));
            }
        }
        TransformOptions::Sample(sample) => {
            if !(0.0..=1.0).contains(&sample.keep_ratio) {
                problems.push(format!(
                    "{component}: keep_ratio must be between 0 and 1, got {}",
                    sample.keep_ratio
                ));
            }
            if sample.decision_wait_ms == 0 || sample.decision_wait_ms > MAX_DECISION_WAIT_MS {
                problems.push(format!(
                    "{component}: decision_wait_ms must be between 1 and {MAX_DECISION_WAIT_MS}, got {}",
                    sample.decision_wait_ms
                ));
            }
            if sample.quiet_ms > sample.decision_wait_ms {
                problems.push(format!(
                    "{component}: quiet_ms ({}) must not exceed decision_wait_ms ({})",
                    sample.quiet_ms, sample.decision_wait_ms
                ));
            }
            if sample.max_traces == 0 {
                problems.push(format!("{component}: max_traces must be at least 1"));
            }
        }
    }
}

fn check_sink_options(component: &str, options: &SinkOptions, problems: &mut Vec<String>) {
    match options {
        SinkOptions::Prometheus(prometheus) => {
            if prometheus.max_series == 0 {
                problems.push(format!("{component}: max_series must be at least 1"));
            }
            if prometheus.max_label_value_bytes == 0 {
                problems.push(format!(
                    "{component}: max_label_value_bytes must be at least 1"
                ));
            }
            if prometheus.stale_after_secs == 0 {
                problems.push(format!("{component}: stale_after_secs must be at least 1"));
            }
        }
        SinkOptions::Profiles(profiles) => {
            if profiles.retention_hours == 0 {
                problems.push(format!("{component}: retention_hours must be at least 1"));
            }
        }
        SinkOptions::Otlp(otlp) => {
            let host = otlp
                .endpoint
                .strip_prefix("http://")
                .or_else(|| otlp.endpoint.strip_prefix("https://"));
            if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
                problems.push(format!(
                    "{component}: endpoint '{}' must be http://host:port or https://host:port",
                    otlp.endpoint
                ));
            }
        }
        SinkOptions::Blackhole(blackhole) => {
            if blackhole.rate == Some(0) {
                problems.push(format!(
                    "{component}: rate must be at least 1 item per second"
                ));
            }
        }
        SinkOptions::File(file) => {
            if file.path.as_os_str().is_empty() || file.path.ends_with("..") {
                problems.push(format!("{component}: path must name a file"));
            }
        }
        SinkOptions::LogIndex(LogIndexSinkConfig {
            retention_days,
            max_bytes,
            nice,
        })
        | SinkOptions::SpanIndex(SpanIndexSinkConfig {
            retention_days,
            max_bytes,
            nice,
        }) => {
            if *retention_days == 0 {
                problems.push(format!("{component}: retention_days must be at least 1"));
            }
            if *max_bytes < 1 << 20 {
                problems.push(format!("{component}: max_bytes must be at least 1 MiB"));
            }
            if !(0..=19).contains(nice) {
                problems.push(format!(
                    "{component}: nice must be 0 (the collector's own priority) to 19 (the lowest)"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        PipelineConfig::from_toml_str(text)
            .expect_err("invalid")
            .problems()
    }

    #[test]
    fn options_default_and_inputs_sit_beside_type() {
        let pipeline = PipelineConfig::from_toml_str(
            r#"
            [sources.in]
            type = "otlp_grpc"
            [transforms.keep]
            type = "sample"
            inputs = ["in"]
            keep_ratio = 1
            [sinks.out]
            type = "otlp"
            inputs = ["keep"]
            endpoint = "http://other:4317"
            "#,
        )
        .unwrap();
        assert_eq!(
            pipeline.sources()["in"],
            SourceConfig::OtlpGrpc(OtlpGrpcSourceConfig {
                address: "127.0.0.1:4317".parse().unwrap()
            })
        );
        let keep = &pipeline.transforms()["keep"];
        assert_eq!(keep.inputs, ["in"]);
        assert_eq!(
            keep.options,
            TransformOptions::Sample(SampleConfig {
                keep_ratio: 1.0,
                ..SampleConfig::default()
            })
        );
        assert_eq!(pipeline.sinks()["out"].options.type_name(), "otlp");
    }

    #[test]
    fn raw_config_deserializes_directly_too() {
        // For embedding in a larger config file: the derived `Deserialize` reads the same.
        let direct: PipelineConfig = toml::from_str(DEFAULT_PIPELINE).unwrap();
        assert_eq!(
            direct,
            PipelineConfig::parse_toml(DEFAULT_PIPELINE).unwrap()
        );
        assert_eq!(
            direct.transforms["redact"].options,
            TransformOptions::Redact(RedactConfig::default())
        );
    }

    #[test]
    fn unknown_option_is_rejected_by_the_options_of_the_type() {
        let found = problems(
            r#"
            [sources.in]
            type = "otlp_grpc"
            [sinks.out]
            type = "prometheus"
            inputs = ["in"]
            max_serie = 10
            "#,
        );
        assert_eq!(found.len(), 1);
        assert!(
            found[0].starts_with("sinks.out: unknown field `max_serie`"),
            "{found:?}"
        );
    }

    #[test]
    fn cycle_is_written_in_data_flow_order() {
        let found = problems(
            r#"
            [sources.in]
            type = "otlp_grpc"
            [transforms.b]
            type = "redact"
            inputs = ["in", "a"]
            [transforms.a]
            type = "redact"
            inputs = ["c"]
            [transforms.c]
            type = "redact"
            inputs = ["b"]
            [sinks.out]
            type = "blackhole"
            inputs = ["c"]
            "#,
        );
        // a reads c, c reads b, b reads a: data flows a -> b -> c -> a.
        assert_eq!(found, ["transforms.a: cycle: a -> b -> c -> a"]);
    }

    #[test]
    fn self_loop_is_a_cycle() {
        let found = problems(
            r#"
            [sources.in]
            type = "otlp_grpc"
            [transforms.a]
            type = "redact"
            inputs = ["a", "in"]
            [sinks.out]
            type = "blackhole"
            inputs = ["a"]
            "#,
        );
        assert_eq!(found, ["transforms.a: cycle: a -> a"]);
    }

    #[test]
    fn sink_that_can_receive_nothing_is_a_warning() {
        let pipeline = PipelineConfig::from_toml_str(
            r#"
            [sources.in]
            type = "otlp_grpc"
            [sinks.profiles]
            type = "profiles"
            inputs = ["in"]
            "#,
        )
        .unwrap();
        assert_eq!(
            pipeline.warnings(),
            ["sinks.profiles: a profiles sink receives nothing from its sources (in)"]
        );
    }

    #[test]
    fn indexing_runs_at_the_lowest_priority_unless_told_and_nice_stays_in_range() {
        let pipeline = PipelineConfig::from_toml_str(DEFAULT_PIPELINE).unwrap();
        let nice = |sink: &str| match &pipeline.sinks()[sink].options {
            SinkOptions::LogIndex(options) => options.nice,
            SinkOptions::SpanIndex(options) => options.nice,
            other => panic!("{sink} is a {} sink", other.type_name()),
        };
        assert_eq!((nice("logs"), nice("spans")), (19, 19));
        for (value, rejected) in [(0, false), (19, false), (20, true), (-1, true)] {
            let text = format!(
                "[sources.in]\ntype = \"otlp_grpc\"\n[sinks.logs]\ntype = \"log_index\"\ninputs = [\"in\"]\nnice = {value}\n"
            );
            match PipelineConfig::from_toml_str(&text) {
                Ok(_) => assert!(!rejected, "nice = {value} was accepted"),
                Err(error) => {
                    assert!(rejected, "nice = {value}: {:?}", error.problems());
                    assert_eq!(
                        error.problems(),
                        [
                            "sinks.logs: nice must be 0 (the collector's own priority) to 19 (the lowest)"
                        ]
                    );
                }
            }
        }
    }
}
