//! One Redis connection for the cache and the shared rate limits, behind a circuit breaker:
//! while Redis is down, callers fall back at once (cache bypassed, local rate limits) instead
//! of waiting for timeouts on every request.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use fred::types::{ClusterHash, CustomCommand};
use tracing::Instrument;

use crate::resilience::{Breaker, BreakerConfig, BreakerState, Guarded};

/// A Redis connection with its key prefix and breaker.
#[derive(Clone)]
pub struct Redis {
    client: Client,
    prefix: String,
    timeout: Duration,
    breaker: Arc<Breaker>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redis({})", self.prefix)
    }
}

/// Redis could not serve a command (down, slow, or the breaker is open).
#[derive(Debug, thiserror::Error)]
#[error("redis unavailable: {0}")]
pub struct RedisUnavailable(String);

impl Redis {
    /// Connects in the background; an unreachable server is not fatal.
    pub async fn connect(
        url: &str,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self, fred::error::Error> {
        let mut config = Config::from_url(url)?;
        // Keep reconnecting even when the first attempt fails (Redis down at start).
        config.fail_fast = false;
        let client = Builder::from_config(config)
            .with_connection_config(|c| c.connection_timeout = timeout)
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build()?;
        client.connect();
        let _ = tokio::time::timeout(timeout, client.wait_for_connect()).await;
        Ok(Self {
            client,
            prefix: prefix.to_owned(),
            timeout,
            breaker: Arc::new(Breaker::new(
                "redis",
                BreakerConfig {
                    enabled: true,
                    failure_threshold: 3,
                    open_for: Duration::from_secs(5),
                },
            )),
        })
    }

    /// `prefix:rest`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// The breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Runs one command under the breaker and the timeout.
    pub async fn command(
        &self,
        name: &'static str,
        args: Vec<Value>,
    ) -> Result<Value, RedisUnavailable> {
        self.command_within(name, args, self.timeout).await
    }

    /// [`Redis::command`] with its own deadline (a cache lookup, which must not wait longer
    /// than the database would).
    pub async fn command_within(
        &self,
        name: &'static str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Value, RedisUnavailable> {
        // A command's future is kilobytes (fred's); on the heap, the futures of the requests
        // that may send one (every cached read, every rate-limited request) stay small, and
        // so cheap to move.
        Box::pin(self.send(name, args, timeout)).await
    }

    async fn send(
        &self,
        name: &'static str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Value, RedisUnavailable> {
        let call = self.client.custom::<Value, _>(
            CustomCommand::new_static(name, ClusterHash::FirstKey, false),
            args,
        );
        let span = redis_span(name);
        let outcome = match self
            .breaker
            .call(timeout, call, |_| false)
            .instrument(span.clone())
            .await
        {
            Ok(value) => Ok(value),
            Err(Guarded::Failed(e)) => Err(RedisUnavailable(e.to_string())),
            Err(other) => Err(RedisUnavailable(other.to_string())),
        };
        if outcome.is_err() {
            span.record("otel.status_code", "error");
        }
        outcome
    }
}

/// A client span for one Redis command: its name only, never its keys or values (a cache key
/// names a patient's uuid at most, but values may hold records).
pub fn redis_span(command: &'static str) -> tracing::Span {
    tracing::info_span!(
        "redis",
        otel.name = command,
        otel.kind = "client",
        db.system.name = "redis",
        db.operation.name = command,
        otel.status_code = tracing::field::Empty,
    )
}
