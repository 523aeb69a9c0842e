//! A pipeline's metrics scraped by Prometheus: published through the `metrics` facade,
//! rendered by `metrics-exporter-prometheus`, served over loopback HTTP by the `prometheus`
//! example's server, and parsed here from the text exposition format.

#[path = "../examples/common/prometheus_server.rs"]
mod prometheus_server;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use eventflux::observe::PublishMetrics;
use eventflux::prelude::*;

/// One sample of the text exposition format: `name{label="value",...} number`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format: `# HELP`/`# TYPE` comments (the types by metric name),
/// and samples. Fails on any line it cannot read.
fn parse(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                // Label values here hold no quotes or commas.
                for pair in body.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                    labels.insert(k.to_string(), v.expect("a quoted value").to_string());
                }
                (name.to_string(), labels)
            }
        };
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    (types, samples)
}

fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connects over loopback");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert_eq!(found.len(), 1, "one sample of {name} {labels:?}: {found:?}");
    found[0].value
}

#[test]
fn prometheus_scrapes_the_pipelines_metrics() {
    let handle = prometheus_server::install().expect("the only recorder of this test binary");
    let server = prometheus_server::serve("127.0.0.1:0", handle).expect("binds a free port");

    let app = pipeline! {
        source nums = IterSource::new(0..30_000u64);
        stage  marks = watermarks(|x: &u64| *x, 10);
        stage  odd = filter(|x: &u64| x % 2 == 1);
        stage  tens = map(|x: u64| x / 10);
        sink   out = CollectSink::new();
        nums -> marks -> odd =>[workers = 3, key = |x: &u64| *x] tens => out;
    };
    let report = app
        .publish_metrics(PublishMetrics::new("scraped").every(Duration::from_millis(20)))
        .run()
        .unwrap();
    assert_eq!(report.events_out, 15_000);

    // `run` returns after the monitor's last read: the scrape shows the final values.
    let (types, samples) = parse(&scrape(server.addr));
    for (name, kind) in [
        ("eventflux_node_events_in_total", "counter"),
        ("eventflux_node_events_out_total", "counter"),
        ("eventflux_node_dropped_total", "counter"),
        ("eventflux_queue_pushed_total", "counter"),
        ("eventflux_queue_depth", "gauge"),
        ("eventflux_queue_capacity", "gauge"),
        ("eventflux_node_watermark", "gauge"),
        ("eventflux_node_latency_seconds", "gauge"),
        ("eventflux_pipeline_uptime_seconds", "gauge"),
    ] {
        assert_eq!(types.get(name).map(String::as_str), Some(kind), "{name}");
    }
    let p = ("pipeline", "scraped");
    assert_eq!(
        value(
            &samples,
            "eventflux_node_events_out_total",
            &[p, ("node", "nums"), ("worker", "0")]
        ),
        30_000.0
    );
    assert_eq!(
        value(
            &samples,
            "eventflux_node_events_out_total",
            &[p, ("node", "odd")]
        ),
        15_000.0
    );
    // Each of the 3 workers has its own series; together they saw every odd number once.
    let per_worker: Vec<f64> = (0..3)
        .map(|w| {
            let w = w.to_string();
            value(
                &samples,
                "eventflux_node_events_in_total",
                &[p, ("node", "tens"), ("worker", &w)],
            )
        })
        .collect();
    assert_eq!(per_worker.iter().sum::<f64>(), 15_000.0);
    assert!(per_worker.iter().all(|&n| n > 0.0), "{per_worker:?}");
    assert_eq!(
        value(
            &samples,
            "eventflux_node_events_in_total",
            &[p, ("node", "out")]
        ),
        15_000.0
    );
    // Queues: three into the workers, one into the sink; all drained, nothing dropped.
    let pushed: f64 = (0..3)
        .map(|w| {
            value(
                &samples,
                "eventflux_queue_pushed_total",
                &[p, ("queue", &format!("tens#{w}"))],
            )
        })
        .sum();
    assert_eq!(pushed, 15_000.0);
    assert_eq!(
        value(
            &samples,
            "eventflux_queue_delivered_total",
            &[p, ("queue", "out")]
        ),
        15_000.0
    );
    assert_eq!(
        value(&samples, "eventflux_queue_depth", &[p, ("queue", "out")]),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            "eventflux_queue_dropped_total",
            &[p, ("queue", "out"), ("reason", "evicted")]
        ),
        0.0
    );
    // Watermarks: the largest odd number is 29 999, 10 of out-of-orderness hold it to 29 988.
    assert_eq!(
        value(
            &samples,
            "eventflux_node_watermark",
            &[p, ("node", "odd"), ("worker", "0")]
        ),
        29_988.0
    );
    // Latency percentiles of the sink, in seconds, ordered.
    let q = |q: &str| {
        value(
            &samples,
            "eventflux_node_latency_seconds",
            &[p, ("node", "out"), ("quantile", q)],
        )
    };
    let (p50, p99, max) = (q("0.5"), q("0.99"), q("1"));
    assert!(
        0.0 < p50 && p50 <= p99 && p99 <= max && max < 60.0,
        "{p50} {p99} {max}"
    );
    assert!(value(&samples, "eventflux_pipeline_uptime_seconds", &[p]) > 0.0);
}
