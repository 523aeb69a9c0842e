//! A description of a built pipeline: nodes, edges, and the fused segments (threads) they run
//! in, printable as Mermaid or Graphviz DOT.

use std::fmt::Write as _;

use serde::Serialize;

use crate::metrics::NodeKind;

/// One declared node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphNode {
    /// The node's name in `pipeline!`.
    pub name: String,
    /// Source, stage or sink.
    pub kind: NodeKind,
    /// Index of the segment it is fused into.
    pub segment: usize,
}

/// One edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphEdge {
    /// Upstream node.
    pub from: String,
    /// Downstream node.
    pub to: String,
    /// `None` for a fused `->` edge; for a `=>` queue, its settings as written (maybe empty).
    pub queue: Option<String>,
}

/// One fused segment: a thread (or `workers` threads for a keyed parallel segment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphSegment {
    /// The segment's name (its root node; worker threads add `#i`).
    pub name: String,
    /// Number of parallel copies.
    pub workers: usize,
}

/// The graph of a pipeline. See [`PipelineGraph::to_mermaid`] and [`PipelineGraph::to_dot`].
///
/// ```
/// use eventflux_runtime::graph::PipelineGraph;
/// use eventflux_runtime::metrics::NodeKind;
/// let g = PipelineGraph::from_parts(
///     &[("src", NodeKind::Source, 0), ("out", NodeKind::Sink, 1)],
///     &[("src", "out", Some("capacity = 64"))],
///     &[("src", 1), ("out", 1)],
/// );
/// assert!(g.to_mermaid().contains("src ==>|\"capacity = 64\"| out"));
/// assert!(g.to_dot().contains("\"src\" -> \"out\""));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineGraph {
    /// Nodes in declaration order.
    pub nodes: Vec<GraphNode>,
    /// Edges in declaration order.
    pub edges: Vec<GraphEdge>,
    /// Segments.
    pub segments: Vec<GraphSegment>,
}

fn shape(kind: NodeKind, name: &str) -> String {
    match kind {
        NodeKind::Source => format!("{name}[/\"{name}\"/]"),
        NodeKind::Sink => format!("{name}[\\\"{name}\"\\]"),
        _ => format!("{name}[\"{name}\"]"),
    }
}

impl PipelineGraph {
    /// Builds a graph from plain data (what `pipeline!` generates).
    pub fn from_parts(
        nodes: &[(&str, NodeKind, usize)],
        edges: &[(&str, &str, Option<&str>)],
        segments: &[(&str, usize)],
    ) -> Self {
        Self {
            nodes: nodes
                .iter()
                .map(|&(name, kind, segment)| GraphNode {
                    name: name.to_string(),
                    kind,
                    segment,
                })
                .collect(),
            edges: edges
                .iter()
                .map(|&(from, to, queue)| GraphEdge {
                    from: from.to_string(),
                    to: to.to_string(),
                    queue: queue.map(str::to_string),
                })
                .collect(),
            segments: segments
                .iter()
                .map(|&(name, workers)| GraphSegment {
                    name: name.to_string(),
                    workers,
                })
                .collect(),
        }
    }

    fn segment_title(&self, i: usize) -> String {
        let s = &self.segments[i];
        if s.workers > 1 {
            format!("thread {}: {} × {} workers", i, s.name, s.workers)
        } else {
            format!("thread {}: {}", i, s.name)
        }
    }

    /// A Mermaid flowchart: one subgraph per segment, `-->` for fused edges, `==>` labelled with
    /// the queue's settings for thread boundaries.
    pub fn to_mermaid(&self) -> String {
        let mut s = String::from("flowchart LR\n");
        for (i, _) in self.segments.iter().enumerate() {
            let _ = writeln!(s, "  subgraph seg{i}[\"{}\"]", self.segment_title(i));
            for n in self.nodes.iter().filter(|n| n.segment == i) {
                let _ = writeln!(s, "    {}", shape(n.kind, &n.name));
            }
            let _ = writeln!(s, "  end");
        }
        for e in &self.edges {
            match &e.queue {
                None => {
                    let _ = writeln!(s, "  {} --> {}", e.from, e.to);
                }
                Some(label) if label.is_empty() => {
                    let _ = writeln!(s, "  {} ==>|\"queue\"| {}", e.from, e.to);
                }
                Some(label) => {
                    let _ = writeln!(s, "  {} ==>|\"{}\"| {}", e.from, label, e.to);
                }
            }
        }
        s
    }

    /// A Graphviz digraph: one cluster per segment, bold labelled edges for queues.
    pub fn to_dot(&self) -> String {
        let mut s = String::from("digraph pipeline {\n  rankdir=LR;\n");
        for (i, _) in self.segments.iter().enumerate() {
            let _ = writeln!(
                s,
                "  subgraph cluster_{i} {{\n    label=\"{}\";",
                self.segment_title(i)
            );
            for n in self.nodes.iter().filter(|n| n.segment == i) {
                let shape = match n.kind {
                    NodeKind::Source => "invhouse",
                    NodeKind::Sink => "house",
                    _ => "box",
                };
                let _ = writeln!(s, "    \"{}\" [shape={shape}];", n.name);
            }
            let _ = writeln!(s, "  }}");
        }
        for e in &self.edges {
            match &e.queue {
                None => {
                    let _ = writeln!(s, "  \"{}\" -> \"{}\";", e.from, e.to);
                }
                Some(label) => {
                    let label = if label.is_empty() { "queue" } else { label };
                    let _ = writeln!(
                        s,
                        "  \"{}\" -> \"{}\" [style=bold, label=\"{}\"];",
                        e.from, e.to, label
                    );
                }
            }
        }
        s.push_str("}\n");
        s
    }
}
