//! Fuzzing, property-based (`proptest`: `cargo fuzz` needs a nightly toolchain), of what the
//! server decodes from outside:
//!
//! - **pgoutput** (the replication stream): valid messages of every kind the decoder reads
//!   round-trip through a reference encoder below, every truncation of one is an error, and
//!   arbitrary or mangled bytes never panic — whatever the decoder accepts, it reads back the same
//!   from its own encoding.
//! - **Mutations** (a device's `{"batch": [...]}`): valid mutations round-trip; arbitrary JSON,
//!   valid batches with parts replaced or removed, and mangled JSON text never panic decoding or
//!   validation; and validation refuses exactly the values the database cannot store (checked
//!   against a spec written from the schema: text lengths, NUL, dates, amounts, years).
//! - **Shape protocol parameters**: offsets round-trip through their text; arbitrary query strings
//!   on `/v1/shape` and `/api/shapes/{name}` (the real routes on a private PostgreSQL) are answered
//!   2xx/4xx, never 5xx, with no internal error text.
//!
//! Cases: `TURNS_FUZZ_CASES` (default 2,000) for the in-memory targets, `TURNS_FUZZ_HTTP_CASES`
//! (default 300) for the HTTP ones. A failure is saved (as its seed) in
//! `tests/fuzz.proptest-regressions`, committed and replayed first on every run; a bug found is
//! also kept below as a named test with its input.
use chrono::{DateTime, NaiveDate, Utc};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::FileFailurePersistence;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use turns::line_items::{LineItemEdit, NewLineItem};
use turns::mutation::{
    Change, Edit, Mutation, NewProperty, NewTurn, PropertyEdit, TurnEdit, EARLIEST_DATE,
    LATEST_DATE,
};
use turns::qc::QcResult;
use turns_server::shapes::pgoutput::{decode, Column, Datum, Message, Relation};
use turns_server::shapes::Offset;
use turns_server::testing::{demo_state, login, plain_router, send, Reply};
use uuid::Uuid;

/// Where failing cases are kept: `server/tests/fuzz.proptest-regressions`, committed.
const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fuzz.proptest-regressions"
);

fn config(cases_var: &str, default_cases: u32) -> ProptestConfig {
    let cases = std::env::var(cases_var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..ProptestConfig::default()
    }
}

/// Text of any characters (NUL, controls and astral ones included).
fn any_text(max: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

/// One change to a byte string.
#[derive(Clone, Debug)]
enum ByteEdit {
    FlipBit(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| ByteEdit::FlipBit(i, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Insert(i, b)),
        any::<Index>().prop_map(ByteEdit::Delete),
    ]
}

impl ByteEdit {
    fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        match self {
            ByteEdit::Insert(i, b) => bytes.insert(i.index(len + 1), *b),
            _ if len == 0 => {}
            ByteEdit::FlipBit(i, bit) => bytes[i.index(len)] ^= 1 << bit,
            ByteEdit::Set(i, b) => bytes[i.index(len)] = *b,
            ByteEdit::Delete(i) => {
                bytes.remove(i.index(len));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// pgoutput
// ---------------------------------------------------------------------------------------------

/// What the decoder reads but does not keep: Commit flags, the replica identity, column flag bits
/// other than "key", Truncate options, old tuples' `K`/`O`, the bytes after another message's tag.
#[derive(Clone, Debug)]
struct Wire {
    noise: u8,
    key: bool,
    payload: Vec<u8>,
}

fn wire() -> impl Strategy<Value = Wire> {
    (any::<u8>(), any::<bool>(), vec(any::<u8>(), 0..16)).prop_map(|(noise, key, payload)| Wire {
        noise,
        key,
        payload,
    })
}

/// The reference encoder: pgoutput protocol version 1, as PostgreSQL writes it.
fn encode(m: &Message, w: &Wire) -> Vec<u8> {
    fn cstr(b: &mut Vec<u8>, s: &str) {
        b.extend(s.as_bytes());
        b.push(0);
    }
    fn tuple(b: &mut Vec<u8>, t: &[Datum]) {
        b.extend((t.len() as i16).to_be_bytes());
        for d in t {
            match d {
                Datum::Null => b.push(b'n'),
                Datum::Unchanged => b.push(b'u'),
                Datum::Text(s) => {
                    b.push(b't');
                    b.extend((s.len() as i32).to_be_bytes());
                    b.extend(s.as_bytes());
                }
            }
        }
    }
    let old_kind = if w.key { b'K' } else { b'O' };
    let mut b = Vec::new();
    match m {
        Message::Begin {
            final_lsn,
            commit_time,
            xid,
        } => {
            b.push(b'B');
            b.extend(final_lsn.to_be_bytes());
            b.extend(commit_time.to_be_bytes());
            b.extend(xid.to_be_bytes());
        }
        Message::Commit {
            commit_lsn,
            end_lsn,
            commit_time,
        } => {
            b.push(b'C');
            b.push(w.noise);
            b.extend(commit_lsn.to_be_bytes());
            b.extend(end_lsn.to_be_bytes());
            b.extend(commit_time.to_be_bytes());
        }
        Message::Relation(r) => {
            b.push(b'R');
            b.extend(r.id.to_be_bytes());
            cstr(&mut b, &r.schema);
            cstr(&mut b, &r.name);
            b.push(w.noise);
            b.extend((r.columns.len() as i16).to_be_bytes());
            for c in &r.columns {
                b.push(u8::from(c.is_key) | (w.noise & !1));
                cstr(&mut b, &c.name);
                b.extend(c.type_oid.to_be_bytes());
                b.extend(c.type_modifier.to_be_bytes());
            }
        }
        Message::Insert { relation, new } => {
            b.push(b'I');
            b.extend(relation.to_be_bytes());
            b.push(b'N');
            tuple(&mut b, new);
        }
        Message::Update { relation, old, new } => {
            b.push(b'U');
            b.extend(relation.to_be_bytes());
            if let Some(old) = old {
                b.push(old_kind);
                tuple(&mut b, old);
            }
            b.push(b'N');
            tuple(&mut b, new);
        }
        Message::Delete { relation, old } => {
            b.push(b'D');
            b.extend(relation.to_be_bytes());
            b.push(old_kind);
            tuple(&mut b, old);
        }
        Message::Truncate { relations } => {
            b.push(b'T');
            b.extend((relations.len() as i32).to_be_bytes());
            b.push(w.noise);
            for r in relations {
                b.extend(r.to_be_bytes());
            }
        }
        Message::Other(tag) => {
            b.push(*tag);
            b.extend(&w.payload);
        }
    }
    b
}

/// Identifiers: C strings, anything but NUL.
fn c_string() -> impl Strategy<Value = String> {
    "[^\\x00]{0,12}"
}

fn datum() -> impl Strategy<Value = Datum> {
    prop_oneof![
        1 => Just(Datum::Null),
        1 => Just(Datum::Unchanged),
        3 => any_text(12).prop_map(Datum::Text),
    ]
}

fn tuple() -> impl Strategy<Value = Vec<Datum>> {
    vec(datum(), 0..6)
}

fn message() -> impl Strategy<Value = Message> {
    let column = (any::<bool>(), c_string(), any::<u32>(), any::<i32>()).prop_map(
        |(is_key, name, type_oid, type_modifier)| Column {
            name,
            type_oid,
            type_modifier,
            is_key,
        },
    );
    prop_oneof![
        (any::<u64>(), any::<i64>(), any::<u32>()).prop_map(|(final_lsn, commit_time, xid)| {
            Message::Begin {
                final_lsn,
                commit_time,
                xid,
            }
        }),
        (any::<u64>(), any::<u64>(), any::<i64>()).prop_map(
            |(commit_lsn, end_lsn, commit_time)| Message::Commit {
                commit_lsn,
                end_lsn,
                commit_time,
            }
        ),
        (any::<u32>(), c_string(), c_string(), vec(column, 0..6)).prop_map(
            |(id, schema, name, columns)| Message::Relation(Relation {
                id,
                schema,
                name,
                columns,
            })
        ),
        (any::<u32>(), tuple()).prop_map(|(relation, new)| Message::Insert { relation, new }),
        (any::<u32>(), option::of(tuple()), tuple())
            .prop_map(|(relation, old, new)| Message::Update { relation, old, new }),
        (any::<u32>(), tuple()).prop_map(|(relation, old)| Message::Delete { relation, old }),
        vec(any::<u32>(), 0..6).prop_map(|relations| Message::Truncate { relations }),
        any::<u8>()
            .prop_filter("a tag the decoder reads", |t| !b"BCRIUDT".contains(t))
            .prop_map(Message::Other),
    ]
}

/// Raw payloads: arbitrary bytes, and arbitrary bytes after a tag the decoder (or Postgres) uses.
fn raw_payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..64),
        3 => (select(b"BCRIUDTOYM".to_vec()), vec(any::<u8>(), 0..64)).prop_map(|(tag, mut rest)| {
            rest.insert(0, tag);
            rest
        }),
    ]
}

/// Whatever the decoder accepts, it reads back the same from its own encoding.
fn decodes_canonically(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(m) = decode(bytes) {
        let plain = Wire {
            noise: 0,
            key: true,
            payload: Vec::new(),
        };
        prop_assert_eq!(decode(&encode(&m, &plain)), Ok(m));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config("TURNS_FUZZ_CASES", 2_000))]

    #[test]
    fn pgoutput_valid_messages_round_trip_and_truncations_are_errors(m in message(), w in wire()) {
        let bytes = encode(&m, &w);
        prop_assert_eq!(decode(&bytes), Ok(m.clone()));
        // Another message is its tag; everything else needs every byte.
        let needed = if matches!(m, Message::Other(_)) { 1 } else { bytes.len() };
        for n in 0..needed {
            prop_assert!(decode(&bytes[..n]).is_err(), "prefix of {} bytes: {:?}", n, decode(&bytes[..n]));
        }
    }

    #[test]
    fn pgoutput_arbitrary_bytes_never_panic(bytes in raw_payload()) {
        decodes_canonically(&bytes)?;
    }

    #[test]
    fn pgoutput_mangled_messages_never_panic(m in message(), w in wire(), edits in vec(byte_edit(), 1..4)) {
        let mut bytes = encode(&m, &w);
        for e in &edits {
            e.apply(&mut bytes);
        }
        decodes_canonically(&bytes)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------------

/// The mutate endpoint's body (`turns-app`'s `mutate` server function takes `batch`).
#[derive(Debug, serde::Deserialize)]
struct Batch {
    batch: Vec<Mutation>,
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn ymd((y, m, d): (i32, u32, u32)) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a calendar date")
}

/// Dates around both ends of the accepted window, inside it, and anywhere chrono can go.
fn date() -> impl Strategy<Value = NaiveDate> {
    use chrono::Datelike;
    let lo = ymd(EARLIEST_DATE).num_days_from_ce();
    let hi = ymd(LATEST_DATE).num_days_from_ce();
    prop_oneof![
        lo - 3..=lo + 3,
        hi - 3..=hi + 3,
        lo..=hi,
        NaiveDate::MIN.num_days_from_ce()..=NaiveDate::MAX.num_days_from_ce(),
    ]
    .prop_map(|d| NaiveDate::from_num_days_from_ce_opt(d).expect("within chrono's range"))
}

fn device_time() -> impl Strategy<Value = DateTime<Utc>> {
    prop_oneof![
        (1_500_000_000i64..2_500_000_000, 0u32..1_000_000_000),
        (
            DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp(),
            0u32..1_000_000_000
        ),
    ]
    .prop_filter_map("a chrono time", |(s, n)| DateTime::from_timestamp(s, n))
}

/// Amounts: plausible ones, ones around numeric(10,2)'s limit, and any decimal at all.
fn amount() -> impl Strategy<Value = Decimal> {
    let negative_zero = {
        let mut z = Decimal::new(0, 2);
        z.set_sign_negative(true);
        z
    };
    prop_oneof![
        (-100_000i64..1_000_000_000, 0u32..=4).prop_map(|(m, s)| Decimal::new(m, s)),
        (9_999_999_990i64..=10_000_000_010, 2u32..=3).prop_map(|(m, s)| Decimal::new(m, s)),
        (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s)),
        (any::<i128>(), 0u32..=28).prop_filter_map("96 bits", |(m, s)| {
            Decimal::try_from_i128_with_scale(m % (1i128 << 96), s).ok()
        }),
        Just(negative_zero),
    ]
}

/// Text as users type it, any characters, blanks, NULs, and runs around the columns' lengths.
fn text() -> BoxedStrategy<String> {
    let run = (
        select(vec!['x', 'é', '字', '\u{1F600}', ' ']),
        select(vec![
            19usize, 20, 21, 49, 50, 51, 99, 100, 101, 254, 255, 256, 1999, 2000, 2001,
        ]),
    )
        .prop_map(|(c, n)| std::iter::repeat_n(c, n).collect::<String>());
    prop_oneof![
        3 => "[A-Za-z0-9 #-]{0,12}",
        2 => any_text(24),
        1 => select(vec!["", " ", "\t\n", "\u{a0}", "\0", "A\0B", "ünïcødé"]).prop_map(str::to_string),
        1 => run,
    ]
    .boxed()
}

fn edit<T: std::fmt::Debug, S: Strategy<Value = T>>(
    values: impl Fn() -> S,
) -> impl Strategy<Value = Edit<T>> {
    (values(), values()).prop_map(|(from, to)| Edit { from, to })
}

fn turn_edit() -> impl Strategy<Value = TurnEdit> {
    prop_oneof![
        edit(uuid).prop_map(TurnEdit::Stage),
        edit(|| option::of(uuid())).prop_map(TurnEdit::Vendor),
        edit(|| option::of(amount())).prop_map(TurnEdit::Amount),
        edit(|| option::of(text())).prop_map(TurnEdit::WoNumber),
        edit(|| option::of(date())).prop_map(TurnEdit::MoveOutDate),
        edit(|| option::of(date())).prop_map(TurnEdit::ExpectedCompletion),
        edit(|| option::of(date())).prop_map(TurnEdit::Completion),
    ]
}

fn property_edit() -> impl Strategy<Value = PropertyEdit> {
    prop_oneof![
        edit(text).prop_map(PropertyEdit::Name),
        edit(text).prop_map(PropertyEdit::StreetAddress),
        edit(|| option::of(text())).prop_map(PropertyEdit::City),
        edit(|| option::of(text())).prop_map(PropertyEdit::State),
        edit(|| option::of(text())).prop_map(PropertyEdit::ZipCode),
        edit(any::<bool>).prop_map(PropertyEdit::IsCore),
        edit(any::<bool>).prop_map(PropertyEdit::IsActive),
        edit(|| option::of(uuid())).prop_map(PropertyEdit::PropertyManager),
        edit(|| option::of(amount())).prop_map(PropertyEdit::Bedrooms),
        edit(|| option::of(amount())).prop_map(PropertyEdit::Bathrooms),
        edit(|| option::of(any::<i32>())).prop_map(PropertyEdit::AreaSqft),
        edit(|| option::of(text())).prop_map(PropertyEdit::AccessNotes),
    ]
}

fn new_property() -> impl Strategy<Value = NewProperty> {
    let year = prop_oneof![1690i32..2210, any::<i32>()];
    (
        (uuid(), text(), text(), text()),
        (option::of(text()), option::of(text()), option::of(text())),
        (option::of(year), any::<bool>(), option::of(uuid())),
        (
            option::of(amount()),
            option::of(amount()),
            option::of(any::<i32>()),
        ),
    )
        .prop_map(
            |(
                (id, property_id, name, street_address),
                (city, state, zip_code),
                (year_built, is_core, property_manager_id),
                (bedrooms, bathrooms, area_sqft),
            )| NewProperty {
                id,
                property_id,
                name,
                street_address,
                city,
                state,
                zip_code,
                year_built,
                is_core,
                property_manager_id,
                bedrooms,
                bathrooms,
                area_sqft,
                access_notes: None,
            },
        )
}

fn new_turn() -> impl Strategy<Value = NewTurn> {
    (
        uuid(),
        text(),
        uuid(),
        option::of(date()),
        option::of(text()),
    )
        .prop_map(
            |(id, turn_id, property_id, move_out_date, wo_number)| NewTurn {
                id,
                turn_id,
                property_id,
                move_out_date,
                wo_number,
            },
        )
}

fn new_line_item() -> impl Strategy<Value = NewLineItem> {
    (
        uuid(),
        text(),
        text(),
        amount(),
        amount(),
        option::of(uuid()),
    )
        .prop_map(
            |(id, category, description, quantity, unit_cost, vendor_id)| NewLineItem {
                id,
                category,
                description,
                quantity,
                unit_cost,
                vendor_id,
            },
        )
}

fn line_item_edit() -> impl Strategy<Value = LineItemEdit> {
    prop_oneof![
        edit(text).prop_map(LineItemEdit::Category),
        edit(text).prop_map(LineItemEdit::Description),
        edit(amount).prop_map(LineItemEdit::Quantity),
        edit(amount).prop_map(LineItemEdit::UnitCost),
        edit(|| option::of(uuid())).prop_map(LineItemEdit::Vendor),
    ]
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        1 => new_property().prop_map(Change::CreateProperty),
        1 => (uuid(), vec(property_edit(), 0..4))
            .prop_map(|(property, edits)| Change::UpdateProperty { property, edits }),
        1 => new_turn().prop_map(Change::CreateTurn),
        2 => (uuid(), vec(turn_edit(), 0..4)).prop_map(|(turn, edits)| Change::EditTurn { turn, edits }),
        1 => uuid().prop_map(|turn| Change::SubmitForApproval { turn }),
        1 => (uuid(), text()).prop_map(|(turn, reason)| Change::CancelTurn { turn, reason }),
        1 => uuid().prop_map(|turn| Change::AcceptWork { turn }),
        1 => (uuid(), text()).prop_map(|(turn, reason)| Change::DeclineWork { turn, reason }),
        1 => (uuid(), option::of(uuid()), vec(new_line_item(), 0..4))
            .prop_map(|(turn, template, items)| Change::AddLineItems { turn, template, items }),
        1 => (uuid(), uuid(), vec(line_item_edit(), 0..3))
            .prop_map(|(turn, item, edits)| Change::EditLineItem { turn, item, edits }),
        1 => (uuid(), uuid()).prop_map(|(turn, item)| Change::RemoveLineItem { turn, item }),
        1 => (uuid(), vec((uuid(), any::<bool>(), option::of(text())), 0..4)).prop_map(
            |(turn, results)| Change::RecordQc {
                turn,
                results: results
                    .into_iter()
                    .map(|(item, passed, note)| QcResult { item, passed, note })
                    .collect(),
            }
        ),
        1 => (uuid(), uuid(), text())
            .prop_map(|(turn, note, body)| Change::AddNote { turn, note, body }),
        1 => vec(uuid(), 0..3).prop_map(|notifications| Change::MarkRead { notifications }),
        1 => (uuid(), uuid(), option::of(text()), option::of(uuid())).prop_map(
            |(turn, photo, caption, qc_item)| Change::AddPhoto { turn, photo, caption, qc_item }
        ),
        1 => (uuid(), any::<bool>(), option::of(amount()), option::of(text())).prop_map(
            |(turn, approve, amount, reason)| Change::DecideApproval {
                turn,
                approve,
                amount,
                reason,
            }
        ),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (uuid(), option::of(any::<i32>()), device_time(), change()).prop_map(
        |(id, base_version, device_time, change)| Mutation {
            id,
            base_version,
            device_time,
            change,
        },
    )
}

/// The fields validation must refuse, from the schema: text that is blank where required, holds
/// NUL, or is longer than its varchar (in characters); dates outside the plausible window;
/// amounts that are negative, beyond numeric(10,2) or finer than cents; years built outside the
/// check constraint; empty edit lists; a rejection without a reason.
fn expected_refusals(change: &Change) -> BTreeSet<String> {
    let mut bad = BTreeSet::new();
    let mut refuse = |field: &str, refused: bool| {
        if refused {
            bad.insert(field.to_string());
        }
    };
    let text_bad = |v: &str, max: usize, required: bool| {
        (required && v.trim().is_empty()) || v.contains('\0') || v.chars().count() > max
    };
    let date_bad = |d: NaiveDate| d < ymd(EARLIEST_DATE) || d > ymd(LATEST_DATE);
    let amount_bad = |a: Decimal| {
        a < Decimal::ZERO || a > Decimal::new(9_999_999_999, 2) || a.normalize().scale() > 2
    };
    let opt_text_bad =
        |v: &Option<String>, max| v.as_deref().is_some_and(|v| text_bad(v, max, false));
    // Rooms fit numeric(3,1) within 0..=50; an area is 1..=100,000 square feet.
    let rooms_bad =
        |r: Decimal| r < Decimal::ZERO || r > Decimal::new(50, 0) || r.normalize().scale() > 1;
    let area_bad = |a: i32| !(1..=100_000).contains(&a);
    // A quantity is an amount above zero.
    let quantity_bad = |q: Decimal| q <= Decimal::ZERO || amount_bad(q);
    match change {
        Change::CreateProperty(p) => {
            refuse("property_id", text_bad(&p.property_id, 50, true));
            refuse("name", text_bad(&p.name, 255, true));
            refuse("street_address", text_bad(&p.street_address, 255, true));
            refuse("city", opt_text_bad(&p.city, 100));
            refuse("state", opt_text_bad(&p.state, 50));
            refuse("zip_code", opt_text_bad(&p.zip_code, 20));
            refuse("access_notes", opt_text_bad(&p.access_notes, 1000));
            refuse(
                "year_built",
                p.year_built.is_some_and(|y| !(1700..=2200).contains(&y)),
            );
            refuse("bedrooms", p.bedrooms.is_some_and(rooms_bad));
            refuse("bathrooms", p.bathrooms.is_some_and(rooms_bad));
            refuse("area_sqft", p.area_sqft.is_some_and(area_bad));
        }
        Change::UpdateProperty { edits, .. } => {
            refuse("edits", edits.is_empty());
            for e in edits {
                match e {
                    PropertyEdit::Name(e) => refuse("name", text_bad(&e.to, 255, true)),
                    PropertyEdit::StreetAddress(e) => {
                        refuse("street_address", text_bad(&e.to, 255, true))
                    }
                    PropertyEdit::City(e) => refuse("city", opt_text_bad(&e.to, 100)),
                    PropertyEdit::State(e) => refuse("state", opt_text_bad(&e.to, 50)),
                    PropertyEdit::ZipCode(e) => refuse("zip_code", opt_text_bad(&e.to, 20)),
                    PropertyEdit::Bedrooms(e) => refuse("bedrooms", e.to.is_some_and(rooms_bad)),
                    PropertyEdit::Bathrooms(e) => refuse("bathrooms", e.to.is_some_and(rooms_bad)),
                    PropertyEdit::AreaSqft(e) => refuse("area_sqft", e.to.is_some_and(area_bad)),
                    PropertyEdit::AccessNotes(e) => {
                        refuse("access_notes", opt_text_bad(&e.to, 1000))
                    }
                    PropertyEdit::IsCore(_)
                    | PropertyEdit::IsActive(_)
                    | PropertyEdit::PropertyManager(_) => {}
                }
            }
        }
        Change::CreateTurn(t) => {
            refuse("turn_id", text_bad(&t.turn_id, 50, true));
            refuse("wo_number", opt_text_bad(&t.wo_number, 50));
            refuse("move_out_date", t.move_out_date.is_some_and(date_bad));
        }
        Change::EditTurn { edits, .. } => {
            refuse("edits", edits.is_empty());
            for e in edits {
                match e {
                    TurnEdit::Amount(e) => refuse("turn_amount", e.to.is_some_and(amount_bad)),
                    TurnEdit::WoNumber(e) => refuse("wo_number", opt_text_bad(&e.to, 50)),
                    TurnEdit::MoveOutDate(e) => refuse("move_out_date", e.to.is_some_and(date_bad)),
                    TurnEdit::ExpectedCompletion(e) => {
                        refuse("expected_completion_date", e.to.is_some_and(date_bad))
                    }
                    TurnEdit::Completion(e) => {
                        refuse("turn_completion_date", e.to.is_some_and(date_bad))
                    }
                    TurnEdit::Stage(_) | TurnEdit::Vendor(_) => {}
                }
            }
        }
        Change::SubmitForApproval { .. } => {}
        Change::CancelTurn { reason, .. } | Change::DeclineWork { reason, .. } => {
            refuse("reason", text_bad(reason, 2000, true))
        }
        Change::AcceptWork { .. } | Change::RemoveLineItem { .. } => {}
        Change::AddNote { body, .. } => refuse("body", text_bad(body, 2000, true)),
        Change::MarkRead { notifications } => refuse("notifications", notifications.is_empty()),
        Change::AddPhoto { caption, .. } => refuse("caption", opt_text_bad(caption, 200)),
        Change::RecordQc { results, .. } => {
            refuse("results", results.is_empty());
            for r in results {
                let note = r.note.as_deref().unwrap_or_default();
                refuse("note", !r.passed && note.trim().is_empty());
                refuse("note", text_bad(note, 1000, false));
            }
        }
        Change::AddLineItems { items, .. } => {
            refuse("items", items.is_empty());
            for i in items {
                refuse("category", text_bad(&i.category, 50, true));
                refuse("description", text_bad(&i.description, 500, true));
                refuse("quantity", quantity_bad(i.quantity));
                refuse("unit_cost", amount_bad(i.unit_cost));
            }
        }
        Change::EditLineItem { edits, .. } => {
            refuse("edits", edits.is_empty());
            for e in edits {
                match e {
                    LineItemEdit::Category(e) => refuse("category", text_bad(&e.to, 50, true)),
                    LineItemEdit::Description(e) => {
                        refuse("description", text_bad(&e.to, 500, true))
                    }
                    LineItemEdit::Quantity(e) => refuse("quantity", quantity_bad(e.to)),
                    LineItemEdit::UnitCost(e) => refuse("unit_cost", amount_bad(e.to)),
                    LineItemEdit::Vendor(_) => {}
                }
            }
        }
        Change::DecideApproval {
            approve,
            amount,
            reason,
            ..
        } => {
            refuse("amount", *approve && amount.is_some_and(amount_bad));
            refuse(
                "reason",
                !approve && reason.as_deref().is_none_or(|r| r.trim().is_empty()),
            );
            refuse("reason", opt_text_bad(reason, 2000));
        }
        // An admin's changes are not generated here (`turns::admin` tests their rules).
        Change::Admin(_) => {}
    }
    bad
}

/// Validation never panics, and refuses exactly the expected fields (each with a message).
fn validates_to_spec(m: &Mutation) -> Result<(), TestCaseError> {
    let refused: BTreeSet<String> = match m.change.validate() {
        Ok(()) => BTreeSet::new(),
        Err(errors) => {
            prop_assert!(!errors.is_empty(), "an empty refusal");
            prop_assert!(errors.iter().all(|e| !e.message.is_empty()));
            errors.into_iter().map(|e| e.field).collect()
        }
    };
    prop_assert_eq!(refused, expected_refusals(&m.change), "{:?}", m.change);
    Ok(())
}

/// Words of the wire format, so arbitrary JSON often looks like a mutation.
const WORDS: &[&str] = &[
    "batch",
    "id",
    "base_version",
    "device_time",
    "change",
    "kind",
    "create_property",
    "update_property",
    "create_turn",
    "edit_turn",
    "submit_for_approval",
    "decide_approval",
    "property",
    "edits",
    "turn",
    "approve",
    "amount",
    "reason",
    "field",
    "from",
    "to",
    "stage",
    "vendor",
    "wo_number",
    "move_out_date",
    "expected_completion",
    "completion",
    "name",
    "street_address",
    "city",
    "state",
    "zip_code",
    "is_core",
    "is_active",
    "property_manager",
    "property_id",
    "turn_id",
    "year_built",
    "property_manager_id",
];

/// Values of the wire format's types, well and badly formed.
const SAMPLES: &[&str] = &[
    "00000000-0000-0000-0000-000000000000",
    "67e55044-10b1-426f-9247-bb680e5fe0c8",
    "67e5504410b1426f9247bb680e5fe0c8",
    "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
    "67e55044-10b1-426f-9247-bb680e5fe0c",
    "2026-11-30",
    "1989-12-31",
    "+262142-12-31",
    "-0001-01-01",
    "2026-02-30",
    "2026-11-30T12:00:00Z",
    "2026-11-30T12:00:00.123456789+05:30",
    "+262143-12-31T23:59:59Z",
    "2026-11-30 12:00:00",
    "1200",
    "1200.50",
    "-0.00",
    "99999999.99",
    "100000000.00",
    "1e3",
    "0.001",
    "79228162514264337593543950335",
    "79228162514264337593543950336",
    "NaN",
    "",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        2 => select(WORDS).prop_map(Value::from),
        2 => select(SAMPLES).prop_map(Value::from),
        1 => text().prop_map(Value::from),
    ]
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(WORDS).prop_map(str::to_string),
        1 => any_text(8),
    ]
}

fn any_json() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                vec((json_key(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// The JSON pointers of every node in a value.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                pointers(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                pointers(
                    item,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        _ => {}
    }
    out.push(at);
}

/// One structural change to a JSON value: replace a node, remove it, or add a key to an object.
#[derive(Clone, Debug)]
enum JsonEdit {
    Replace(Index, Value),
    Remove(Index),
    Add(Index, String, Value),
}

impl JsonEdit {
    fn apply(&self, root: &mut Value) {
        let mut all = Vec::new();
        pointers(root, String::new(), &mut all);
        let at = |i: &Index| all[i.index(all.len())].clone();
        match self {
            JsonEdit::Replace(i, with) => {
                if let Some(node) = root.pointer_mut(&at(i)) {
                    *node = with.clone();
                }
            }
            JsonEdit::Remove(i) => {
                let p = at(i);
                let Some((parent, last)) = p.rsplit_once('/') else {
                    return;
                };
                let last = last.replace("~1", "/").replace("~0", "~");
                match root.pointer_mut(parent) {
                    Some(Value::Object(map)) => {
                        map.remove(&last);
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(n) = last.parse::<usize>() {
                            items.remove(n);
                        }
                    }
                    _ => {}
                }
            }
            JsonEdit::Add(i, key, with) => {
                if let Some(Value::Object(map)) = root.pointer_mut(&at(i)) {
                    map.insert(key.clone(), with.clone());
                }
            }
        }
    }
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        (any::<Index>(), any_json()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        any::<Index>().prop_map(JsonEdit::Remove),
        (any::<Index>(), json_key(), any_json()).prop_map(|(i, k, v)| JsonEdit::Add(i, k, v)),
    ]
}

/// A valid batch with parts replaced, removed or added.
fn edited_batch() -> impl Strategy<Value = Value> {
    (vec(mutation(), 1..3), vec(json_edit(), 1..4)).prop_map(|(batch, edits)| {
        let mut v = json!({ "batch": batch });
        for e in &edits {
            e.apply(&mut v);
        }
        v
    })
}

/// Decoding never panics, from a value or from its text (with the same result), and whatever
/// decodes validates to the spec.
fn decodes_and_validates(v: &Value) -> Result<(), TestCaseError> {
    let from_value = serde_json::from_value::<Batch>(v.clone());
    let from_text = serde_json::from_str::<Batch>(&v.to_string());
    match (&from_value, &from_text) {
        (Ok(a), Ok(b)) => prop_assert_eq!(&a.batch, &b.batch),
        (Err(_), Err(_)) => {}
        _ => prop_assert!(
            false,
            "value and text decode differently: {:?} / {:?} for {}",
            from_value,
            from_text,
            v
        ),
    }
    if let Ok(b) = from_text {
        for m in &b.batch {
            validates_to_spec(m)?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config("TURNS_FUZZ_CASES", 2_000))]

    #[test]
    fn mutations_round_trip_and_validate_to_the_schema(batch in vec(mutation(), 0..4)) {
        let v = json!({ "batch": batch });
        let back: Batch = serde_json::from_value(v.clone())?;
        prop_assert_eq!(&back.batch, &batch);
        let back: Batch = serde_json::from_str(&v.to_string())?;
        prop_assert_eq!(&back.batch, &batch);
        for m in &batch {
            validates_to_spec(m)?;
        }
    }

    #[test]
    fn mutation_decoding_never_panics_on_any_json(
        v in prop_oneof![
            1 => any_json(),
            1 => any_json().prop_map(|b| json!({ "batch": b })),
            1 => any_json().prop_map(|m| json!({ "batch": [m] })),
            3 => edited_batch(),
        ]
    ) {
        decodes_and_validates(&v)?;
    }

    #[test]
    fn mutation_decoding_never_panics_on_mangled_text(
        batch in vec(mutation(), 1..3),
        edits in vec(byte_edit(), 1..6),
    ) {
        let mut bytes = serde_json::to_vec(&json!({ "batch": batch }))?;
        for e in &edits {
            e.apply(&mut bytes);
        }
        if let Ok(b) = serde_json::from_slice::<Batch>(&bytes) {
            for m in &b.batch {
                validates_to_spec(m)?;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shape protocol parameters
// ---------------------------------------------------------------------------------------------

fn offset_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,22}_([0-9]{1,22}|inf)",
        "[+-]?[0-9]{0,21}_[+-]?([0-9]{0,21}|inf|INF|Inf)",
        select(vec![
            "-1", "now", "0_inf", "0_0", "_", "1_", "_1", "1__1", "1_1_1", " 1_1", "1_1 "
        ])
        .prop_map(str::to_string),
        "[0-9_a-z+ -]{0,12}",
        any_text(16),
    ]
}

proptest! {
    #![proptest_config(config("TURNS_FUZZ_CASES", 2_000))]

    #[test]
    fn offsets_round_trip_through_their_text(s in offset_text(), lsn in any::<u64>(), op in any::<u64>()) {
        let o = Offset { lsn, op };
        prop_assert_eq!(Offset::parse(&o.to_string()), Some(o));
        if let Some(o) = Offset::parse(&s) {
            let text = o.to_string();
            prop_assert_eq!(Offset::parse(&text), Some(o));
            prop_assert_eq!(Offset::parse(&text).map(|p| p.to_string()), Some(text));
        }
    }
}

const SECRET: &str = "fuzz-secret";
const HANDLE: &str = "$HANDLE";
const OFFSET: &str = "$OFFSET";

/// The shape server on the demo data, a session per role, and a live handle and offset per
/// endpoint (so generated requests reach the change log too). One for the whole test process.
struct App {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    sessions: Vec<String>,
    /// `/v1/shape?table=turns` and the PM's `/api/shapes/turns`: (handle, offset).
    generic: (String, String),
    authorized: (String, String),
}

fn handle_and_offset(r: &Reply) -> (String, String) {
    let header = |name: &str| {
        r.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name}: {} {}", r.status, r.body))
            .to_string()
    };
    (header("electric-handle"), header("electric-offset"))
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (router, sessions, generic, authorized) = rt.block_on(async {
            let mut state = demo_state().await;
            let mut config = (*state.config).clone();
            config.shape_secret = Some(SECRET.into());
            // Live requests that find nothing new answer quickly.
            config.long_poll = Duration::from_millis(100);
            state.config = Arc::new(config);
            // No budget: every request does its work (budgets are tested in shapes.rs).
            state.live = Arc::new(turns_server::live_sessions::LiveSessions::new(
                turns_server::live_sessions::Budget {
                    live: 1_000_000,
                    new_shapes: 1_000_000,
                    window: Duration::from_secs(1),
                },
            ));
            let url = state.config.database_url.clone().expect("database url");
            let state = state.start_shapes(&url).await.expect("shape server");
            let router = plain_router(state);
            let mut sessions = Vec::new();
            for email in [
                "pm@turns.demo",
                "vendor@turns.demo",
                "dfo@turns.demo",
                "admin@turns.demo",
            ] {
                sessions.push(login(&router, email).await);
            }
            let uri = format!("/v1/shape?secret={SECRET}&table=turns&offset=-1");
            let generic = handle_and_offset(&send(&router, "GET", &uri, None, None).await);
            let uri = "/api/shapes/turns?offset=-1";
            let reply = send(&router, "GET", uri, Some(&sessions[0]), None).await;
            (router, sessions, generic, handle_and_offset(&reply))
        });
        App {
            rt,
            router,
            sessions,
            generic,
            authorized,
        }
    })
}

/// Where a request starts: a snapshot, now, the setup's handle and offset, or anything.
fn position() -> impl Strategy<Value = Vec<(String, String)>> {
    let pairs = |o: &str, h: Option<&str>| {
        let mut v = vec![("offset".to_string(), o.to_string())];
        v.extend(h.map(|h| ("handle".to_string(), h.to_string())));
        v
    };
    prop_oneof![
        4 => Just(pairs("-1", None)),
        2 => Just(pairs("now", None)),
        4 => Just(pairs(OFFSET, Some(HANDLE))),
        1 => (offset_text(), Just(HANDLE)).prop_map(move |(o, h)| pairs(&o, Some(h))),
        1 => (offset_text(), handle_value()).prop_map(move |(o, h)| pairs(&o, Some(&h))),
        1 => option::of(offset_text()).prop_map(move |o| o.map(|o| pairs(&o, None)).unwrap_or_default()),
    ]
}

fn handle_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(HANDLE.to_string()),
        1 => "[A-Za-z0-9-]{0,40}",
        1 => Just("a".repeat(101)),
        1 => text(),
    ]
}

fn flag_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec!["true", "false"]).prop_map(str::to_string),
        1 => text(),
    ]
}

/// The protocol parameters every caller may send (besides the position).
fn protocol_pair() -> impl Strategy<Value = (String, String)> {
    let pair = |k: &'static str| move |v: String| (k.to_string(), v);
    prop_oneof![
        1 => prop_oneof![
            select(vec!["-1", "now", OFFSET]).prop_map(str::to_string),
            offset_text()
        ]
        .prop_map(pair("offset")),
        1 => handle_value().prop_map(pair("handle")),
        3 => flag_value().prop_map(pair("live")),
        1 => flag_value().prop_map(pair("live_sse")),
        1 => flag_value().prop_map(pair("experimental_live_sse")),
        1 => text().prop_map(pair("cursor")),
        1 => prop_oneof![
            3 => select(vec!["full", "changes_only"]).prop_map(str::to_string),
            1 => text()
        ]
        .prop_map(pair("log")),
        1 => handle_value().prop_map(pair("expired_handle")),
        1 => text().prop_map(pair("cache-buster")),
    ]
}

const TABLES: &[&str] = &[
    "turns",
    "properties",
    "vendors",
    "users",
    "turn_stages",
    "sessions",
    "user_credentials",
    "audit_logs",
    "sync_log",
    "shape_handles",
    "public.turns",
    "\"public\".\"turns\"",
    "\"turns\"",
    "\"tu\"\"rns\"",
    "turns\0",
    "public\0.turns",
    "turns.turns",
    "pg_catalog.pg_class",
    "information_schema.tables",
    "public.",
    ".turns",
    "",
];

const CLAUSES: &[&str] = &[
    "is_active",
    "NOT is_active OR turn_amount < 100",
    "turn_amount > $1",
    "turn_amount BETWEEN $1 AND $2",
    "turn_id = $1",
    "turn_id IN ($1, $2)",
    "turn_id LIKE $1",
    "turn_id ILIKE '%1%'",
    "turn_id <> '\0'",
    "approval_status = $1",
    "approval_status = 'PENDING'",
    "move_out_date >= $1",
    "move_out_date < '2026-01-01'",
    "updated_at > $1",
    "id = $1",
    "vendor_id IS NULL",
    "property_manager_id = $1 OR sr_property_manager_id = $1",
    "name = $1",
    "trade <> $1",
    "1 = 1",
    "true",
    "false",
    "",
];

const TOKENS: &[&str] = &[
    "turn_amount",
    "turn_id",
    "is_active",
    "id",
    "move_out_date",
    "approval_status",
    "name",
    "password_hash",
    "=",
    "<>",
    "<",
    ">=",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "ILIKE",
    "BETWEEN",
    "IS",
    "NULL",
    "(",
    ")",
    ",",
    "$1",
    "$2",
    "$0",
    "$99999999999",
    "'x'",
    "'\0'",
    "'2026-01-01'",
    "'%'",
    "1",
    "-1",
    "1.5",
    "1e400",
    "::int",
    "::text",
    "::date",
    "true",
    ";",
    "--",
    "/*",
    "'",
    "\"",
    "SELECT",
    "pg_sleep(1)",
];

const COLUMNS: &[&str] = &[
    "id",
    "turn_id",
    "turn_amount",
    "version",
    "is_active",
    "move_out_date",
    "\"id\"",
    " id ",
    "id\0",
    "password_hash",
    "nope",
    "",
];

const PARAMS: &[&str] = &[
    "1",
    "-1",
    "3000",
    "1.5",
    "1e400",
    "99999999999999999999999999999999",
    "PENDING",
    "NOT_A_STATUS",
    "2026-01-01",
    "2026-02-30",
    "2026-01-01 00:00:00+00",
    "67e55044-10b1-426f-9247-bb680e5fe0c8",
    "not-a-uuid",
    "T-20001",
    "T-\0",
    "%",
    "",
];

fn table_value() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => Just("turns".to_string()),
        4 => select(TABLES).prop_map(str::to_string),
        1 => text(),
    ]
}

fn where_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(CLAUSES).prop_map(str::to_string),
        2 => vec(select(TOKENS), 0..8).prop_map(|t| t.join(" ")),
        1 => text(),
    ]
}

fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(PARAMS).prop_map(str::to_string),
        1 => text(),
    ]
}

fn columns_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => vec(select(COLUMNS), 0..5).prop_map(|c| c.join(",")),
        1 => text(),
    ]
}

/// The shape definition `/v1/shape` takes: table (usually turns), where, params numbered 1..n,
/// columns, replica.
fn definition() -> impl Strategy<Value = Vec<(String, String)>> {
    let any_definition = (
        option::weighted(0.9, table_value()),
        option::weighted(0.6, where_value()),
        vec(param_value(), 0..3),
        option::weighted(0.2, columns_value()),
        option::weighted(
            0.1,
            prop_oneof![
                3 => select(vec!["default", "full"]).prop_map(str::to_string),
                1 => text()
            ],
        ),
    )
        .prop_map(|(table, clause, params, columns, replica)| {
            let mut pairs = Vec::new();
            let mut add = |k: &str, v: Option<String>| {
                pairs.extend(v.map(|v| (k.to_string(), v)));
            };
            add("table", table);
            add("where", clause);
            for (n, p) in params.into_iter().enumerate() {
                add(&format!("params[{}]", n + 1), Some(p));
            }
            add("columns", columns);
            add("replica", replica);
            pairs
        });
    prop_oneof![
        // The setup's handle is for this one: requests with it go on to read the log.
        1 => Just(vec![("table".to_string(), "turns".to_string())]),
        2 => any_definition,
    ]
}

/// Any one definition parameter, including misnumbered ones.
fn definition_pair() -> impl Strategy<Value = (String, String)> {
    let pair = |k: &'static str| move |v: String| (k.to_string(), v);
    let param_key = prop_oneof![
        2 => (0u32..4).prop_map(|n| format!("params[{n}]")),
        1 => select(vec!["params[]", "params[x]", "params[-1]", "params[18446744073709551616]", "params"])
            .prop_map(str::to_string),
    ];
    prop_oneof![
        table_value().prop_map(pair("table")),
        where_value().prop_map(pair("where")),
        (param_key, param_value()),
        columns_value().prop_map(pair("columns")),
        text().prop_map(pair("replica")),
    ]
}

/// Parameters of no meaning, as anyone may send.
fn stray_pair() -> impl Strategy<Value = (String, String)> {
    (
        prop_oneof![
            select(vec!["secret", "x", "", "offset[]"]).prop_map(str::to_string),
            any_text(6)
        ],
        text(),
    )
}

/// A query string: the pairs form-encoded, sometimes followed by raw (unencoded) text.
fn query(pairs: &[(String, String)], raw: &str) -> String {
    let encoded = serde_urlencoded::to_string(pairs).expect("pairs encode");
    if raw.is_empty() {
        encoded
    } else {
        format!("{encoded}&{raw}")
    }
}

fn raw_query() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(String::new()),
        1 => "[A-Za-z0-9_.~&=%+$'(),;:!*\\[\\]-]{0,40}",
    ]
}

/// Put the setup's handle and offset in for their placeholders.
fn fill(pairs: &mut [(String, String)], (handle, offset): &(String, String)) {
    for (_, v) in pairs.iter_mut() {
        if v == HANDLE {
            *v = handle.clone();
        } else if v == OFFSET {
            *v = offset.clone();
        }
    }
}

/// A 2xx/4xx answer with nothing internal in it.
fn answered_cleanly(uri: &str, r: &Reply) -> Result<(), TestCaseError> {
    prop_assert!(
        r.status.is_success() || r.status.is_client_error(),
        "{} answered {}: {}",
        uri,
        r.status,
        r.body
    );
    for internal in [
        "sqlx",
        "SQLSTATE",
        "error returned from database",
        "panicked",
        "pool timed out",
        "Protocol(",
    ] {
        prop_assert!(
            !r.body.contains(internal),
            "{} leaked {:?}: {}",
            uri,
            internal,
            r.body
        );
    }
    Ok(())
}

/// A path segment, percent-encoded.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `GET` a generated request from the app; its answer must be clean.
fn get_cleanly(
    path: &str,
    pairs: &[(String, String)],
    raw: &str,
    session: Option<&str>,
) -> Result<(), TestCaseError> {
    let app = app();
    let mut uri = format!("{path}?{}", query(pairs, raw));
    if axum::http::Uri::try_from(uri.as_str()).is_err() {
        uri = format!("{path}?{}", query(pairs, ""));
    }
    let reply = app
        .rt
        .block_on(send(&app.router, "GET", &uri, session, None));
    answered_cleanly(&uri, &reply)
}

proptest! {
    #![proptest_config(config("TURNS_FUZZ_HTTP_CASES", 300))]

    #[test]
    fn generic_shape_requests_are_answered_cleanly(
        secret in prop_oneof![12 => Just(SECRET.to_string()), 1 => text()],
        definition in definition(),
        position in position(),
        rest in vec(prop_oneof![2 => protocol_pair(), 1 => definition_pair(), 1 => stray_pair()], 0..4),
        raw in raw_query(),
    ) {
        let mut pairs = vec![("secret".to_string(), secret)];
        pairs.extend(definition);
        pairs.extend(position);
        pairs.extend(rest);
        fill(&mut pairs, &app().generic);
        get_cleanly("/v1/shape", &pairs, &raw, None)?;
    }

    #[test]
    fn authorized_shape_requests_are_answered_cleanly(
        name in prop_oneof![
            8 => Just("turns".to_string()),
            4 => select(vec!["properties", "stages", "vendors", "users"]).prop_map(str::to_string),
            1 => text(),
        ],
        who in any::<Index>(),
        position in position(),
        rest in vec(prop_oneof![12 => protocol_pair(), 1 => definition_pair(), 1 => stray_pair()], 0..4),
        raw in raw_query(),
    ) {
        let mut pairs = position;
        pairs.extend(rest);
        fill(&mut pairs, &app().authorized);
        // Mostly the PM (whose handle the setup holds), else another role's session, or none.
        let sessions = &app().sessions;
        let session = match who.index(3 * sessions.len()) {
            i if i < sessions.len() => sessions.get(i),
            i if i == sessions.len() => None,
            _ => sessions.first(),
        };
        let path = format!("/api/shapes/{}", segment(&name));
        get_cleanly(&path, &pairs, &raw, session.map(String::as_str))?;
    }
}

/// Found by `generic_shape_requests_are_answered_cleanly`: a NUL in the table name, the where
/// clause or a parameter was answered 500 (Postgres refuses NUL in text parameters, and `\u0000`
/// in the jsonb that stores a handle's definition). Now a 400 naming the field.
#[test]
fn regression_nul_in_a_shape_definition_is_refused_by_field() {
    let app = app();
    for (definition, field) in [
        ("table=turns%00", "table"),
        ("table=public%00.turns", "table"),
        ("table=turns&params[1]=T-%00", "params"),
        ("table=turns&where=turn_id%20%3D%20'%00'", "where"),
        (
            "table=turns&where=turn_id%20%3D%20%241&params[1]=%00",
            "params",
        ),
    ] {
        let uri = format!("/v1/shape?secret={SECRET}&offset=-1&{definition}");
        let reply = app.rt.block_on(send(&app.router, "GET", &uri, None, None));
        assert_eq!(reply.status, 400, "{uri}: {}", reply.body);
        assert!(
            reply.json()["errors"][field].is_array(),
            "{uri}: {}",
            reply.body
        );
    }
}
