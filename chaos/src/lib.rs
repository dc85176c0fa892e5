//! Chaos: the platform's dependencies broken on purpose, while it runs as real processes on
//! real PostgreSQL and Redis, and what it promises checked through its own telemetry (the
//! collector's `/metrics` and log search).
//!
//! - [`proxy`]: a TCP fault proxy (latency, jitter, bandwidth, resets, a black hole, closing
//!   after N bytes) placed between the platform and a dependency.
//! - [`platform`]: the collector, `serve` (one or more) and `worker` as processes, their
//!   database, Redis and collector behind fault proxies; process faults (SIGKILL,
//!   SIGSTOP/SIGCONT); Prometheus evaluating the generated alert rules; compose's nginx in front
//!   of the API instances; a small tmpfs under the collector's log that a scenario can fill.
//! - [`report`]: each scenario's expectations, observed values and verdicts, printed as a
//!   table.
//!
//! Run with `cargo test -p chaos` after `cargo build -p fertivision` (the tests run the
//! binary next to them in the target directory); `cargo test --workspace` builds it first.
//! `cargo test -p chaos --test scenarios -- disk frozen` runs the named scenarios alone. The
//! scenarios need PostgreSQL, Redis, Debian's `prometheus` and `nginx`, and root (to mount the
//! tmpfs); `.ci/run` provides them.

pub mod platform;
pub mod proxy;
pub mod report;
