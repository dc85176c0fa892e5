//! The FertiVision collector: OTLP traces, metrics, logs and pprof profiles come in; every
//! accepted batch is written to a write-ahead log ([`wal`]) and synced before the sender is
//! told it was accepted; sinks read the log, each at its own pace from its own checkpoint.
//!
//! Built so far: the write-ahead log and the OTLP receivers ([`sources`]) feeding it through
//! [`ingest`]. The pipeline, the sinks and the query API are the next steps of this crate
//! (see the README's "What exists").
#![warn(missing_docs)]

pub mod batch;
pub mod collector;
pub mod config;
pub mod decode;
pub mod ingest;
pub mod loadgen;
pub mod metrics;
pub mod pipeline;
pub mod sinks;
pub mod sources;
pub mod topology;
pub mod transforms;
pub mod wal;
