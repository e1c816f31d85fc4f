//! Collectors: raw API objects → inventory records (pure mapping) → batched writes.

pub mod import;
pub mod kubernetes;
