//! The Kubernetes collector: every workload of every configured cluster, tracked through its
//! lifecycle.
//!
//! - [`mapping`] (pure) turns objects into workloads, instances and lifecycle observations;
//! - [`persist`] writes a snapshot: complete the first time, then only what changed;
//! - [`runtime`] watches the live Pods for debug containers, restarts and drift;
//! - [`posture`] evaluates a mapped workload with the cluster's NetworkPolicies and
//!   ServiceAccounts, and the live Pods changed after their creation;
//! - [`watch`] runs the kube-runtime watchers of one cluster ([`ClusterWatch::step`] is the
//!   one-step function tests drive), [`sync_once`] lists everything once, [`spawn`] starts a
//!   supervised collector per context.

pub mod mapping;
pub mod persist;
pub mod posture;
pub mod runtime;
pub mod watch;

pub use watch::{connect, spawn, supervise, sync_once, ClusterState, ClusterWatch, Step, Target};
