//! The offline scanner behind `harbormaster scan` (placeholder while the engine compiles).
