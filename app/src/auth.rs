//! Bearer tokens and roles.
//!
//! A token is `fv_` followed by 64 hex digits: 256 random bits from the operating system's
//! generator. Only its SHA-256 is stored; a plain hash is right for secrets of this entropy
//! (a slow password hash protects guessable secrets, and these are not guessable).
//!
//! | action | clinician | lab | admin |
//! | --- | --- | --- | --- |
//! | read patients, analyses, documents, scores, summaries | yes | yes | yes |
//! | create and update patients | yes | no | yes |
//! | delete patients | no | no | yes |
//! | record analyses, upload documents | yes | yes | yes |

use std::fmt;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::api::{ApiError, AppState};
use crate::limits::Limit;
use crate::store::{Store, TokenRecord};

/// What a token may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Clinical staff: everything but deleting patients.
    Clinician,
    /// Laboratory staff: reads, analyses and documents.
    Lab,
    /// Administrators: everything.
    Admin,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Clinician => "clinician",
            Role::Lab => "lab",
            Role::Admin => "admin",
        }
    }

    /// The permission table of this module.
    pub fn allows(self, action: Action) -> bool {
        match action {
            Action::Read | Action::RecordAnalyses | Action::UploadDocuments => true,
            Action::WritePatients => matches!(self, Role::Clinician | Role::Admin),
            Action::DeletePatients | Action::Operate => self == Role::Admin,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "clinician" => Ok(Role::Clinician),
            "lab" => Ok(Role::Lab),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role '{other}'")),
        }
    }
}

/// Something a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read any record.
    Read,
    /// Create or update a patient.
    WritePatients,
    /// Delete a patient.
    DeletePatients,
    /// Record a lab analysis.
    RecordAnalyses,
    /// Upload a document.
    UploadDocuments,
    /// See the platform's operations: jobs and dead letters, alert notifications.
    Operate,
}

/// A new random token (shown once) and the hash to store.
pub fn generate_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = format!("fv_{}", hex::encode(bytes));
    let hash = hash_token(&token);
    (token, hash)
}

/// The stored form of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// The token's id (safe to log).
    pub token_id: Uuid,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// 403 unless the caller's role allows `action`.
    pub fn require(&self, action: Action) -> Result<(), ApiError> {
        if self.role.allows(action) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "the {} role may not do this",
                self.role
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer token"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be 'Bearer <token>'")
            })?;
        let record = state.tokens.find(&state.store, token).await?;
        let role = record
            .role
            .parse()
            .map_err(|_| ApiError::internal("stored token has an unknown role"))?;
        state.limits.check(record.id, Limit::Overall).await?;
        Ok(Caller {
            token_id: record.id,
            role,
        })
    }
}

/// Known tokens by hash (the SHA-256 digest, so that a known token costs no hex encoding), so
/// that a request costs no database round trip to authenticate. An entry lives
/// [`TokenCache::TTL`]: no route removes a token, and one removed from the database by hand
/// stops working within that time. Unknown tokens are never cached.
#[derive(Debug, Clone)]
pub struct TokenCache {
    known: moka::sync::Cache<[u8; 32], TokenRecord>,
}

impl Default for TokenCache {
    fn default() -> Self {
        Self {
            known: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Self::TTL)
                .build(),
        }
    }
}

impl TokenCache {
    /// How long a token is trusted without asking the database again.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(30);

    /// The record of `token`, or 401.
    async fn find(&self, store: &Store, token: &str) -> Result<TokenRecord, ApiError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(record) = self.known.get(&digest) {
            return Ok(record);
        }
        let record = store
            .find_token(&hex::encode(digest))
            .await?
            .ok_or_else(|| ApiError::unauthorized("unknown token"))?;
        self.known.insert(digest, record.clone());
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_random_and_hashed() {
        let (a, hash_a) = generate_token();
        let (b, _) = generate_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 64);
        assert_eq!(hash_a, hash_token(&a));
        assert_ne!(hash_a, a);
    }

    #[test]
    fn permission_table() {
        use Action::*;
        use Role::*;
        let table = [
            (Clinician, [true, true, false, true, true, false]),
            (Lab, [true, false, false, true, true, false]),
            (Admin, [true, true, true, true, true, true]),
        ];
        for (role, expected) in table {
            let got = [
                Read,
                WritePatients,
                DeletePatients,
                RecordAnalyses,
                UploadDocuments,
                Operate,
            ]
            .map(|a| role.allows(a));
            assert_eq!(got, expected, "{role}");
        }
    }
}
