//! The pipeline's `tracing` events: lifecycle, errors naming their node, dead letters (at
//! most one logged per second) and checkpoints. The library installs no subscriber; this
//! test installs one that writes into a buffer.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use eventflux::prelude::*;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    /// Takes what was logged so far.
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

/// The process-wide subscriber (installed once) and its buffer.
fn logs() -> &'static Buffer {
    static LOGS: OnceLock<Buffer> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Buffer::default();
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        buf
    })
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Reading {
    id: u64,
}

/// One test, so the scenarios' logs do not interleave in the shared buffer.
#[test]
fn the_pipeline_traces_its_lifecycle_errors_dead_letters_and_checkpoints() {
    let logs = logs();

    // A run that ends by itself: opening, started, each segment's span, stopped with counts.
    let app = pipeline! {
        source nums = IterSource::new(0..1_000u64);
        sink   out = CollectSink::new();
        nums => out;
    };
    app.run().unwrap();
    let text = logs.take();
    for expected in [
        "pipeline opening segments=2 sources=1",
        "pipeline started",
        "segment{segment=out}",
        "segment{segment=nums}",
        "segment finished",
        "pipeline stopped events_in=1000 events_out=1000 dropped=0 dead_letters=0",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    assert!(!text.contains("ERROR"), "{text}");

    // A graceful stop of an endless pipeline: the drain is logged.
    let app = pipeline! {
        source forever = IterSource::new(0u64..);
        sink   out = CallbackSink::new(|_: u64| Ok(()));
        forever => out;
    };
    let handle = app.spawn().unwrap();
    handle.stop().unwrap();
    let text = logs.take();
    assert!(
        text.contains("stop requested: sources end their streams, queues drain"),
        "{text}"
    );

    // A failing stage: one error event naming the node, and the pipeline failure.
    let app = pipeline! {
        source nums = IterSource::new(0..100u64);
        stage  picky = map(|x: u64| if x == 50 { panic!("picky broke on {x}") } else { x });
        sink   out = CollectSink::new();
        nums -> picky => out;
    };
    assert!(app.run().is_err());
    let text = logs.take();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("a segment failed"))
        .collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(
        errors[0].contains("`picky`") && errors[0].contains("picky broke on 50"),
        "{}",
        errors[0]
    );
    assert!(
        text.contains("aborting: every segment stops without draining"),
        "{text}"
    );
    assert!(text.contains("pipeline failed"), "{text}");

    // 200 malformed records: logged at most once per second (the rest counted as suppressed).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readings.jsonl");
    let mut lines = String::new();
    for i in 0..400 {
        if i % 2 == 0 {
            lines.push_str(&format!("{{\"id\": {i}}}\n"));
        } else {
            lines.push_str("{\"id\": \"not a number\"}\n");
        }
    }
    std::fs::write(&path, lines).unwrap();
    let app = pipeline! {
        source readings = JsonLinesSource::<Reading>::open(&path).unwrap();
        sink   out = CollectSink::new();
        readings -> out;
    };
    let report = app.run().unwrap();
    assert_eq!((report.events_out, report.dead_letter_count), (200, 200));
    let text = logs.take();
    let logged = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("dead letter"))
        .count();
    // Reading 400 lines takes far less than a second, but may straddle one boundary.
    assert!(
        (1..=2).contains(&logged),
        "{logged} dead letters logged:\n{text}"
    );
    assert!(
        text.contains("readings.jsonl"),
        "the dead letter names its origin: {text}"
    );

    // Checkpoints: each completed one is an event with its id and size.
    let dir = tempfile::tempdir().unwrap();
    let app = pipeline! {
        source forever = IterSource::new(0u64..);
        sink   out = CallbackSink::new(|_: u64| Ok(()));
        forever => out;
    };
    let handle = app
        .checkpoints(dir.path(), Recovery::StartFresh)
        .unwrap()
        .spawn()
        .unwrap();
    let info = handle.checkpoint().unwrap();
    handle.stop().unwrap();
    let text = logs.take();
    assert!(
        text.contains(&format!("checkpoint completed checkpoint={}", info.id)),
        "{text}"
    );
}
