//! FertiVision: a service for IVF and andrology clinics.
//!
//! Data flows: an HTTP request enters [`api`] (middleware, bearer [`auth`], a handler per
//! route), which validates and classifies with the pure rules of [`domain`], stores through
//! [`store`] (SQLite or PostgreSQL) and [`objects`] (local disk or S3), and answers JSON.
//! [`server`] opens these from the [`config`] and runs the listener; [`cli`] is the command
//! line that chooses what to run. [`otel`] exports what all of them do (traces, logs, the
//! metric catalogue) to the collector.
#![warn(missing_docs)]

pub mod analysis;
pub mod api;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod clinic;
pub mod config;
pub mod domain;
pub mod jobs;
pub mod limits;
pub mod objects;
pub mod observe;
pub mod otel;
pub mod redis;
pub mod report;
pub mod resilience;
pub mod server;
pub mod store;
