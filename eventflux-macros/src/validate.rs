//! Checks a parsed pipeline and builds its graph, collecting every error (not just the first).
//!
//! Everything here is about names and structure — the macro has no type information. Type
//! errors are left to rustc, at spans chosen by `codegen`.

use std::collections::{BTreeMap, BTreeSet};

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Lit, Type};

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::parse::{Arrow, NodeKind, PipelineDef, Setting};

/// Defaults of the runtime's `PipelineConfig` (kept equal by a test in the facade crate).
pub const DEFAULT_QUEUE_CAPACITY: u64 = 65_536;
pub const DEFAULT_BATCH_SIZE: u64 = 1024;
const MAX_QUEUE_CAPACITY: u64 = 1 << 28;
const MAX_BATCH_SIZE: u64 = 1 << 20;
/// Most batches one queue holds (the runtime's `MAX_QUEUE_SLOTS`).
const MAX_QUEUE_SLOTS: u64 = 1 << 16;
/// Most workers of a keyed edge: the runtime's `KEY_GROUPS` (each worker owns a key group).
const MAX_WORKERS: u64 = 128;
const BACKPRESSURE: [&str; 4] = ["Block", "DropOldest", "DropNewest", "Unbounded"];
const CONFIG_KEYS: [&str; 9] = [
    "queue_capacity",
    "batch_size",
    "backpressure",
    "metrics",
    "stage_metrics",
    "stop_timeout_ms",
    "checkpoint_interval_ms",
    "checkpoints_kept",
    "checkpoint_full_every",
];
const EDGE_KEYS: [&str; 6] = [
    "capacity",
    "batch_size",
    "backpressure",
    "workers",
    "key",
    "key_groups",
];

/// The validated `config { .. }` block.
#[derive(Debug, Default)]
pub struct Config {
    pub queue_capacity: Option<u64>,
    pub batch_size: Option<u64>,
    pub backpressure: Option<Ident>,
    pub metrics: Option<bool>,
    pub stage_metrics: Option<bool>,
    pub stop_timeout_ms: Option<u64>,
    pub checkpoint_interval_ms: Option<u64>,
    pub checkpoints_kept: Option<u64>,
    pub checkpoint_full_every: Option<u64>,
}

impl Config {
    pub fn effective_capacity(&self) -> u64 {
        self.queue_capacity.unwrap_or(DEFAULT_QUEUE_CAPACITY)
    }
    pub fn effective_batch(&self) -> u64 {
        self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE)
    }
}

/// A declared node.
#[derive(Debug)]
pub struct Node {
    pub kind: NodeKind,
    pub name: Ident,
    pub ty: Option<Type>,
    pub expr: Expr,
}

/// Settings of a `=>` edge.
#[derive(Debug, Clone, Default)]
pub struct QueueSpec {
    pub capacity: Option<u64>,
    pub batch_size: Option<u64>,
    pub backpressure: Option<Ident>,
    pub workers: Option<u64>,
    pub key: Option<Expr>,
    /// Key groups of a keyed edge (the runtime's default when `None`).
    pub key_groups: Option<u64>,
}

impl QueueSpec {
    /// The settings in force on this queue (edge settings over the `config` block over the
    /// runtime's defaults), for the graph's labels.
    pub fn effective_label(&self, config: &Config) -> String {
        let mut label = format!(
            "capacity = {}, batch_size = {}, backpressure = {}",
            self.capacity.unwrap_or(config.effective_capacity()),
            self.batch_size.unwrap_or(config.effective_batch()),
            self.backpressure
                .as_ref()
                .or(config.backpressure.as_ref())
                .map_or_else(|| "Block".to_string(), Ident::to_string)
        );
        if let Some(w) = self.workers {
            label.push_str(&format!(
                ", workers = {w}, keyed, key_groups = {}",
                self.key_groups.unwrap_or(MAX_WORKERS)
            ));
        }
        label
    }

    /// The settings as written, for comparing the edges of a fan-in.
    pub fn label(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = self.capacity {
            parts.push(format!("capacity = {c}"));
        }
        if let Some(b) = self.batch_size {
            parts.push(format!("batch_size = {b}"));
        }
        if let Some(b) = &self.backpressure {
            parts.push(format!("backpressure = {b}"));
        }
        if let Some(w) = self.workers {
            parts.push(format!("workers = {w}"));
        }
        if self.key.is_some() {
            parts.push("keyed".to_string());
        }
        if let Some(g) = self.key_groups {
            parts.push(format!("key_groups = {g}"));
        }
        parts.join(", ")
    }
}

/// An edge between two declared nodes.
#[derive(Debug)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    /// The arrow's span (type errors of the edge land here).
    pub span: Span,
    /// The target name's span as written in this edge.
    pub target_span: Span,
    /// `None` for `->`, the settings for `=>`.
    pub queue: Option<QueueSpec>,
}

/// A validated pipeline graph.
#[derive(Debug)]
pub struct Graph {
    pub config: Config,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

impl Graph {
    pub fn outgoing(&self, node: usize) -> impl Iterator<Item = (usize, &Edge)> {
        self.edges
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.from == node)
    }
    /// Nodes fused after `root` (reached through `->` only), root included, in index order.
    pub fn fused_members(&self, root: usize) -> Vec<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![root];
        while let Some(n) = stack.pop() {
            if seen.insert(n) {
                stack.extend(
                    self.outgoing(n)
                        .filter(|(_, e)| e.queue.is_none())
                        .map(|(_, e)| e.to),
                );
            }
        }
        seen.into_iter().collect()
    }

    pub fn incoming(&self, node: usize) -> impl Iterator<Item = (usize, &Edge)> {
        self.edges
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.to == node)
    }
}

fn int(value: &Expr, what: &str) -> Result<u64, Diagnostic> {
    match value {
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => i.base10_parse::<u64>().map_err(|_| {
                Diagnostic::new(value.span(), format!("`{what}` must be a whole number"))
            }),
            _ => Err(Diagnostic::new(
                value.span(),
                format!("`{what}` must be a whole number literal, such as `{what}: 1024`"),
            )),
        },
        _ => Err(Diagnostic::new(
            value.span(),
            format!(
                "`{what}` must be a whole number literal (it is checked at compile time), \
                 such as `1024`"
            ),
        )),
    }
}

fn in_range(value: &Expr, what: &str, low: u64, high: u64) -> Result<u64, Diagnostic> {
    let v = int(value, what)?;
    if v < low || v > high {
        return Err(Diagnostic::new(
            value.span(),
            format!("`{what}` must be between {low} and {high}, but it is {v}"),
        ));
    }
    Ok(v)
}

fn boolean(value: &Expr, what: &str) -> Result<bool, Diagnostic> {
    match value {
        Expr::Lit(l) => match &l.lit {
            Lit::Bool(b) => Ok(b.value),
            _ => Err(Diagnostic::new(
                value.span(),
                format!("`{what}` must be `true` or `false`"),
            )),
        },
        _ => Err(Diagnostic::new(
            value.span(),
            format!("`{what}` must be `true` or `false`"),
        )),
    }
}

fn backpressure(value: &Expr) -> Result<Ident, Diagnostic> {
    let ident = match value {
        Expr::Path(p) => p.path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    };
    match ident {
        Some(i) if BACKPRESSURE.contains(&i.to_string().as_str()) => Ok(i),
        Some(i) => {
            let hint = did_you_mean(&i.to_string(), BACKPRESSURE)
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            Err(Diagnostic::new(
                value.span(),
                format!(
                    "unknown backpressure strategy `{i}`; {hint}expected one of: {}",
                    BACKPRESSURE.join(", ")
                ),
            ))
        }
        None => Err(Diagnostic::new(
            value.span(),
            format!("backpressure must be one of: {}", BACKPRESSURE.join(", ")),
        )),
    }
}

fn unknown_key(key: &Ident, known: &[&str], place: &str) -> Diagnostic {
    let hint = did_you_mean(&key.to_string(), known.iter().copied())
        .map(|s| format!("did you mean `{s}`? "))
        .unwrap_or_default();
    Diagnostic::new(
        key.span(),
        format!(
            "unknown {place} `{key}`; {hint}expected one of: {}",
            known.join(", ")
        ),
    )
}

fn duplicate_keys<'a>(settings: &'a [Setting], errors: &mut Vec<Diagnostic>) -> Vec<&'a Setting> {
    let mut seen = BTreeSet::new();
    let mut unique = Vec::new();
    for s in settings {
        if seen.insert(s.key.to_string()) {
            unique.push(s);
        } else {
            errors.push(Diagnostic::new(
                s.key.span(),
                format!("`{}` is set twice; keep one", s.key),
            ));
        }
    }
    unique
}

fn config(def: &PipelineDef, errors: &mut Vec<Diagnostic>) -> Config {
    let mut c = Config::default();
    for extra in def.configs.iter().skip(1) {
        errors.push(Diagnostic::new(
            extra.keyword.span(),
            "only one `config { .. }` block is allowed; merge them",
        ));
    }
    let Some(block) = def.configs.first() else {
        return c;
    };
    let mut record = |r: Result<(), Diagnostic>| {
        if let Err(d) = r {
            errors.push(d);
        }
    };
    let mut local = Vec::new();
    let entries = duplicate_keys(&block.entries, &mut local);
    for s in entries {
        let v = &s.value;
        record(match s.key.to_string().as_str() {
            "queue_capacity" => in_range(v, "queue_capacity", 1, MAX_QUEUE_CAPACITY)
                .map(|x| c.queue_capacity = Some(x)),
            "batch_size" => {
                in_range(v, "batch_size", 1, MAX_BATCH_SIZE).map(|x| c.batch_size = Some(x))
            }
            "backpressure" => backpressure(v).map(|x| c.backpressure = Some(x)),
            "metrics" => boolean(v, "metrics").map(|x| c.metrics = Some(x)),
            "stage_metrics" => boolean(v, "stage_metrics").map(|x| c.stage_metrics = Some(x)),
            "stop_timeout_ms" => {
                in_range(v, "stop_timeout_ms", 1, 3_600_000).map(|x| c.stop_timeout_ms = Some(x))
            }
            "checkpoint_interval_ms" => in_range(v, "checkpoint_interval_ms", 1, 86_400_000)
                .map(|x| c.checkpoint_interval_ms = Some(x)),
            "checkpoints_kept" => {
                in_range(v, "checkpoints_kept", 1, 1000).map(|x| c.checkpoints_kept = Some(x))
            }
            "checkpoint_full_every" => in_range(v, "checkpoint_full_every", 1, 1000)
                .map(|x| c.checkpoint_full_every = Some(x)),
            _ => Err(unknown_key(&s.key, &CONFIG_KEYS, "config key")),
        });
    }
    errors.extend(local);
    if c.effective_batch() > c.effective_capacity() {
        let span = block
            .entries
            .iter()
            .find(|s| s.key == "batch_size" || s.key == "queue_capacity")
            .map_or(block.keyword.span(), |s| s.key.span());
        errors.push(Diagnostic::new(
            span,
            format!(
                "`batch_size` ({}) must not exceed `queue_capacity` ({}): a queue holds at least \
                 one batch; lower the batch size or raise the capacity",
                c.effective_batch(),
                c.effective_capacity()
            ),
        ));
    } else if let Some(msg) = too_many_slots(c.effective_capacity(), c.effective_batch()) {
        let span = block
            .entries
            .iter()
            .find(|s| s.key == "batch_size" || s.key == "queue_capacity")
            .map_or(block.keyword.span(), |s| s.key.span());
        errors.push(Diagnostic::new(span, msg));
    }
    c
}

/// A queue allocates one slot per batch up front; more than `MAX_QUEUE_SLOTS` cannot be meant.
fn too_many_slots(capacity: u64, batch: u64) -> Option<String> {
    let slots = capacity.div_ceil(batch.max(1));
    (slots > MAX_QUEUE_SLOTS).then(|| {
        format!(
            "a queue of {capacity} events in batches of {batch} needs {slots} batch slots, but a \
             queue holds at most {MAX_QUEUE_SLOTS}: raise `batch_size` to at least {} or lower the capacity",
            capacity.div_ceil(MAX_QUEUE_SLOTS)
        )
    })
}

fn edge_settings(
    settings: &[Setting],
    config: &Config,
    errors: &mut Vec<Diagnostic>,
    arrow: Span,
) -> QueueSpec {
    let mut q = QueueSpec::default();
    let mut record = |r: Result<(), Diagnostic>| {
        if let Err(d) = r {
            errors.push(d);
        }
    };
    let mut local = Vec::new();
    let unique = duplicate_keys(settings, &mut local);
    let mut key_span = None;
    let mut workers_span = None;
    let mut groups_span = None;
    for s in unique {
        let v = &s.value;
        record(match s.key.to_string().as_str() {
            "capacity" => {
                in_range(v, "capacity", 1, MAX_QUEUE_CAPACITY).map(|x| q.capacity = Some(x))
            }
            "batch_size" => {
                in_range(v, "batch_size", 1, MAX_BATCH_SIZE).map(|x| q.batch_size = Some(x))
            }
            "backpressure" => backpressure(v).map(|x| q.backpressure = Some(x)),
            "workers" => {
                workers_span = Some(s.key.span());
                in_range(v, "workers", 1, MAX_WORKERS)
                    .map_err(|d| {
                        Diagnostic::new(
                            d.span,
                            format!(
                                "{}: keyed state is kept in key groups (at most {MAX_WORKERS}), \
                                 and each worker owns at least one",
                                d.message
                            ),
                        )
                    })
                    .map(|x| q.workers = Some(x))
            }
            "key" => {
                key_span = Some(s.key.span());
                q.key = Some(v.clone());
                Ok(())
            }
            "key_groups" => {
                groups_span = Some(v.span());
                in_range(v, "key_groups", 1, MAX_WORKERS).map(|x| q.key_groups = Some(x))
            }
            _ => Err(unknown_key(&s.key, &EDGE_KEYS, "edge setting")),
        });
    }
    errors.extend(local);
    if let Some(span) = groups_span {
        match (q.workers, q.key_groups) {
            (None, _) => errors.push(Diagnostic::new(
                span,
                "`key_groups` divides the keys of a parallel edge, but this edge has none: add \
                 `workers = N` and `key = |event| ..`",
            )),
            (Some(w), Some(g)) if g < w => errors.push(Diagnostic::new(
                span,
                format!(
                    "`key_groups` must be at least `workers` ({w}), but it is {g}: each worker \
                     owns at least one key group"
                ),
            )),
            _ => {}
        }
    }
    if workers_span.is_some() && key_span.is_none() {
        errors.push(Diagnostic::new(
            workers_span.unwrap_or(arrow),
            "a parallel edge needs a key to route events: add `key = |event| ..` (events with \
             the same key go to the same worker, so per-key order is kept)",
        ));
    }
    if let (Some(span), None) = (key_span, workers_span) {
        errors.push(Diagnostic::new(
            span,
            "`key` routes events among workers, but this edge has none: add `workers = N`",
        ));
    }
    let capacity = q.capacity.unwrap_or(config.effective_capacity());
    let batch = q.batch_size.unwrap_or(config.effective_batch());
    // With neither set on the edge, the `config` check already covers the pipeline's values.
    if (q.capacity.is_some() || q.batch_size.is_some()) && batch > capacity {
        errors.push(Diagnostic::new(
            arrow,
            format!(
                "this queue's batch size ({batch}) exceeds its capacity ({capacity}); a queue \
                 holds at least one batch: raise `capacity` or lower `batch_size`"
            ),
        ));
    } else if (q.capacity.is_some() || q.batch_size.is_some())
        && let Some(msg) = too_many_slots(capacity, batch)
    {
        errors.push(Diagnostic::new(arrow, msg));
    }
    q
}

/// Validates `def`; returns the graph or every error found.
pub fn validate(def: PipelineDef) -> Result<Graph, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let config = config(&def, &mut errors);

    if def.nodes.is_empty() && def.paths.is_empty() {
        errors.push(Diagnostic::new(
            Span::call_site(),
            "empty pipeline: declare at least a source, a sink and an edge, e.g. \
             `source s = IterSource::new(data); sink out = CollectSink::new(); s -> out;`",
        ));
        return Err(errors);
    }

    // Names.
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut nodes = Vec::new();
    for n in def.nodes {
        let name = n.name.to_string();
        if let Some(&first) = index.get(&name) {
            let first: &Node = &nodes[first];
            errors.push(Diagnostic::new(
                first.name.span(),
                format!(
                    "node `{name}` is declared more than once (first here); rename one of them"
                ),
            ));
            errors.push(Diagnostic::new(
                n.name.span(),
                format!("node `{name}` is declared again here; node names must be unique"),
            ));
            continue;
        }
        index.insert(name, nodes.len());
        nodes.push(Node {
            kind: n.kind,
            name: n.name,
            ty: n.ty,
            expr: n.expr,
        });
    }
    let names: Vec<String> = nodes.iter().map(|n| n.name.to_string()).collect();
    // Nodes offered as "did you mean": their missing connections are the typo's fault.
    let suggested: std::cell::RefCell<BTreeSet<usize>> = std::cell::RefCell::new(BTreeSet::new());
    let resolve = |ident: &Ident, errors: &mut Vec<Diagnostic>| -> Option<usize> {
        let name = ident.to_string();
        if let Some(&i) = index.get(&name) {
            return Some(i);
        }
        let guess = did_you_mean(&name, names.iter().map(String::as_str));
        if let Some(&i) = guess.and_then(|g| index.get(g)) {
            suggested.borrow_mut().insert(i);
        }
        let hint = guess
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        errors.push(Diagnostic::new(
            ident.span(),
            format!(
                "unknown node `{name}`; {hint}declare it with `source`, `stage` or `sink`, \
                 e.g. `stage {name} = ..;`"
            ),
        ));
        None
    };

    // Edges. Nodes on a path with a broken hop are "tainted": their usage is not reported, as
    // it would only repeat the error at the hop.
    let mut edges: Vec<Edge> = Vec::new();
    let mut tainted: BTreeSet<usize> = BTreeSet::new();
    for path in &def.paths {
        let errors_before = errors.len();
        let mut on_path = Vec::new();
        let mut from = resolve(&path.first, &mut errors);
        let mut from_ident = &path.first;
        for hop in &path.hops {
            let to = resolve(&hop.target, &mut errors);
            on_path.extend(from);
            on_path.extend(to);
            let queue = match &hop.arrow {
                Arrow::Fused => None,
                Arrow::Queue(settings) => {
                    Some(edge_settings(settings, &config, &mut errors, hop.span))
                }
            };
            if let (Some(f), Some(t)) = (from, to) {
                let mut ok = true;
                if nodes[f].kind == NodeKind::Sink {
                    ok = false;
                    errors.push(Diagnostic::new(
                        from_ident.span(),
                        format!(
                            "`{}` is a sink, so it has no output to connect; edges start at \
                             sources and stages",
                            nodes[f].name
                        ),
                    ));
                }
                if nodes[t].kind == NodeKind::Source {
                    ok = false;
                    errors.push(Diagnostic::new(
                        hop.target.span(),
                        format!(
                            "`{}` is a source, so nothing can send events into it; connect a \
                             stage or a sink here",
                            nodes[t].name
                        ),
                    ));
                }
                if let Some(prev) = edges.iter().find(|e| e.from == f && e.to == t) {
                    let _ = prev;
                    ok = false;
                    errors.push(Diagnostic::new(
                        hop.target.span(),
                        format!(
                            "duplicate edge `{} -> {}`: these nodes are already connected; \
                             remove one of the edges",
                            nodes[f].name, nodes[t].name
                        ),
                    ));
                }
                if ok {
                    edges.push(Edge {
                        from: f,
                        to: t,
                        span: hop.span,
                        target_span: hop.target.span(),
                        queue,
                    });
                }
            }
            from = to;
            from_ident = &hop.target;
        }
        if errors.len() > errors_before {
            tainted.extend(on_path);
        }
    }

    tainted.extend(suggested.into_inner());
    let graph = Graph {
        config,
        nodes,
        edges,
    };
    structure(&graph, &tainted, &mut errors);
    if errors.is_empty() {
        Ok(graph)
    } else {
        Err(errors)
    }
}

/// Fan-in rules, usage, reachability and cycles.
fn structure(g: &Graph, tainted: &BTreeSet<usize>, errors: &mut Vec<Diagnostic>) {
    // Cycles first (each reported once, naming every node on it): a node on a cycle has an
    // input from the cycle, and its fan-in rules would only restate the cycle.
    let on_cycle = cycles(g, errors);
    keyed_sinks(g, errors);
    for (i, n) in g.nodes.iter().enumerate() {
        let inputs: Vec<&Edge> = g.incoming(i).map(|(_, e)| e).collect();
        let outputs = g.outgoing(i).count();
        if inputs.len() > 1 && !on_cycle[i] {
            for e in inputs.iter().filter(|e| e.queue.is_none()) {
                errors.push(Diagnostic::new(
                    e.span,
                    format!(
                        "`{}` has {} inputs; fan-in merges streams from several threads, so \
                         every edge into `{}` must be `=>`, not `->`",
                        n.name,
                        inputs.len(),
                        n.name
                    ),
                ));
            }
            let labels: BTreeSet<String> = inputs
                .iter()
                .filter_map(|e| e.queue.as_ref().map(QueueSpec::label))
                .collect();
            if labels.len() > 1 {
                errors.push(Diagnostic::new(
                    inputs[1].span,
                    format!(
                        "the `=>` edges into `{}` share one queue, so their settings must be \
                         the same (found: {})",
                        n.name,
                        labels
                            .into_iter()
                            .map(|l| format!("[{l}]"))
                            .collect::<Vec<_>>()
                            .join(" and ")
                    ),
                ));
            }
            if inputs
                .iter()
                .any(|e| e.queue.as_ref().is_some_and(|q| q.workers.is_some()))
            {
                errors.push(Diagnostic::new(
                    inputs[0].target_span,
                    format!(
                        "a parallel (`workers = N`) edge must be the only input of `{}`; merge \
                         the streams in a stage before it",
                        n.name
                    ),
                ));
            }
        }
        if tainted.contains(&i) {
            continue;
        }
        match n.kind {
            NodeKind::Source if outputs == 0 => errors.push(Diagnostic::new(
                n.name.span(),
                format!("source `{}` is never used; connect it, e.g. `{} -> some_stage;`, or remove it", n.name, n.name),
            )),
            NodeKind::Stage if inputs.is_empty() => errors.push(Diagnostic::new(
                n.name.span(),
                format!("stage `{}` is never fed; connect an upstream node, e.g. `some_source -> {};`", n.name, n.name),
            )),
            NodeKind::Stage if outputs == 0 => errors.push(Diagnostic::new(
                n.name.span(),
                format!("the output of stage `{}` goes nowhere; connect it to a stage or a sink, e.g. `{} -> some_sink;`", n.name, n.name),
            )),
            NodeKind::Sink if inputs.is_empty() => errors.push(Diagnostic::new(
                n.name.span(),
                format!("sink `{}` is not reachable from any source; connect it, e.g. `some_stage -> {};`", n.name, n.name),
            )),
            _ => {}
        }
    }
    if !g.nodes.iter().any(|n| n.kind == NodeKind::Source) {
        errors.push(Diagnostic::new(
            Span::call_site(),
            "this pipeline has no source; declare one, e.g. `source s = IterSource::new(data);`",
        ));
    }

    // Reachability from sources, for nodes that do have inputs.
    let mut reached = vec![false; g.nodes.len()];
    let mut stack: Vec<usize> = (0..g.nodes.len())
        .filter(|&i| g.nodes[i].kind == NodeKind::Source)
        .collect();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut reached[i], true) {
            continue;
        }
        stack.extend(g.outgoing(i).map(|(_, e)| e.to));
    }
    for (i, n) in g.nodes.iter().enumerate() {
        if !reached[i] && !on_cycle[i] && !tainted.contains(&i) && g.incoming(i).next().is_some() {
            errors.push(Diagnostic::new(
                n.name.span(),
                format!("`{}` is not reachable from any source; every path into it starts at a node that is never fed", n.name),
            ));
        }
    }
}

/// Whether a sink expression is `per_worker(..)`: one sink per worker of a keyed segment, made
/// by the user's factory (the opt-in for sinks inside a parallel segment).
pub fn is_per_worker(expr: &Expr) -> bool {
    match expr {
        Expr::Call(call) => matches!(&*call.func, Expr::Path(p)
            if p.path.segments.last().is_some_and(|s| s.ident == "per_worker")),
        _ => false,
    }
}

/// A sink fused into a keyed parallel segment would be instantiated once per worker (each
/// opening, say, the same file): rejected unless the user asks for one sink per worker.
fn keyed_sinks(g: &Graph, errors: &mut Vec<Diagnostic>) {
    let mut parallel = BTreeSet::new();
    for e in &g.edges {
        let Some(workers) = e.queue.as_ref().and_then(|q| q.workers) else {
            continue;
        };
        for n in g.fused_members(e.to) {
            parallel.insert(n);
            let sink = &g.nodes[n];
            if sink.kind == NodeKind::Sink && !is_per_worker(&sink.expr) {
                // Where the sink is named on the edge that puts it in the parallel segment.
                let span = if n == e.to {
                    e.target_span
                } else {
                    g.incoming(n)
                        .find(|(_, i)| i.queue.is_none())
                        .map_or(sink.name.span(), |(_, i)| i.target_span)
                };
                errors.push(Diagnostic::new(
                    span,
                    format!(
                        "sink `{name}` is fused into the parallel segment after \
                             `=>[workers = {workers}, ..]`, so each of the {workers} workers \
                             would run its own `{name}` (a file sink would be opened and \
                             truncated by every worker); put a plain `=>` (without `workers`) \
                             before `{name}` so the workers merge into one sink, or declare one sink per worker with \
                             `sink {name} = per_worker(|worker| ..);`",
                        name = sink.name
                    ),
                ));
            }
        }
    }
    for (i, n) in g.nodes.iter().enumerate() {
        if n.kind == NodeKind::Sink && is_per_worker(&n.expr) && !parallel.contains(&i) {
            errors.push(Diagnostic::new(
                n.expr.span(),
                format!(
                    "`per_worker` makes one sink per worker of a parallel segment, but `{}` is \
                     not in one; declare the sink itself (without `per_worker`), or fuse it \
                     after a `=>[workers = N, key = ..]` edge with `->`",
                    n.name
                ),
            ));
        }
    }
}

fn cycles(g: &Graph, errors: &mut Vec<Diagnostic>) -> Vec<bool> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        g: &Graph,
        i: usize,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
        found: &mut Vec<Vec<usize>>,
    ) {
        marks[i] = Mark::Active;
        path.push(i);
        let next: Vec<usize> = g.outgoing(i).map(|(_, e)| e.to).collect();
        for t in next {
            match marks[t] {
                Mark::New => visit(g, t, marks, path, found),
                Mark::Active => {
                    if let Some(pos) = path.iter().position(|&p| p == t) {
                        found.push(path[pos..].to_vec());
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks[i] = Mark::Done;
    }
    let mut marks = vec![Mark::New; g.nodes.len()];
    let mut found = Vec::new();
    for i in 0..g.nodes.len() {
        if marks[i] == Mark::New {
            visit(g, i, &mut marks, &mut Vec::new(), &mut found);
        }
    }
    let mut on_cycle = vec![false; g.nodes.len()];
    for cycle in found {
        for &i in &cycle {
            on_cycle[i] = true;
        }
        let mut names: Vec<String> = cycle.iter().map(|&i| g.nodes[i].name.to_string()).collect();
        names.push(names[0].clone());
        let closing = g
            .edges
            .iter()
            .find(|e| e.from == *cycle.last().unwrap_or(&cycle[0]) && e.to == cycle[0])
            .map_or(g.nodes[cycle[0]].name.span(), |e| e.target_span);
        errors.push(Diagnostic::new(
            closing,
            format!(
                "cycle: {}; a pipeline must be acyclic, so remove one of these edges",
                names.join(" -> ")
            ),
        ));
    }
    on_cycle
}
