//! Serves `/metrics` in the Prometheus text exposition format from a
//! `metrics-exporter-prometheus` recorder, on a small synchronous HTTP server (no async
//! runtime). Shared by the `prometheus` example and its scrape test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// A `/metrics` endpoint; dropping it stops the server.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    /// The address it listens on.
    pub addr: SocketAddr,
}

/// Installs the Prometheus recorder as the process's `metrics` recorder.
pub fn install() -> Result<PrometheusHandle, Box<dyn std::error::Error>> {
    Ok(PrometheusBuilder::new().install_recorder()?)
}

/// Serves `handle`'s rendering at `http://addr/metrics` (port 0: any free port).
pub fn serve(
    addr: &str,
    handle: PrometheusHandle,
) -> Result<MetricsServer, Box<dyn std::error::Error + Send + Sync>> {
    let server = Arc::new(tiny_http::Server::http(addr)?);
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or("the server is not listening on an IP address")?;
    let serving = Arc::clone(&server);
    let thread = std::thread::spawn(move || {
        for request in serving.incoming_requests() {
            let path = request.url().split('?').next().unwrap_or("").to_string();
            let response = if path == "/metrics" {
                tiny_http::Response::from_string(handle.render()).with_header(
                    tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"text/plain; version=0.0.4; charset=utf-8"[..],
                    )
                    .expect("a valid header"),
                )
            } else {
                tiny_http::Response::from_string("try /metrics\n").with_status_code(404)
            };
            let _ = request.respond(response);
        }
    });
    Ok(MetricsServer {
        server,
        thread: Some(thread),
        addr: bound,
    })
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
