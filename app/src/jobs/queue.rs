//! The queue that carries job ids to workers.
//!
//! - [`Queue::Database`]: the jobs table is the queue; workers claim the next due row.
//! - [`Queue::Redis`]: a Redis stream read through a consumer group. `XREADGROUP` delivers,
//!   `XACK` acknowledges, `XAUTOCLAIM` takes over the deliveries of a consumer that has been
//!   silent longer than `jobs.reclaim_idle_ms`, and ids of dead jobs go to a dead-letter
//!   stream. Blocking reads use a connection of their own.

use std::time::Duration;

use fred::prelude::*;
use fred::types::CustomCommand;
use tracing::Instrument;
use uuid::Uuid;

/// One job id delivered to a consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The job.
    pub job_id: Uuid,
    /// The stream entry id, to acknowledge.
    pub message_id: String,
}

/// Where job ids wait for a worker.
#[derive(Clone)]
pub enum Queue {
    /// The jobs table itself.
    Database,
    /// A Redis stream with a consumer group.
    Redis(RedisStream),
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The Redis side of the queue.
#[derive(Clone)]
pub struct RedisStream {
    client: Client,
    reader: Client,
    stream: String,
    dead_stream: String,
    group: String,
}

/// Redis failed or is unreachable.
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct QueueError(#[from] fred::error::Error);

impl Queue {
    /// `database` or `redis`.
    pub fn name(&self) -> &'static str {
        match self {
            Queue::Database => "database",
            Queue::Redis(_) => "redis",
        }
    }

    /// Connects to Redis (two connections: commands, and blocking reads). An unreachable
    /// server is not fatal: the clients keep reconnecting, commands fail within `timeout`
    /// meanwhile, and jobs wait in the database until the reconciler can publish them.
    pub async fn redis(url: &str, key_prefix: &str, timeout: Duration) -> Result<Self, QueueError> {
        let connect = || async {
            let mut config = Config::from_url(url)?;
            // Keep reconnecting even when the first attempt fails (Redis down at start).
            config.fail_fast = false;
            let client = Builder::from_config(config)
                .with_connection_config(|c| {
                    c.connection_timeout = timeout;
                })
                .with_performance_config(|p| {
                    p.default_command_timeout = timeout;
                })
                .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
                .build()?;
            client.connect();
            if tokio::time::timeout(timeout, client.wait_for_connect())
                .await
                .is_err()
            {
                tracing::warn!("redis unreachable at start; retrying in the background");
            }
            Ok::<Client, fred::error::Error>(client)
        };
        let stream = RedisStream {
            client: connect().await?,
            reader: connect().await?,
            stream: format!("{key_prefix}:jobs"),
            dead_stream: format!("{key_prefix}:jobs:dead"),
            group: "workers".to_owned(),
        };
        if let Err(error) = stream.ensure_group().await {
            tracing::warn!(%error, "could not create the job stream yet");
        }
        Ok(Queue::Redis(stream))
    }

    /// Hands a job id to the queue (nothing to do for the database queue).
    pub async fn publish(&self, job_id: Uuid) -> Result<(), QueueError> {
        match self {
            Queue::Database => Ok(()),
            Queue::Redis(redis) => redis.publish(job_id).await,
        }
    }

    /// Redis: makes sure the stream and group exist. `true` when they had to be created,
    /// which after the first start means the stream was lost (a restart without persistence
    /// or a flush) and every waiting job must be queued again.
    pub async fn ensure_group(&self) -> Result<bool, QueueError> {
        match self {
            Queue::Database => Ok(false),
            Queue::Redis(redis) => redis.ensure_group().await,
        }
    }

    /// Checks that the queue answers.
    pub async fn ping(&self) -> Result<(), QueueError> {
        match self {
            Queue::Database => Ok(()),
            Queue::Redis(redis) => {
                redis.client.ping::<String>(None).await?;
                Ok(())
            }
        }
    }
}

impl RedisStream {
    fn command(name: &'static str, blocking: bool) -> CustomCommand {
        CustomCommand::new_static(name, fred::types::ClusterHash::FirstKey, blocking)
    }

    async fn publish(&self, job_id: Uuid) -> Result<(), QueueError> {
        let args: Vec<Value> = vec![
            self.stream.clone().into(),
            "*".into(),
            "job_id".into(),
            job_id.to_string().into(),
        ];
        self.client
            .custom::<Value, _>(Self::command("XADD", false), args)
            .instrument(crate::redis::redis_span("XADD"))
            .await?;
        Ok(())
    }

    async fn ensure_group(&self) -> Result<bool, QueueError> {
        let args: Vec<Value> = vec![
            "CREATE".into(),
            self.stream.clone().into(),
            self.group.clone().into(),
            "0".into(),
            "MKSTREAM".into(),
        ];
        match self
            .client
            .custom::<Value, _>(Self::command("XGROUP", false), args)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.details().contains("BUSYGROUP") => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Up to `count` new deliveries for `consumer`, waiting at most `block`.
    pub async fn receive(
        &self,
        consumer: &str,
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let args: Vec<Value> = vec![
            "GROUP".into(),
            self.group.clone().into(),
            consumer.to_owned().into(),
            "COUNT".into(),
            (count as i64).into(),
            "BLOCK".into(),
            (block.as_millis() as i64).into(),
            "STREAMS".into(),
            self.stream.clone().into(),
            ">".into(),
        ];
        let reply = self
            .reader
            .custom::<Value, _>(Self::command("XREADGROUP", true), args)
            .await;
        match reply {
            Ok(reply) => Ok(parse_read_reply(&reply)),
            // The group vanished (stream lost): recreate it; the reconciler re-queues.
            Err(e) if e.details().contains("NOGROUP") => {
                self.ensure_group().await?;
                Ok(Vec::new())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes over up to `count` deliveries idle longer than `min_idle` (their consumer died).
    pub async fn reclaim(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let args: Vec<Value> = vec![
            self.stream.clone().into(),
            self.group.clone().into(),
            consumer.to_owned().into(),
            (min_idle.as_millis() as i64).into(),
            "0-0".into(),
            "COUNT".into(),
            (count as i64).into(),
        ];
        match self
            .client
            .custom::<Value, _>(Self::command("XAUTOCLAIM", false), args)
            .await
        {
            Ok(reply) => Ok(parse_autoclaim_reply(&reply)),
            Err(e) if e.details().contains("NOGROUP") => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Acknowledges a delivery: the job's fate is recorded in the database.
    pub async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let args: Vec<Value> = vec![
            self.stream.clone().into(),
            self.group.clone().into(),
            delivery.message_id.clone().into(),
        ];
        self.client
            .custom::<Value, _>(Self::command("XACK", false), args)
            .await?;
        Ok(())
    }

    /// Records a dead job's id and error on the dead-letter stream.
    pub async fn dead_letter(&self, job_id: Uuid, error: &str) -> Result<(), QueueError> {
        let args: Vec<Value> = vec![
            self.dead_stream.clone().into(),
            "*".into(),
            "job_id".into(),
            job_id.to_string().into(),
            "error".into(),
            error.to_owned().into(),
        ];
        self.client
            .custom::<Value, _>(Self::command("XADD", false), args)
            .instrument(crate::redis::redis_span("XADD"))
            .await?;
        Ok(())
    }

    /// Entries on the dead-letter stream (for tests and operators).
    pub async fn dead_letter_len(&self) -> Result<i64, QueueError> {
        Ok(self
            .client
            .custom::<i64, _>(Self::command("XLEN", false), vec![self.dead_stream.clone()])
            .await?)
    }

    /// The stream's key.
    pub fn stream_key(&self) -> &str {
        &self.stream
    }
}

/// `XREADGROUP` answers `[[stream, [[id, [field, value, ...]], ...]]]`, or nil on timeout.
fn parse_read_reply(reply: &Value) -> Vec<Delivery> {
    let Value::Array(streams) = reply else {
        return Vec::new();
    };
    streams
        .iter()
        .filter_map(|s| match s {
            Value::Array(pair) if pair.len() == 2 => Some(&pair[1]),
            _ => None,
        })
        .flat_map(parse_entries)
        .collect()
}

/// `XAUTOCLAIM` answers `[next_id, [[id, [fields]] | nil, ...], [deleted ids]]`.
fn parse_autoclaim_reply(reply: &Value) -> Vec<Delivery> {
    match reply {
        Value::Array(parts) if parts.len() >= 2 => parse_entries(&parts[1]),
        _ => Vec::new(),
    }
}

fn parse_entries(entries: &Value) -> Vec<Delivery> {
    let Value::Array(entries) = entries else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let Value::Array(entry) = entry else {
                return None;
            };
            let message_id = entry.first()?.as_string()?;
            let Value::Array(fields) = entry.get(1)? else {
                return None;
            };
            let job_id = fields
                .chunks(2)
                .find(|pair| pair.first().and_then(Value::as_string).as_deref() == Some("job_id"))
                .and_then(|pair| pair.get(1)?.as_string())
                .and_then(|id| id.parse().ok());
            match job_id {
                Some(job_id) => Some(Delivery { job_id, message_id }),
                None => {
                    tracing::warn!(message_id, "stream entry without a job id");
                    None
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, job: &str) -> Value {
        Value::Array(vec![
            id.into(),
            Value::Array(vec!["job_id".into(), job.into()]),
        ])
    }

    #[test]
    fn replies_are_parsed() {
        let job = Uuid::now_v7();
        let read = Value::Array(vec![Value::Array(vec![
            "fv:jobs".into(),
            Value::Array(vec![
                entry("1-0", &job.to_string()),
                entry("2-0", "not-a-uuid"),
            ]),
        ])]);
        assert_eq!(
            parse_read_reply(&read),
            vec![Delivery {
                job_id: job,
                message_id: "1-0".into()
            }]
        );
        assert!(parse_read_reply(&Value::Null).is_empty());
        let claimed = Value::Array(vec![
            "0-0".into(),
            Value::Array(vec![entry("3-0", &job.to_string()), Value::Null]),
            Value::Array(vec![]),
        ]);
        assert_eq!(parse_autoclaim_reply(&claimed).len(), 1);
    }
}
