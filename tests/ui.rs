//! Compile-fail cases of `pipeline!`: every diagnostic the macro makes, and the type errors it
//! leaves to rustc at the user's tokens. The `.stderr` snapshots were made with the toolchain
//! pinned in `rust-toolchain.toml`; regenerate them with `TRYBUILD=overwrite cargo test --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("../tests/ui/*.rs");
}
