//! The FertiVision collector: OTLP traces, metrics, logs and pprof profiles come in; every
//! accepted batch is written to a write-ahead log ([`wal`]) and synced before the sender is
//! told it was accepted; sinks read the log, each at its own pace from its own checkpoint.
//!
//! In the order data flows: [`sources`] (OTLP/gRPC, OTLP/HTTP, Pyroscope) -> [`ingest`]
//! (limits) -> [`wal`] -> [`pipeline`] (one reader per sink, through the [`transforms`] of
//! [`topology`]) -> [`sinks`] (Prometheus, profiles, the log and span index, OTLP, file,
//! blackhole). [`collector`] runs it all and serves the query port, with the search API of
//! [`query`]. [`loadgen`] is the load generator.
#![warn(missing_docs)]

pub mod batch;
pub mod catalogue;
pub mod collector;
pub mod config;
pub mod decode;
pub mod ingest;
/// Jaeger's HTTP query API (`/api/services`, `/api/traces`, ...) over the span index, for
/// Grafana's Jaeger data source.
pub mod jaeger;
pub mod loadgen;
pub mod metrics;
pub mod pipeline;
pub mod query;
pub mod sinks;
pub mod sources;
pub mod topology;
pub mod transforms;
pub mod wal;
