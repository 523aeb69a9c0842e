//! Malformed records never stop a pipeline and are never lost: each goes to the dead-letter
//! output with its file, line number and reason, is counted, and every good record is delivered.

use std::path::PathBuf;

use eventflux::io::DeadLetters;
use eventflux::prelude::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Trade {
    ts: u64,
    symbol: u32,
    price: f64,
    volume: u32,
}

/// A fixture file in a fresh temporary directory, removed when the returned guard drops.
fn temp_file(name: &str, contents: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, contents).expect("write fixture");
    (dir, path)
}

fn trade(ts: u64) -> Trade {
    Trade {
        ts,
        symbol: (ts % 3) as u32,
        price: 10.5,
        volume: 100 + ts as u32,
    }
}

fn run_collect<S>(source: S, dead_letters: Option<DeadLetters>) -> (Vec<Trade>, RunReport)
where
    S: Source<Item = Trade> + 'static,
{
    let sink = CollectSink::new();
    let got = sink.handle();
    let mut p = PipelineBuilder::new(
        PipelineConfig::builder()
            .batch_size(2)
            .queue_capacity(4)
            .build()
            .expect("valid"),
    );
    if let Some(d) = dead_letters {
        p.dead_letters(d);
    }
    let (tx, rx) = p.queue::<Trade>("q");
    let out = p.sink("out", sink);
    p.add_source("file", source, Identity, QueueOutput::new(tx));
    p.add_queue_segment("collect", rx, Identity, out);
    let report = p
        .build()
        .expect("valid")
        .run()
        .expect("bad records do not fail the run");
    (got.take(), report)
}

#[test]
fn malformed_json_lines_are_dead_lettered_with_line_numbers() {
    let mut text = String::new();
    for ts in 0..5 {
        text.push_str(&serde_json::to_string(&trade(ts)).expect("serialise"));
        text.push('\n');
    }
    text.push_str("{\"ts\": 5, \"symbol\": 1\n"); // line 6: truncated
    text.push('\n'); // line 7: blank, skipped
    text.push_str("{\"ts\": \"six\", \"symbol\": 1, \"price\": 1.0, \"volume\": 1}\n"); // line 8
    text.push_str(&serde_json::to_string(&trade(9)).expect("serialise"));
    text.push_str("\r\nnot json at all"); // line 9 (CRLF), line 10 without a final newline
    let (_dir, path) = temp_file("trades.jsonl", &text);

    let (got, report) = run_collect(JsonLinesSource::<Trade>::open(&path).expect("opens"), None);

    assert_eq!(
        got,
        [trade(0), trade(1), trade(2), trade(3), trade(4), trade(9)]
    );
    assert_eq!(report.events_in, 6);
    assert_eq!(report.events_out, 6);
    assert_eq!(report.dead_letter_count, 3);
    let lines: Vec<Option<u64>> = report.dead_letters.iter().map(|d| d.line).collect();
    assert_eq!(lines, [Some(6), Some(8), Some(10)]);
    let file = path.display().to_string();
    assert!(report.dead_letters.iter().all(|d| d.origin == file));
    assert_eq!(report.dead_letters[2].raw, "not json at all");
    assert!(
        report.dead_letters[1].reason.contains("invalid type"),
        "{}",
        report.dead_letters[1].reason
    );
    let node = report.metrics.node("file").expect("source metered");
    assert_eq!(node.errors, 3);
    assert_eq!(
        node.dropped,
        [(eventflux::metrics::DropReason::Malformed, 3)]
    );
}

#[test]
fn malformed_csv_rows_are_dead_lettered_with_line_numbers() {
    let text = "ts,symbol,price,volume\n\
                0,0,10.5,100\n\
                1,1,10.5,101\n\
                2,x,10.5,102\n\
                3,0,10.5\n\
                4,1,10.5,104\n\
                5,2,10.5,105,extra\n\
                6,0,10.5,106\n";
    let (_dir, path) = temp_file("trades.csv", text);

    let (got, report) = run_collect(CsvSource::<Trade>::open(&path).expect("opens"), None);

    assert_eq!(got, [trade(0), trade(1), trade(4), trade(6)]);
    assert_eq!(report.dead_letter_count, 3);
    let lines: Vec<Option<u64>> = report.dead_letters.iter().map(|d| d.line).collect();
    assert_eq!(lines, [Some(4), Some(5), Some(7)]);
    assert_eq!(report.dead_letters[0].raw, "2,x,10.5,102");
    assert!(
        report.dead_letters[1].reason.contains("expected 4 fields"),
        "{}",
        report.dead_letters[1].reason
    );
}

#[test]
fn dead_letters_can_go_to_a_file() {
    let (_dir, path) = temp_file(
        "mixed.jsonl",
        "{\"ts\":0,\"symbol\":0,\"price\":1.0,\"volume\":1}\n[1,2\n",
    );
    let dl_path = path.with_extension("dead.jsonl");
    let dl = DeadLetters::to_sink(JsonLinesSink::<DeadLetter>::create(&dl_path).expect("creates"));
    let (got, report) = run_collect(
        JsonLinesSource::<Trade>::open(&path).expect("opens"),
        Some(dl),
    );
    assert_eq!(got.len(), 1);
    assert_eq!(report.dead_letter_count, 1);
    assert!(report.dead_letters.is_empty(), "they went to the file");
    let written = std::fs::read_to_string(&dl_path).expect("dead letters written");
    let letters: Vec<DeadLetter> = written
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a dead letter"))
        .collect();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].line, letters[0].raw.as_str()),
        (Some(2), "[1,2")
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let err = JsonLinesSource::<Trade>::open("/nonexistent/trades.jsonl").expect_err("missing");
    assert!(
        err.to_string()
            .starts_with("cannot read `/nonexistent/trades.jsonl`"),
        "{err}"
    );
}

/// Dead letters are a node of the pipeline: streamed while the pipeline runs to any sink (a
/// file here), every one with its node, position and time; the run report only counts them.
#[test]
fn dead_letters_are_a_node_streamed_to_a_file() {
    let n_bad = 20_000u64;
    let mut text = String::new();
    let padding = "x".repeat(1000);
    let mut offsets = Vec::new();
    for i in 0..n_bad {
        text.push_str(&serde_json::to_string(&trade(i)).expect("serialise"));
        text.push('\n');
        offsets.push(text.len() as u64);
        text.push_str(&format!("{{\"broken\": \"{padding}\"\n")); // ~1 KB, malformed
    }
    let (dir, path) = temp_file("mixed.jsonl", &text);
    let dead_path = dir.path().join("dead.jsonl");
    let good = CollectSink::new();
    let got = good.handle();
    let app = pipeline! {
        config { batch_size: 256 }
        source trades = JsonLinesSource::<Trade>::open(&path).expect("opens");
        source bad    = dead_letters(64);
        sink   out    = good;
        sink   errors = JsonLinesSink::<DeadLetter>::create(&dead_path).expect("creates");
        trades -> out;
        bad -> errors;
    };
    let report = app.run().expect("bad records do not fail the run");
    assert_eq!(got.take().len() as u64, n_bad);
    assert_eq!(report.dead_letter_count, n_bad);
    assert!(
        report.dead_letters.is_empty(),
        "streamed, not kept in memory"
    );
    assert_eq!(
        report.events_in, n_bad,
        "dead letters are not pipeline input"
    );
    let written = std::fs::read_to_string(&dead_path).expect("dead letters written");
    let letters: Vec<DeadLetter> = written
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a dead letter"))
        .collect();
    assert_eq!(letters.len() as u64, n_bad);
    let file = path.display().to_string();
    for (i, (d, offset)) in letters.iter().zip(&offsets).enumerate() {
        let i = i as u64;
        assert_eq!(
            (d.node.as_str(), d.origin.as_str(), d.line, d.offset),
            ("trades", file.as_str(), Some(2 * i + 2), Some(*offset)),
            "letter {i}"
        );
        assert!(d.raw.starts_with("{\"broken\""));
        assert!(
            d.time_ms > 1_600_000_000_000,
            "a wall-clock time: {}",
            d.time_ms
        );
    }
    assert_eq!(
        report.metrics.node("errors").map(|n| n.events_in),
        Some(n_bad)
    );
}

/// Without a dead-letter node, the report keeps only the first ones (memory stays bounded)
/// and counts them all.
#[test]
fn the_default_dead_letter_output_is_bounded() {
    let n_bad = 3_000u64;
    let text: String = (0..n_bad).map(|i| format!("bad record {i}\n")).collect();
    let (_dir, path) = temp_file("bad.jsonl", &text);
    let (got, report) = run_collect(JsonLinesSource::<Trade>::open(&path).expect("opens"), None);
    assert!(got.is_empty());
    assert_eq!(report.dead_letter_count, n_bad);
    assert_eq!(report.dead_letters.len(), eventflux::io::KEPT_IN_MEMORY);
    assert_eq!(report.dead_letters[999].raw, "bad record 999");
}

/// A pipeline has one dead-letter output.
#[test]
fn two_dead_letter_nodes_are_rejected() {
    let app = pipeline! {
        source nums = IterSource::new(0..3u32);
        source bad1 = dead_letters(8);
        source bad2 = dead_letters(8);
        sink   out  = CollectSink::new();
        sink   e1   = CollectSink::new();
        sink   e2   = CollectSink::new();
        nums -> out;
        bad1 -> e1;
        bad2 -> e2;
    };
    let err = app.run().expect_err("two dead-letter nodes");
    assert_eq!(
        err.to_string(),
        "invalid pipeline: `bad2` and `bad1` are both `dead_letters()` nodes; a pipeline has one \
         dead-letter output: connect one node to several sinks instead"
    );
}

/// CSV errors name the column (by header), with the row's position; the usual options work.
#[test]
fn csv_errors_name_the_column_and_options_apply() {
    let text = "ts;symbol;price;volume\n\
                0; 0 ;10.5;100\n\
                1;one;10.5;101\n\
                2;2;cheap;102\n";
    let (_dir, path) = temp_file("trades.csv", text);
    let source = CsvSource::<Trade>::open(&path)
        .expect("opens")
        .delimiter(b';')
        .trim(true);
    let (got, report) = run_collect(source, None);
    assert_eq!(
        got,
        [Trade {
            ts: 0,
            symbol: 0,
            price: 10.5,
            volume: 100
        }]
    );
    type Seen<'a> = (Option<u64>, Option<u64>, Option<&'a str>, &'a str, &'a str);
    let letters: Vec<Seen<'_>> = report
        .dead_letters
        .iter()
        .map(|d| {
            (
                d.line,
                d.offset,
                d.column.as_deref(),
                d.reason.as_str(),
                d.node.as_str(),
            )
        })
        .collect();
    assert_eq!(
        letters,
        [
            (
                Some(3),
                Some(38),
                Some("symbol"),
                "column `symbol`: invalid digit found in string",
                "file"
            ),
            (
                Some(4),
                Some(53),
                Some("price"),
                "column `price`: invalid float literal",
                "file"
            ),
        ]
    );

    // No header row: fields by position, columns named by number.
    let (_dir, path) = temp_file("rows.csv", "7\t1\t2.5\t9\n8\tx\t2.5\t9\n");
    let source = CsvSource::<Trade>::open(&path)
        .expect("opens")
        .delimiter(b'\t')
        .has_headers(false);
    let (got, report) = run_collect(source, None);
    assert_eq!(
        got,
        [Trade {
            ts: 7,
            symbol: 1,
            price: 2.5,
            volume: 9
        }]
    );
    assert_eq!(report.dead_letters[0].column.as_deref(), Some("column 2"));
    assert_eq!(report.dead_letters[0].raw, "8\tx\t2.5\t9");
}
