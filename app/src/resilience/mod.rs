//! Resilience: a timeout on every call to a dependency, and a circuit breaker per dependency
//! so that while it is down requests fail fast instead of piling up.

mod breaker;

pub use breaker::{Admission, Breaker, BreakerConfig, BreakerOpen, BreakerState, Guarded};
