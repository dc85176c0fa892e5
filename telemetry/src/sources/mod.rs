//! Sources: where telemetry enters. Named after their protocol.

pub mod admission;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod pyroscope;
