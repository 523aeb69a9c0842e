//! Compile-fail cases of `pipeline!` and `#[derive(Checkpoint)]`: every diagnostic the macros
//! make, and the type errors they leave to rustc at the user's tokens. The `.stderr` snapshots were made with the toolchain
//! pinned in `rust-toolchain.toml`; regenerate them with `TRYBUILD=overwrite cargo test --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("../tests/ui/*.rs");
}

#[test]
fn checkpoint_derive() {
    let t = trybuild::TestCases::new();
    t.compile_fail("../tests/ui_checkpoint/*.rs");
}
