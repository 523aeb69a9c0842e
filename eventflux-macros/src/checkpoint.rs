//! `#[derive(Checkpoint)]`: a struct's or enum's snapshot and restore, with a schema version.
//!
//! Generated shape (`krate` is `::eventflux` unless `#[checkpoint(crate = path)]`):
//!
//! ```text
//! impl Checkpoint for T where FieldType: Checkpoint, SkippedType: Default, ... {
//!     fn save(&self, w)    { w.version(V); each saved field in order (enums: variant index first) }
//!     fn load(r)           { let v = r.version(); Self::load_version(r, v) }
//!     fn load_version(r, v) { v == V: the fields; else `from = Old`: Old::load_version(r, v).into() }
//! }
//! ```
//!
//! Every field type is a `where` bound spanned at the user's type, so a type that is not
//! checkpointable is one error at that type, not one per use.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, LitInt, Path, Type};

/// Entry point: never panics; every problem becomes a `compile_error!` at the user's tokens.
pub fn derive(input: TokenStream) -> TokenStream {
    let input = match syn::parse2::<DeriveInput>(input) {
        Ok(input) => input,
        Err(e) => return e.to_compile_error(),
    };
    match expand(&input) {
        Ok(tokens) => tokens,
        Err(errors) => errors.into_iter().map(|e| e.to_compile_error()).collect(),
    }
}

/// The container's `#[checkpoint(...)]` settings.
struct Container {
    version: u32,
    from: Option<Type>,
    krate: Path,
}

/// How one field is saved.
enum Mode {
    Save,
    Skip,
    With(Path),
}

struct Field {
    /// `name` or `0` (struct access, and the field's name in a constructor).
    member: syn::Member,
    /// The binding of this field in an enum variant's pattern.
    binding: Ident,
    ty: Type,
    mode: Mode,
}

const CONTAINER_KEYS: &str = "`version = N`, `from = OldType` or `crate = path`";
const FIELD_KEYS: &str = "`skip` or `with = module`";

fn expand(input: &DeriveInput) -> Result<TokenStream, Vec<syn::Error>> {
    let mut errors = Vec::new();
    let container = container_attrs(input, &mut errors);
    let body = match &input.data {
        Data::Struct(s) => Some(Body::Struct(fields(&s.fields, &mut errors))),
        Data::Enum(e) => {
            let mut variants = Vec::new();
            for v in &e.variants {
                for attr in v.attrs.iter().filter(|a| a.path().is_ident("checkpoint")) {
                    errors.push(syn::Error::new_spanned(
                        attr,
                        "`#[checkpoint(...)]` is not supported on an enum variant; put `skip` or \
                         `with` on the variant's fields, or the schema version on the enum",
                    ));
                }
                variants.push((
                    v.ident.clone(),
                    v.fields.clone(),
                    fields(&v.fields, &mut errors),
                ));
            }
            Some(Body::Enum(variants))
        }
        Data::Union(u) => {
            errors.push(syn::Error::new(
                u.union_token.span(),
                "`Checkpoint` cannot be derived for a union: which field holds the value is not \
                 known; use an enum, or implement `Checkpoint` by hand",
            ));
            None
        }
    };
    match (errors.is_empty(), body) {
        (true, Some(body)) => Ok(generate(input, &container, &body)),
        _ => Err(errors),
    }
}

fn container_attrs(input: &DeriveInput, errors: &mut Vec<syn::Error>) -> Container {
    let mut c = Container {
        version: 1,
        from: None,
        krate: syn::parse_quote!(::eventflux),
    };
    let (mut version, mut krate) = (None::<Span>, None::<Span>);
    for attr in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("checkpoint"))
    {
        let parsed = attr.parse_nested_meta(|meta| {
            let key = &meta.path;
            if key.is_ident("version") {
                if version.is_some() {
                    return Err(syn::Error::new_spanned(key, "duplicate `version`"));
                }
                let lit: LitInt = meta.value()?.parse()?;
                let v: u32 = lit.base10_parse()?;
                if v == 0 {
                    return Err(syn::Error::new_spanned(
                        &lit,
                        "schema versions start at 1: write `version = 1` or more",
                    ));
                }
                version = Some(lit.span());
                c.version = v;
            } else if key.is_ident("from") {
                if c.from.is_some() {
                    return Err(syn::Error::new_spanned(key, "duplicate `from`"));
                }
                c.from = Some(meta.value()?.parse()?);
            } else if key.is_ident("crate") {
                if krate.is_some() {
                    return Err(syn::Error::new_spanned(key, "duplicate `crate`"));
                }
                krate = Some(key.span());
                c.krate = meta.value()?.parse()?;
            } else if key.is_ident("skip") || key.is_ident("with") {
                return Err(syn::Error::new_spanned(
                    key,
                    format!(
                        "`{}` applies to a field, not to a type; on a type use {CONTAINER_KEYS}",
                        path_name(key)
                    ),
                ));
            } else {
                return Err(syn::Error::new_spanned(
                    key,
                    format!(
                        "unknown `checkpoint` attribute `{}`; on a type use {CONTAINER_KEYS}, on a \
                         field {FIELD_KEYS}",
                        path_name(key)
                    ),
                ));
            }
            Ok(())
        });
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
    if let Some(from) = &c.from
        && c.version < 2
    {
        errors.push(syn::Error::new_spanned(
            from,
            format!(
                "`from` migrates snapshots of an older version, so this type needs a newer one: \
                 add `version = {}` (or more) beside it",
                c.version + 1
            ),
        ));
    }
    c
}

fn path_name(p: &Path) -> String {
    p.segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect::<Vec<_>>()
        .join("::")
}

fn fields(fields: &Fields, errors: &mut Vec<syn::Error>) -> Vec<Field> {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let member = match &f.ident {
                Some(name) => syn::Member::Named(name.clone()),
                None => syn::Member::Unnamed(syn::Index {
                    index: i as u32,
                    span: f.ty.span(),
                }),
            };
            Field {
                member,
                binding: format_ident!("__field{}", i),
                ty: f.ty.clone(),
                mode: field_mode(&f.attrs, errors),
            }
        })
        .collect()
}

fn field_mode(attrs: &[syn::Attribute], errors: &mut Vec<syn::Error>) -> Mode {
    let mut mode = Mode::Save;
    let mut seen: Option<&'static str> = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("checkpoint")) {
        let parsed = attr.parse_nested_meta(|meta| {
            let key = &meta.path;
            let name = if key.is_ident("skip") {
                "skip"
            } else if key.is_ident("with") {
                "with"
            } else if ["version", "from", "crate"].iter().any(|k| key.is_ident(k)) {
                return Err(syn::Error::new_spanned(
                    key,
                    format!(
                        "`{}` applies to a type, not to a field; on a field use {FIELD_KEYS}",
                        path_name(key)
                    ),
                ));
            } else {
                return Err(syn::Error::new_spanned(
                    key,
                    format!(
                        "unknown `checkpoint` attribute `{}` on a field; use {FIELD_KEYS}",
                        path_name(key)
                    ),
                ));
            };
            if let Some(before) = seen {
                let msg = if before == name {
                    format!("duplicate `{name}`")
                } else {
                    "a field is either skipped or saved `with` a module, not both".to_string()
                };
                return Err(syn::Error::new_spanned(key, msg));
            }
            seen = Some(name);
            mode = match name {
                "skip" => Mode::Skip,
                _ => Mode::With(meta.value()?.parse()?),
            };
            Ok(())
        });
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
    mode
}

enum Body {
    Struct(Vec<Field>),
    /// Each variant: name, its fields' shape (for patterns and constructors), its fields.
    Enum(Vec<(Ident, Fields, Vec<Field>)>),
}

fn generate(input: &DeriveInput, c: &Container, body: &Body) -> TokenStream {
    let name = &input.ident;
    let krate = &c.krate;
    let state = quote!(#krate::state);
    let version = c.version;
    let type_name = name.to_string();

    let all: Vec<&Field> = match body {
        Body::Struct(f) => f.iter().collect(),
        Body::Enum(vs) => vs.iter().flat_map(|(_, _, f)| f).collect(),
    };
    // One bound per field type, spanned at the type: a type that is not checkpointable (or a
    // skipped one without `Default`) is reported once, there.
    let mut generics = input.generics.clone();
    let where_clause = generics.make_where_clause();
    for f in &all {
        let ty = &f.ty;
        match f.mode {
            Mode::Save => {
                let bound = respan(quote!(#state::Checkpoint), ty.span());
                where_clause
                    .predicates
                    .push(syn::parse_quote_spanned!(ty.span()=> #ty: #bound));
            }
            Mode::Skip => where_clause
                .predicates
                .push(syn::parse_quote_spanned!(ty.span()=> #ty: ::core::default::Default)),
            Mode::With(_) => {}
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let save_field = |f: &Field, value: TokenStream| match &f.mode {
        Mode::Save => {
            let ty = &f.ty;
            quote_spanned!(ty.span()=> <#ty as #state::Checkpoint>::save(#value, __w)?;)
        }
        Mode::With(path) => quote_spanned!(path.span()=> #path::save(#value, __w)?;),
        Mode::Skip => TokenStream::new(),
    };
    let load_field = |f: &Field| {
        let member = &f.member;
        let ty = &f.ty;
        let value = match &f.mode {
            Mode::Save => quote_spanned!(ty.span()=> <#ty as #state::Checkpoint>::load(__r)?),
            Mode::With(path) => quote_spanned!(path.span()=> #path::load(__r)?),
            Mode::Skip => quote_spanned!(ty.span()=> <#ty as ::core::default::Default>::default()),
        };
        quote!(#member: #value)
    };

    let (save, load) = match body {
        Body::Struct(fields) => {
            let saves = fields.iter().map(|f| {
                let member = &f.member;
                save_field(f, quote!(&self.#member))
            });
            let loads = fields.iter().map(load_field);
            let save = quote! {
                __w.version(#version)?;
                #(#saves)*
                ::core::result::Result::Ok(())
            };
            (
                save,
                quote!(::core::result::Result::Ok(Self { #(#loads,)* })),
            )
        }
        Body::Enum(variants) => {
            let arms = variants.iter().enumerate().map(|(i, (v, shape, fields))| {
                let index = i as u32;
                let pattern = pattern(shape, fields);
                let saves = fields.iter().map(|f| {
                    let b = &f.binding;
                    save_field(f, quote!(#b))
                });
                quote!(Self::#v #pattern => {
                    __w.put(&#index)?;
                    #(#saves)*
                })
            });
            let loads = variants.iter().enumerate().map(|(i, (v, _, fields))| {
                let index = i as u32;
                let loads = fields.iter().map(load_field);
                quote!(#index => ::core::result::Result::Ok(Self::#v { #(#loads,)* }),)
            });
            let save = if variants.is_empty() {
                // No value exists to save: the body is the empty match alone.
                quote!(match *self {})
            } else {
                quote! {
                    __w.version(#version)?;
                    match self { #(#arms)* }
                    ::core::result::Result::Ok(())
                }
            };
            let load = quote! {
                let __index: u32 = __r.take()?;
                match __index {
                    #(#loads)*
                    _ => ::core::result::Result::Err(#state::StateError::Variant {
                        ty: #type_name,
                        index: __index,
                    }),
                }
            };
            (save, load)
        }
    };

    let older = match &c.from {
        Some(old) => quote! {
            match <#old as #state::Checkpoint>::load_version(__r, __v) {
                ::core::result::Result::Ok(__old) => {
                    ::core::result::Result::Ok(<Self as ::core::convert::From<#old>>::from(__old))
                }
                ::core::result::Result::Err(#state::StateError::Version { found, oldest, .. }) => {
                    ::core::result::Result::Err(#state::StateError::Version {
                        ty: #type_name,
                        found,
                        oldest,
                        newest: #version,
                    })
                }
                ::core::result::Result::Err(__e) => ::core::result::Result::Err(__e),
            }
        },
        None => quote! {
            ::core::result::Result::Err(#state::StateError::Version {
                ty: #type_name,
                found: __v,
                oldest: #version,
                newest: #version,
            })
        },
    };

    quote! {
        #[automatically_derived]
        #[allow(private_bounds, clippy::needless_question_mark)]
        impl #impl_generics #state::Checkpoint for #name #ty_generics #where_clause {
            fn save(
                &self,
                __w: &mut #state::StateWriter,
            ) -> ::core::result::Result<(), #state::StateError> {
                #save
            }

            fn load(
                __r: &mut #state::StateReader<'_>,
            ) -> ::core::result::Result<Self, #state::StateError> {
                let __v = __r.version()?;
                <Self as #state::Checkpoint>::load_version(__r, __v)
            }

            fn load_version(
                __r: &mut #state::StateReader<'_>,
                __v: u32,
            ) -> ::core::result::Result<Self, #state::StateError> {
                if __v == #version {
                    return { #load };
                }
                #older
            }
        }
    }
}

/// `tokens` with every span set to `span` (groups included), so that an error about them points
/// at the user's tokens at `span`.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut t| {
            if let proc_macro2::TokenTree::Group(g) = &t {
                let mut inner = proc_macro2::Group::new(g.delimiter(), respan(g.stream(), span));
                inner.set_span(span);
                t = proc_macro2::TokenTree::Group(inner);
            } else {
                t.set_span(span);
            }
            t
        })
        .collect()
}

/// `{ a: __field0, b: _ }`, `(__field0, _)` or nothing: a variant's fields bound by reference
/// (skipped ones ignored).
fn pattern(shape: &Fields, fields: &[Field]) -> TokenStream {
    let bind = |f: &Field| match f.mode {
        Mode::Skip => quote!(_),
        _ => {
            let b = &f.binding;
            quote!(#b)
        }
    };
    match shape {
        Fields::Named(_) => {
            let items = fields.iter().map(|f| {
                let member = &f.member;
                let b = bind(f);
                quote!(#member: #b)
            });
            quote!({ #(#items),* })
        }
        Fields::Unnamed(_) => {
            let items = fields.iter().map(bind);
            quote!((#(#items),*))
        }
        Fields::Unit => TokenStream::new(),
    }
}
