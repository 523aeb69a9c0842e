//! `#[derive(Checkpoint)]`: every supported shape round-trips exactly; skipped fields come back
//! as `Default`; `with` modules are used; schema versions migrate; damaged or foreign bytes are
//! errors that say what is wrong.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::Hash;
use std::marker::PhantomData;

use eventflux::prelude::*;
use eventflux::state::{self, Compression, StateError, StateReader, StateWriter, serde_value};
use proptest::prelude::*;

fn round_trip<T: Checkpoint>(value: &T) -> T {
    let mut last = None;
    for c in [Compression::None, Compression::Lz4] {
        let bytes = state::to_bytes(value, c).unwrap_or_else(|e| panic!("save: {e}"));
        last = Some(state::from_bytes::<T>(&bytes).unwrap_or_else(|e| panic!("load: {e}")));
    }
    last.unwrap_or_else(|| unreachable!("two compressions were tried"))
}

#[derive(Checkpoint, Debug, Clone, PartialEq, Default)]
struct Leg {
    venue: String,
    filled: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct ExternalQuote {
    bid: f64,
    ask: f64,
}

/// Saved as text: a user's own `with` module.
mod as_text {
    use eventflux::state::{StateError, StateReader, StateWriter};

    pub fn save(value: &u64, w: &mut StateWriter) -> Result<(), StateError> {
        w.put(&value.to_string())
    }

    pub fn load(r: &mut StateReader<'_>) -> Result<u64, StateError> {
        let text: String = r.take()?;
        text.parse()
            .map_err(|e| StateError::custom(format!("`{text}` is not a count: {e}")))
    }
}

#[derive(Checkpoint, Debug, Clone, PartialEq, Default)]
struct Book {
    per_symbol: HashMap<u32, (u64, f64)>,
    legs: Vec<Leg>,
    recent: VecDeque<Option<i64>>,
    ordered: BTreeMap<String, [u8; 3]>,
    #[checkpoint(with = serde_value)]
    quote: Option<ExternalQuote>,
    #[checkpoint(with = as_text)]
    trades: u64,
    #[checkpoint(skip)]
    scratch: Vec<u8>,
}

#[derive(Checkpoint, Debug, Clone, PartialEq)]
struct Pair(u32, #[checkpoint(skip)] u8, String);

#[derive(Checkpoint, Debug, Clone, PartialEq)]
struct Marker;

#[derive(Checkpoint, Debug, Clone, PartialEq)]
enum Phase {
    Idle,
    Warming(u32, Option<Leg>),
    Running {
        since: u64,
        #[checkpoint(skip)]
        cache: Vec<u64>,
        last: f64,
    },
}

#[derive(Checkpoint, Debug, Clone, PartialEq)]
enum Never {}

#[derive(Checkpoint, Debug, Clone, PartialEq)]
struct Groups<K: Hash + Eq, S> {
    states: HashMap<K, S>,
    order: Vec<K>,
    #[checkpoint(skip)]
    kind: PhantomData<fn() -> S>,
}

#[test]
fn named_structs_round_trip_with_skip_and_with() {
    let book = Book {
        per_symbol: (0..50)
            .map(|i| (i, (u64::from(i) * 3, f64::from(i) / 7.0)))
            .collect(),
        legs: vec![
            Leg {
                venue: "XNAS".into(),
                filled: 10,
            },
            Leg {
                venue: String::new(),
                filled: u64::MAX,
            },
        ],
        recent: VecDeque::from([Some(-1), None, Some(i64::MIN)]),
        ordered: BTreeMap::from([("a".into(), [1, 2, 3]), ("b".into(), [0; 3])]),
        quote: Some(ExternalQuote {
            bid: 1.25,
            ask: 1.5,
        }),
        trades: 1_234_567,
        scratch: vec![9; 16],
    };
    let back = round_trip(&book);
    assert_eq!(
        back,
        Book {
            scratch: Vec::new(),
            ..book
        },
        "every saved field is exact; the skipped one is Default"
    );
}

#[test]
fn tuple_unit_and_enum_shapes_round_trip() {
    assert_eq!(
        round_trip(&Pair(7, 200, "x".into())),
        Pair(7, 0, "x".into())
    );
    assert_eq!(round_trip(&Marker), Marker);
    for phase in [
        Phase::Idle,
        Phase::Warming(
            3,
            Some(Leg {
                venue: "XLON".into(),
                filled: 1,
            }),
        ),
        Phase::Warming(0, None),
    ] {
        assert_eq!(round_trip(&phase), phase);
    }
    let running = Phase::Running {
        since: 99,
        cache: vec![1, 2],
        last: -0.5,
    };
    assert_eq!(
        round_trip(&running),
        Phase::Running {
            since: 99,
            cache: Vec::new(),
            last: -0.5
        }
    );
}

#[test]
fn generic_structs_round_trip() {
    let g = Groups::<String, Vec<f64>> {
        states: HashMap::from([("a".into(), vec![1.0]), ("b".into(), vec![])]),
        order: vec!["b".into(), "a".into()],
        kind: PhantomData,
    };
    assert_eq!(round_trip(&g), g);
    let nested = Groups::<u32, Groups<u8, Leg>> {
        states: HashMap::from([(
            1,
            Groups {
                states: HashMap::from([(
                    2,
                    Leg {
                        venue: "v".into(),
                        filled: 3,
                    },
                )]),
                order: vec![2],
                kind: PhantomData,
            },
        )]),
        order: vec![1],
        kind: PhantomData,
    };
    assert_eq!(round_trip(&nested), nested);
}

#[test]
fn the_encoding_is_compact_and_stable() {
    #[derive(Checkpoint)]
    struct Small {
        a: u8,
        b: u16,
        c: Option<bool>,
    }
    let mut w = StateWriter::new();
    Small {
        a: 1,
        b: 300,
        c: Some(true),
    }
    .save(&mut w)
    .unwrap_or_else(|e| panic!("{e}"));
    // Version 1, then the fields: u8 raw, u16 as a varint, Option as a flag and its value.
    assert_eq!(w.into_bytes(), [1, 1, 0xAC, 0x02, 1, 1]);
}

// ---------------------------------------------------------------------------------------------
// Schema versions.

#[derive(Checkpoint, Debug, PartialEq)]
struct TotalsV1 {
    count: u64,
}

#[derive(Checkpoint, Debug, PartialEq)]
#[checkpoint(version = 2, from = TotalsV1)]
struct TotalsV2 {
    count: u64,
    sum: f64,
}

impl From<TotalsV1> for TotalsV2 {
    fn from(v1: TotalsV1) -> Self {
        TotalsV2 {
            count: v1.count,
            sum: 0.0,
        }
    }
}

#[derive(Checkpoint, Debug, PartialEq)]
#[checkpoint(version = 3, from = TotalsV2)]
struct Totals {
    count: u64,
    sum: f64,
    label: String,
}

impl From<TotalsV2> for Totals {
    fn from(v2: TotalsV2) -> Self {
        Totals {
            count: v2.count,
            sum: v2.sum,
            label: "migrated".into(),
        }
    }
}

#[test]
fn older_versions_migrate_through_every_step() {
    let v1 = state::to_bytes(&TotalsV1 { count: 5 }, Compression::None).unwrap_or_default();
    assert_eq!(
        state::from_bytes::<Totals>(&v1),
        Ok(Totals {
            count: 5,
            sum: 0.0,
            label: "migrated".into()
        })
    );
    let v2 =
        state::to_bytes(&TotalsV2 { count: 2, sum: 1.5 }, Compression::Lz4).unwrap_or_default();
    assert_eq!(
        state::from_bytes::<Totals>(&v2),
        Ok(Totals {
            count: 2,
            sum: 1.5,
            label: "migrated".into()
        })
    );
    let v3 = Totals {
        count: 1,
        sum: 2.0,
        label: "now".into(),
    };
    assert_eq!(round_trip(&v3), v3);
}

#[test]
fn unknown_versions_and_variants_are_named_errors() {
    // A snapshot from a newer build (version 9) than any this type knows.
    let mut w = StateWriter::new();
    w.version(9).unwrap_or_else(|e| panic!("{e}"));
    let bytes = state::frame(&w.into_bytes(), Compression::None);
    let err = state::from_bytes::<Totals>(&bytes).err();
    assert_eq!(
        err,
        Some(StateError::Version {
            ty: "Totals",
            found: 9,
            oldest: 1,
            newest: 3
        })
    );
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("versions 1 to 3"), "{text}");
    // A version-2 snapshot read by the version-1 type, which has no migration forward.
    let v2 =
        state::to_bytes(&TotalsV2 { count: 1, sum: 1.0 }, Compression::None).unwrap_or_default();
    assert_eq!(
        state::from_bytes::<TotalsV1>(&v2),
        Err(StateError::Version {
            ty: "TotalsV1",
            found: 2,
            oldest: 1,
            newest: 1
        })
    );
    // An enum variant this enum does not have.
    let mut w = StateWriter::new();
    w.version(1).unwrap_or_else(|e| panic!("{e}"));
    w.put(&7u32).unwrap_or_else(|e| panic!("{e}"));
    let bytes = state::frame(&w.into_bytes(), Compression::None);
    assert_eq!(
        state::from_bytes::<Phase>(&bytes),
        Err(StateError::Variant {
            ty: "Phase",
            index: 7
        })
    );
    assert_eq!(
        state::from_bytes::<Never>(&bytes),
        Err(StateError::Variant {
            ty: "Never",
            index: 7
        })
    );
}

#[test]
fn a_with_module_error_is_reported_not_swallowed() {
    // `as_text` refuses text that is not a number.
    let mut w = StateWriter::new();
    w.put(&"many".to_string()).unwrap_or_else(|e| panic!("{e}"));
    let bytes = w.into_bytes();
    let err = as_text::load(&mut StateReader::new(&bytes)).err();
    assert!(
        matches!(&err, Some(StateError::Custom(m)) if m.starts_with("`many` is not a count")),
        "{err:?}"
    );
}

/// A version-1 snapshot committed to the repository restores into the current version through
/// its migrations: the format of files already on disk is kept.
#[test]
fn a_committed_version_1_file_restores_into_the_current_version() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data/totals_v1.efst");
    if std::env::var_os("EVENTFLUX_WRITE_GOLDEN").is_some() {
        let bytes = state::to_bytes(&TotalsV1 { count: 42 }, Compression::None);
        std::fs::write(path, bytes.unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
    }
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        state::from_bytes::<Totals>(&bytes),
        Ok(Totals {
            count: 42,
            sum: 0.0,
            label: "migrated".into()
        })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random books round-trip exactly, compressed or not.
    #[test]
    fn random_states_round_trip(
        symbols in proptest::collection::hash_map(any::<u32>(), (any::<u64>(), any::<f64>()), 0..40),
        legs in proptest::collection::vec((".{0,8}", any::<u64>()), 0..10),
        recent in proptest::collection::vec(proptest::option::of(any::<i64>()), 0..20),
        trades in any::<u64>(),
    ) {
        let book = Book {
            per_symbol: symbols,
            legs: legs.into_iter().map(|(venue, filled)| Leg { venue, filled }).collect(),
            recent: recent.into(),
            ordered: BTreeMap::new(),
            quote: None,
            trades,
            scratch: Vec::new(),
        };
        let back = round_trip(&book);
        // Floats compared bit for bit (NaN included).
        prop_assert_eq!(back.per_symbol.len(), book.per_symbol.len());
        for (k, (n, x)) in &book.per_symbol {
            let got = back.per_symbol.get(k).map(|(m, y)| (*m, y.to_bits()));
            prop_assert_eq!(got, Some((*n, x.to_bits())));
        }
        prop_assert_eq!(&back.legs, &book.legs);
        prop_assert_eq!(&back.recent, &book.recent);
        prop_assert_eq!(back.trades, book.trades);
    }
}
