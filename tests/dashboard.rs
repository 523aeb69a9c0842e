//! The live dashboard: its JSON API over loopback HTTP, and its page in a real headless
//! browser (Chromium), which must show every node and changing rates, and render a
//! non-blank screenshot.
//!
//! Without a browser the browser half is skipped with a message (so `cargo test` passes on
//! any machine); with `EVENTFLUX_REQUIRE_BROWSER=1` (as `.ci/run` sets) a missing browser
//! fails the test. `EVENTFLUX_BROWSER` names the browser binary; by default the first of
//! `chromium`, `chromium-browser`, `google-chrome` on the `PATH`.

mod common;
#[path = "../examples/common/dashboard_demo.rs"]
mod dashboard_demo;
#[path = "../examples/common/trades.rs"]
#[allow(dead_code)]
mod trades;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use eventflux::prelude::*;

const NODES: [&str; 12] = [
    "lit",
    "dark",
    "big",
    "lit_time",
    "dark_time",
    "merged",
    "value",
    "windows",
    "hot",
    "audit",
    "rows",
    "alerts",
];

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connects over loopback");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

fn browser() -> Option<PathBuf> {
    if let Some(b) = std::env::var_os("EVENTFLUX_BROWSER") {
        return Some(PathBuf::from(b));
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .find(|p| p.is_file())
}

/// The browser, or `None` after saying why the browser half is skipped (a failure instead when
/// `EVENTFLUX_REQUIRE_BROWSER` is set).
fn browser_or_skip() -> Option<PathBuf> {
    let found = browser();
    if found.is_none() {
        assert!(
            std::env::var_os("EVENTFLUX_REQUIRE_BROWSER").is_none(),
            "EVENTFLUX_REQUIRE_BROWSER is set but no browser was found (install chromium)"
        );
        eprintln!(
            "SKIPPED the browser half of the dashboard test: no chromium, chromium-browser or \
             google-chrome on the PATH (set EVENTFLUX_BROWSER to one)"
        );
    }
    found
}

/// The page's DOM after `budget_ms` of virtual time (the page's once-a-second updates run
/// quickly; each fetch is real).
fn dump_dom(browser: &Path, profile: &Path, url: &str, budget_ms: u32) -> String {
    let budget = format!("--virtual-time-budget={budget_ms}");
    headless(browser, profile, url, &[budget.as_str(), "--dump-dom"])
}

/// Runs the headless browser on `url` with `args`, at most a minute; returns its stdout.
fn headless(browser: &Path, profile: &Path, url: &str, args: &[&str]) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            "--window-size=1400,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the browser starts");
    let mut out = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    common::wait_success(&mut child, "the browser");
    reader.join().unwrap()
}

/// The value of attribute `attr` on the element whose `key` attribute is `value`.
fn attr_of<'a>(dom: &'a str, key: &str, value: &str, attr: &str) -> Option<&'a str> {
    let at = dom.find(&format!("{key}=\"{value}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag_end = at + dom[at..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let from = tag.find(&format!(" {attr}=\""))? + attr.len() + 3;
    let len = tag[from..].find('"')?;
    Some(&tag[from..from + len])
}

/// Whether a PNG shows something: many colours and a good share of pixels unlike the
/// most common one (the background).
fn check_not_blank(png_path: &Path) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(png_path).expect("the screenshot exists"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let bytes = &buf[..info.buffer_size()];
    let channels = info.color_type.samples();
    let mut counts = std::collections::HashMap::new();
    for px in bytes.chunks(channels) {
        *counts.entry(px.to_vec()).or_insert(0usize) += 1;
    }
    let total = bytes.len() / channels;
    let background = counts.values().copied().max().unwrap_or(0);
    assert!(
        (info.width, info.height) == (1400, 900),
        "{}x{}",
        info.width,
        info.height
    );
    assert!(counts.len() > 50, "only {} colours: blank?", counts.len());
    assert!(
        (total - background) * 20 > total,
        "{} of {total} pixels differ from the background: blank?",
        total - background
    );
}

#[test]
fn the_dashboard_serves_the_graph_and_live_metrics_to_a_browser() {
    // A paced pipeline (20 000 trades a second per feed): it runs until stopped, idling
    // between runs, so the browser gets CPU on a 2-core machine.
    let dir = tempfile::tempdir().unwrap();
    let handle = dashboard_demo::pipeline(20_000)
        .with_checkpoint_interval(Duration::from_millis(200))
        .unwrap()
        .checkpoints(
            dir.path().join("state"),
            eventflux::exec::Recovery::StartFresh,
        )
        .unwrap()
        .spawn()
        .unwrap();
    let addr = handle.serve_dashboard("127.0.0.1:0").unwrap();

    // The JSON API.
    let (status, graph) = get(addr, "/api/graph");
    assert_eq!(status, 200);
    let graph: serde_json::Value = serde_json::from_str(&graph).unwrap();
    let names: Vec<&str> = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, NODES);
    assert_eq!(graph["edges"].as_array().unwrap().len(), 11);
    assert_eq!(graph["segments"].as_array().unwrap().len(), 6);
    let keyed = graph["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "value")
        .unwrap();
    assert_eq!(keyed["workers"], 2);
    let (status, metrics) = get(addr, "/api/metrics");
    assert_eq!(status, 200);
    let metrics: serde_json::Value = serde_json::from_str(&metrics).unwrap();
    assert_eq!(metrics["status"], "running");
    for n in NODES {
        assert!(
            metrics["nodes"][n]["events_out"].is_u64(),
            "{n} in {metrics}"
        );
    }
    for q in ["merged", "value", "rows", "alerts"] {
        let level = metrics["queues"][q]["backpressure"].as_str().unwrap();
        assert!(["ok", "low", "high"].contains(&level), "{q}: {level}");
    }
    assert_eq!(
        metrics["queues"]["value"]["queues"], 2,
        "two workers' queues, one edge"
    );
    assert_eq!(get(addr, "/no/such/page").0, 404);
    let (status, page) = get(addr, "/");
    assert_eq!(status, 200);
    // Self-contained: no external scripts, styles, fonts or images; it fetches only the API.
    for external in ["<script src", "<link", "@import", "url(", "<img"] {
        assert!(
            !page.contains(external),
            "the page loads nothing else: {external}"
        );
    }
    let fetched: Vec<&str> = page
        .split("fetch(\"")
        .skip(1)
        .map(|r| &r[..r.find('"').unwrap()])
        .collect();
    assert_eq!(fetched, ["/api/graph", "/api/metrics"]);

    // The page in a browser.
    let Some(browser) = browser_or_skip() else {
        handle.stop().unwrap();
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/");
    let dom = dump_dom(&browser, profile.path(), &url, 4000);
    let updates: u32 = dom
        .find("<body data-updates=\"")
        .map(|at| &dom[at + 20..])
        .and_then(|rest| rest[..rest.find('"')?].parse().ok())
        .expect("the page counts its updates");
    assert!(updates >= 2, "{updates} updates");
    for n in NODES {
        assert!(
            dom.contains(&format!("data-node=\"{n}\"")),
            "node {n} drawn"
        );
        assert!(
            dom.contains(&format!(">{n}</text>")),
            "node {n} named on the graph"
        );
    }
    let rates = attr_of(&dom, "data-node", "lit", "data-rates").expect("lit's rate history");
    let rates: Vec<&str> = rates.split(',').collect();
    assert!(rates.len() >= 2, "{rates:?}");
    assert!(
        rates.windows(2).any(|w| w[0] != w[1]),
        "the rate changes between updates: {rates:?}"
    );
    assert!(dom.contains("class=\"edge queue "), "queue edges drawn");

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &browser,
        profile.path(),
        &url,
        &[
            "--virtual-time-budget=3000",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    check_not_blank(&shot);
    eprintln!("dashboard screenshot: {}", shot.display());
    let report = handle.stop().unwrap();
    assert!(report.events_in > 0);
}

/// A long pipeline (30 nodes, two threads) stays readable: the page never shrinks the graph
/// below 60 %; it wraps the columns into bands that fit the page. A 2-node one is drawn too.
#[test]
fn long_and_short_pipelines_are_drawn_readably() {
    let long = eventflux::pipeline! {
        source src = IterSource::new(0u64..);
        stage s1 = map(|x: u64| x + 1);
        stage s2 = map(|x: u64| x + 2);
        stage s3 = map(|x: u64| x + 3);
        stage s4 = map(|x: u64| x + 4);
        stage s5 = map(|x: u64| x + 5);
        stage s6 = map(|x: u64| x + 6);
        stage s7 = map(|x: u64| x + 7);
        stage s8 = map(|x: u64| x + 8);
        stage s9 = map(|x: u64| x + 9);
        stage s10 = map(|x: u64| x + 10);
        stage s11 = map(|x: u64| x + 11);
        stage s12 = map(|x: u64| x + 12);
        stage s13 = map(|x: u64| x + 13);
        stage s14 = map(|x: u64| x + 14);
        stage s15 = map(|x: u64| x + 15);
        stage s16 = map(|x: u64| x + 16);
        stage s17 = map(|x: u64| x + 17);
        stage s18 = map(|x: u64| x + 18);
        stage s19 = map(|x: u64| x + 19);
        stage s20 = map(|x: u64| x + 20);
        stage s21 = map(|x: u64| x + 21);
        stage s22 = map(|x: u64| x + 22);
        stage s23 = map(|x: u64| x + 23);
        stage s24 = map(|x: u64| x + 24);
        stage s25 = map(|x: u64| x + 25);
        stage s26 = map(|x: u64| x + 26);
        stage s27 = map(|x: u64| x + 27);
        stage s28 = map(|x: u64| x + 28);
        sink   out = CallbackSink::new(|_: u64| Ok(()));
        src -> s1 -> s2 -> s3 -> s4 -> s5 -> s6 -> s7 -> s8 -> s9 -> s10 -> s11 -> s12 -> s13 -> s14 => s15 -> s16 -> s17 -> s18 -> s19 -> s20 -> s21 -> s22 -> s23 -> s24 -> s25 -> s26 -> s27 -> s28 -> out;
    };
    let short = eventflux::pipeline! {
        source src = IterSource::new(0u64..);
        sink   out = CallbackSink::new(|_: u64| Ok(()));
        src => out;
    };
    for (app, nodes) in [(long, 30), (short, 2)] {
        let handle = app.spawn().unwrap();
        let addr = handle.serve_dashboard("127.0.0.1:0").unwrap();
        let (_, graph) = get(addr, "/api/graph");
        let graph: serde_json::Value = serde_json::from_str(&graph).unwrap();
        let names: Vec<String> = graph["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names.len(), nodes);
        let Some(browser) = browser_or_skip() else {
            handle.stop().unwrap();
            continue;
        };
        let profile = tempfile::tempdir().unwrap();
        let url = format!("http://{addr}/");
        let dom = dump_dom(&browser, profile.path(), &url, 2500);
        for n in &names {
            assert!(
                dom.contains(&format!("data-node=\"{n}\"")),
                "node {n} drawn"
            );
        }
        let svg_at = dom.find("<svg id=\"graph\"").expect("the graph");
        let svg = &dom[svg_at..svg_at + dom[svg_at..].find('>').unwrap()];
        let attr = |name: &str| -> f64 {
            let at = svg
                .find(&format!(" {name}=\""))
                .unwrap_or_else(|| panic!("{name} in {svg}"))
                + name.len()
                + 3;
            svg[at..at + svg[at..].find('"').unwrap()]
                .split(' ')
                .nth(if name == "viewBox" { 2 } else { 0 })
                .unwrap()
                .parse()
                .unwrap()
        };
        let (drawn, natural) = (attr("width"), attr("viewBox"));
        assert!(
            drawn >= 0.6 * natural - 1.0,
            "drawn {drawn} px for {natural}: shrunk too far"
        );
        if nodes == 30 {
            let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-long.png");
            let _ = std::fs::remove_file(&shot);
            headless(
                &browser,
                profile.path(),
                &url,
                &[
                    "--virtual-time-budget=2500",
                    &format!("--screenshot={}", shot.display()),
                ],
            );
            check_not_blank(&shot);
        }
        handle.stop().unwrap();
    }
}
