//! Unit tests of the macro on `proc_macro2` token streams: diagnostics as data, and robustness
//! against truncated and garbled input.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::quote;

use crate::{expand, parse, validate};

/// The messages `validate` reports for `tokens`, in order.
fn errors(tokens: TokenStream) -> Vec<String> {
    match parse::parse(tokens) {
        Err(e) => vec![e.to_string()],
        Ok(def) => match validate::validate(def) {
            Ok(_) => Vec::new(),
            Err(ds) => ds.into_iter().map(|d| d.message).collect(),
        },
    }
}

#[test]
fn a_valid_graph_has_no_diagnostics() {
    let errs = errors(quote! {
        config { queue_capacity: 4096, batch_size: 256, backpressure: DropOldest, metrics: true }
        source trades = IterSource::new(feed);
        source more = IterSource::new(feed2);
        stage big = filter(|t: &Trade| t.volume > 100);
        stage value = map(|t: Trade| t.price);
        stage merged = inspect(|_: &f64| {});
        sink out = CollectSink::new();
        sink audit = CollectSink::new();
        trades -> big -> value => merged -> out;
        more => merged;
        big -> audit;
    });
    assert!(errs.is_empty(), "{errs:?}");
}

#[test]
fn every_error_is_collected_with_its_fix() {
    let errs = errors(quote! {
        config { queue_capacity: 0, bogus: 1 }
        source s = IterSource::new(0..1);
        stage a = map(|x: u8| x);
        stage lonely = map(|x: u8| x);
        sink out = CollectSink::new();
        s -> a -> out;
        s -> a;
        a =>[workers = 2] out;
    });
    assert_eq!(
        errs,
        [
            "`queue_capacity` must be between 1 and 268435456, but it is 0",
            "unknown config key `bogus`; expected one of: queue_capacity, batch_size, backpressure, metrics, stage_metrics, stop_timeout_ms, checkpoint_interval_ms, checkpoints_kept, checkpoint_full_every",
            "duplicate edge `s -> a`: these nodes are already connected; remove one of the edges",
            "a parallel edge needs a key to route events: add `key = |event| ..` (events with the same key go to the same worker, so per-key order is kept)",
            "duplicate edge `a -> out`: these nodes are already connected; remove one of the edges",
            "stage `lonely` is never fed; connect an upstream node, e.g. `some_source -> lonely;`",
        ]
    );
}

#[test]
fn cycles_name_every_node() {
    let errs = errors(quote! {
        source s = IterSource::new(0..1);
        stage a = map(|x: u8| x);
        stage b = map(|x: u8| x);
        stage c = map(|x: u8| x);
        sink out = CollectSink::new();
        s => a -> b -> c => a;
        c -> out;
    });
    assert_eq!(
        errs,
        ["cycle: a -> b -> c -> a; a pipeline must be acyclic, so remove one of these edges"]
    );
}

#[test]
fn empty_and_sourceless_pipelines() {
    assert_eq!(errors(quote! {}).len(), 1);
    assert!(errors(quote! {})[0].starts_with("empty pipeline"));
    let errs = errors(quote! { stage a = map(|x: u8| x); sink k = CollectSink::new(); a -> k; });
    assert!(
        errs.iter()
            .any(|e| e.starts_with("this pipeline has no source")),
        "{errs:?}"
    );
}

/// Flattens a token stream into lexable pieces, delimiters as separate pieces.
fn pieces(tokens: TokenStream, out: &mut Vec<String>) {
    for tt in tokens {
        match tt {
            TokenTree::Group(g) => {
                let (open, close) = match g.delimiter() {
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::None => ("", ""),
                };
                out.push(open.to_string());
                pieces(g.stream(), out);
                out.push(close.to_string());
            }
            TokenTree::Punct(p) => out.push(p.as_char().to_string()),
            other => out.push(other.to_string()),
        }
    }
}

fn sample() -> Vec<String> {
    let mut out = Vec::new();
    pieces(
        quote! {
            config { queue_capacity: 4096, batch_size: 256, backpressure: Block }
            source trades: Trade = IterSource::new(feed);
            stage big = filter(|t: &Trade| t.volume > 100);
            stage value = map(|t: Trade| (t.symbol, t.price * t.volume as f64));
            sink out = CollectSink::new();
            sink audit = CollectSink::new();
            trades -> big -> value =>[capacity = 1024, workers = 2, key = |v: &(u32, f64)| v.0] out;
            big -> audit;
        },
        &mut out,
    );
    out
}

/// Feeds `expand` one variant; variants that do not even lex are skipped (rustc would reject
/// them before the macro runs).
fn must_not_panic(pieces: &[String]) -> bool {
    let text = pieces.join(" ");
    let Ok(tokens) = text.parse::<TokenStream>() else {
        return false;
    };
    let result = std::panic::catch_unwind(|| expand(tokens));
    assert!(result.is_ok(), "expand panicked on: {text}");
    true
}

#[test]
fn truncated_and_garbled_input_never_panics() {
    let base = sample();
    let mut fed = 0;
    // Every truncation.
    for n in 0..=base.len() {
        fed += usize::from(must_not_panic(&base[..n]));
    }
    // Every single deletion, duplication and adjacent swap.
    for i in 0..base.len() {
        let mut v = base.clone();
        v.remove(i);
        fed += usize::from(must_not_panic(&v));
        let mut v = base.clone();
        v.insert(i, base[i].clone());
        fed += usize::from(must_not_panic(&v));
        if i + 1 < base.len() {
            let mut v = base.clone();
            v.swap(i, i + 1);
            fed += usize::from(must_not_panic(&v));
        }
    }
    // Pseudo-random multi-point mutations, including foreign tokens.
    let alphabet = [
        "->", "=>", ";", ":", "=", ",", "source", "stage", "sink", "config", "x", "0", "[", "]",
        "{", "}", "(", ")", "|", "&",
    ];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |m: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % m as u64) as usize
    };
    for _ in 0..8000 {
        let mut v = base.clone();
        for _ in 0..1 + next(4) {
            let i = next(v.len().max(1));
            match next(3) {
                0 if !v.is_empty() => {
                    v.remove(i.min(v.len() - 1));
                }
                1 => v.insert(i.min(v.len()), alphabet[next(alphabet.len())].to_string()),
                _ if !v.is_empty() => {
                    let j = next(v.len());
                    let k = i.min(v.len() - 1);
                    v.swap(k, j);
                }
                _ => {}
            }
        }
        fed += usize::from(must_not_panic(&v));
    }
    eprintln!("fed {fed} variants");
    assert!(fed > 5000, "only {fed} variants lexed");
}
