//! The pipeline config as an operator writes it: the full example and the default parse and
//! validate; every mistake is reported with the component it is in and what is wrong.

use telemetry::config::{
    ConfigError, DEFAULT_PIPELINE, PipelineConfig, SampleConfig, SinkOptions, SourceConfig,
    TransformOptions,
};
use telemetry::topology::{Path, plan};

/// Every component type, wired as in the design brief.
const EXAMPLE: &str = r#"
[sources.otlp_grpc]
type = "otlp_grpc"
address = "0.0.0.0:4317"

[sources.otlp_http]
type = "otlp_http"
address = "0.0.0.0:4318"

[sources.pyroscope]
type = "pyroscope"

[transforms.phi]
type = "redact"
inputs = ["otlp_grpc", "otlp_http"]
patterns = ['\bIVF-[0-9]{6}\b']
defaults = true

[transforms.keep]
type = "sample"
inputs = ["phi"]
keep_ratio = 0.1
slow_ms = 500
decision_wait_ms = 5000
max_traces = 50000

[sinks.metrics]
type = "prometheus"
inputs = ["phi"]
max_series = 50000
max_label_value_bytes = 256
stale_after_secs = 300

[sinks.profiles]
type = "profiles"
inputs = ["pyroscope"]
retention_hours = 72

[sinks.forward]
type = "otlp"
inputs = ["keep"]
endpoint = "http://other:4317"

[sinks.devnull]
type = "blackhole"
inputs = ["otlp_grpc"]

[sinks.logs]
type = "log_index"
inputs = ["phi"]

[sinks.spans]
type = "span_index"
inputs = ["keep"]
"#;

/// The problems of an invalid config.
fn problems(text: &str) -> Vec<String> {
    match PipelineConfig::from_toml_str(text) {
        Ok(pipeline) => panic!("accepted: {pipeline:?}"),
        Err(error) => error.problems(),
    }
}

/// `EXAMPLE` with `old` replaced by `new` (which must occur).
fn example_with(old: &str, new: &str) -> String {
    assert!(EXAMPLE.contains(old), "{old}");
    EXAMPLE.replacen(old, new, 1)
}

#[test]
fn example_parses_and_validates() {
    let pipeline = PipelineConfig::from_toml_str(EXAMPLE).unwrap();
    assert!(pipeline.warnings().is_empty(), "{:?}", pipeline.warnings());
    assert_eq!(
        pipeline.sources().keys().collect::<Vec<_>>(),
        ["otlp_grpc", "otlp_http", "pyroscope"]
    );
    let SourceConfig::OtlpGrpc(grpc) = &pipeline.sources()["otlp_grpc"] else {
        panic!()
    };
    assert_eq!(grpc.address.to_string(), "0.0.0.0:4317");
    let TransformOptions::Redact(redact) = &pipeline.transforms()["phi"].options else {
        panic!()
    };
    assert_eq!(redact.patterns, [r"\bIVF-[0-9]{6}\b"]);
    assert!(redact.defaults);
    let keep = &pipeline.transforms()["keep"];
    assert_eq!(keep.inputs, ["phi"]);
    assert_eq!(
        keep.options,
        TransformOptions::Sample(SampleConfig {
            keep_ratio: 0.1,
            slow_ms: 500,
            decision_wait_ms: 5000,
            quiet_ms: 1000,
            max_traces: 50000,
        })
    );
    let types: Vec<(&str, &str)> = pipeline
        .sinks()
        .iter()
        .map(|(name, sink)| (name.as_str(), sink.options.type_name()))
        .collect();
    assert_eq!(
        types,
        [
            ("devnull", "blackhole"),
            ("forward", "otlp"),
            ("logs", "log_index"),
            ("metrics", "prometheus"),
            ("profiles", "profiles"),
            ("spans", "span_index"),
        ]
    );
    let SinkOptions::Otlp(forward) = &pipeline.sinks()["forward"].options else {
        panic!()
    };
    assert_eq!(forward.endpoint, "http://other:4317");

    let plans = plan(&pipeline);
    let forward = plans.iter().find(|p| p.sink == "forward").unwrap();
    assert_eq!(
        forward.paths,
        [Path {
            sources: vec!["otlp_grpc".to_owned(), "otlp_http".to_owned()],
            transforms: vec!["phi".to_owned(), "keep".to_owned()],
            carries_otlp: true,
            carries_profiles: false,
        }]
    );
}

#[test]
fn default_pipeline_parses_and_validates() {
    let pipeline = PipelineConfig::from_toml_str(DEFAULT_PIPELINE).unwrap();
    assert!(pipeline.warnings().is_empty(), "{:?}", pipeline.warnings());
    let SourceConfig::OtlpGrpc(grpc) = &pipeline.sources()["otlp_grpc"] else {
        panic!()
    };
    assert_eq!(grpc.address.to_string(), "127.0.0.1:4317");
    let SourceConfig::OtlpHttp(http) = &pipeline.sources()["otlp_http"] else {
        panic!()
    };
    assert_eq!(http.address.to_string(), "127.0.0.1:4318");
    assert!(matches!(
        pipeline.sources()["pyroscope"],
        SourceConfig::Pyroscope(_)
    ));
    let types: Vec<&str> = pipeline
        .sinks()
        .values()
        .map(|s| s.options.type_name())
        .collect();
    assert_eq!(types, ["log_index", "prometheus", "profiles", "span_index"]);
    // Redaction on everything: every sink reads only through it, and it reads every source.
    assert!(pipeline.sinks().values().all(|s| s.inputs == ["redact"]));
    assert_eq!(
        pipeline.transforms()["redact"].inputs,
        ["otlp_grpc", "otlp_http", "pyroscope"]
    );
}

#[test]
fn unknown_type_names_the_component() {
    let found = problems(&example_with(
        r#"type = "prometheus""#,
        r#"type = "prometheuss""#,
    ));
    assert_eq!(
        found,
        [
            "sinks.metrics: unknown variant `prometheuss`, expected one of `prometheus`, `profiles`, `otlp`, `blackhole`, `file`, `log_index`, `span_index`"
        ]
    );
    let found = problems(&example_with(r#"type = "redact""#, r#"type = "scrub""#));
    assert_eq!(
        found,
        ["transforms.phi: unknown variant `scrub`, expected `redact` or `sample`"]
    );
    let found = problems(&example_with(r#"type = "pyroscope""#, r#"type = "pprof""#));
    assert_eq!(
        found,
        [
            "sources.pyroscope: unknown variant `pprof`, expected one of `otlp_grpc`, `otlp_http`, `pyroscope`"
        ]
    );
}

#[test]
fn missing_type_names_the_component() {
    let found = problems(&example_with("type = \"blackhole\"\n", ""));
    assert_eq!(found, ["sinks.devnull: missing field `type`"]);
}

#[test]
fn unknown_key_names_the_component() {
    let found = problems(&example_with("retention_hours = 72", "retention_hour = 72"));
    assert_eq!(
        found,
        ["sinks.profiles: unknown field `retention_hour`, expected `retention_hours`"]
    );
    // A source has no inputs.
    let found = problems(&example_with(
        "[sources.pyroscope]\ntype = \"pyroscope\"",
        "[sources.pyroscope]\ntype = \"pyroscope\"\ninputs = [\"otlp_grpc\"]",
    ));
    assert_eq!(
        found,
        ["sources.pyroscope: unknown field `inputs`, there are no fields"]
    );
}

#[test]
fn unknown_section_is_a_parse_error() {
    let error =
        PipelineConfig::from_toml_str("[sink.metrics]\ntype = \"prometheus\"\n").unwrap_err();
    assert!(matches!(error, ConfigError::Parse(_)), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("unknown field `sink`, expected one of `sources`, `transforms`, `sinks`"),
        "{error}"
    );
}

#[test]
fn invalid_toml_is_a_parse_error() {
    let error = PipelineConfig::from_toml_str("[sources.otlp_grpc\n").unwrap_err();
    assert!(matches!(error, ConfigError::Parse(_)), "{error:?}");
    assert!(
        error.to_string().starts_with("pipeline config: "),
        "{error}"
    );
}

#[test]
fn input_that_names_nothing_lists_the_known_inputs() {
    let found = problems(&example_with(
        "[sinks.metrics]\ntype = \"prometheus\"\ninputs = [\"phi\"]",
        "[sinks.metrics]\ntype = \"prometheus\"\ninputs = [\"phy\"]",
    ));
    assert_eq!(
        found,
        [
            "sinks.metrics: input 'phy' does not exist; known: keep, otlp_grpc, otlp_http, phi, pyroscope"
        ]
    );
}

#[test]
fn a_sink_is_never_an_input() {
    let found = problems(&example_with(
        "[sinks.devnull]\ntype = \"blackhole\"\ninputs = [\"otlp_grpc\"]",
        "[sinks.devnull]\ntype = \"blackhole\"\ninputs = [\"forward\"]",
    ));
    assert_eq!(
        found,
        [
            "sinks.devnull: input 'forward' is a sink; a sink is never an input, name a source or a transform"
        ]
    );
    let found = problems(&example_with(r#"inputs = ["phi"]"#, r#"inputs = ["logs"]"#));
    assert_eq!(
        found,
        [
            "transforms.keep: input 'logs' is a sink; a sink is never an input, name a source or a transform"
        ]
    );
}

#[test]
fn cycle_among_transforms_is_written_out() {
    let found = problems(
        r#"
        [sources.in]
        type = "otlp_grpc"
        [transforms.a]
        type = "redact"
        inputs = ["in", "b"]
        [transforms.b]
        type = "sample"
        inputs = ["a"]
        [sinks.out]
        type = "blackhole"
        inputs = ["b"]
        "#,
    );
    assert_eq!(found, ["transforms.a: cycle: a -> b -> a"]);
}

#[test]
fn component_without_inputs_is_an_error() {
    let found = problems(&example_with(
        "[sinks.devnull]\ntype = \"blackhole\"\ninputs = [\"otlp_grpc\"]",
        "[sinks.devnull]\ntype = \"blackhole\"\ninputs = []",
    ));
    assert_eq!(
        found,
        ["sinks.devnull: no inputs; name at least one source or transform in `inputs`"]
    );
    let found = problems(&example_with(
        "inputs = [\"phi\"]\nkeep_ratio",
        "keep_ratio",
    ));
    assert_eq!(
        found,
        ["transforms.keep: no inputs; name at least one source or transform in `inputs`"]
    );
}

#[test]
fn input_listed_twice_is_an_error() {
    let found = problems(&example_with(
        r#"inputs = ["pyroscope"]"#,
        r#"inputs = ["pyroscope", "pyroscope"]"#,
    ));
    assert_eq!(found, ["sinks.profiles: input 'pyroscope' is listed twice"]);
}

#[test]
fn source_nothing_reads_is_a_warning() {
    let pipeline = PipelineConfig::from_toml_str(&example_with(
        "[sinks.profiles]\ntype = \"profiles\"\ninputs = [\"pyroscope\"]",
        "[sinks.profiles]\ntype = \"profiles\"\ninputs = [\"otlp_grpc\"]",
    ))
    .unwrap();
    assert_eq!(
        pipeline.warnings(),
        [
            "sources.pyroscope: nothing reads this source; its data is accepted and never used",
            "sinks.profiles: a profiles sink receives nothing from its sources (otlp_grpc)",
        ]
    );
}

#[test]
fn names_are_unique_across_kinds() {
    let found = problems(&format!(
        "{EXAMPLE}\n[sinks.phi]\ntype = \"blackhole\"\ninputs = [\"keep\"]\n"
    ));
    assert_eq!(
        found,
        [
            "sinks.phi: the name 'phi' is already used by transforms.phi; names must be unique across sources, transforms and sinks"
        ]
    );
}

#[test]
fn invalid_redact_pattern_is_an_error() {
    let found = problems(&example_with(
        r"patterns = ['\bIVF-[0-9]{6}\b']",
        r"patterns = ['IVF-[0-9']",
    ));
    assert_eq!(
        found,
        ["transforms.phi: pattern 'IVF-[0-9' is not a valid regex: unclosed character class"]
    );
}

#[test]
fn keep_ratio_outside_zero_to_one_is_an_error() {
    for (ratio, shown) in [("1.5", "1.5"), ("-0.1", "-0.1"), ("nan", "NaN")] {
        let found = problems(&example_with(
            "keep_ratio = 0.1",
            &format!("keep_ratio = {ratio}"),
        ));
        assert_eq!(
            found,
            [format!(
                "transforms.keep: keep_ratio must be between 0 and 1, got {shown}"
            )]
        );
    }
    for ratio in ["0", "1", "0.0", "1.0"] {
        PipelineConfig::from_toml_str(&example_with(
            "keep_ratio = 0.1",
            &format!("keep_ratio = {ratio}"),
        ))
        .unwrap();
    }
}

#[test]
fn other_out_of_range_options_are_errors() {
    let found = problems(&example_with(
        "decision_wait_ms = 5000",
        "decision_wait_ms = 0",
    ));
    assert_eq!(
        found,
        [
            "transforms.keep: decision_wait_ms must be between 1 and 3600000, got 0",
            "transforms.keep: quiet_ms (1000) must not exceed decision_wait_ms (0)",
        ]
    );
    let found = problems(&example_with("max_traces = 50000", "max_traces = 0"));
    assert_eq!(found, ["transforms.keep: max_traces must be at least 1"]);
    let found = problems(&example_with("max_series = 50000", "max_series = 0"));
    assert_eq!(found, ["sinks.metrics: max_series must be at least 1"]);
    let found = problems(&example_with(
        r#"endpoint = "http://other:4317""#,
        r#"endpoint = "other:4317""#,
    ));
    assert_eq!(
        found,
        ["sinks.forward: endpoint 'other:4317' must be http://host:port or https://host:port"]
    );
    let found = problems(&example_with("max_traces = 50000", "max_traces = -1"));
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("transforms.keep: invalid value: integer `-1`"),
        "{found:?}"
    );
}

#[test]
fn sources_cannot_share_an_address_or_ingest_endpoint() {
    let found = problems(&format!(
        "{EXAMPLE}\n[sources.again]\ntype = \"otlp_http\"\naddress = \"0.0.0.0:4317\"\n[sources.more]\ntype = \"pyroscope\"\n"
    ));
    assert_eq!(
        found,
        [
            "sources.otlp_grpc: address 0.0.0.0:4317 is already used by sources.again",
            "sources.pyroscope: only one pyroscope source can exist (sources.more already serves /ingest)",
        ]
    );
}

#[test]
fn empty_pipeline_lacks_sources_and_sinks() {
    assert_eq!(
        problems(""),
        [
            "the pipeline has no sources; add a [sources.NAME] table",
            "the pipeline has no sinks; add a [sinks.NAME] table",
        ]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = example_with(r#"inputs = ["keep"]"#, r#"inputs = ["kept"]"#)
        .replacen("keep_ratio = 0.1", "keep_ratio = 2", 1)
        .replacen(r#"type = "blackhole""#, r#"type = "black_hole""#, 1);
    // The unknown type stops validation before the graph is checked: parse problems first.
    assert_eq!(problems(&text).len(), 1);
    let text = text.replacen(r#"type = "black_hole""#, r#"type = "blackhole""#, 1);
    let error = PipelineConfig::from_toml_str(&text).unwrap_err();
    assert_eq!(
        error.problems(),
        [
            "sinks.forward: input 'kept' does not exist; known: keep, otlp_grpc, otlp_http, phi, pyroscope",
            "transforms.keep: keep_ratio must be between 0 and 1, got 2",
        ]
    );
    assert_eq!(
        error.to_string(),
        "pipeline config: sinks.forward: input 'kept' does not exist; known: keep, otlp_grpc, otlp_http, phi, pyroscope; transforms.keep: keep_ratio must be between 0 and 1, got 2"
    );
}
