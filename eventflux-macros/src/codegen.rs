//! Code generation: a validated graph becomes runtime segments built with static types.
//!
//! Every `->` run of stages becomes one `Chain` (inlined calls); each `=>` becomes an
//! `EventQueue`; each segment (a source or a queue's consumer plus everything fused after it)
//! runs on its own thread. Types flow through zero-sized markers (`Marker<T>` = "events of type
//! `T` leave here"), so every type check is made by a small helper call spanned at the user's
//! arrow or node — that is where rustc reports a mismatch.
//!
//! Generated names start with `__ef` and use mixed-site hygiene, so they can neither clash with
//! nor be referred to by user code.

use std::collections::BTreeSet;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::Ident;

use crate::parse::NodeKind;
use crate::validate::{Graph, QueueSpec, is_per_worker};

struct Gen<'g> {
    g: &'g Graph,
    counter: usize,
    stage_metrics: bool,
    /// Segment index of each node (for the graph description).
    segment_of: Vec<usize>,
    segments: Vec<(String, u64)>,
    /// Items (edge-check traits) declared at the top of the expansion.
    items: Vec<TokenStream>,
}

fn local(name: &Ident) -> Ident {
    Ident::new(&format!("__ef_node_{name}"), Span::mixed_site())
}

fn tx(name: &Ident) -> Ident {
    Ident::new(&format!("__ef_tx_{name}"), Span::mixed_site())
}

fn rx(name: &Ident) -> Ident {
    Ident::new(&format!("__ef_rx_{name}"), Span::mixed_site())
}

fn builder() -> Ident {
    Ident::new("__ef_b", Span::mixed_site())
}

/// Mixed-site hygiene reported at the user's `span`. Every token of a generated call gets the
/// same context, so rustc can attribute the whole call (and its errors) to that span.
fn ms(span: Span) -> Span {
    Span::mixed_site().located_at(span)
}

/// The same hygienic name, reported at `span`: used inside calls spanned at the user's tokens so
/// rustc's error points there rather than at the whole macro invocation.
fn at(ident: &Ident, span: Span) -> Ident {
    Ident::new(&ident.to_string(), Span::mixed_site().located_at(span))
}

impl<'g> Gen<'g> {
    fn fresh(&mut self, what: &str) -> Ident {
        self.counter += 1;
        Ident::new(&format!("__ef_{what}{}", self.counter), Span::mixed_site())
    }

    fn is_queue_fed(&self, n: usize) -> bool {
        self.g.incoming(n).any(|(_, e)| e.queue.is_some())
    }

    fn spec_into(&self, n: usize) -> Option<&'g QueueSpec> {
        self.g.incoming(n).find_map(|(_, e)| e.queue.as_ref())
    }

    fn keyed(&self, n: usize) -> Option<u64> {
        self.spec_into(n).and_then(|s| s.workers)
    }

    fn stage_expr(&self, n: usize, span: Span) -> TokenStream {
        let l = at(&local(&self.g.nodes[n].name), span);
        quote! { #l }
    }

    /// Wraps an already type-checked stage so its metrics, errors and panics carry its node
    /// name. Done after the edge check, so rustc's notes name the user's stage, not wrappers.
    ///
    /// With stage metrics, `upstream` is the stage fused right before this one when this one is
    /// its only successor: the edge between them is then counted once, by `upstream`. Returns
    /// the variable holding this stage's metrics (for the stage it feeds).
    fn wrap_stage(
        &mut self,
        n: usize,
        typed: &Ident,
        upstream: Option<&Ident>,
        out: &mut Vec<TokenStream>,
    ) -> Option<Ident> {
        let name = self.g.nodes[n].name.to_string();
        let b = builder();
        // The node's compile-time id (its index + 1): its panic guard holds a constant.
        let id = u32::try_from(n + 1).unwrap_or(0);
        if !self.stage_metrics {
            out.push(quote! {
                let #typed = ::eventflux::__private::named_stage::<_, _, #id>(#typed, &#b, #name);
            });
            return None;
        }
        match upstream {
            Some(up) => out.push(quote! {
                let #typed = ::eventflux::__private::metered_stage_after::<_, _, #id>(
                    #typed, &#b, #name, &#up);
            }),
            None => out.push(quote! {
                let #typed = ::eventflux::__private::metered_stage::<_, _, #id>(#typed, &#b, #name);
            }),
        }
        let metrics = self.fresh("metrics");
        out.push(quote! {
            let #metrics = ::eventflux::__private::stage_metrics_of(&#typed);
        });
        Some(metrics)
    }

    /// Asserts a stage's declared output type, if any.
    fn assert_type(&self, n: usize, marker: &Ident, out: &mut Vec<TokenStream>) {
        let node = &self.g.nodes[n];
        if let (NodeKind::Stage, Some(ty)) = (node.kind, &node.ty) {
            out.push(quote_spanned! {ms(syn::spanned::Spanned::span(ty))=>
                let _: ::eventflux::__private::Marker<#ty> = #marker;
            });
        }
    }

    /// A run of fused stages starting at `start` (fed through `arrow` with events of `marker`).
    /// Returns the typed chain, the last node and the marker of its output.
    ///
    /// `upstream`: the metrics that count what feeds `start` (a source's edge counter), if any.
    fn linear(
        &mut self,
        start: usize,
        marker: &Ident,
        (arrow, target): (Span, Span),
        upstream: Option<&Ident>,
        out: &mut Vec<TokenStream>,
    ) -> (Ident, usize, Ident) {
        let t = self.fresh("chain");
        let m = self.fresh("marker");
        let stage = self.stage_expr(start, target);
        let mk = at(marker, target);
        out.push(quote_spanned! {ms(arrow)=>
            let #t = ::eventflux::__private::edge_into_stage(&#mk, #stage);
        });
        // Spanned like the edge check above: the same obligation, reported once.
        let tt = at(&t, target);
        out.push(quote_spanned! {ms(target)=> let #m = ::eventflux::__private::marker_of(&#tt); });
        let mut metrics = self.wrap_stage(start, &t, upstream, out);
        self.assert_type(start, &m, out);
        let (mut chain, mut last, mut m) = (t, start, m);
        loop {
            let mut outs = self.g.outgoing(last);
            let (Some((_, e)), None) = (outs.next(), outs.next()) else {
                break;
            };
            if e.queue.is_some() || self.g.nodes[e.to].kind != NodeKind::Stage {
                break;
            }
            let next = e.to;
            let t2 = self.fresh("chain");
            let m2 = self.fresh("marker");
            let joined = self.fresh("chain");
            let stage = self.stage_expr(next, e.target_span);
            let mk = at(&m, e.target_span);
            out.push(quote_spanned! {ms(e.span)=>
                let #t2 = ::eventflux::__private::edge_into_stage(&#mk, #stage);
            });
            let tt = at(&t2, e.target_span);
            out.push(quote_spanned! {ms(e.target_span)=>
                let #m2 = ::eventflux::__private::marker_of(&#tt);
            });
            // `next` is `last`'s only successor: the edge is counted once, by `last`.
            metrics = self.wrap_stage(next, &t2, metrics.as_ref(), out);
            out.push(quote! {
                let #joined = ::eventflux::__private::chain(#chain, #t2);
            });
            self.assert_type(next, &m2, out);
            chain = joined;
            last = next;
            m = m2;
        }
        (chain, last, m)
    }

    /// A trait that holds when `from` sends the type `to` takes across a `=>`, with an error
    /// message in the user's terms (node names, sender's view); its two methods pass the queue's
    /// senders through unchanged when it holds.
    fn edge_check(&mut self, from: usize, to: usize) -> Ident {
        let (from, to) = (&self.g.nodes[from].name, &self.g.nodes[to].name);
        // Named in the user's terms: rustc's help line names the trait.
        let check = Ident::new(&format!("Edge_{from}_into_{to}"), Span::mixed_site());
        let message = format!("`{to}` takes events of type `{{E}}`, but `{from}` sends `{{Self}}`");
        let label = format!("`{from}` sends `{{Self}}` into `{to}` here");
        let note = format!(
            "every edge into `{to}` must carry the type `{to}` takes: convert the events with a \
             `map` stage before this arrow, or change what `{to}` takes"
        );
        self.items.push(quote_spanned! {Span::mixed_site()=>
            #[diagnostic::on_unimplemented(message = #message, label = #label, note = #note)]
            #[allow(non_camel_case_types)]
            trait #check<E>: ::core::marker::Sized {
                fn sender(tx: &::eventflux::__private::QueueSender<E>) -> &::eventflux::__private::QueueSender<Self>;
                fn senders(tx: &[::eventflux::__private::QueueSender<E>]) -> &[::eventflux::__private::QueueSender<Self>];
            }
            impl<T> #check<T> for T {
                fn sender(tx: &::eventflux::__private::QueueSender<T>) -> &::eventflux::__private::QueueSender<T> { tx }
                fn senders(tx: &[::eventflux::__private::QueueSender<T>]) -> &[::eventflux::__private::QueueSender<T>] { tx }
            }
        });
        check
    }

    /// The output that receives what `node` emits (events of `marker`).
    fn outputs(&mut self, node: usize, marker: &Ident, out: &mut Vec<TokenStream>) -> TokenStream {
        let edges: Vec<(usize, Span, Span, Option<QueueSpec>)> = self
            .g
            .outgoing(node)
            .map(|(_, e)| (e.to, e.span, e.target_span, e.queue.clone()))
            .collect();
        let b = builder();
        let mut branches = Vec::new();
        for (to, span, target_span, queue) in edges {
            let target = &self.g.nodes[to];
            let mk = at(marker, span);
            let branch = match queue {
                Some(spec) if spec.workers.is_some() => {
                    let txs = at(&tx(&target.name), span);
                    let check = at(&self.edge_check(node, to), span);
                    let key = spec
                        .key
                        .clone()
                        .map_or_else(|| quote!(|_: &_| 0u8), |k| quote!(#k));
                    let groups = key_groups(&spec);
                    quote_spanned! {ms(span)=>
                        ::eventflux::__private::keyed_edge_across_threads(&#mk, #key, #groups, #check::senders(&#txs))
                    }
                }
                Some(_) => {
                    let t = at(&tx(&target.name), span);
                    let check = at(&self.edge_check(node, to), span);
                    quote_spanned! {ms(span)=>
                        ::eventflux::__private::edge_across_threads(&#mk, #check::sender(&#t))
                    }
                }
                None if target.kind == NodeKind::Sink => {
                    let l = at(&local(&target.name), target_span);
                    let b = at(&b, target_span);
                    let name = target.name.to_string();
                    quote_spanned! {ms(span)=>
                        ::eventflux::__private::edge_into_sink(&#mk, #b.sink(#name, #l))
                    }
                }
                None => {
                    let (chain, last, m) = self.linear(to, marker, (span, target_span), None, out);
                    let rest = self.outputs(last, &m, out);
                    let chain = at(&chain, span);
                    quote_spanned! {ms(span)=> ::eventflux::__private::then_branch(#chain, #rest) }
                }
            };
            branches.push(branch);
        }
        let fan_span = self.g.nodes[node].name.span();
        let mut iter = branches.into_iter();
        let first = iter
            .next()
            .unwrap_or_else(|| quote!(::eventflux::__private::Discard));
        let mk = at(marker, fan_span);
        iter.fold(first, |acc, next| {
            quote_spanned! {ms(fan_span)=> ::eventflux::__private::fan_out_to_several_nodes(&#mk, #acc, #next) }
        })
    }

    /// Code that adds the segment rooted at `root` to the builder.
    fn segment(&mut self, root: usize, seg_index: usize, workers: Option<u64>) -> TokenStream {
        for n in self.g.fused_members(root) {
            self.segment_of[n] = seg_index;
        }
        let node = &self.g.nodes[root];
        let name = node.name.to_string();
        let b = builder();
        let mut out = Vec::new();
        let m0 = self.fresh("marker");
        let add = if node.kind == NodeKind::Source {
            let src = local(&node.name);
            out.push(quote! { let #m0 = ::eventflux::__private::source_marker(&#src); });
            let mut outs = self.g.outgoing(root);
            let single = match (outs.next(), outs.next()) {
                (Some((_, e)), None)
                    if e.queue.is_none() && self.g.nodes[e.to].kind == NodeKind::Stage =>
                {
                    Some((e.to, (e.span, e.target_span)))
                }
                _ => None,
            };
            let (chain, output) = match single {
                Some((start, span)) => {
                    // The source counts what it emits: the first stage's input, not counted
                    // again.
                    let edge = self.stage_metrics.then(|| {
                        let edge = self.fresh("edge");
                        out.push(quote! { let #edge = #b.source_edge(#name); });
                        edge
                    });
                    let (chain, last, m) = self.linear(start, &m0, span, edge.as_ref(), &mut out);
                    (chain, self.outputs(last, &m, &mut out))
                }
                None => {
                    let chain = self.fresh("chain");
                    out.push(quote! { let #chain = ::eventflux::__private::identity(&#m0); });
                    (chain.clone(), self.outputs(root, &m0, &mut out))
                }
            };
            let span = node.name.span();
            let (b, src, chain) = (at(&b, span), at(&src, span), at(&chain, span));
            quote_spanned! {ms(span)=>
                #b.add_source(#name, #src, ::eventflux::__private::into_stage(#chain), #output);
            }
        } else {
            let input = match workers {
                Some(_) => Ident::new("__ef_worker_rx", Span::mixed_site()),
                None => rx(&node.name),
            };
            out.push(quote! { let #m0 = ::eventflux::__private::queue_marker(&#input); });
            let (arrow, target) = self
                .g
                .incoming(root)
                .next()
                .map_or((node.name.span(), node.name.span()), |(_, e)| {
                    (e.span, e.target_span)
                });
            let (chain, output) = if node.kind == NodeKind::Sink {
                let chain = self.fresh("chain");
                let l = at(&local(&node.name), target);
                let (bb, mk) = (at(&b, target), at(&m0, target));
                out.push(quote! { let #chain = ::eventflux::__private::identity(&#m0); });
                let sink = quote_spanned! {ms(arrow)=>
                    ::eventflux::__private::edge_into_sink(&#mk, #bb.sink(#name, #l))
                };
                (chain, sink)
            } else if let Some(w) = workers {
                // One instance of the fused run per key group the worker owns.
                let mut inner = Vec::new();
                let (chain, last, m) = self.linear(root, &m0, (arrow, target), None, &mut inner);
                let evals: Vec<TokenStream> = self
                    .linear_members(root)
                    .into_iter()
                    .map(|n| self.eval(n))
                    .collect();
                let key = self
                    .spec_into(root)
                    .and_then(|s| s.key.clone())
                    .map_or_else(|| quote!(|_: &_| 0u8), |k| quote!(#k));
                let (groups, kg) = (self.fresh("groups"), self.fresh("chain"));
                let worker = Ident::new("__ef_worker", Span::mixed_site());
                let w = w as usize;
                let total = self
                    .spec_into(root)
                    .map_or_else(|| quote!(0usize), key_groups);
                out.push(quote! {
                    let mut #groups = ::std::vec::Vec::new();
                    for _ in ::eventflux::__private::key_groups_of(#worker, #w, #total) {
                        #(#evals)*
                        #(#inner)*
                        #groups.push(#chain);
                    }
                    let #kg = ::eventflux::__private::key_groups(&#m0, #key, (#worker, #w, #total), #groups);
                    let #m = ::eventflux::__private::marker_of(&#kg);
                });
                (kg, self.outputs(last, &m, &mut out))
            } else {
                let (chain, last, m) = self.linear(root, &m0, (arrow, target), None, &mut out);
                (chain, self.outputs(last, &m, &mut out))
            };
            let seg_name = match workers {
                Some(_) => {
                    let w = Ident::new("__ef_worker", Span::mixed_site());
                    quote! { &::std::format!("{}#{}", #name, #w) }
                }
                None => quote! { #name },
            };
            let (b, input, chain) = (at(&b, arrow), at(&input, arrow), at(&chain, arrow));
            quote_spanned! {ms(arrow)=>
                #b.add_queue_segment(#seg_name, #input, ::eventflux::__private::into_stage(#chain), #output);
            }
        };
        match workers {
            None => quote! { #(#out)* #add },
            Some(_) => {
                // Worker copies: the fused nodes are evaluated once per worker, here.
                let rxs = rx(&node.name);
                // The fused run after the queue is evaluated per key group, above.
                let per_group = self.linear_members(root);
                let evals: Vec<TokenStream> = self
                    .g
                    .fused_members(root)
                    .into_iter()
                    .filter(|n| !per_group.contains(n))
                    .map(|n| self.eval_in_worker(n))
                    .collect();
                let w = Ident::new("__ef_worker", Span::mixed_site());
                let wrx = Ident::new("__ef_worker_rx", Span::mixed_site());
                quote! {
                    for (#w, #wrx) in #rxs.into_iter().enumerate() {
                        #b.set_worker(::core::option::Option::Some(#w));
                        #(#evals)*
                        #(#out)*
                        #add
                    }
                    #b.set_worker(::core::option::Option::None);
                }
            }
        }
    }

    /// The stages of the fused run that starts at `root` (a queue's consumer), as
    /// [`linear`](Self::linear) chains them; empty for a sink.
    fn linear_members(&self, root: usize) -> Vec<usize> {
        let mut members = Vec::new();
        let mut at = root;
        while self.g.nodes[at].kind == NodeKind::Stage {
            members.push(at);
            let mut outs = self.g.outgoing(at);
            match (outs.next(), outs.next()) {
                (Some((_, e)), None) if e.queue.is_none() => at = e.to,
                _ => break,
            }
        }
        members
    }

    /// A node of a keyed segment, once per worker: its expression, or for a `per_worker(..)`
    /// sink (evaluated once, outside the workers) this worker's sink from its factory.
    fn eval_in_worker(&self, n: usize) -> TokenStream {
        let node = &self.g.nodes[n];
        if node.kind != NodeKind::Sink || !is_per_worker(&node.expr) {
            return self.eval(n);
        }
        let l = local(&node.name);
        let name = node.name.to_string();
        let w = Ident::new("__ef_worker", Span::mixed_site());
        quote_spanned! {ms(syn::spanned::Spanned::span(&node.expr))=>
            #[allow(unused_mut)]
            let mut #l = match ::eventflux::__private::worker_sink(&mut #l, #w, #name) {
                ::core::result::Result::Ok(s) => s,
                ::core::result::Result::Err(e) => break '__ef_build ::core::result::Result::Err(e),
            };
        }
    }

    /// `let __ef_node_x = <user expression>;` with the user's spans.
    fn eval(&self, n: usize) -> TokenStream {
        let node = &self.g.nodes[n];
        let l = local(&node.name);
        let expr = &node.expr;
        let check = match (node.kind, &node.ty) {
            (NodeKind::Source, Some(ty)) => quote_spanned! {ms(syn::spanned::Spanned::span(ty))=>
                ::eventflux::__private::assert_source_item::<#ty, _>(&#l);
            },
            (NodeKind::Sink, Some(ty)) => quote_spanned! {ms(syn::spanned::Spanned::span(ty))=>
                ::eventflux::__private::assert_sink_item::<#ty, _>(&#l);
            },
            _ => quote!(),
        };
        quote! {
            #[allow(unused_mut)]
            let mut #l = #expr;
            #check
        }
    }
}

/// A keyed edge's number of key groups: its `key_groups`, or the runtime's default.
fn key_groups(spec: &QueueSpec) -> TokenStream {
    match spec.key_groups {
        Some(g) => {
            let g = g as usize;
            quote!(#g)
        }
        None => quote!(::eventflux::__private::KEY_GROUPS),
    }
}

fn opt_u64(v: Option<u64>) -> TokenStream {
    match v {
        Some(x) => {
            let x = x as usize;
            quote!(::core::option::Option::Some(#x))
        }
        None => quote!(::core::option::Option::None),
    }
}

fn backpressure(i: &Option<Ident>) -> TokenStream {
    match i {
        Some(i) => {
            let i = Ident::new(&i.to_string(), i.span());
            quote!(::core::option::Option::Some(::eventflux::__private::Backpressure::#i))
        }
        None => quote!(::core::option::Option::None),
    }
}

/// Generates the expression a valid `pipeline!` expands to.
pub fn generate(g: &Graph) -> TokenStream {
    let c = &g.config;
    let mut cg = Gen {
        g,
        counter: 0,
        stage_metrics: c.stage_metrics.unwrap_or(c.metrics.unwrap_or(true)),
        segment_of: vec![0; g.nodes.len()],
        segments: Vec::new(),
        items: Vec::new(),
    };

    // Configuration.
    let mut cfg = vec![quote!(::eventflux::__private::PipelineConfig::builder())];
    if let Some(v) = c.queue_capacity {
        let v = v as usize;
        cfg.push(quote!(.queue_capacity(#v)));
    }
    if let Some(v) = c.batch_size {
        let v = v as usize;
        cfg.push(quote!(.batch_size(#v)));
    }
    if let Some(i) = &c.backpressure {
        let i = Ident::new(&i.to_string(), i.span());
        cfg.push(quote!(.backpressure(::eventflux::__private::Backpressure::#i)));
    }
    if let Some(v) = c.metrics {
        cfg.push(quote!(.metrics(#v)));
    }
    if let Some(v) = c.stop_timeout_ms {
        cfg.push(quote!(.stop_timeout(::core::time::Duration::from_millis(#v))));
    }
    if let Some(v) = c.checkpoint_interval_ms {
        cfg.push(quote!(.checkpoint_interval(::core::time::Duration::from_millis(#v))));
    }
    if let Some(v) = c.checkpoints_kept {
        let v = v as usize;
        cfg.push(quote!(.checkpoints_kept(#v)));
    }
    if let Some(v) = c.checkpoint_full_every {
        cfg.push(quote!(.checkpoint_full_every(#v)));
    }

    // Which nodes belong to keyed worker segments (evaluated per worker).
    let mut worker_nodes = BTreeSet::new();
    let roots: Vec<usize> = (0..g.nodes.len())
        .filter(|&n| g.nodes[n].kind == NodeKind::Source || cg.is_queue_fed(n))
        .collect();
    for &r in &roots {
        if cg.keyed(r).is_some() {
            // A `per_worker` sink is evaluated once; each worker calls its factory.
            worker_nodes.extend(cg.g.fused_members(r).into_iter().filter(|&n| {
                g.nodes[n].kind != NodeKind::Sink || !is_per_worker(&g.nodes[n].expr)
            }));
        }
    }
    let evals: Vec<TokenStream> = (0..g.nodes.len())
        .filter(|n| !worker_nodes.contains(n))
        .map(|n| cg.eval(n))
        .collect();

    // Queues.
    let b = builder();
    let mut queues = Vec::new();
    let mut drops = Vec::new();
    for &r in &roots {
        let Some(spec) = cg.spec_into(r) else {
            continue;
        };
        let node = &g.nodes[r];
        let name = node.name.to_string();
        let (t, x) = (tx(&node.name), rx(&node.name));
        let settings = {
            let cap = opt_u64(spec.capacity);
            let batch = opt_u64(spec.batch_size);
            let bp = backpressure(&spec.backpressure);
            quote! {
                ::eventflux::__private::QueueSettings { capacity: #cap, batch_size: #batch, backpressure: #bp }
            }
        };
        match spec.workers {
            None => queues.push(quote_spanned! {Span::mixed_site()=>
                let (#t, #x) = match #b.queue_with(#name, #settings) {
                    ::core::result::Result::Ok(q) => q,
                    ::core::result::Result::Err(e) => break '__ef_build ::core::result::Result::Err(e.into()),
                };
            }),
            Some(w) => {
                let w = w as usize;
                queues.push(quote_spanned! {Span::mixed_site()=>
                    let mut #t = ::std::vec::Vec::with_capacity(#w);
                    let mut #x = ::std::vec::Vec::with_capacity(#w);
                    for __ef_w in 0..#w {
                        match #b.queue_with(&::std::format!("{}#{}", #name, __ef_w), #settings) {
                            ::core::result::Result::Ok((t, r)) => { #t.push(t); #x.push(r); }
                            ::core::result::Result::Err(e) => break '__ef_build ::core::result::Result::Err(e.into()),
                        }
                    }
                });
            }
        }
        drops.push(quote! { ::eventflux::__private::release_unused_sender(#t); });
    }

    // The consumer of each queue states the queue's type first (when its own input type is
    // known), so a mismatched edge into it is reported at that edge, in the consumer's terms.
    let mut consumers = Vec::new();
    for &r in &roots {
        let node = &g.nodes[r];
        if node.kind == NodeKind::Source || cg.keyed(r).is_some() {
            continue;
        }
        let (x, l) = (rx(&node.name), local(&node.name));
        consumers.push(match node.kind {
            NodeKind::Sink => quote!(::eventflux::__private::queue_into_sink(&#x, &#l);),
            _ => quote!(::eventflux::__private::queue_into_stage(&#x, &#l);),
        });
    }

    // Segments.
    let mut segments = Vec::new();
    for &r in &roots {
        let idx = cg.segments.len();
        let workers = cg.keyed(r);
        cg.segments
            .push((g.nodes[r].name.to_string(), workers.unwrap_or(1)));
        segments.push(cg.segment(r, idx, workers));
    }

    // The graph description.
    let node_descs = g.nodes.iter().enumerate().map(|(i, n)| {
        let name = n.name.to_string();
        let kind = format_ident!(
            "{}",
            match n.kind {
                NodeKind::Source => "Source",
                NodeKind::Stage => "Stage",
                NodeKind::Sink => "Sink",
            }
        );
        let seg = cg.segment_of[i];
        quote!((#name, ::eventflux::__private::NodeKind::#kind, #seg))
    });
    let edge_descs = g.edges.iter().map(|e| {
        let from = g.nodes[e.from].name.to_string();
        let to = g.nodes[e.to].name.to_string();
        match &e.queue {
            None => quote!((#from, #to, ::core::option::Option::None)),
            Some(spec) => {
                let label = spec.effective_label(&g.config);
                quote!((#from, #to, ::core::option::Option::Some(#label)))
            }
        }
    });
    let seg_descs = cg.segments.iter().map(|(name, w)| {
        let w = *w as usize;
        quote!((#name, #w))
    });

    let items = &cg.items;
    quote_spanned! {Span::mixed_site()=> {
        #(#items)*
        #(#evals)*
        let __ef_config = #(#cfg)*.build();
        let __ef_graph = ::eventflux::__private::graph(
            &[#(#node_descs),*],
            &[#(#edge_descs),*],
            &[#(#seg_descs),*],
        );
        let __ef_result: ::core::result::Result<::eventflux::__private::Pipeline, ::eventflux::__private::PipelineError> = '__ef_build: {
            let __ef_config = match &__ef_config {
                ::core::result::Result::Ok(c) => ::core::clone::Clone::clone(c),
                ::core::result::Result::Err(e) => break '__ef_build ::core::result::Result::Err(::core::clone::Clone::clone(e).into()),
            };
            #[allow(unused_mut)]
            let mut #b = ::eventflux::__private::PipelineBuilder::new(__ef_config);
            #(#queues)*
            #(#consumers)*
            #(#segments)*
            #(#drops)*
            #b.build()
        };
        ::eventflux::__private::App::new(__ef_result, __ef_config.ok(), __ef_graph)
    }}
}
