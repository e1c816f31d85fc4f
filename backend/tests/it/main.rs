//! Integration tests: the real server on a real port, each test on its own PostgreSQL database
//! (`#[sqlx::test]`), and live tests against this machine's Docker engine and Chromium.

mod auth;
mod common;
mod console;
mod docker;
mod findings;
mod foundation;
mod incident;
mod inventory;
mod kubernetes;
mod posture_scan;
mod scale;
