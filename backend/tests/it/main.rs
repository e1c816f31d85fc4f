//! Integration tests: the real server on a real port, each test on its own PostgreSQL database
//! (`#[sqlx::test]`), and live tests against this machine's Docker engine and Chromium.

mod auth;
mod build_store;
mod common;
mod console;
mod docker;
mod findings;
mod foundation;
mod incident;
mod incident_kube;
mod inventory;
mod kubernetes;
mod notify;
mod ownership;
mod posture_scan;
mod review;
mod runtime;
mod scale;
