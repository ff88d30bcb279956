//! How records are written into the sled trees: compressed, and an event's
//! body as the bytes that arrived rather than the value written out again.
//!
//! | first byte | record |
//! |---|---|
//! | `{` | JSON, as earlier versions wrote every record (still read) |
//! | [`RUN_D2`] | a run: length (u32 LE) ++ zstd(JSON of the [`Run`]) against [`DICTIONARY_2`] |
//! | [`RUN_D2_FINAL`] | the same, of a run that has ended (its status is final) |
//! | [`EVENT_D2`] | an event: its head (outcome, run ids, dedupe keys claimed; see [`put_head`]) ++ length (u32 LE) ++ zstd(header length (u32 LE) ++ header JSON ++ body bytes) against [`DICTIONARY_2`] |
//! | [`PACK_D2`] | a pack of finished records ([`super::shelf`]): length (u32 LE) ++ zstd(the records, each as id length (u16 LE) ++ id ++ record length (u32 LE) ++ the record stored as it is) against [`DICTIONARY_2`] |
//! | [`RUN_D1`], [`RUN_D1_FINAL`], [`EVENT_D1`], [`PACK_D1`] | the same against [`DICTIONARY_1`], an event's head inside its header JSON, as earlier versions wrote them (still read) |
//! | [`RUN`], [`EVENT`] | the same without a dictionary, as earlier versions wrote them (still read) |
//! | [`DEDUPE`] | a dedupe entry: expiry (ms, u64 LE) ++ event id ++ run count (u16 LE) ++ run ids; each id packed in 16 bytes when it is a generated one |
//!
//! The event header is the record without its body; the body follows as
//! the bytes received, with the kind they were read as
//! ([`crate::record::body::RawBody`]), so reading an event back parses its
//! body once, exactly as the first time, and writing one never serializes
//! the body. A body that was changed before it was stored (secrets
//! redacted) has no raw bytes: its value is in the header.
//!
//! zstd at its fastest level: JSON records shrink about threefold, for a
//! few microseconds each. The length prefix sizes the output buffer at once;
//! its top bit set means the payload is stored as it is (zstd could not
//! start, which only a failed allocation causes).
//!
//! A record is a few hundred bytes of JSON, too short for zstd to learn its
//! field names from the record alone, so each one is compressed against a
//! dictionary: an event header and a run record as hookflow writes them
//! (field names, statuses, the usual headers, no payload), which a record
//! may copy any part of. A Stripe-sized event and its run take about a
//! quarter fewer bytes (1,904 against 1,469 in the sample of
//! `docs/performance.md`). [`DICTIONARY_2`] adds entropy tables to that
//! content, so zstd uses those instead of building and writing tables of
//! its own for each record (for a long run of literals it may still build
//! its own, and keeps whichever is smaller). A dictionary is part of the
//! format: its bytes never change (a test pins them); a better one gets
//! new tags, and the old one stays to read what it wrote.
//!
//! An event's head is written apart, in front, uncompressed: retention
//! reads it for every event it looks at, most of them events it cannot
//! remove yet, and the packer and the recovery of dedupe keys read it too.

use crate::record::body::{BodyKind, RawBody};
use crate::record::{Event, EventId, Outcome, Run, RunId, Timestamp};
use crate::store::{Result, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// A run record compressed without a dictionary (earlier versions).
pub const RUN: u8 = 1;
/// An event record compressed without a dictionary (earlier versions).
pub const EVENT: u8 = 2;
/// A dedupe entry (uncompressed: it is a few dozen bytes).
pub const DEDUPE: u8 = 3;
/// A run record compressed with [`DICTIONARY_1`] (earlier versions).
pub const RUN_D1: u8 = 4;
/// An event record compressed with [`DICTIONARY_1`] (earlier versions).
pub const EVENT_D1: u8 = 5;
/// Records packed together with [`DICTIONARY_1`] (earlier versions).
pub const PACK_D1: u8 = 6;
/// A [`RUN_D1`] record of a run that has ended (earlier versions).
pub const RUN_D1_FINAL: u8 = 7;
/// A run record compressed with [`DICTIONARY_2`].
pub const RUN_D2: u8 = 8;
/// A [`RUN_D2`] record of a run that has ended. Retention by size removes
/// an event only once its runs have ended, and the packer packs a run once
/// it has ended; both read that from the tag alone: deciding it from the
/// record cost a decompression and a parse of every run pruned, which
/// while a burst fills the data folder is pruning runs not yet packed (a
/// tenth of the server's CPU in that phase; `docs/performance.md`).
pub const RUN_D2_FINAL: u8 = 9;
/// An event record: what pruning, packing and recovery read of it (its
/// [`EventHead`]) as plain bytes in front, the rest compressed with
/// [`DICTIONARY_2`].
pub const EVENT_D2: u8 = 10;
/// Records packed together ([`encode_pack`]), with [`DICTIONARY_2`].
pub const PACK_D2: u8 = 11;

/// The raw-content dictionary of the `_D1` records: hookflow's field
/// names, as earlier versions wrote every record with.
pub const DICTIONARY_1: &[u8] = include_bytes!("records.dict");
/// The dictionary of the `_D2` records: [`DICTIONARY_1`]'s content, and
/// entropy tables made from records of the shipped example workflows
/// (`tests/examples.rs`, `records_dictionary_from_the_shipped_examples`).
/// With tables given, zstd mostly does not build and write its own for
/// every record: that was about a third of a record's compression time,
/// and a good part of a short record's size.
pub const DICTIONARY_2: &[u8] = include_bytes!("records2.dict");
/// The first byte of a JSON record.
const JSON: u8 = b'{';
/// An id in a dedupe entry: a generated id packed in 16 bytes follows.
const ID_PACKED: u8 = 0;
/// An id in a dedupe entry: its length (u16 LE) and text follow.
const ID_TEXT: u8 = 1;
/// A dedupe key in an [`EVENT_D2`] head: its length (u8) and the bytes
/// its hex text stands for follow.
const KEY_BYTES: u8 = 0;
/// A dedupe key in an [`EVENT_D2`] head: its length (u16 LE) and text
/// follow.
const KEY_TEXT: u8 = 1;

/// zstd's fastest regular level.
const LEVEL: i32 = 1;
/// The largest record read back (a stored event holds at most the inbound
/// body limit plus its headers; runs keep cut bodies).
const MAX_RECORD: usize = 256 * 1024 * 1024;

/// Which dictionary a record's payload was compressed with.
#[derive(Clone, Copy)]
enum Dictionary {
    None,
    One,
    Two,
}

impl Dictionary {
    fn of(tag: u8) -> Option<Dictionary> {
        match tag {
            RUN | EVENT => Some(Dictionary::None),
            RUN_D1 | RUN_D1_FINAL | EVENT_D1 | PACK_D1 => Some(Dictionary::One),
            RUN_D2 | RUN_D2_FINAL | EVENT_D2 | PACK_D2 => Some(Dictionary::Two),
            _ => None,
        }
    }
}

type Decompressor = RefCell<Option<zstd::bulk::Decompressor<'static>>>;

thread_local! {
    /// Compresses with [`DICTIONARY_2`]: every record written uses it.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    /// Reads records written with [`DICTIONARY_2`].
    static DECOMPRESSOR_D2: Decompressor = const { RefCell::new(None) };
    /// Reads records written with [`DICTIONARY_1`].
    static DECOMPRESSOR_D1: Decompressor = const { RefCell::new(None) };
    /// Reads records of earlier versions, written without a dictionary.
    static DECOMPRESSOR: Decompressor = const { RefCell::new(None) };
}

fn corrupt(key: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// The length field's top bit: the payload is not compressed.
const STORED: u32 = 1 << 31;

/// Appends length (u32 LE) ++ zstd(`plain`) against [`DICTIONARY_2`].
fn compress_into(out: &mut Vec<u8>, plain: &[u8]) {
    let compressed = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = zstd::bulk::Compressor::with_dictionary(LEVEL, DICTIONARY_2).ok();
        }
        c.as_mut().and_then(|c| c.compress(plain).ok())
    });
    let (len, payload) = match &compressed {
        Some(z) => (plain.len() as u32, &z[..]),
        None => (plain.len() as u32 | STORED, plain),
    };
    out.reserve(4 + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
}

/// `tag` ++ length ++ zstd(`plain`) against [`DICTIONARY_2`].
fn pack(tag: u8, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + plain.len() / 2);
    out.push(tag);
    compress_into(&mut out, plain);
    out
}

/// Where a compressed record's length field starts: after the tag, and
/// for an [`EVENT_D2`], after its head.
fn payload_at(key: &str, bytes: &[u8]) -> Result<usize> {
    match bytes.first() {
        Some(&EVENT_D2) => {
            let mut r = Reader::of_record(bytes, 1, key);
            r.head()?;
            Ok(r.at)
        }
        Some(_) => Ok(1),
        None => Err(corrupt(key, "the record is empty")),
    }
}

/// The plain bytes of a compressed record (any tag but [`DEDUPE`]).
fn unpack(key: &str, packed: &[u8]) -> Result<Vec<u8>> {
    let dictionary = packed
        .first()
        .and_then(|&tag| Dictionary::of(tag))
        .ok_or_else(|| corrupt(key, "not a compressed record"))?;
    let at = payload_at(key, packed)?;
    unpack_payload(key, dictionary, &packed[at..])
}

/// The plain bytes of length (u32 LE) ++ payload.
fn unpack_payload(key: &str, dictionary: Dictionary, payload: &[u8]) -> Result<Vec<u8>> {
    let (len, z) = payload
        .get(..4)
        .zip(payload.get(4..))
        .ok_or_else(|| corrupt(key, "the record is cut short"))?;
    let len = u32::from_le_bytes(len.try_into().expect("four bytes"));
    if len & STORED != 0 {
        return if (len & !STORED) as usize == z.len() {
            Ok(z.to_vec())
        } else {
            Err(corrupt(key, "the record's length does not match"))
        };
    }
    let len = len as usize;
    if len > MAX_RECORD {
        return Err(corrupt(key, format!("the record claims {len} bytes")));
    }
    let (decompressor, content) = match dictionary {
        Dictionary::None => (&DECOMPRESSOR, None),
        Dictionary::One => (&DECOMPRESSOR_D1, Some(DICTIONARY_1)),
        Dictionary::Two => (&DECOMPRESSOR_D2, Some(DICTIONARY_2)),
    };
    decompressor.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            let made = match content {
                Some(dictionary) => zstd::bulk::Decompressor::with_dictionary(dictionary),
                None => zstd::bulk::Decompressor::new(),
            };
            *d = Some(made.map_err(|e| corrupt(key, e))?);
        }
        let d = d.as_mut().expect("set just above");
        let plain = d.decompress(z, len).map_err(|e| corrupt(key, e))?;
        if plain.len() != len {
            return Err(corrupt(key, "the record's length does not match"));
        }
        Ok(plain)
    })
}

/// `plain` (records laid out by [`super::shelf`]) compressed as one pack.
pub fn encode_pack(plain: &[u8]) -> Vec<u8> {
    pack(PACK_D2, plain)
}

/// The plain bytes of a pack written by [`encode_pack`].
pub fn decode_pack(key: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    match bytes.first() {
        Some(&PACK_D1 | &PACK_D2) => unpack(key, bytes),
        _ => Err(corrupt(key, "not a pack")),
    }
}

/// A record as it goes into a pack: the same record, its payload no
/// longer compressed on its own (the pack is compressed as a whole, which
/// finds what records have in common). Read back like any other record.
pub fn expanded(key: &str, record: &[u8]) -> Result<Vec<u8>> {
    match record.first().copied() {
        Some(
            tag @ (RUN | EVENT | RUN_D1 | RUN_D1_FINAL | EVENT_D1 | RUN_D2 | RUN_D2_FINAL
            | EVENT_D2),
        ) => {
            let dictionary = Dictionary::of(tag).ok_or_else(|| corrupt(key, "not a record"))?;
            let at = payload_at(key, record)?;
            let plain = unpack_payload(key, dictionary, &record[at..])?;
            let len = u32::try_from(plain.len())
                .ok()
                .filter(|l| l & STORED == 0)
                .ok_or_else(|| corrupt(key, "the record is too long"))?;
            let mut out = Vec::with_capacity(at + 4 + plain.len());
            out.extend_from_slice(&record[..at]);
            out.extend_from_slice(&(len | STORED).to_le_bytes());
            out.extend_from_slice(&plain);
            Ok(out)
        }
        _ => Ok(record.to_vec()),
    }
}

/// The plain bytes a record's payload holds, whatever its form: JSON as
/// it is, a compressed record uncompressed. What a dictionary is made
/// from ([`DICTIONARY_2`]).
pub fn payload(key: &str, record: &[u8]) -> Result<Vec<u8>> {
    match record.first() {
        Some(&JSON) => Ok(record.to_vec()),
        _ => unpack(key, record),
    }
}

pub fn encode_run(run: &Run) -> Vec<u8> {
    let json = serde_json::to_vec(run).expect("records are plain data and always serialize");
    let tag = if run.status.is_final() {
        RUN_D2_FINAL
    } else {
        RUN_D2
    };
    pack(tag, &json)
}

/// Whether a run record says, without being read, that its run has ended:
/// `true` for [`RUN_D2_FINAL`] and [`RUN_D1_FINAL`]; `false` when only
/// reading it can tell (a run still going, or a record of an earlier
/// version).
pub fn run_ended(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(&RUN_D2_FINAL | &RUN_D1_FINAL))
}

/// A run record's head, or `None` when its tag says the run has ended
/// and nothing needs reading: what retention, the packer and the queue's
/// count ask of a run.
pub fn run_head_unless_ended(key: &str, bytes: &[u8]) -> Option<Result<crate::store::RunHead>> {
    (!run_ended(bytes)).then(|| decode_run(key, bytes))
}

/// Any type a run record deserializes into (the whole [`Run`], or a head).
pub fn decode_run<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    match bytes.first() {
        Some(&RUN | &RUN_D1 | &RUN_D1_FINAL | &RUN_D2 | &RUN_D2_FINAL) => {
            let plain = unpack(key, bytes)?;
            serde_json::from_slice(&plain).map_err(|e| corrupt(key, e))
        }
        Some(&JSON) => serde_json::from_slice(bytes).map_err(|e| corrupt(key, e)),
        _ => Err(corrupt(key, "not a run record")),
    }
}

/// An event as stored, without its body when the body's bytes follow, and
/// without its head (written apart, [`EVENT_D2`]; earlier versions kept
/// `outcome`, `runs` and `dedupe` here, which [`HeaderIn`] still reads).
#[derive(Serialize)]
struct HeaderOut<'a> {
    id: &'a EventId,
    received_at: Timestamp,
    path: &'a str,
    method: &'a str,
    headers: &'a BTreeMap<String, String>,
    query: &'a BTreeMap<String, String>,
    /// Present when the body's bytes do not follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a Value>,
    /// How the bytes that follow read, when they do.
    #[serde(skip_serializing_if = "Option::is_none")]
    body_kind: Option<BodyKind>,
    body_size: usize,
    reason: &'a Option<String>,
    workflows: &'a [String],
    source: &'a Option<String>,
}

impl<'a> HeaderOut<'a> {
    /// `event`'s header.
    fn of(event: &'a Event) -> HeaderOut<'a> {
        let raw = event.raw_body.as_ref();
        HeaderOut {
            id: &event.id,
            received_at: event.received_at,
            path: &event.path,
            method: &event.method,
            headers: &event.headers,
            query: &event.query,
            body: raw.is_none().then_some(&event.body),
            body_kind: raw.map(|r| r.kind),
            body_size: event.body_size,
            reason: &event.reason,
            workflows: &event.workflows,
            source: &event.source,
        }
    }
}

/// header length (u32 LE) ++ `header` as JSON ++ the body's bytes.
fn event_plain(header: &HeaderOut, event: &Event) -> Vec<u8> {
    let header = serde_json::to_vec(header).expect("records are plain data and always serialize");
    let body = event.raw_body.as_ref().map_or(&[][..], |r| &r.bytes[..]);
    let mut plain = Vec::with_capacity(4 + header.len() + body.len());
    plain.extend_from_slice(&(header.len() as u32).to_le_bytes());
    plain.extend_from_slice(&header);
    plain.extend_from_slice(body);
    plain
}

/// A dedupe key an event claimed, kept in the event's record: the keys'
/// own database is flushed once a second, so after a crash an event on
/// disk may lack its key there, and the key is written again from here
/// (`dedupe::DedupeKeys::recover`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedKey {
    /// The hashed key, in hex.
    pub key: String,
    pub expires_at: Timestamp,
}

#[derive(Deserialize)]
struct HeaderIn {
    id: EventId,
    received_at: Timestamp,
    path: String,
    method: String,
    headers: BTreeMap<String, String>,
    query: BTreeMap<String, String>,
    #[serde(default)]
    body: Value,
    #[serde(default)]
    body_kind: Option<BodyKind>,
    #[serde(default)]
    body_size: usize,
    #[serde(default)]
    outcome: Option<Outcome>,
    reason: Option<String>,
    #[serde(default)]
    workflows: Vec<String>,
    #[serde(default)]
    runs: Option<Vec<RunId>>,
    #[serde(default)]
    source: Option<String>,
}

pub fn encode_event(event: &Event) -> Vec<u8> {
    encode_event_claiming(event, &[])
}

/// An event record that also keeps the dedupe keys the event claimed.
pub fn encode_event_claiming(event: &Event, dedupe: &[ClaimedKey]) -> Vec<u8> {
    let plain = event_plain(&HeaderOut::of(event), event);
    let mut out = Vec::with_capacity(64 + plain.len() / 2);
    out.push(EVENT_D2);
    put_head(&mut out, event.outcome, &event.runs, dedupe);
    compress_into(&mut out, &plain);
    out
}

pub fn decode_event(key: &str, bytes: &[u8]) -> Result<Event> {
    let (head, plain) = match bytes.first() {
        Some(&EVENT_D2) => {
            let mut r = Reader::of_record(bytes, 1, key);
            let head = r.head()?;
            (
                Some(head),
                unpack_payload(key, Dictionary::Two, &bytes[r.at..])?,
            )
        }
        Some(&EVENT | &EVENT_D1) => (None, unpack(key, bytes)?),
        Some(&JSON) => return serde_json::from_slice(bytes).map_err(|e| corrupt(key, e)),
        _ => return Err(corrupt(key, "not an event record")),
    };
    let (len, rest) = plain
        .split_at_checked(4)
        .ok_or_else(|| corrupt(key, "the event is cut short"))?;
    let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
    let (header, body) = rest
        .split_at_checked(len)
        .ok_or_else(|| corrupt(key, "the event's header is cut short"))?;
    let h: HeaderIn = serde_json::from_slice(header).map_err(|e| corrupt(key, e))?;
    let (outcome, runs) = match head {
        Some(head) => (head.outcome, head.runs),
        None => (
            h.outcome
                .ok_or_else(|| corrupt(key, "the event has no outcome"))?,
            h.runs
                .ok_or_else(|| corrupt(key, "the event has no runs"))?,
        ),
    };
    let (body, raw_body) = match h.body_kind {
        Some(kind) => {
            let raw = RawBody {
                kind,
                bytes: bytes::Bytes::copy_from_slice(body),
            };
            (raw.value().map_err(|e| corrupt(key, e))?, Some(raw))
        }
        None => (h.body, None),
    };
    Ok(Event {
        id: h.id,
        received_at: h.received_at,
        path: h.path,
        method: h.method,
        headers: h.headers,
        query: h.query,
        body,
        body_size: h.body_size,
        outcome,
        reason: h.reason,
        workflows: h.workflows,
        runs,
        source: h.source,
        raw_body,
    })
}

/// What pruning, packing and recovery need of an event: in an
/// [`EVENT_D2`] record, read without decompressing anything.
#[derive(Debug, PartialEq, Deserialize)]
pub struct EventHead {
    pub outcome: Outcome,
    pub runs: Vec<RunId>,
    #[serde(default)]
    pub dedupe: Vec<ClaimedKey>,
}

pub fn event_head(key: &str, bytes: &[u8]) -> Result<EventHead> {
    match bytes.first() {
        Some(&EVENT_D2) => Reader::of_record(bytes, 1, key).head(),
        Some(&EVENT | &EVENT_D1) => {
            let plain = unpack(key, bytes)?;
            let len = plain
                .get(..4)
                .map(|l| u32::from_le_bytes(l.try_into().expect("four bytes")) as usize)
                .ok_or_else(|| corrupt(key, "the event is cut short"))?;
            let header = plain
                .get(4..4 + len)
                .ok_or_else(|| corrupt(key, "the event's header is cut short"))?;
            serde_json::from_slice(header).map_err(|e| corrupt(key, e))
        }
        _ => serde_json::from_slice(bytes).map_err(|e| corrupt(key, e)),
    }
}

/// An [`EVENT_D2`] head: outcome (u8) ++ run count (u32 LE) ++ run ids (as
/// in a dedupe entry) ++ key count (u32 LE) ++ for each key, its form, its
/// bytes and its expiry (ms, u64 LE).
fn put_head(out: &mut Vec<u8>, outcome: Outcome, runs: &[RunId], dedupe: &[ClaimedKey]) {
    out.push(outcome_byte(outcome));
    out.extend_from_slice(&(runs.len() as u32).to_le_bytes());
    for r in runs {
        put_id(out, r.packed(), r.as_str());
    }
    out.extend_from_slice(&(dedupe.len() as u32).to_le_bytes());
    for k in dedupe {
        match hex::decode(&k.key) {
            Ok(b) if b.len() <= u8::MAX as usize && hex::encode(&b) == k.key => {
                out.push(KEY_BYTES);
                out.push(b.len() as u8);
                out.extend_from_slice(&b);
            }
            _ => {
                let text = &k.key.as_bytes()[..k.key.len().min(u16::MAX as usize)];
                out.push(KEY_TEXT);
                out.extend_from_slice(&(text.len() as u16).to_le_bytes());
                out.extend_from_slice(text);
            }
        }
        out.extend_from_slice(&k.expires_at.0.to_le_bytes());
    }
}

fn outcome_byte(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Accepted => 0,
        Outcome::Unmatched => 1,
        Outcome::Duplicate => 2,
        Outcome::Rejected => 3,
    }
}

fn outcome_of(key: &str, byte: u8) -> Result<Outcome> {
    Outcome::ALL
        .into_iter()
        .find(|&o| outcome_byte(o) == byte)
        .ok_or_else(|| corrupt(key, format!("unknown outcome {byte}")))
}

/// A dedupe entry in a few dozen bytes: this tree takes a write at a random
/// place for every event with a dedupe key, so its size counts on disk.
pub fn encode_dedupe(e: &crate::store::DedupeEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + 17 * (2 + e.runs.len()));
    out.push(DEDUPE);
    out.extend_from_slice(&e.expires_at.0.to_le_bytes());
    put_id(&mut out, e.event_id.packed(), e.event_id.as_str());
    let n = u16::try_from(e.runs.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&n.to_le_bytes());
    for r in e.runs.iter().take(n as usize) {
        put_id(&mut out, r.packed(), r.as_str());
    }
    out
}

/// A dedupe entry, in this form or as the JSON earlier versions wrote.
pub fn decode_dedupe(key: &str, bytes: &[u8]) -> Result<crate::store::DedupeEntry> {
    match bytes.first() {
        Some(&DEDUPE) => {
            let mut r = Reader {
                bytes,
                at: 1,
                key,
                what: "the dedupe entry",
            };
            let expires_at = Timestamp(u64::from_le_bytes(r.array::<8>()?));
            let event_id = r.id(EventId::from_packed, EventId)?;
            let n = u16::from_le_bytes(r.array::<2>()?);
            let runs = (0..n)
                .map(|_| r.id(RunId::from_packed, RunId))
                .collect::<Result<Vec<_>>>()?;
            if r.at != bytes.len() {
                return Err(corrupt(key, "the dedupe entry has bytes left over"));
            }
            Ok(crate::store::DedupeEntry {
                event_id,
                runs,
                expires_at,
            })
        }
        Some(&JSON) => serde_json::from_slice(bytes).map_err(|e| corrupt(key, e)),
        _ => Err(corrupt(key, "not a dedupe entry")),
    }
}

/// A generated id as its 16 bytes ([`RunId::packed`]), any other as its
/// text.
fn put_id(out: &mut Vec<u8>, packed: Option<(u64, u64)>, id: &str) {
    match packed {
        Some((high, low)) => {
            out.push(ID_PACKED);
            out.extend_from_slice(&high.to_be_bytes());
            out.extend_from_slice(&low.to_be_bytes());
        }
        None => {
            let text = &id.as_bytes()[..id.len().min(u16::MAX as usize)];
            out.push(ID_TEXT);
            out.extend_from_slice(&(text.len() as u16).to_le_bytes());
            out.extend_from_slice(text);
        }
    }
}

/// Reads the fields of a dedupe entry, or of an event's head, in order.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    key: &'a str,
    /// What is read, for errors.
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A record's fields from `at` on.
    fn of_record(bytes: &'a [u8], at: usize, key: &'a str) -> Reader<'a> {
        Reader {
            bytes,
            at,
            key,
            what: "the record",
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let part = self
            .bytes
            .get(self.at..self.at.saturating_add(n))
            .ok_or_else(|| corrupt(self.key, format!("{} is cut short", self.what)))?;
        self.at += n;
        Ok(part)
    }

    /// A count written as u32 LE; each counted item takes at least `min`
    /// bytes, so a count larger than the bytes left is damage, not a
    /// reason to allocate.
    fn count(&mut self, min: usize) -> Result<usize> {
        let n = u32::from_le_bytes(self.array::<4>()?) as usize;
        if n.saturating_mul(min) > self.bytes.len() - self.at {
            return Err(corrupt(self.key, format!("{} is cut short", self.what)));
        }
        Ok(n)
    }

    /// An [`EVENT_D2`] head, as [`put_head`] wrote it.
    fn head(&mut self) -> Result<EventHead> {
        let outcome = outcome_of(self.key, self.array::<1>()?[0])?;
        let n = self.count(3)?;
        let runs = (0..n)
            .map(|_| self.id(RunId::from_packed, RunId))
            .collect::<Result<Vec<_>>>()?;
        let n = self.count(10)?;
        let mut dedupe = Vec::with_capacity(n);
        for _ in 0..n {
            let key = match self.array::<1>()?[0] {
                KEY_BYTES => {
                    let len = self.array::<1>()?[0] as usize;
                    hex::encode(self.take(len)?)
                }
                KEY_TEXT => {
                    let len = u16::from_le_bytes(self.array::<2>()?) as usize;
                    String::from_utf8(self.take(len)?.to_vec()).map_err(|e| corrupt(self.key, e))?
                }
                other => return Err(corrupt(self.key, format!("unknown key form {other}"))),
            };
            let expires_at = Timestamp(u64::from_le_bytes(self.array::<8>()?));
            dedupe.push(ClaimedKey { key, expires_at });
        }
        Ok(EventHead {
            outcome,
            runs,
            dedupe,
        })
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("took exactly N bytes"))
    }

    /// An id as [`put_id`] wrote it: `packed` rebuilds a generated one,
    /// `text` any other.
    fn id<T>(&mut self, packed: fn(u64, u64) -> T, text: fn(String) -> T) -> Result<T> {
        match self.array::<1>()?[0] {
            ID_PACKED => {
                let high = u64::from_be_bytes(self.array::<8>()?);
                let low = u64::from_be_bytes(self.array::<8>()?);
                Ok(packed(high, low))
            }
            ID_TEXT => {
                let len = u16::from_le_bytes(self.array::<2>()?) as usize;
                let bytes = self.take(len)?.to_vec();
                String::from_utf8(bytes)
                    .map(text)
                    .map_err(|e| corrupt(self.key, e))
            }
            other => Err(corrupt(self.key, format!("unknown id form {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(raw: Option<(BodyKind, &'static [u8])>, body: Value) -> Event {
        Event {
            id: EventId::generate(),
            received_at: Timestamp(1_795_000_000_000),
            path: "/hooks/stripe".into(),
            method: "POST".into(),
            headers: [("content-type".to_string(), "application/json".to_string())].into(),
            query: BTreeMap::new(),
            body,
            body_size: raw.map_or(0, |(_, b)| b.len()),
            outcome: Outcome::Accepted,
            reason: None,
            workflows: vec!["w".into()],
            runs: vec![RunId::generate()],
            source: Some("127.0.0.1".into()),
            raw_body: raw.map(|(kind, b)| RawBody {
                kind,
                bytes: bytes::Bytes::from_static(b),
            }),
        }
    }

    #[test]
    fn events_round_trip_with_their_raw_body_or_their_value() {
        let raw = event(
            Some((BodyKind::Json, b"{\n  \"type\": \"x\",\n  \"n\": 1\n}")),
            json!({"type": "x", "n": 1}),
        );
        let stored = encode_event(&raw);
        assert_eq!(stored[0], EVENT_D2);
        let back = decode_event("k", &stored).expect("decodes");
        assert_eq!(back.body, raw.body);
        assert_eq!(
            back.raw_body, raw.raw_body,
            "the bytes come back as they were"
        );
        assert_eq!(
            serde_json::to_value(&back).expect("json"),
            serde_json::to_value(&raw).expect("json")
        );
        for (kind, bytes, value) in [
            (
                BodyKind::Form,
                &b"a=1&b=x+y"[..],
                json!({"a": "1", "b": "x y"}),
            ),
            (BodyKind::Text, &b"hello"[..], json!("hello")),
            (BodyKind::Json, &b"  "[..], Value::Null),
        ] {
            let e = event(Some((kind, bytes)), value.clone());
            let back = decode_event("k", &encode_event(&e)).expect("decodes");
            assert_eq!(back.body, value);
        }
        // A redacted body has no raw bytes: its value is kept.
        let redacted = event(None, json!({"token": "[redacted]"}));
        let back = decode_event("k", &encode_event(&redacted)).expect("decodes");
        assert_eq!(back.body, json!({"token": "[redacted]"}));
        assert_eq!(back.raw_body, None);
        let head = event_head("k", &encode_event(&redacted)).expect("reads");
        assert_eq!(head.outcome, Outcome::Accepted);
        assert_eq!(head.runs, redacted.runs);
    }

    /// `plain` under `tag` as earlier versions compressed it: against
    /// `dictionary`, or without one.
    fn compressed(tag: u8, plain: &[u8], dictionary: Option<&[u8]>) -> Vec<u8> {
        let z = match dictionary {
            Some(d) => zstd::bulk::Compressor::with_dictionary(LEVEL, d)
                .and_then(|mut c| c.compress(plain)),
            None => zstd::bulk::compress(plain, LEVEL),
        };
        let mut out = vec![tag];
        out.extend_from_slice(&(plain.len() as u32).to_le_bytes());
        out.extend_from_slice(&z.expect("compresses"));
        out
    }

    /// An event's plain bytes as versions before [`EVENT_D2`] wrote them:
    /// its head inside the header.
    fn plain_with_head_inside(e: &Event, dedupe: &[ClaimedKey]) -> Vec<u8> {
        let mut header = serde_json::to_value(HeaderOut::of(e)).expect("json");
        header["outcome"] = serde_json::to_value(e.outcome).expect("json");
        header["runs"] = serde_json::to_value(&e.runs).expect("json");
        header["dedupe"] = serde_json::to_value(dedupe).expect("json");
        let header = serde_json::to_vec(&header).expect("json");
        let body = e.raw_body.as_ref().map_or(&[][..], |r| &r.bytes[..]);
        let mut plain = (header.len() as u32).to_le_bytes().to_vec();
        plain.extend_from_slice(&header);
        plain.extend_from_slice(body);
        plain
    }

    /// A record as versions before [`DICTIONARY_1`] wrote it: the same
    /// plain bytes under `tag`, compressed without a dictionary.
    fn without_dictionary(tag: u8, record: &[u8]) -> Vec<u8> {
        compressed(tag, &unpack("k", record).expect("unpacks"), None)
    }

    /// A run as the shipped Stripe workflow leaves it: a filter, a
    /// transform and a delivered request.
    fn delivered_run() -> Run {
        let at = "2026-12-05T05:21:33.471Z";
        let response = json!({"status": 202, "headers": {"content-length": "99",
            "content-type": "application/json", "date": "Sat, 05 Dec 2026 05:21:33 GMT"},
            "body": {"ok": true}});
        let id = RunId::generate();
        serde_json::from_value(json!({
            "id": id, "workflow": "stripe-payment-to-slack", "workflow_version": "1149f652fdef9a0a",
            "event_id": EventId::generate(), "status": "succeeded", "attempt": 1,
            "created_at": at, "started_at": at, "finished_at": at, "duration_ms": 5,
            "next_attempt_at": null, "replay_of": null, "replays": [], "error": null,
            "summary": "payment_intent.succeeded · pi_3PqTn2LkdIwHu7ix0QzXyZ12",
            "steps": [
                {"id": "big_enough", "kind": "filter", "status": "succeeded", "started_at": at,
                 "duration_ms": 0, "output": true, "error": null, "logs": [], "attempts": []},
                {"id": "message", "kind": "transform", "status": "succeeded", "started_at": at,
                 "duration_ms": 0, "output": {"text": "Payment of 20 USD from jenny@example.com"},
                 "error": null, "logs": [], "attempts": []},
                {"id": "notify", "kind": "http", "status": "succeeded", "started_at": at,
                 "duration_ms": 4, "output": response, "error": null, "logs": [],
                 "attempts": [{"n": 1, "started_at": at, "duration_ms": 4,
                    "request": {"method": "POST", "url": "https://hooks.slack.com/services/T0/B0/x",
                        "headers": {"Content-Type": "application/json",
                                    "Idempotency-Key": format!("{}.notify", id.as_str())},
                        "body": {"text": "Payment of 20 USD from jenny@example.com"}},
                    "response": response, "error": null}],
                 "uses": "slack.incoming_webhook"}
            ]
        }))
        .expect("a run")
    }

    #[test]
    fn records_of_earlier_versions_are_read() {
        let e = event(None, json!({"a": 1}));
        let plain = serde_json::to_vec(&e).expect("json");
        let back = decode_event("k", &plain).expect("decodes");
        assert_eq!(back.body, json!({"a": 1}));
        assert_eq!(
            event_head("k", &plain).expect("reads").outcome,
            Outcome::Accepted
        );
        // The head inside the header, compressed against the first
        // dictionary, and without one.
        let e = event(Some((BodyKind::Json, b"{\"n\": 7}")), json!({"n": 7}));
        let keys = [ClaimedKey {
            key: "ab".repeat(32),
            expires_at: Timestamp(9),
        }];
        let plain = plain_with_head_inside(&e, &keys);
        for old in [
            compressed(EVENT_D1, &plain, Some(DICTIONARY_1)),
            compressed(EVENT, &plain, None),
        ] {
            let back = decode_event("k", &old).expect("decodes");
            assert_eq!(back.body, json!({"n": 7}));
            assert_eq!(back.runs, e.runs);
            assert_eq!(back.raw_body, e.raw_body);
            let head = event_head("k", &old).expect("reads");
            assert_eq!((head.runs, head.dedupe), (e.runs.clone(), keys.to_vec()));
            // Packed as it is.
            let packed = expanded("k", &old).expect("expands");
            assert_eq!(decode_event("k", &packed).expect("decodes").runs, e.runs);
        }
        // A header of the first dictionary's form lacking its head is damage.
        let headless = compressed(
            EVENT_D1,
            &event_plain(&HeaderOut::of(&e), &e),
            Some(DICTIONARY_1),
        );
        assert!(decode_event("k", &headless).is_err());
        let run = delivered_run();
        let json = serde_json::to_vec(&run).expect("json");
        for old in [
            compressed(RUN_D1_FINAL, &json, Some(DICTIONARY_1)),
            compressed(RUN_D1, &json, Some(DICTIONARY_1)),
            compressed(RUN, &json, None),
        ] {
            let back: Run = decode_run("k", &old).expect("decodes");
            assert_eq!(
                serde_json::to_value(&back).expect("json"),
                serde_json::to_value(&run).expect("json")
            );
        }
        let pack = compressed(PACK_D1, b"records", Some(DICTIONARY_1));
        assert_eq!(decode_pack("k", &pack).expect("reads"), b"records");
    }

    /// An event's head reads back without its body being decompressed,
    /// with every outcome, many runs or none, and keys of either form.
    #[test]
    fn an_events_head_is_read_from_its_front() {
        let mut e = event(Some((BodyKind::Json, b"{\"n\": 1}")), json!({"n": 1}));
        let keys = vec![
            ClaimedKey {
                key: hex::encode([7u8; 32]),
                expires_at: Timestamp(1_795_000_000_000),
            },
            // Not hex as hookflow writes it: kept as text.
            ClaimedKey {
                key: "ABCD-not-hex".into(),
                expires_at: Timestamp(u64::MAX),
            },
            ClaimedKey {
                key: String::new(),
                expires_at: Timestamp(0),
            },
        ];
        for outcome in Outcome::ALL {
            for runs in [
                vec![],
                (0..300).map(|_| RunId::generate()).collect(),
                vec![RunId("run_hand-made".into())],
            ] {
                e.outcome = outcome;
                e.runs = runs;
                let stored = encode_event_claiming(&e, &keys);
                let head = event_head("k", &stored).expect("reads");
                assert_eq!(
                    head,
                    EventHead {
                        outcome,
                        runs: e.runs.clone(),
                        dedupe: keys.clone()
                    }
                );
                // The payload is not needed: a record cut after its head
                // still gives its head.
                let at = payload_at("k", &stored).expect("the head reads");
                assert_eq!(event_head("k", &stored[..at]).expect("reads"), head);
                let back = decode_event("k", &stored).expect("decodes");
                assert_eq!((back.outcome, &back.runs), (outcome, &e.runs));
                // Packed: the head stays in front, the payload no longer
                // compressed on its own.
                let packed = expanded("k", &stored).expect("expands");
                assert_eq!(event_head("k", &packed).expect("reads"), head);
                assert_eq!(
                    serde_json::to_value(decode_event("k", &packed).expect("decodes"))
                        .expect("json"),
                    serde_json::to_value(&back).expect("json")
                );
            }
        }
    }

    /// Records written with a dictionary are read with these exact bytes:
    /// changing them would make every stored record unreadable. A better
    /// dictionary is a new file under new tags, and the old one stays.
    #[test]
    fn the_dictionaries_never_change() {
        use sha2::Digest;
        assert_eq!(
            hex::encode(sha2::Sha256::digest(DICTIONARY_1)),
            "e83000580bfe88383f6973cb49fbebf23945d29a1ddef106210d406c47c3a8dc",
            "records.dict is part of the record format"
        );
        // Not a trained dictionary (its magic number): zstd reads it as raw
        // content, as the records were written.
        assert_ne!(DICTIONARY_1.get(..4), Some(&[0x37, 0xa4, 0x30, 0xec][..]));
        assert_eq!(
            hex::encode(sha2::Sha256::digest(DICTIONARY_2)),
            "72a411558e209f84ebec9f7bab7f3d338937a36c11485659d83ac60ca384e2b3",
            "records2.dict is part of the record format"
        );
        // A dictionary with entropy tables (its magic number), and the
        // first one's content at its end.
        assert_eq!(DICTIONARY_2.get(..4), Some(&[0x37, 0xa4, 0x30, 0xec][..]));
        assert!(DICTIONARY_2.ends_with(DICTIONARY_1));
    }

    /// Retention reads from the tag alone that a run has ended; every
    /// other status, and a record of an earlier version, is read whole.
    #[test]
    fn a_run_that_ended_says_so_in_its_tag() {
        use crate::record::RunStatus;
        use crate::store::RunHead;
        let ended = delivered_run();
        let record = encode_run(&ended);
        assert_eq!(record.first(), Some(&RUN_D2_FINAL));
        assert!(run_ended(&record));
        let back: RunHead = decode_run("k", &record).expect("decodes");
        assert!(back.status.is_final());
        // Packed, the record keeps its tag and reads back whole.
        let packed = expanded("k", &record).expect("expands");
        assert!(run_ended(&packed));
        let whole: Run = decode_run("k", &packed).expect("decodes");
        assert_eq!(
            serde_json::to_value(&whole).expect("json"),
            serde_json::to_value(&ended).expect("json")
        );
        for status in RunStatus::ALL {
            let mut run = ended.clone();
            run.status = status;
            let record = encode_run(&run);
            assert_eq!(run_ended(&record), status.is_final(), "{status:?}");
            let back: RunHead = decode_run("k", &record).expect("decodes");
            assert_eq!(back.status, status);
        }
        // An ended run as the version before wrote it says so too.
        let json = serde_json::to_vec(&ended).expect("json");
        assert!(run_ended(&compressed(
            RUN_D1_FINAL,
            &json,
            Some(DICTIONARY_1)
        )));
        // Earlier versions: only reading tells.
        let earlier = compressed(RUN_D1, &json, Some(DICTIONARY_1));
        assert!(!run_ended(&earlier));
        let back: RunHead = decode_run("k", &earlier).expect("decodes");
        assert!(back.status.is_final());
        assert!(!run_ended(&without_dictionary(RUN, &earlier)));
    }

    #[test]
    fn the_dictionary_makes_records_smaller() {
        let run = delivered_run();
        let with = encode_run(&run);
        let json = serde_json::to_vec(&run).expect("json");
        let first = compressed(RUN_D1, &json, Some(DICTIONARY_1));
        let without = without_dictionary(RUN, &with);
        let back: Run = decode_run("k", &with).expect("decodes");
        assert_eq!(back.steps.len(), 3);
        assert!(
            with.len() * 10 < without.len() * 8,
            "{} bytes with the dictionary, {} without",
            with.len(),
            without.len()
        );
        // Tables given, no record carries its own.
        assert!(
            with.len() < first.len(),
            "{} bytes with the second dictionary, {} with the first",
            with.len(),
            first.len()
        );
    }

    #[test]
    fn damage_is_an_error_never_a_panic() {
        let e = event(Some((BodyKind::Json, b"{}")), json!({}));
        let keys = [ClaimedKey {
            key: "cd".repeat(32),
            expires_at: Timestamp(1),
        }];
        let stored = encode_event_claiming(&e, &keys);
        let at = payload_at("k", &stored).expect("the head reads");
        for cut in 0..stored.len() {
            let whole = decode_event("k", &stored[..cut]);
            assert!(whole.is_err(), "cut at {cut}");
            assert_eq!(
                event_head("k", &stored[..cut]).is_ok(),
                cut >= at,
                "cut at {cut}"
            );
        }
        for i in 0..stored.len() {
            for bit in [0x01, 0x80, 0xff] {
                let mut flipped = stored.clone();
                flipped[i] ^= bit;
                let _ = decode_event("k", &flipped);
                let _ = event_head("k", &flipped);
                let _ = expanded("k", &flipped);
            }
        }
        // Counts larger than the record are damage, not allocations.
        let mut counted = stored.clone();
        counted[2..6].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(event_head("k", &counted).is_err());
        let mut huge = stored;
        huge[at..at + 4].copy_from_slice(&(STORED - 1).to_le_bytes());
        assert!(decode_event("k", &huge).is_err());
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_event("k", &huge).is_err());
        for tag in [RUN, RUN_D1, RUN_D2, RUN_D2_FINAL] {
            assert!(decode_run::<Run>("k", &[tag, 1, 2]).is_err());
        }
        assert!(decode_run::<Run>("k", b"").is_err());
        assert!(decode_pack("k", &[PACK_D2, 1]).is_err());
        assert!(
            event_head("k", &[EVENT_D2, 9]).is_err(),
            "an unknown outcome"
        );
    }

    #[test]
    fn a_dedupe_entry_round_trips_small_and_the_json_form_still_reads() {
        use crate::store::DedupeEntry;
        let entries = [
            DedupeEntry {
                event_id: EventId::generate(),
                runs: vec![RunId::generate(), RunId::generate()],
                expires_at: Timestamp(1_764_806_400_123),
            },
            // Ids that are not generated ones (older or hand-made) keep
            // their text; no runs at all.
            DedupeEntry {
                event_id: EventId("evt_older-form".into()),
                runs: vec![RunId("run_ABC".into())],
                expires_at: Timestamp(0),
            },
            DedupeEntry {
                event_id: EventId::generate(),
                runs: vec![],
                expires_at: Timestamp(253_402_300_799_000),
            },
        ];
        for e in &entries {
            let bytes = encode_dedupe(e);
            let back = decode_dedupe("k", &bytes).expect("reads back");
            assert_eq!(back.event_id, e.event_id);
            assert_eq!(back.runs, e.runs);
            assert_eq!(back.expires_at, e.expires_at);
            let json = serde_json::to_vec(e).expect("json");
            let old = decode_dedupe("k", &json).expect("the JSON form reads");
            assert_eq!(old.runs, e.runs);
        }
        // One generated event id and one run: 1 + 8 + 17 + 2 + 17 bytes,
        // against about 130 as JSON.
        let one = DedupeEntry {
            event_id: EventId::generate(),
            runs: vec![RunId::generate()],
            expires_at: Timestamp(1),
        };
        assert_eq!(encode_dedupe(&one).len(), 45);
        // Damage is an error, never a panic.
        let bytes = encode_dedupe(&entries[0]);
        for cut in 0..bytes.len() {
            assert!(decode_dedupe("k", &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_dedupe("k", &longer).is_err());
        assert!(decode_dedupe("k", &[DEDUPE, 1, 2]).is_err());
    }
}
