//! Syntax of `pipeline!`: a syntax tree with the user's spans, no semantics.
//!
//! ```text
//! pipeline  := item*
//! item      := "config" "{" (key ":" expr),* "}"
//!            | ("source" | "stage" | "sink") name (":" type)? "=" expr ";"
//!            | name (arrow name)+ ";"
//! arrow     := "->" | "=>" ("[" (key "=" expr),* "]")?
//! ```

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Token, Type, braced, bracketed};

/// A whole `pipeline!` invocation.
#[derive(Debug)]
pub struct PipelineDef {
    pub configs: Vec<ConfigBlock>,
    pub nodes: Vec<NodeDef>,
    pub paths: Vec<PathDef>,
}

/// `config { key: value, ... }`.
#[derive(Debug)]
pub struct ConfigBlock {
    pub keyword: Ident,
    pub entries: Vec<Setting>,
}

/// `key: value` in a config block or `key = value` on an edge.
#[derive(Debug, Clone)]
pub struct Setting {
    pub key: Ident,
    pub value: Expr,
}

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Source,
    Stage,
    Sink,
}

impl NodeKind {
    pub fn word(self) -> &'static str {
        match self {
            NodeKind::Source => "source",
            NodeKind::Stage => "stage",
            NodeKind::Sink => "sink",
        }
    }
}

/// `source name: Type = expr;` (and `stage`, `sink`).
#[derive(Debug)]
pub struct NodeDef {
    pub kind: NodeKind,
    pub name: Ident,
    pub ty: Option<Type>,
    pub expr: Expr,
}

/// `a -> b => c;`
#[derive(Debug)]
pub struct PathDef {
    pub first: Ident,
    pub hops: Vec<Hop>,
}

/// One arrow and its target.
#[derive(Debug)]
pub struct Hop {
    pub arrow: Arrow,
    pub span: Span,
    pub target: Ident,
}

/// `->` or `=>[settings]`.
#[derive(Debug)]
pub enum Arrow {
    Fused,
    Queue(Vec<Setting>),
}

mod kw {
    syn::custom_keyword!(config);
    syn::custom_keyword!(source);
    syn::custom_keyword!(stage);
    syn::custom_keyword!(sink);
}

impl Parse for PipelineDef {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut def = PipelineDef {
            configs: Vec::new(),
            nodes: Vec::new(),
            paths: Vec::new(),
        };
        while !input.is_empty() {
            // `source x`, `stage x`, `sink x`: a declaration when a name follows (a Rust
            // keyword there is a declaration with a bad name, reported by `parse_node`).
            let declares = input.peek2(Ident::peek_any);
            if input.peek(kw::config) && input.peek2(syn::token::Brace) {
                def.configs.push(input.parse()?);
            } else if input.peek(kw::source) && declares {
                input.parse::<kw::source>()?;
                def.nodes.push(parse_node(input, NodeKind::Source)?);
            } else if input.peek(kw::stage) && declares {
                input.parse::<kw::stage>()?;
                def.nodes.push(parse_node(input, NodeKind::Stage)?);
            } else if input.peek(kw::sink) && declares {
                input.parse::<kw::sink>()?;
                def.nodes.push(parse_node(input, NodeKind::Sink)?);
            } else if input.peek(Ident) {
                def.paths.push(input.parse()?);
            } else {
                return Err(input.error(
                    "expected `config { .. }`, a node (`source name = ..;`, `stage name = ..;`, \
                     `sink name = ..;`) or an edge (`a -> b;`, `a => b;`)",
                ));
            }
        }
        Ok(def)
    }
}

impl Parse for ConfigBlock {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let keyword: Ident = input.parse()?;
        let content;
        braced!(content in input);
        let entries = Punctuated::<Setting, Token![,]>::parse_terminated_with(&content, |p| {
            let key: Ident = p.parse()?;
            if !p.peek(Token![:]) {
                return Err(p.error(format!(
                    "expected `:` after config key `{key}`, as in `{key}: value`"
                )));
            }
            p.parse::<Token![:]>()?;
            Ok(Setting {
                key,
                value: p.parse()?,
            })
        })?;
        Ok(ConfigBlock {
            keyword,
            entries: entries.into_iter().collect(),
        })
    }
}

/// Words with a meaning in `pipeline!` that cannot name a node (`source source = ..;` would
/// parse, but `source -> x;` reads as a half-written declaration).
const RESERVED: [&str; 4] = ["config", "source", "stage", "sink"];

fn parse_node(input: ParseStream<'_>, kind: NodeKind) -> syn::Result<NodeDef> {
    let name = Ident::parse_any(input)?;
    let text = name.to_string();
    if !text.starts_with("r#") && syn::parse_str::<Ident>(&text).is_err() {
        return Err(syn::Error::new(
            name.span(),
            format!(
                "`{text}` is a Rust keyword, so it cannot name a node; pick another name, \
                 e.g. `{text}_node`"
            ),
        ));
    }
    if RESERVED.contains(&text.as_str()) {
        return Err(syn::Error::new(
            name.span(),
            format!(
                "`{text}` is a `pipeline!` keyword, so it cannot name a node; pick another \
                 name, e.g. `{text}_node`"
            ),
        ));
    }
    // `r#type` names the node `type` (generated names and edges use the unraw form).
    let name = name.unraw();
    let ty = if input.peek(Token![:]) {
        input.parse::<Token![:]>()?;
        Some(input.parse::<Type>()?)
    } else {
        None
    };
    if !input.peek(Token![=]) {
        return Err(input.error(format!(
            "expected `=` after `{} {name}`: write `{} {name} = <expression>;`",
            kind.word(),
            kind.word()
        )));
    }
    input.parse::<Token![=]>()?;
    let expr: Expr = input.parse()?;
    if !input.peek(Token![;]) {
        return Err(input.error(format!("expected `;` after the expression of `{name}`")));
    }
    input.parse::<Token![;]>()?;
    Ok(NodeDef {
        kind,
        name,
        ty,
        expr,
    })
}

impl Parse for PathDef {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let first = input.parse::<Ident>()?.unraw();
        let mut hops = Vec::new();
        loop {
            if input.peek(Token![->]) {
                let arrow: Token![->] = input.parse()?;
                if input.peek(syn::token::Bracket) {
                    return Err(syn::Error::new(
                        arrow.span(),
                        "settings go on thread boundaries only: write `=>[..]` instead of `->[..]`",
                    ));
                }
                hops.push(Hop {
                    arrow: Arrow::Fused,
                    span: arrow.span(),
                    target: parse_target(input)?,
                });
            } else if input.peek(Token![=>]) {
                let arrow: Token![=>] = input.parse()?;
                let mut settings = Vec::new();
                if input.peek(syn::token::Bracket) {
                    let content;
                    bracketed!(content in input);
                    let list =
                        Punctuated::<Setting, Token![,]>::parse_terminated_with(&content, |p| {
                            let key: Ident = p.parse()?;
                            if !p.peek(Token![=]) {
                                return Err(p.error(format!(
                                    "expected `=` after edge setting `{key}`, as in `{key} = value`"
                                )));
                            }
                            p.parse::<Token![=]>()?;
                            Ok(Setting {
                                key,
                                value: p.parse()?,
                            })
                        })?;
                    settings = list.into_iter().collect();
                }
                hops.push(Hop {
                    arrow: Arrow::Queue(settings),
                    span: arrow.span(),
                    target: parse_target(input)?,
                });
            } else if input.peek(Token![;]) {
                input.parse::<Token![;]>()?;
                break;
            } else if hops.is_empty() {
                return Err(input.error(format!(
                    "expected `->` or `=>` after `{first}`; node declarations start with \
                     `source`, `stage` or `sink`"
                )));
            } else {
                return Err(input.error("expected `->`, `=>` or `;` to end the edge"));
            }
        }
        Ok(PathDef { first, hops })
    }
}

fn parse_target(input: ParseStream<'_>) -> syn::Result<Ident> {
    if input.peek(Ident) {
        Ok(input.parse::<Ident>()?.unraw())
    } else {
        Err(input.error("expected the name of a node after the arrow"))
    }
}

/// Parses the macro input.
pub fn parse(tokens: TokenStream) -> syn::Result<PipelineDef> {
    syn::parse2(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn parses_every_item_kind() {
        let def = parse(quote! {
            config { queue_capacity: 64, backpressure: Block }
            source s: u32 = IterSource::new(0..10u32);
            stage double = map(|x: u32| x * 2);
            sink out = CollectSink::new();
            s -> double =>[capacity = 16, backpressure = DropOldest] out;
        })
        .expect("parses");
        assert_eq!(def.configs.len(), 1);
        assert_eq!(def.configs[0].entries.len(), 2);
        assert_eq!(
            def.nodes
                .iter()
                .map(|n| (n.kind, n.name.to_string()))
                .collect::<Vec<_>>(),
            [
                (NodeKind::Source, "s".to_string()),
                (NodeKind::Stage, "double".to_string()),
                (NodeKind::Sink, "out".to_string())
            ]
        );
        assert!(def.nodes[0].ty.is_some());
        let path = &def.paths[0];
        assert_eq!(path.first, "s");
        assert!(matches!(path.hops[0].arrow, Arrow::Fused));
        assert!(matches!(&path.hops[1].arrow, Arrow::Queue(s) if s.len() == 2));
        assert_eq!(path.hops[1].target, "out");
    }

    #[test]
    fn syntax_errors_say_what_was_expected() {
        let err = parse(quote! { source s = 1 }).expect_err("missing semicolon");
        assert_eq!(
            err.to_string(),
            "unexpected end of input, expected `;` after the expression of `s`"
        );
        let err = parse(quote! { a ->[capacity = 1] b; }).expect_err("settings on ->");
        assert!(
            err.to_string()
                .starts_with("settings go on thread boundaries only")
        );
        let err = parse(quote! { a b; }).expect_err("no arrow");
        assert!(
            err.to_string()
                .starts_with("expected `->` or `=>` after `a`")
        );
    }
}
