//! YAML with positions. Workflow and test files are parsed by `marked-yaml`
//! into a tree that remembers where every node stands, then deserialized into
//! the plain serde types of `spec.rs` by the [`Deserializer`] below, which:
//!
//! - types plain scalars the YAML 1.2 way (`1000` is a number, `"1000"` a
//!   string, `~` null) so free-form values (`body`, conditions) are right;
//! - reports *every* unknown key of every struct, with the closest valid name,
//!   instead of stopping at the first, using the field lists serde derives;
//! - hands out [`Spanned`] values so later checks (JSONPath, regex, Rhai,
//!   env) can point at the line and column of the offending value.

use marked_yaml::{LoaderOptions, Node};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn of(node: &Node) -> Pos {
        node.span()
            .start()
            .map(|m| Pos {
                line: m.line(),
                col: m.column(),
            })
            .unwrap_or_default()
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A value with the position it was written at.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    pub pos: Pos,
    pub value: T,
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

const SPANNED: &str = "$hookflow::Spanned";
const SPANNED_FIELDS: &[&str] = &["$line", "$col", "$value"];

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Spanned<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spanned<T>, A::Error> {
                let mut pos = Pos::default();
                let mut value = None;
                while let Some(k) = map.next_key::<&str>()? {
                    match k {
                        "$line" => pos.line = map.next_value()?,
                        "$col" => pos.col = map.next_value()?,
                        _ => value = Some(map.next_value()?),
                    }
                }
                let value = value.ok_or_else(|| de::Error::custom("missing value"))?;
                Ok(Spanned { pos, value })
            }
        }
        d.deserialize_struct(SPANNED, SPANNED_FIELDS, V(PhantomData))
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

impl schemars::JsonSchema for YNode {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "AnyValue".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({})
    }
}

impl<V: schemars::JsonSchema> schemars::JsonSchema for Ordered<V> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Map_of_{}", V::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<V>(),
        })
    }
}

/// A free-form YAML value that keeps positions all the way down: used for
/// conditions, bodies and test events, whose keys are not known in advance.
#[derive(Debug, Clone, PartialEq)]
pub enum YNode {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Seq(Vec<Spanned<YNode>>),
    Map(Vec<(Spanned<String>, Spanned<YNode>)>),
}

impl YNode {
    /// Every string in the node, at any depth (map keys excluded).
    pub fn strings<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            YNode::String(s) => out.push(s),
            YNode::Seq(items) => items.iter().for_each(|i| i.value.strings(out)),
            YNode::Map(entries) => entries.iter().for_each(|(_, v)| v.value.strings(out)),
            YNode::Null | YNode::Bool(_) | YNode::Number(_) => {}
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            YNode::Null => Value::Null,
            YNode::Bool(b) => Value::Bool(*b),
            YNode::Number(n) => Value::Number(n.clone()),
            YNode::String(s) => Value::String(s.clone()),
            YNode::Seq(items) => Value::Array(items.iter().map(|i| i.value.to_json()).collect()),
            YNode::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.value.clone(), v.value.to_json()))
                    .collect(),
            ),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            YNode::Null => "null",
            YNode::Bool(_) => "a boolean",
            YNode::Number(_) => "a number",
            YNode::String(_) => "a string",
            YNode::Seq(_) => "a list",
            YNode::Map(_) => "a mapping",
        }
    }
}

impl<'de> Deserialize<'de> for YNode {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = YNode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<YNode, E> {
                Ok(YNode::Null)
            }
            fn visit_none<E>(self) -> Result<YNode, E> {
                Ok(YNode::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<YNode, E> {
                Ok(YNode::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<YNode, E> {
                Ok(YNode::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<YNode, E> {
                Ok(YNode::Number(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<YNode, E> {
                serde_json::Number::from_f64(n)
                    .map(YNode::Number)
                    .ok_or_else(|| E::custom("infinite or NaN numbers are not supported"))
            }
            fn visit_str<E>(self, s: &str) -> Result<YNode, E> {
                Ok(YNode::String(s.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<YNode, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(YNode::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<YNode, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = map.next_key()? {
                    entries.push((k, map.next_value()?));
                }
                Ok(YNode::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping that keeps the order it was written in (query parameters and
/// headers are sent in that order).
#[derive(Debug, Clone, PartialEq)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    entries.push((k, map.next_value()?));
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(Vis(PhantomData))
    }
}

/// A problem found while reading a file: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub pos: Pos,
    pub message: String,
}

/// Parse `text` and deserialize it into `T`. Returns the value (when the
/// structure could be read) and every problem found on the way.
pub fn from_str<T: de::DeserializeOwned>(text: &str) -> (Option<T>, Vec<Problem>) {
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    let node = match marked_yaml::parse_yaml_with_options(0, text, options) {
        Ok(node) => node,
        Err(e) => return (None, vec![load_problem(&e)]),
    };
    let sink = RefCell::new(Vec::new());
    let result = T::deserialize(Deserializer {
        node: &node,
        sink: &sink,
    });
    let mut problems = sink.into_inner();
    let value = match result {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(Problem {
                pos: e.pos.unwrap_or_else(|| Pos::of(&node)),
                message: e.message,
            });
            None
        }
    };
    problems.sort_by_key(|p| p.pos);
    (value, problems)
}

fn load_problem(e: &marked_yaml::LoadError) -> Problem {
    use marked_yaml::LoadError as L;
    let at = |m: &marked_yaml::Marker| Pos {
        line: m.line(),
        col: m.column(),
    };
    let (pos, message) = match e {
        L::TopLevelMustBeMapping(m) => (
            at(m),
            "the file must be a mapping (`key: value` lines)".into(),
        ),
        L::TopLevelMustBeSequence(m) => (at(m), "the file must be a list".into()),
        L::UnexpectedAnchor(m) => (
            at(m),
            "YAML anchors and aliases are not supported; write the value out".into(),
        ),
        L::MappingKeyMustBeScalar(m) => (at(m), "mapping keys must be plain text".into()),
        L::UnexpectedTag(m) => (at(m), "YAML tags (`!name`) are not supported".into()),
        L::ScanError(m, err) => (at(m), format!("YAML syntax error: {}", err.info())),
        L::DuplicateKey(inner) => {
            let first = inner.prev_key.span().start().map(at).unwrap_or_default();
            let pos = inner.key.span().start().map(at).unwrap_or_default();
            (
                pos,
                format!(
                    "duplicate key `{}` (first written at line {})",
                    inner.key.as_str(),
                    first.line
                ),
            )
        }
    };
    Problem { pos, message }
}

/// The closest of `candidates` to `word`, when it is close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn hint(word: &str, candidates: &[&str]) -> String {
    match did_you_mean(word, candidates.iter().copied()) {
        Some(c) => format!("; did you mean `{c}`?"),
        None => format!("; expected one of: {}", candidates.join(", ")),
    }
}

#[derive(Debug)]
pub struct Error {
    pos: Option<Pos>,
    message: String,
}

impl Error {
    fn at(mut self, node: &Node) -> Self {
        self.pos.get_or_insert_with(|| Pos::of(node));
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            pos: None,
            message: msg.to_string(),
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format!(
            "unknown value `{variant}`{}",
            hint(variant, expected)
        ))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format!("unknown key `{field}`{}", hint(field, expected)))
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format!("missing required key `{field}`"))
    }

    fn invalid_type(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        Self::custom(format!("expected {exp}, found {unexp}"))
    }
}

/// Deserializes one marked node; see the module doc.
#[derive(Clone, Copy)]
pub struct Deserializer<'a> {
    node: &'a Node,
    sink: &'a RefCell<Vec<Problem>>,
}

/// What a plain (unquoted) scalar means under the YAML 1.2 core schema.
enum Plain<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(&'a str),
}

fn plain(s: &str) -> Plain<'_> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Plain::Null,
        "true" | "True" | "TRUE" => return Plain::Bool(true),
        "false" | "False" | "FALSE" => return Plain::Bool(false),
        _ => {}
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = s.parse::<i64>() {
            return Plain::Int(i);
        }
        if let Ok(u) = s.parse::<u64>() {
            return Plain::UInt(u);
        }
    }
    let looks_float = digits.bytes().any(|b| b.is_ascii_digit())
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    if looks_float {
        if let Ok(f) = s.parse::<f64>() {
            return Plain::Float(f);
        }
    }
    Plain::Str(s)
}

impl<'a> Deserializer<'a> {
    fn child(&self, node: &'a Node) -> Deserializer<'a> {
        Deserializer {
            node,
            sink: self.sink,
        }
    }

    fn scalar(&self) -> Option<&'a marked_yaml::types::MarkedScalarNode> {
        self.node.as_scalar()
    }

    fn is_null(&self) -> bool {
        match self.scalar() {
            Some(s) => s.may_coerce() && matches!(plain(s.as_str()), Plain::Null),
            None => false,
        }
    }

    fn fail(&self, message: String) -> Error {
        Error {
            pos: Some(Pos::of(self.node)),
            message,
        }
    }

    fn found(&self) -> String {
        match self.node {
            Node::Scalar(_) if self.is_null() => "nothing".to_string(),
            Node::Scalar(s) => format!("`{}`", s.as_str()),
            Node::Mapping(_) => "a mapping".to_string(),
            Node::Sequence(_) => "a list".to_string(),
        }
    }
}

macro_rules! number {
    ($method:ident, $visit:ident, $ty:ty, $what:literal) => {
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
            match self.scalar().map(|s| s.as_str().trim().parse::<$ty>()) {
                Some(Ok(n)) => visitor.$visit(n),
                _ => Err(self.fail(format!("expected {}, found {}", $what, self.found()))),
            }
        }
    };
}

impl<'a> de::Deserializer<'a> for Deserializer<'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Scalar(s) if !s.may_coerce() => visitor.visit_borrowed_str(s.as_str()),
            Node::Scalar(s) => match plain(s.as_str()) {
                Plain::Null => visitor.visit_unit(),
                Plain::Bool(b) => visitor.visit_bool(b),
                Plain::Int(i) => visitor.visit_i64(i),
                Plain::UInt(u) => visitor.visit_u64(u),
                Plain::Float(f) => visitor.visit_f64(f),
                Plain::Str(s) => visitor.visit_borrowed_str(s),
            },
            Node::Mapping(_) => self.deserialize_map(visitor),
            Node::Sequence(_) => self.deserialize_seq(visitor),
        }
        .map_err(|e| e.at(self.node))
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.scalar().map(|s| plain(s.as_str())) {
            Some(Plain::Bool(b)) => visitor.visit_bool(b),
            _ => Err(self.fail(format!("expected true or false, found {}", self.found()))),
        }
    }

    number!(deserialize_i8, visit_i8, i8, "a whole number");
    number!(deserialize_i16, visit_i16, i16, "a whole number");
    number!(deserialize_i32, visit_i32, i32, "a whole number");
    number!(deserialize_i64, visit_i64, i64, "a whole number");
    number!(deserialize_u8, visit_u8, u8, "a whole number from 0 to 255");
    number!(
        deserialize_u16,
        visit_u16,
        u16,
        "a whole number from 0 to 65535"
    );
    number!(deserialize_u32, visit_u32, u32, "a positive whole number");
    number!(deserialize_u64, visit_u64, u64, "a positive whole number");
    number!(deserialize_f32, visit_f32, f32, "a number");
    number!(deserialize_f64, visit_f64, f64, "a number");

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.scalar() {
            Some(s) if !self.is_null() => visitor.visit_borrowed_str(s.as_str()),
            _ => Err(self.fail(format!("expected text, found {}", self.found()))),
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_null() {
            visitor.visit_unit()
        } else {
            Err(self.fail(format!("expected nothing, found {}", self.found())))
        }
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Sequence(items) => visitor.visit_seq(Seq {
                de: self,
                items: items.iter(),
            }),
            _ if self.is_null() => visitor.visit_seq(Seq {
                de: self,
                items: [].iter(),
            }),
            _ => Err(self.fail(format!("expected a list, found {}", self.found()))),
        }
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.visit_mapping(visitor, None)
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == SPANNED {
            let pos = Pos::of(self.node);
            return visitor.visit_map(SpannedAccess {
                de: self,
                pos,
                state: 0,
            });
        }
        self.visit_mapping(visitor, Some((name, fields)))
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.node {
            Node::Scalar(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: Error| e.at(self.node)),
            Node::Mapping(m) if m.len() == 1 => {
                let (k, v) = m
                    .iter()
                    .next()
                    .expect("a mapping of length one has an entry");
                visitor
                    .visit_enum(Enum {
                        key: k.as_str(),
                        value: self.child(v),
                    })
                    .map_err(|e| e.at(self.node))
            }
            _ => Err(self.fail(format!("expected exactly one of: {}", variants.join(", ")))),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        <W: Visitor<'a>>
        i128 u128 bytes byte_buf unit_struct tuple tuple_struct
    }
}

impl<'a> Deserializer<'a> {
    fn visit_mapping<V: Visitor<'a>>(
        self,
        visitor: V,
        strukt: Option<(&'static str, &'static [&'static str])>,
    ) -> Result<V::Value, Error> {
        let entries: Vec<(Node, &'a Node)> = match self.node {
            Node::Mapping(m) => m
                .iter()
                .filter(|(k, _)| match strukt {
                    Some((name, fields)) if !fields.contains(&k.as_str()) => {
                        self.sink.borrow_mut().push(Problem {
                            pos: Pos::of(&Node::Scalar((*k).clone())),
                            message: unknown_key_message(name, k.as_str(), fields),
                        });
                        false
                    }
                    _ => true,
                })
                .map(|(k, v)| (Node::Scalar(k.clone()), v))
                .collect(),
            _ if self.is_null() => Vec::new(),
            _ => {
                return Err(self.fail(format!(
                    "expected a mapping (`key: value`), found {}",
                    self.found()
                )))
            }
        };
        visitor
            .visit_map(Map {
                de: self,
                entries: entries.into_iter(),
                value: None,
            })
            .map_err(|e| e.at(self.node))
    }
}

fn unknown_key_message(strukt: &str, key: &str, fields: &[&str]) -> String {
    if strukt == "StepSpec" {
        let kinds = [
            "filter",
            "transform",
            "http",
            "uses",
            "switch",
            "for_each",
            "delay",
            "respond",
        ];
        if did_you_mean(key, fields.iter().copied()).is_none() {
            return format!(
                "unknown step type or key `{key}`: a step is one of {}",
                kinds.join(", ")
            );
        }
    }
    format!("unknown key `{key}`{}", hint(key, fields))
}

struct Map<'a, I> {
    de: Deserializer<'a>,
    entries: I,
    value: Option<&'a Node>,
}

impl<'a, I: Iterator<Item = (Node, &'a Node)>> MapAccess<'a> for Map<'a, I> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        // The key node is owned by this iterator step; give serde a copy of its text.
        let text = key
            .as_scalar()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        let pos = Pos::of(&key);
        seed.deserialize(KeyDeserializer { text, pos })
            .map(Some)
            .map_err(|e| e.at(&key))
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let node = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value requested before key"))?;
        seed.deserialize(self.de.child(node))
            .map_err(|e| e.at(node))
    }
}

struct Seq<'a, I> {
    de: Deserializer<'a>,
    items: I,
}

impl<'a, I: Iterator<Item = &'a Node>> SeqAccess<'a> for Seq<'a, I> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some(node) => seed
                .deserialize(self.de.child(node))
                .map(Some)
                .map_err(|e| e.at(node)),
            None => Ok(None),
        }
    }
}

struct SpannedAccess<'a> {
    de: Deserializer<'a>,
    pos: Pos,
    state: u8,
}

impl<'a> MapAccess<'a> for SpannedAccess<'a> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let key = match self.state {
            0 => "$line",
            1 => "$col",
            2 => "$value",
            _ => return Ok(None),
        };
        seed.deserialize(de::value::BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        self.state += 1;
        match self.state {
            1 => seed.deserialize(self.pos.line.into_deserializer()),
            2 => seed.deserialize(self.pos.col.into_deserializer()),
            _ => seed.deserialize(self.de),
        }
    }
}

/// Mapping keys: always text, and `Spanned<String>` works on them too.
struct KeyDeserializer {
    text: String,
    pos: Pos,
}

impl<'a> de::Deserializer<'a> for KeyDeserializer {
    type Error = Error;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_string(self.text)
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name != SPANNED {
            return Err(de::Error::custom("a mapping key cannot be a structure"));
        }
        let fields = [
            ("$line", self.pos.line.to_string()),
            ("$col", self.pos.col.to_string()),
        ];
        struct KeyAccess {
            fields: std::array::IntoIter<(&'static str, String), 2>,
            text: Option<String>,
            pending: Option<Result<usize, String>>,
        }
        impl<'a> MapAccess<'a> for KeyAccess {
            type Error = Error;
            fn next_key_seed<K: DeserializeSeed<'a>>(
                &mut self,
                seed: K,
            ) -> Result<Option<K::Value>, Error> {
                if let Some((k, v)) = self.fields.next() {
                    self.pending = Some(Ok(v.parse().unwrap_or(0)));
                    return seed
                        .deserialize(de::value::BorrowedStrDeserializer::new(k))
                        .map(Some);
                }
                match self.text.take() {
                    Some(t) => {
                        self.pending = Some(Err(t));
                        seed.deserialize(de::value::BorrowedStrDeserializer::new("$value"))
                            .map(Some)
                    }
                    None => Ok(None),
                }
            }
            fn next_value_seed<V: DeserializeSeed<'a>>(
                &mut self,
                seed: V,
            ) -> Result<V::Value, Error> {
                match self.pending.take() {
                    Some(Ok(n)) => seed.deserialize(n.into_deserializer()),
                    Some(Err(text)) => seed.deserialize(KeyDeserializer {
                        text,
                        pos: Pos::default(),
                    }),
                    None => Err(de::Error::custom("value requested before key")),
                }
            }
        }
        visitor.visit_map(KeyAccess {
            fields: fields.into_iter(),
            text: Some(self.text),
            pending: None,
        })
    }

    serde::forward_to_deserialize_any! {
        <W: Visitor<'a>>
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

struct Enum<'a> {
    key: &'a str,
    value: Deserializer<'a>,
}

impl<'a> de::EnumAccess<'a> for Enum<'a> {
    type Error = Error;
    type Variant = Deserializer<'a>;

    fn variant_seed<V: DeserializeSeed<'a>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Error> {
        let v = seed.deserialize(de::value::BorrowedStrDeserializer::<Error>::new(self.key))?;
        Ok((v, self.value))
    }
}

impl<'a> de::VariantAccess<'a> for Deserializer<'a> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'a>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.visit_mapping(visitor, Some(("", fields)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)] // fields are read through Debug in assertions
    struct Doc {
        name: Spanned<String>,
        count: Option<u32>,
        free: Option<Spanned<YNode>>,
        #[serde(default)]
        list: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        id: String,
    }

    #[test]
    fn types_plain_scalars_and_keeps_positions() {
        let (doc, problems) = from_str::<Doc>(
            "name: demo\ncount: 3\nfree:\n  a: 1000\n  b: \"1000\"\n  c: ~\n  d: [true, 1.5, x]\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        let doc = doc.expect("parses");
        assert_eq!(doc.name.pos, Pos { line: 1, col: 7 });
        let free = doc.free.expect("present");
        assert_eq!(free.pos.line, 4);
        assert_eq!(
            free.value.to_json(),
            json!({"a": 1000, "b": "1000", "c": null, "d": [true, 1.5, "x"]})
        );
        if let YNode::Map(entries) = &free.value {
            assert_eq!(entries[1].0.pos, Pos { line: 5, col: 3 });
        } else {
            panic!("expected a map");
        }
    }

    #[test]
    fn reports_every_unknown_key_with_a_hint() {
        let (_, problems) =
            from_str::<Doc>("nmae: x\nname: y\ncuont: 2\nlist:\n  - id: a\n    idd: b\n");
        let msgs: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.pos, p.message))
            .collect();
        assert_eq!(
            msgs,
            vec![
                "1:1: unknown key `nmae`; did you mean `name`?",
                "3:1: unknown key `cuont`; did you mean `count`?",
                "6:5: unknown key `idd`; did you mean `id`?",
            ]
        );
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let (_, problems) = from_str::<Doc>("name: x\ncount: lots\n");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].pos, Pos { line: 2, col: 8 });
        assert!(
            problems[0].message.contains("whole number"),
            "{:?}",
            problems[0]
        );
    }

    #[test]
    fn syntax_errors_and_duplicates() {
        let (_, problems) = from_str::<Doc>("name: [x\n");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("YAML syntax"), "{problems:?}");
        let (_, problems) = from_str::<Doc>("name: x\nname: y\n");
        assert_eq!(problems[0].pos.line, 2);
        assert!(
            problems[0].message.contains("duplicate key"),
            "{problems:?}"
        );
    }
}
