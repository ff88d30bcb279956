//! Secrets and their redaction (SPEC §3.2). A [`Secret`] is a value that
//! must never be shown (every `env` value a workflow uses, every verify
//! secret, the admin token): its `Debug` and `Display` print `[redacted]`,
//! and its text is reached only through [`Secret::expose`]. A [`Redactor`],
//! built once per workflow version, replaces every secret it knows in the
//! forms it may take on the way — as written, percent- or form-encoded,
//! JSON-escaped, base64 — in what is stored and shown. It is never applied
//! to the data a step hands to the next one. [`LogSecrets`] is the log's
//! redactor, shared by the log writer and the server that loads workflows.
//! [`learnt`] holds the secrets learnt while running (the OAuth2 tokens
//! connectors fetch): redacted from every record and log line of the
//! process from the moment they are handed out.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

/// What a secret is replaced by.
pub const REDACTED: &str = "[redacted]";

/// A value that must never be printed, logged or stored.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret's text: for the places that use it (a request, a
    /// signature check, a token comparison), never for output.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

/// Secrets shorter than this (in bytes) are not looked for in base64: their
/// base64 forms are 2 to 6 characters long and would match unrelated base64
/// text (ids, hashes, images). They are still redacted as written,
/// percent-encoded and JSON-escaped, since those forms keep the secret's
/// own characters.
pub const MIN_BASE64_SECRET: usize = 6;

/// Replaces known secrets, in every form this module recognises, with
/// [`REDACTED`].
///
/// Recognised forms:
/// - as written;
/// - percent-encoded, whatever characters were encoded and in either hex
///   case, and form-encoded (`+` for a space): text holding `%` (or `+`) is
///   decoded, searched, and the encoded stretch replaced;
/// - JSON-escaped (`\"`, `\\`, `\/`, `\uXXXX` with surrogate pairs), the same
///   way for text holding `\`;
/// - base64, standard and URL-safe, padded or not, also inside a longer
///   base64 text (`Basic base64(user:secret)`): at each of the three byte
///   alignments, the characters that only the secret's bytes decide are
///   searched for; the one or two characters at either end that it shares
///   with its neighbours are left, as they say at most a few bits of it.
///
/// Not recognised, because nothing reliable identifies them: base64 broken
/// into lines, forms nested twice (base64 of a percent-encoded secret,
/// percent-encoding applied twice), hex and other encodings, digests, and a
/// secret split across fields.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<Secret>,
    /// Each secret as written, and its base64 forms.
    literal: Option<Finder>,
    /// Each secret's bytes, searched in decoded text.
    plain: Option<Finder>,
    /// Some secret holds a space, which form encoding writes as `+`.
    has_space: bool,
    /// Some secret could be the text of a JSON number, so numbers are
    /// searched too.
    numeric: bool,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// A redactor for these secrets (empty ones are ignored).
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Redactor {
        let mut secrets: Vec<Secret> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        secrets.sort();
        secrets.dedup();
        if secrets.is_empty() {
            return Redactor::default();
        }
        let mut literal: Vec<Vec<u8>> = Vec::new();
        for s in &secrets {
            literal.push(s.expose().as_bytes().to_vec());
            if s.expose().len() >= MIN_BASE64_SECRET {
                literal.extend(
                    base64_forms(s.expose().as_bytes())
                        .into_iter()
                        .map(String::into_bytes),
                );
            }
        }
        literal.sort();
        literal.dedup();
        let plain: Vec<Vec<u8>> = secrets
            .iter()
            .map(|s| s.expose().as_bytes().to_vec())
            .collect();
        let number_char = |c: char| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E');
        Redactor {
            has_space: secrets.iter().any(|s| s.expose().contains(' ')),
            numeric: secrets.iter().any(|s| s.expose().chars().all(number_char)),
            literal: Some(Finder::new(literal)),
            plain: Some(Finder::new(plain)),
            secrets,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    pub fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    /// `text` with every secret replaced.
    pub fn redacted<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let (Some(literal), Some(plain)) = (&self.literal, &self.plain) else {
            return Cow::Borrowed(text);
        };
        let mut out = Cow::Borrowed(text);
        if let Some(s) = splice(&out, literal.find_all(out.as_bytes())) {
            out = Cow::Owned(s);
        }
        if out.contains('%') {
            let d = decode_percent(&out, false);
            if let Some(s) = splice(&out, d.source_ranges(plain)) {
                out = Cow::Owned(s);
            }
        }
        if self.has_space && out.contains('+') {
            let d = decode_percent(&out, true);
            if let Some(s) = splice(&out, d.source_ranges(plain)) {
                out = Cow::Owned(s);
            }
        }
        if out.contains('\\') {
            let d = decode_json_escapes(&out);
            if let Some(s) = splice(&out, d.source_ranges(plain)) {
                out = Cow::Owned(s);
            }
        }
        out
    }

    /// Does a secret show in `text`?
    pub fn finds(&self, text: &str) -> bool {
        matches!(self.redacted(text), Cow::Owned(_))
    }

    /// Does a secret show anywhere in `value` (as [`Self::redact_value`]
    /// would find it)?
    pub fn finds_in_value(&self, value: &Value) -> bool {
        if self.is_empty() {
            return false;
        }
        match value {
            Value::String(s) => self.finds(s),
            Value::Array(a) => a.iter().any(|v| self.finds_in_value(v)),
            Value::Object(o) => o
                .iter()
                .any(|(k, v)| self.finds(k) || self.finds_in_value(v)),
            Value::Number(n) => self.numeric && self.finds(&n.to_string()),
            Value::Null | Value::Bool(_) => false,
        }
    }

    /// Could a secret show in the value that this JSON text parses to?
    /// `false` is certain; `true` means the value must be searched
    /// ([`Self::finds_in_value`]). One pass over the text instead of one
    /// search per string: JSON text without `\` holds every key and string
    /// value as written, so each form searched as written (the secret, its
    /// base64) shows in the text if it shows in the value. The decoded
    /// forms need text holding `%` (or `+`, for a secret with a space) or
    /// `\`, and numbers are searched only for a numeric secret: with any of
    /// those the answer is `true`.
    pub fn may_show_in_json(&self, text: &[u8]) -> bool {
        let Some(literal) = &self.literal else {
            return false;
        };
        self.numeric
            || text
                .iter()
                .any(|&b| b == b'\\' || b == b'%' || (self.has_space && b == b'+'))
            || literal.finds_any(text)
    }

    pub fn redact_str(&self, s: &mut String) {
        if let Cow::Owned(r) = self.redacted(s) {
            *s = r;
        }
    }

    /// Redact every string (and object key) inside `value`, and every
    /// number whose text holds a secret (it becomes a string).
    pub fn redact_value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => self.redact_str(s),
            Value::Array(a) => a.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(o) => {
                o.values_mut().for_each(|v| self.redact_value(v));
                if o.keys().any(|k| matches!(self.redacted(k), Cow::Owned(_))) {
                    let entries = std::mem::take(o);
                    for (k, v) in entries {
                        o.insert(self.redacted(&k).into_owned(), v);
                    }
                }
            }
            Value::Number(n) if self.numeric => {
                let text = n.to_string();
                if let Cow::Owned(r) = self.redacted(&text) {
                    *value = Value::String(r);
                }
            }
            Value::Number(_) | Value::Null | Value::Bool(_) => {}
        }
    }

    /// Redact the names and values of a map (headers, a query).
    pub fn redact_map(&self, map: &mut BTreeMap<String, String>) {
        if self.is_empty() {
            return;
        }
        map.values_mut().for_each(|v| self.redact_str(v));
        if map
            .keys()
            .any(|k| matches!(self.redacted(k), Cow::Owned(_)))
        {
            *map = std::mem::take(map)
                .into_iter()
                .map(|(k, v)| (self.redacted(&k).into_owned(), v))
                .collect();
        }
    }
}

/// The base64 text that `secret`'s bytes alone decide, at each byte
/// alignment inside a longer base64 text, in both alphabets.
///
/// Each base64 character stands for 6 bits. A secret that starts `align`
/// bytes into a 3-byte group shares a character with the bytes before it
/// (when `align` is not 0), and one with the bytes after it (when it does
/// not end a group); the characters in between depend on it alone. With
/// `n` secret bytes after `align` others, those are the characters from
/// `ceil(4·align/3)` up to `floor(4·(align+n)/3)`.
fn base64_forms(secret: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for align in 0..3 {
        let mut bytes = vec![0u8; align];
        bytes.extend_from_slice(secret);
        let text = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes);
        let (from, to) = ((4 * align).div_ceil(3), 4 * (align + secret.len()) / 3);
        let Some(core) = text.get(from..to) else {
            continue;
        };
        out.push(core.to_string());
        let url_safe = core.replace('+', "-").replace('/', "_");
        if url_safe != core {
            out.push(url_safe);
        }
    }
    out
}

/// Many fixed patterns found in one pass, leftmost-longest first.
#[derive(Clone)]
enum Finder {
    Automaton(AhoCorasick),
    /// Used only if the automaton cannot be built (patterns far larger than
    /// any real secret): the same matches, found one pattern at a time.
    Scan(Arc<Vec<Vec<u8>>>),
}

impl Finder {
    fn new(patterns: Vec<Vec<u8>>) -> Finder {
        match AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
        {
            Ok(ac) => Finder::Automaton(ac),
            Err(_) => Finder::Scan(Arc::new(patterns)),
        }
    }

    /// Does any pattern show in `haystack`?
    fn finds_any(&self, haystack: &[u8]) -> bool {
        match self {
            Finder::Automaton(ac) => ac.is_match(haystack),
            Finder::Scan(_) => !self.find_all(haystack).is_empty(),
        }
    }

    /// Non-overlapping matches, as byte ranges, in order.
    fn find_all(&self, haystack: &[u8]) -> Vec<(usize, usize)> {
        match self {
            Finder::Automaton(ac) => ac
                .find_iter(haystack)
                .map(|m| (m.start(), m.end()))
                .collect(),
            Finder::Scan(patterns) => {
                let mut out = Vec::new();
                let mut at = 0;
                while at < haystack.len() {
                    let best = patterns
                        .iter()
                        .filter(|p| !p.is_empty())
                        .filter_map(|p| {
                            haystack[at..]
                                .windows(p.len())
                                .position(|w| w == p.as_slice())
                                .map(|i| (at + i, at + i + p.len()))
                        })
                        .min_by_key(|&(start, end)| (start, std::cmp::Reverse(end)));
                    match best {
                        Some((start, end)) => {
                            out.push((start, end));
                            at = end;
                        }
                        None => break,
                    }
                }
                out
            }
        }
    }
}

/// `text` with each range replaced by [`REDACTED`]; `None` when none was. Ranges are in order and do not overlap; one that does not fall on
/// character boundaries (which decoding cannot produce) is left alone.
fn splice(text: &str, ranges: Vec<(usize, usize)>) -> Option<String> {
    if ranges.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    let mut replaced = false;
    for (start, end) in ranges {
        if start < at || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(REDACTED);
        at = end;
        replaced = true;
    }
    out.push_str(&text[at..]);
    replaced.then_some(out)
}

/// Decoded bytes, each with the stretch of the source text it came from.
struct Decoded {
    bytes: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl Decoded {
    fn with_capacity(n: usize) -> Decoded {
        Decoded {
            bytes: Vec::with_capacity(n),
            spans: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, byte: u8, span: (usize, usize)) {
        self.bytes.push(byte);
        self.spans.push(span);
    }

    /// Where in the source each match of `finder` in the decoded bytes lies.
    fn source_ranges(&self, finder: &Finder) -> Vec<(usize, usize)> {
        finder
            .find_all(&self.bytes)
            .into_iter()
            .map(|(start, end)| (self.spans[start].0, self.spans[end - 1].1))
            .collect()
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding (`%2B` or `%2b`), and with `plus_is_space` form
/// decoding too.
fn decode_percent(text: &str, plus_is_space: bool) -> Decoded {
    let b = text.as_bytes();
    let mut d = Decoded::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = match (b[i], b.get(i + 1), b.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex_value(h).zip(hex_value(l)).map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                d.push(byte, (i, i + 3));
                i += 3;
            }
            None => {
                let byte = if plus_is_space && b[i] == b'+' {
                    b' '
                } else {
                    b[i]
                };
                d.push(byte, (i, i + 1));
                i += 1;
            }
        }
    }
    d
}

/// JSON string escapes: `\"`, `\\`, `\/`, `\b\f\n\r\t` and `\uXXXX`
/// (surrogate pairs joined). Anything else is taken as it is.
fn decode_json_escapes(text: &str) -> Decoded {
    let b = text.as_bytes();
    let mut d = Decoded::with_capacity(b.len());
    let hex4 = |at: usize| -> Option<u32> {
        let digits = b.get(at..at + 4)?;
        digits
            .iter()
            .try_fold(0u32, |acc, &c| Some(acc * 16 + u32::from(hex_value(c)?)))
    };
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            d.push(b[i], (i, i + 1));
            i += 1;
            continue;
        }
        let simple = match b.get(i + 1) {
            Some(b'"') => Some(b'"'),
            Some(b'\\') => Some(b'\\'),
            Some(b'/') => Some(b'/'),
            Some(b'b') => Some(0x08),
            Some(b'f') => Some(0x0c),
            Some(b'n') => Some(b'\n'),
            Some(b'r') => Some(b'\r'),
            Some(b't') => Some(b'\t'),
            _ => None,
        };
        if let Some(byte) = simple {
            d.push(byte, (i, i + 2));
            i += 2;
            continue;
        }
        let unit = (b.get(i + 1) == Some(&b'u')).then(|| hex4(i + 2)).flatten();
        let Some(unit) = unit else {
            d.push(b[i], (i, i + 1));
            i += 1;
            continue;
        };
        let (c, len) = if (0xD800..0xDC00).contains(&unit)
            && b.get(i + 6) == Some(&b'\\')
            && b.get(i + 7) == Some(&b'u')
        {
            match hex4(i + 8).filter(|low| (0xDC00..0xE000).contains(low)) {
                Some(low) => (
                    char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)),
                    12,
                ),
                None => (None, 6),
            }
        } else {
            (char::from_u32(unit), 6)
        };
        match c {
            Some(c) => {
                let mut buf = [0u8; 4];
                for &byte in c.encode_utf8(&mut buf).as_bytes() {
                    d.push(byte, (i, i + len));
                }
            }
            // A lone surrogate stands for no character: keep its text.
            None => {
                for (k, &byte) in b.iter().enumerate().skip(i).take(len) {
                    d.push(byte, (k, k + 1));
                }
            }
        }
        i += len;
    }
    d
}

/// The secrets log lines are cleaned of: every secret of the loaded
/// workflows and the admin token. The log writer reads it for every line;
/// the server replaces it whenever the set of workflows changes. The log is
/// one per process, so this is too.
#[derive(Clone, Default)]
pub struct LogSecrets(Arc<RwLock<Arc<Redactor>>>);

impl fmt::Debug for LogSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogSecrets({} secrets)", self.current().secrets().len())
    }
}

impl LogSecrets {
    pub fn set(&self, redactor: Redactor) {
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        *slot = Arc::new(redactor);
    }

    pub fn current(&self) -> Arc<Redactor> {
        // A panic while the slot was held cannot have left it half-written
        // (it is one pointer swap): keep using it.
        Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogSecrets {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> RedactingWriter {
        RedactingWriter(self.current(), learnt().redactor())
    }
}

/// Writes log lines to stderr with secrets redacted: the configured ones
/// and those learnt while running. The log formatter hands over each line
/// whole, in one write.
pub struct RedactingWriter(Arc<Redactor>, Arc<Redactor>);

impl std::io::Write for RedactingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        if self.0.is_empty() && self.1.is_empty() {
            err.write_all(buf)?;
        } else {
            let text = String::from_utf8_lossy(buf);
            let once = self.0.redacted(&text);
            err.write_all(self.1.redacted(&once).as_bytes())?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// How many secrets learnt under one key are kept: the current one and
/// the few before it (a record written with an older token was redacted
/// when it was written; these cover the overlap while one is replaced).
const LEARNT_PER_KEY: usize = 4;

/// Secrets learnt while running: OAuth2 access tokens (and rotated
/// refresh tokens) that connectors fetch. They are not known when a
/// workflow is compiled, so no workflow's [`Redactor`] has them; whoever
/// hands one out marks it here, and the executor, the `http` step and the
/// log writer redact what this holds besides the workflow's own.
///
/// One per process, like the log: a token must be redacted from every
/// record and line of the process, whichever workflow version, executor
/// or server used it. (Tests that run many servers in one process share
/// it too; a token is a random string, so redacting another server's is
/// harmless.)
pub struct Learnt {
    inner: RwLock<LearntInner>,
}

#[derive(Default)]
struct LearntInner {
    by_key: BTreeMap<String, Vec<Secret>>,
    redactor: Arc<Redactor>,
}

/// The process's learnt secrets.
pub fn learnt() -> &'static Learnt {
    static LEARNT: std::sync::OnceLock<Learnt> = std::sync::OnceLock::new();
    LEARNT.get_or_init(|| Learnt {
        inner: RwLock::new(LearntInner::default()),
    })
}

impl Learnt {
    /// Note `secret` under `key` (what it authenticates, e.g. a token
    /// cache key). Marking one already known costs a read lock.
    pub fn mark(&self, key: &str, secret: &Secret) {
        if secret.is_empty() {
            return;
        }
        let known = self
            .inner
            .read()
            .map(|i| i.by_key.get(key).is_some_and(|l| l.contains(secret)))
            .unwrap_or(false);
        if known {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let list = inner.by_key.entry(key.to_string()).or_default();
        if list.contains(secret) {
            return;
        }
        list.push(secret.clone());
        if list.len() > LEARNT_PER_KEY {
            list.remove(0);
        }
        let all: Vec<Secret> = inner.by_key.values().flatten().cloned().collect();
        inner.redactor = Arc::new(Redactor::new(all));
    }

    /// A redactor of every secret learnt so far (empty when none).
    pub fn redactor(&self) -> Arc<Redactor> {
        self.inner
            .read()
            .map(|i| Arc::clone(&i.redactor))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner().redactor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

    const S1: &str = "ab+cd/ef=gh";
    const S2: &str = r#"p@ss w&rd?#"\\"#;

    fn redactor(secrets: &[&str]) -> Redactor {
        Redactor::new(secrets.iter().map(|s| Secret::from(*s)))
    }

    fn check(r: &Redactor, text: &str, want: &str) {
        assert_eq!(r.redacted(text), want, "redacting {text:?}");
    }

    const ALL: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::from("hunter2-the-secret");
        assert_eq!(
            format!("{s:?} {s} {s:#?}"),
            "[redacted] [redacted] [redacted]"
        );
        assert_eq!(s.expose(), "hunter2-the-secret");
        let wrapped = Some(vec![s]);
        assert!(!format!("{wrapped:?}").contains("hunter2"));
        let r = redactor(&["hunter2-the-secret"]);
        assert!(!format!("{r:?}").contains("hunter2"));
    }

    #[test]
    fn as_written() {
        let r = redactor(&[S1, S2]);
        check(&r, "x ab+cd/ef=gh y", "x [redacted] y");
        check(&r, &format!("{S2}{S1}"), "[redacted][redacted]");
        check(&r, "nothing here", "nothing here");
        assert!(matches!(r.redacted("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn percent_encoded_in_any_case_and_any_choice_of_characters() {
        let r = redactor(&[S1, S2]);
        check(&r, "key=ab%2Bcd%2Fef%3Dgh&x=1", "key=[redacted]&x=1");
        check(&r, "key=ab%2bcd%2fef%3dgh", "key=[redacted]");
        check(&r, "/p/ab%2Bcd/ef%3Dgh/q", "/p/[redacted]/q");
        check(&r, "ab+cd%2Fef=gh", "[redacted]");
        let upper = utf8_percent_encode(S2, ALL).to_string();
        check(&r, &format!("u={upper}"), "u=[redacted]");
        check(&r, &format!("u={}", upper.to_lowercase()), "u=[redacted]");
        // A stray `%` does not stop the rest from being found.
        check(&r, "100% ab%2Bcd%2Fef%3Dgh %zz", "100% [redacted] %zz");
    }

    #[test]
    fn form_encoded() {
        let r = redactor(&[S1, S2]);
        let form = serde_urlencoded::to_string([("a", S1), ("b", S2)]).expect("form");
        assert_eq!(form, "a=ab%2Bcd%2Fef%3Dgh&b=p%40ss+w%26rd%3F%23%22%5C%5C");
        check(&r, &form, "a=[redacted]&b=[redacted]");
        // A `+` that is a plus sign still matches a secret holding one.
        let r = redactor(&["a+b c+d"]);
        check(&r, "x=a+b%20c+d", "x=[redacted]");
        check(&r, "x=a%2Bb+c%2Bd", "x=[redacted]");
    }

    #[test]
    fn json_escaped() {
        let r = redactor(&[S2, "naïve-😀-key"]);
        let json = serde_json::to_string(&serde_json::json!({ "pw": S2 })).expect("json");
        check(&r, &json[..json.len() - 1], r#"{"pw":"[redacted]""#);
        check(&r, r#"p@ss w\u0026rd?#\"\\\\ "#, "[redacted] ");
        check(&r, r#"na\u00efve-\ud83d\ude00-key"#, "[redacted]");
        check(&r, r#"na\u00EFve-😀-key!"#, "[redacted]!");
        // Escapes that stand for nothing are left as they are.
        check(&r, r#"\q \ud800 \u12"#, r#"\q \ud800 \u12"#);
        let r = redactor(&["https://h/x"]);
        check(&r, r#""https:\/\/h\/x""#, r#""[redacted]""#);
    }

    #[test]
    fn base64_in_both_alphabets_with_or_without_padding() {
        let secret = "s3cr3t?>>~~";
        let r = redactor(&[secret]);
        use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
        let std = STANDARD.encode(secret);
        assert!(std.contains('+') || std.contains('/'), "{std}");
        for text in [std, URL_SAFE.encode(secret), URL_SAFE_NO_PAD.encode(secret)] {
            let out = r.redacted(&text);
            assert!(
                out.starts_with(REDACTED) && out.len() <= REDACTED.len() + 3,
                "{text} → {out}"
            );
        }
    }

    #[test]
    fn base64_inside_longer_text_at_each_alignment() {
        use base64::engine::general_purpose::STANDARD;
        let secret = "Zx9-long-enough-secret";
        let r = redactor(&[secret]);
        for user in ["", "u", "us", "usr", "user", "admin"] {
            let text = format!("Basic {}", STANDARD.encode(format!("{user}:{secret}:tail")));
            let out = r.redacted(&text).into_owned();
            assert!(out.contains(REDACTED), "{user}: {text}");
            // What is left is only the surroundings and a few shared bits.
            let left = out.replace(REDACTED, "");
            assert!(
                left.len() <= text.len() - 4 * secret.len() / 3 + 2,
                "{text} → {out}"
            );
        }
    }

    #[test]
    fn short_secrets_are_redacted_as_written_and_escaped_but_not_in_base64() {
        let r = redactor(&["eu"]);
        check(&r, "region eu-west", "region [redacted]-west");
        check(&r, "r=%65u", "r=[redacted]");
        check(&r, r#"\u0065u"#, "[redacted]");
        // `ZXU` (base64 of `eu`) is also part of countless unrelated texts.
        check(&r, "ZXUgZXU=", "ZXUgZXU=");
    }

    #[test]
    fn values_keys_and_numbers() {
        let r = redactor(&[S1, "8675309"]);
        let mut v = serde_json::json!({
            "a": ["x-ab+cd/ef=gh-y", {"ab+cd/ef=gh": "k"}],
            "phone": 8675309,
            "n": 1,
            "ok": true,
        });
        r.redact_value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "a": ["x-[redacted]-y", {"[redacted]": "k"}],
                "phone": "[redacted]",
                "n": 1,
                "ok": true,
            })
        );
        let mut m: BTreeMap<String, String> = [
            ("x-key".to_string(), S1.to_string()),
            (S1.to_string(), "v".to_string()),
        ]
        .into();
        r.redact_map(&mut m);
        assert_eq!(m["x-key"], "[redacted]");
        assert_eq!(m["[redacted]"], "v");
    }

    #[test]
    fn overlapping_secrets_and_empty_ones() {
        let r = redactor(&["abc", "abcdef", ""]);
        assert_eq!(r.secrets().len(), 2);
        check(&r, "xabcdefx abc", "x[redacted]x [redacted]");
        let none = Redactor::new(Vec::new());
        assert!(none.is_empty());
        check(&none, "abc", "abc");
    }

    /// Every form a secret can take in a JSON value, placed as a value, a
    /// key, inside a longer string and in an array: the one pass over the
    /// text says "may show" wherever a search of the parsed value finds
    /// one, and "none" for a text with no secret in it.
    #[test]
    fn one_pass_over_json_text_misses_no_form_the_value_search_finds() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let secrets = [
            S1,
            S2,
            "a+b c+d",
            "two words here",
            "8675309",
            "naïve-😀-key",
            "https://h/x",
        ];
        for secret in secrets {
            let r = redactor(&[secret]);
            // What a string may hold: the secret in each encoding.
            let held = [
                secret.to_string(),
                utf8_percent_encode(secret, ALL).to_string(),
                utf8_percent_encode(secret, ALL).to_string().to_lowercase(),
                serde_urlencoded::to_string([("k", secret)]).expect("form")[2..].to_string(),
                STANDARD.encode(secret),
                URL_SAFE_NO_PAD.encode(secret),
                STANDARD.encode(format!("user:{secret}:tail")),
                format!("x-{}-y", utf8_percent_encode(secret, ALL)),
            ];
            // JSON string literals: each held form as serialized, and the
            // secret written with escapes a sender may choose.
            let mut literals: Vec<String> = held
                .iter()
                .map(|h| serde_json::to_string(h).expect("json"))
                .collect();
            literals.push(format!(
                "\"{}\"",
                secret
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('/', "\\/")
            ));
            literals.push(format!(
                "\"{}\"",
                secret
                    .encode_utf16()
                    .map(|u| format!("\\u{u:04x}"))
                    .collect::<String>()
            ));
            let mut texts: Vec<String> = literals
                .iter()
                .flat_map(|literal| {
                    [
                        format!("{{\"a\":{literal}}}"),
                        format!("{{{literal}:1}}"),
                        format!("[1,{{\"b\":[{literal}]}}]"),
                    ]
                })
                .collect();
            if secret.parse::<f64>().is_ok() {
                texts.push(format!("{{\"n\":{secret}}}"));
            }
            let mut found = 0;
            for text in &texts {
                let value: Value = serde_json::from_str(text).expect("JSON text");
                if r.finds_in_value(&value) {
                    found += 1;
                    assert!(r.may_show_in_json(text.as_bytes()), "{secret}: {text}");
                }
            }
            // Each form in each place is one the value search finds.
            assert_eq!(found, texts.len(), "{secret}");
            // Only the value search can tell a text holding `%`, `\\` (or a
            // number, for a numeric secret) apart; a plain one it can.
            let plain = r#"{"id":"evt_1","data":{"object":{"amount":2000,"ok":true}}}"#;
            assert_eq!(
                r.may_show_in_json(plain.as_bytes()),
                secret == "8675309",
                "{secret}"
            );
        }
        // Random texts made of pieces of a secret and JSON punctuation.
        let r = redactor(&[S1]);
        let pieces = ["ab", "+cd", "/ef", "=gh", "\\/", "%2B", "x", " ", ","];
        let mut rng = fastrand::Rng::with_seed(16);
        for _ in 0..5_000 {
            let inner: String = (0..rng.usize(1..8))
                .map(|_| pieces[rng.usize(..pieces.len())])
                .collect();
            let text = format!("{{\"k\":\"{inner}\",\"{inner}\":[\"{inner}\"]}}");
            let Ok(value) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if r.finds_in_value(&value) {
                assert!(r.may_show_in_json(text.as_bytes()), "{text}");
            }
        }
        assert!(!Redactor::default().may_show_in_json(b"{\"a\":1}"));
    }

    #[test]
    fn the_scan_finder_agrees_with_the_automaton() {
        let patterns: Vec<Vec<u8>> = ["abc", "abcdef", "cd", "zz"]
            .iter()
            .map(|p| p.as_bytes().to_vec())
            .collect();
        let scan = Finder::Scan(Arc::new(patterns.clone()));
        let ac = Finder::new(patterns);
        for text in ["abcdefzz", "xxabcxcdzzabc", "", "no match"] {
            assert_eq!(
                scan.find_all(text.as_bytes()),
                ac.find_all(text.as_bytes()),
                "{text}"
            );
        }
    }

    #[test]
    fn learnt_secrets_keep_the_latest_few_per_key() {
        let l = Learnt {
            inner: RwLock::new(LearntInner::default()),
        };
        assert!(l.redactor().is_empty());
        for i in 0..6 {
            l.mark("k", &Secret::from(format!("tok-{i}-abcdef")));
        }
        l.mark("other", &Secret::from("other-token-1"));
        let r = l.redactor();
        assert_eq!(r.secrets().len(), LEARNT_PER_KEY + 1);
        assert_eq!(r.redacted("a tok-5-abcdef b"), "a [redacted] b");
        assert_eq!(r.redacted("other-token-1"), "[redacted]");
        assert_eq!(
            r.redacted("tok-0-abcdef"),
            "tok-0-abcdef",
            "the oldest was let go"
        );
    }

    #[test]
    fn the_log_writer_redacts_each_line() {
        let log = LogSecrets::default();
        log.set(redactor(&[S1]));
        assert_eq!(
            log.current().redacted("url=/x?k=ab%2Bcd%2Fef%3Dgh"),
            "url=/x?k=[redacted]"
        );
        assert!(!format!("{log:?}").contains("ab+cd"));
    }
}
