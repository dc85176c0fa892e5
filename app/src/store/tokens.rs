//! API tokens, stored only as SHA-256 hashes.

use chrono::Utc;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, on_backend};

/// A token found by its hash.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TokenRecord {
    /// Identifier (safe to log).
    pub id: Uuid,
    /// `clinician`, `lab` or `admin`.
    pub role: String,
}

impl Store {
    /// Stores the hash of a new token.
    pub async fn insert_token(
        &self,
        token_hash: &str,
        role: &str,
        label: &str,
    ) -> StoreResult<Uuid> {
        let id = Uuid::now_v7();
        on_backend!(self, ("INSERT", "api_tokens"), |pool, _pg| {
            sqlx::query(
                "INSERT INTO api_tokens (id, token_hash, role, label, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(token_hash)
            .bind(role)
            .bind(label)
            .bind(Utc::now())
            .execute(pool)
            .await
            .map_err(|e| StoreError::classify(e, "token already exists"))?;
            Ok(())
        })?;
        Ok(id)
    }

    /// The token with this hash, if any.
    pub async fn find_token(&self, token_hash: &str) -> StoreResult<Option<TokenRecord>> {
        on_backend!(read self, ("SELECT", "api_tokens"), |pool, _pg| {
            Ok(
                sqlx::query_as("SELECT id, role FROM api_tokens WHERE token_hash = $1")
                    .bind(token_hash)
                    .fetch_optional(pool)
                    .await?,
            )
        })
    }

    /// How many tokens exist (`up` creates the first admin token when there are none).
    pub async fn count_tokens(&self) -> StoreResult<i64> {
        on_backend!(read self, ("SELECT", "api_tokens"), |pool, _pg| {
            Ok(sqlx::query_scalar("SELECT count(*) FROM api_tokens")
                .fetch_one(pool)
                .await?)
        })
    }
}
