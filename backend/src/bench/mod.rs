//! Scale tooling shared by `harbormaster bench` and the benchmarks in `backend/benches/`: a
//! synthetic estate written through the collectors' own code ([`estate`]) and a concurrent load
//! on every console page and API list ([`load`]). See BENCHMARKS.md for the figures.

pub mod estate;
pub mod load;
