//! Procedural macros of eventflux: [`pipeline!`] and `#[derive(Checkpoint)]`.
//!
//! `pipeline!` is structured like serde_derive: `parse` (syntax tree with spans), `validate`
//! (names, edges, structure; diagnostics as data), `codegen` (quote). See the `eventflux` crate
//! for the language reference. The derive lives in `checkpoint`.

mod checkpoint;
mod codegen;
mod diagnostic;
mod parse;
mod validate;

use proc_macro::TokenStream;

/// Declares a pipeline graph and compiles it into statically dispatched, fused segments.
///
/// See the `eventflux` crate documentation for the grammar, the checks made at compile time and
/// the generated value's API.
#[proc_macro]
pub fn pipeline(input: TokenStream) -> TokenStream {
    expand(input.into()).into()
}

/// Derives `Checkpoint`: the type's state can be saved into a checkpoint and restored from it.
///
/// Structs (named, tuple, unit), enums and generic types. Container attributes:
/// `#[checkpoint(version = N)]` (the schema version written before the fields, 1 by default),
/// `#[checkpoint(from = OldType)]` (read snapshots of older versions as `OldType`, then convert
/// with `From<OldType>`), `#[checkpoint(crate = path)]` (where `eventflux` is, if renamed). Field
/// attributes: `#[checkpoint(skip)]` (not saved; restored as `Default::default()`) and
/// `#[checkpoint(with = module)]` (saved by `module::save(&field, writer)`, restored by
/// `module::load(reader)`). See `eventflux::state` for examples.
#[proc_macro_derive(Checkpoint, attributes(checkpoint))]
pub fn derive_checkpoint(input: TokenStream) -> TokenStream {
    checkpoint::derive(input.into()).into()
}

/// Parses, validates and generates; never panics. On errors, emits every diagnostic plus a stub
/// of the right type so that follow-on errors stay quiet.
fn expand(input: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    let errors = match parse::parse(input) {
        Err(e) => vec![diagnostic::Diagnostic::from(e)],
        Ok(def) => match validate::validate(def) {
            Ok(graph) => return codegen::generate(&graph),
            Err(errors) => errors,
        },
    };
    let errors = errors.iter().map(diagnostic::Diagnostic::to_compile_error);
    quote::quote! {{
        #(#errors)*
        ::eventflux::__private::App::stub()
    }}
}

#[cfg(test)]
mod tests;
