//! Rate limits per token (DOMAIN.md): patient creation 10/min, document upload 5/min, report
//! generation 3/min, 1000 requests/hour overall. With Redis the counters are shared by every
//! API instance (fixed windows: `INCR` + `EXPIRE`); without it, or while Redis is down, each
//! instance limits on its own (GCRA, the `governor` crate). A refusal is 429 with Retry-After.

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use uuid::Uuid;

use crate::redis::Redis;

/// What is limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `POST /patients`.
    CreatePatient,
    /// `POST /patients/{id}/documents`.
    UploadDocument,
    /// `POST /patients/{id}/reports`.
    GenerateReport,
    /// Every authenticated request.
    Overall,
}

impl Limit {
    const ALL: [Limit; 4] = [
        Limit::CreatePatient,
        Limit::UploadDocument,
        Limit::GenerateReport,
        Limit::Overall,
    ];

    /// Requests allowed per window, and the window.
    pub fn quota(self) -> (u32, Duration) {
        match self {
            Limit::CreatePatient => (10, Duration::from_secs(60)),
            Limit::UploadDocument => (5, Duration::from_secs(60)),
            Limit::GenerateReport => (3, Duration::from_secs(60)),
            Limit::Overall => (1000, Duration::from_secs(3600)),
        }
    }

    /// Name in keys and messages.
    pub fn name(self) -> &'static str {
        match self {
            Limit::CreatePatient => "patient creation",
            Limit::UploadDocument => "document upload",
            Limit::GenerateReport => "report generation",
            Limit::Overall => "requests",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Limit::CreatePatient => "create_patient",
            Limit::UploadDocument => "upload_document",
            Limit::GenerateReport => "generate_report",
            Limit::Overall => "overall",
        }
    }
}

/// A refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The limit hit.
    pub limit: Limit,
    /// When a request may succeed again.
    pub retry_after: Duration,
}

type Local = RateLimiter<Uuid, DefaultKeyedStateStore<Uuid>, DefaultClock>;

/// The rate limiter of an API instance.
pub struct RateLimits {
    enabled: bool,
    local: Vec<(Limit, Local)>,
    redis: Option<Redis>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("enabled", &self.enabled)
            .field("redis", &self.redis)
            .finish()
    }
}

impl RateLimits {
    /// Limits shared through `redis` when given; `enabled = false` lets everything through.
    pub fn new(enabled: bool, redis: Option<Redis>) -> Self {
        let local = Limit::ALL
            .into_iter()
            .map(|limit| {
                let (count, window) = limit.quota();
                let burst = NonZeroU32::new(count).expect("positive quota");
                let quota = Quota::with_period(window / count)
                    .expect("non-zero period")
                    .allow_burst(burst);
                (limit, RateLimiter::keyed(quota))
            })
            .collect();
        Self {
            enabled,
            local,
            redis,
        }
    }

    /// Counts one request of `token` against `limit`; a refusal is counted in
    /// `fertivision.rate_limit.refusals`.
    pub async fn check(&self, token: Uuid, limit: Limit) -> Result<(), Refused> {
        if !self.enabled {
            return Ok(());
        }
        let outcome = self.decide(token, limit).await;
        if outcome.is_err() {
            crate::otel::metrics()
                .rate_limit_refusals
                .add(1.0, &[limit.key()]);
        }
        outcome
    }

    async fn decide(&self, token: Uuid, limit: Limit) -> Result<(), Refused> {
        if let Some(redis) = &self.redis {
            match shared_check(redis, token, limit).await {
                Ok(outcome) => return outcome,
                Err(error) => {
                    tracing::debug!(%error, "shared rate limit unavailable; limiting locally")
                }
            }
        }
        self.local_check(token, limit)
    }

    fn local_check(&self, token: Uuid, limit: Limit) -> Result<(), Refused> {
        let (_, limiter) = self
            .local
            .iter()
            .find(|(l, _)| *l == limit)
            .expect("every limit has a limiter");
        limiter.check_key(&token).map_err(|not_until| Refused {
            limit,
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }
}

/// Fixed window in Redis: the first request of a window sets its expiry.
async fn shared_check(
    redis: &Redis,
    token: Uuid,
    limit: Limit,
) -> Result<Result<(), Refused>, crate::redis::RedisUnavailable> {
    let (count, window) = limit.quota();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let index = now.as_secs() / window.as_secs();
    let key = redis.key(&format!("rl:{}:{token}:{index}", limit.key()));
    let used = redis.command("INCR", vec![key.clone().into()]).await?;
    let used = used.as_i64().unwrap_or(i64::MAX);
    if used == 1 {
        redis
            .command("EXPIRE", vec![key.into(), (window.as_secs() as i64).into()])
            .await?;
    }
    if used <= i64::from(count) {
        return Ok(Ok(()));
    }
    let window_end = (index + 1) * window.as_secs();
    let retry_after = Duration::from_secs(window_end.saturating_sub(now.as_secs()).max(1));
    Ok(Err(Refused { limit, retry_after }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_limits_follow_the_clinic_quotas() {
        let limits = RateLimits::new(true, None);
        let token = Uuid::now_v7();
        for _ in 0..5 {
            limits.check(token, Limit::UploadDocument).await.unwrap();
        }
        let refused = limits
            .check(token, Limit::UploadDocument)
            .await
            .unwrap_err();
        assert_eq!(refused.limit, Limit::UploadDocument);
        assert!(
            refused.retry_after > Duration::from_secs(5)
                && refused.retry_after <= Duration::from_secs(12)
        );
        // Another token and another limit are counted apart.
        limits
            .check(Uuid::now_v7(), Limit::UploadDocument)
            .await
            .unwrap();
        limits.check(token, Limit::CreatePatient).await.unwrap();
        for _ in 0..3 {
            limits.check(token, Limit::GenerateReport).await.unwrap();
        }
        assert!(limits.check(token, Limit::GenerateReport).await.is_err());
    }

    #[tokio::test]
    async fn disabled_limits_let_everything_through() {
        let limits = RateLimits::new(false, None);
        let token = Uuid::now_v7();
        for _ in 0..50 {
            limits.check(token, Limit::GenerateReport).await.unwrap();
        }
    }
}
