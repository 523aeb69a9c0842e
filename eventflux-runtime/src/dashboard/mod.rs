//! The live dashboard (cargo feature `dashboard`): a self-contained web page of a running
//! pipeline, served by [`PipelineHandle::serve_dashboard`](crate::PipelineHandle::serve_dashboard).
//!
//! # Routes
//! - `/`: the page. It needs nothing from the network beyond this server: its script and
//!   styles are inline. It draws the graph (nodes, fused segments as boxes, queue edges with
//!   their settings) and updates every second.
//! - `/api/graph`: the declared graph as JSON: `nodes` (`name`, `kind`, `segment`), `edges`
//!   (`from`, `to`, `queue`: the queue's settings, `null` for a fused edge) and `segments`
//!   (`name`, `workers`).
//! - `/api/metrics`: the metrics as JSON (see below), with rates over the interval since the
//!   previous request to this route.
//!
//! # `/api/metrics`
//! `status` (`running` or `finished`), `elapsed_secs`, `dead_letters`, and:
//! - `nodes`: by name, `kind`, `events_in`, `events_out`, `rate` (events out per second),
//!   `dropped`, `errors`, `watermark` (or `null`), `p99_ns` (latency, 0 if not measured).
//! - `queues`: by consumer node (the workers' queues of a keyed edge summed), `depth`,
//!   `capacity`, `fill` (depth / capacity), `high_water`, `dropped`, `blocked_ratio` (share of
//!   the interval its producers spent blocked) and `backpressure`: `ok`, `low` or `high` from
//!   the larger of `fill` and `blocked_ratio`, with Flink's thresholds (up to 10 % is ok, up to
//!   50 % low, above that high).
//! - `checkpoints`: `completed`, `failed`, `last` (`id`, `millis`, `bytes`, `alignment_millis`)
//!   or `null` when the pipeline takes none.
//! - `metrics`: the full [`MetricsSnapshot`].

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::{Value, json};

use crate::error::PipelineError;
use crate::exec::Runtime;
use crate::graph::PipelineGraph;
use crate::metrics::{BlockedShare, MetricsRegistry, MetricsSnapshot, RateCursor};

/// The page: markup, styles and script in one file, so it works without any network.
const PAGE: &str = include_str!("page.html");

/// Backpressure level from a queue's pressure (the larger of its fill and its producers'
/// blocked share), with Flink's thresholds.
pub(crate) fn backpressure_level(pressure: f64) -> &'static str {
    if pressure <= 0.10 {
        "ok"
    } else if pressure <= 0.50 {
        "low"
    } else {
        "high"
    }
}

/// What the server reads.
pub(crate) struct Feed {
    pub(crate) registry: Arc<MetricsRegistry>,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) graph: PipelineGraph,
}

/// The server state behind `/api/metrics`: its own rate cursor and blocked-time readings.
struct Rates {
    cursor: RateCursor,
    blocked: BTreeMap<String, BlockedShare>,
}

impl Feed {
    fn graph_json(&self) -> Value {
        json!({
            "nodes": self.graph.nodes,
            "edges": self.graph.edges,
            "segments": self.graph.segments,
        })
    }

    fn metrics_json(&self, rates: &mut Rates) -> Value {
        let mut snap: MetricsSnapshot = self.registry.snapshot_with(&mut rates.cursor);
        snap.checkpoints = self.runtime.checkpoints.as_ref().map(|c| c.stats());
        let nodes: serde_json::Map<String, Value> = snap
            .nodes
            .iter()
            .map(|n| {
                let dropped: u64 = n.dropped.iter().map(|(_, c)| c).sum();
                let rate = n.throughput_per_sec;
                (
                    n.name.clone(),
                    json!({
                        "kind": n.kind,
                        "events_in": n.events_in,
                        "events_out": n.events_out,
                        "rate": rate,
                        "dropped": dropped,
                        "errors": n.errors,
                        "watermark": n.watermark,
                        "p99_ns": n.latency.p99_ns,
                    }),
                )
            })
            .collect();
        // The queues of a keyed edge (`name#0`, `name#1`, …) are one edge on the page.
        let mut queues: BTreeMap<String, (u64, u64, u64, u64, u64, usize)> = BTreeMap::new();
        let mut blocked_ratio: BTreeMap<String, f64> = BTreeMap::new();
        for q in &snap.queues {
            let consumer = q.name.split('#').next().unwrap_or(&q.name).to_string();
            let e = queues.entry(consumer.clone()).or_default();
            e.0 += q.depth;
            e.1 += q.capacity_events;
            e.2 += q.high_water;
            e.3 += q.dropped_evicted + q.dropped_rejected;
            e.4 += q.blocked_ns;
            e.5 += 1;
            let ratio = rates
                .blocked
                .entry(q.name.clone())
                .or_default()
                .update(q.blocked_ns);
            let r = blocked_ratio.entry(consumer).or_insert(0.0);
            *r = r.max(ratio);
        }
        let queues: serde_json::Map<String, Value> = queues
            .into_iter()
            .map(|(name, (depth, capacity, high, dropped, blocked_ns, n))| {
                let fill = if capacity > 0 {
                    depth as f64 / capacity as f64
                } else {
                    0.0
                };
                let blocked = blocked_ratio.get(&name).copied().unwrap_or(0.0);
                let level = backpressure_level(fill.max(blocked));
                (
                    name,
                    json!({
                        "depth": depth,
                        "capacity": capacity,
                        "fill": fill,
                        "high_water": high,
                        "dropped": dropped,
                        "blocked_ns": blocked_ns,
                        "blocked_ratio": blocked,
                        "backpressure": level,
                        "queues": n,
                    }),
                )
            })
            .collect();
        let checkpoints = snap.checkpoints.as_ref().map(|c| {
            json!({
                "completed": c.completed,
                "failed": c.failed,
                "last": c.last.as_ref().map(|l| json!({
                    "id": l.id,
                    "millis": l.duration.as_secs_f64() * 1e3,
                    "bytes": l.bytes,
                    "alignment_millis": l.alignment.as_secs_f64() * 1e3,
                })),
            })
        });
        let status = if self.runtime.lifecycle.running_count() == 0 {
            "finished"
        } else {
            "running"
        };
        json!({
            "status": status,
            "elapsed_secs": snap.elapsed_secs,
            "interval_secs": snap.interval_secs,
            "dead_letters": self.runtime.dead_letters.count(),
            "nodes": nodes,
            "queues": queues,
            "checkpoints": checkpoints,
            "metrics": snap,
        })
    }
}

/// A running dashboard server; dropping it stops the server and joins its thread.
pub(crate) struct Server {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and serves `feed` on a thread until dropped.
    pub(crate) fn start(
        addr: impl ToSocketAddrs,
        feed: Feed,
    ) -> Result<(Self, SocketAddr), PipelineError> {
        let bind_error =
            |why: String| PipelineError::Invalid(format!("dashboard: cannot listen: {why}"));
        let addr = addr
            .to_socket_addrs()
            .map_err(|e| bind_error(e.to_string()))?
            .next()
            .ok_or_else(|| bind_error("the address resolved to nothing".into()))?;
        let server =
            tiny_http::Server::http(addr).map_err(|e| bind_error(format!("{addr}: {e}")))?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| bind_error(format!("{addr} is not an IP address")))?;
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("ef-dashboard".into())
            .spawn(move || serve(&serving, &feed))
            .map_err(|e| bind_error(format!("could not start its thread: {e}")))?;
        tracing::info!(address = %bound, "dashboard serving");
        Ok((
            Self {
                server,
                thread: Some(thread),
            },
            bound,
        ))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn respond(request: tiny_http::Request, status: u16, content_type: &str, body: String) {
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes());
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    if let Ok(h) = header {
        response = response.with_header(h);
    }
    if let Ok(h) = tiny_http::Header::from_bytes(&b"Cache-Control"[..], &b"no-store"[..]) {
        response = response.with_header(h);
    }
    // The client may be gone; nothing to do about it.
    let _ = request.respond(response);
}

/// Answers requests until the server is unblocked (the handle dropped or the pipeline
/// stopped). Blocks in `accept`: an idle dashboard uses no CPU.
fn serve(server: &tiny_http::Server, feed: &Feed) {
    let mut rates = Rates {
        cursor: RateCursor::new(),
        blocked: BTreeMap::new(),
    };
    for request in server.incoming_requests() {
        if *request.method() != tiny_http::Method::Get {
            respond(
                request,
                405,
                "text/plain; charset=utf-8",
                "only GET is served\n".into(),
            );
            continue;
        }
        let path = request.url().split('?').next().unwrap_or("/").to_string();
        match path.as_str() {
            "/" | "/index.html" => respond(request, 200, "text/html; charset=utf-8", PAGE.into()),
            "/api/graph" => {
                let body = feed.graph_json().to_string();
                respond(request, 200, "application/json", body);
            }
            "/api/metrics" => {
                let body = feed.metrics_json(&mut rates).to_string();
                respond(request, 200, "application/json", body);
            }
            other => respond(
                request,
                404,
                "text/plain; charset=utf-8",
                format!("no such page: {other} (try /, /api/graph or /api/metrics)\n"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::backpressure_level;

    #[test]
    fn backpressure_levels_follow_flinks_thresholds() {
        let levels: Vec<_> = [0.0, 0.10, 0.11, 0.5, 0.51, 1.0]
            .into_iter()
            .map(backpressure_level)
            .collect();
        assert_eq!(levels, ["ok", "ok", "low", "low", "high", "high"]);
    }
}
