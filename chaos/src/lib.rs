//! Chaos: the platform's dependencies broken on purpose, while it runs as real processes on
//! real PostgreSQL and Redis, and what it promises checked through its own telemetry (the
//! collector's `/metrics` and log search).
//!
//! - [`proxy`]: a TCP fault proxy (latency, jitter, bandwidth, resets, a black hole, closing
//!   after N bytes) placed between the platform and a dependency.
//! - [`platform`]: the collector, `serve` and `worker` as processes, their database and Redis
//!   behind fault proxies.
//! - [`report`]: each scenario's expectations, observed values and verdicts, printed as a
//!   table.
//!
//! Run with `cargo test -p chaos` after `cargo build -p fertivision` (the tests run the
//! binary next to them in the target directory); `cargo test --workspace` builds it first.

pub mod platform;
pub mod proxy;
pub mod report;
