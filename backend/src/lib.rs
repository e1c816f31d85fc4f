//! Harbormaster: a container lifecycle security console.
//!
//! Data flows one way: collectors → inventory → lifecycle / posture / ownership → web console and
//! API, incidents and reviews. See the README for the domain and the contracts.

pub mod auth;
pub mod bench;
pub mod cli;
pub mod collect;
pub mod config;
pub mod db;
pub mod findings;
pub mod incident;
pub mod inventory;
pub mod lifecycle;
pub mod notify;
pub mod ownership;
pub mod posture;
pub mod review;
pub mod runtime;
pub mod startup;
pub mod supply;
pub mod telemetry;
pub mod web;
