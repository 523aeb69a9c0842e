//! Procedural macros of eventflux.
//!
//! This crate will host `pipeline!`, the declarative graph macro that compiles a stage graph into
//! the runtime's statically dispatched segments (tracked as the next issue). Until then it
//! exports nothing; the facade already depends on it so that adding the macro changes no
//! user's `Cargo.toml`.
