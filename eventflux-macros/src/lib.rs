//! Procedural macros of eventflux: [`pipeline!`].
//!
//! The crate is structured like serde_derive: `parse` (syntax tree with spans), `validate`
//! (names, edges, structure; diagnostics as data), `codegen` (quote). See the `eventflux` crate
//! for the language reference.

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
