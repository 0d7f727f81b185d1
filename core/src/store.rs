//! Reading and writing the Redis layout. Blocking calls: run them off the nginx event loop
//! (the module's fetch threads) or in `dynpagectl`.

use redis::{ConnectionLike, RedisResult, Value};

use crate::layout::{DocRef, Layout};
use crate::version::Field;

/// One thing to read from Redis for a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Fetch {
    /// A document's field names plus its rollback pin and gray share.
    Meta(DocRef),
    /// One field (version) of a document.
    Field(DocRef, Field),
    /// One dimension's data key (dimension mode), read as it is named: no prefix.
    Data(String),
}

/// Largest dimension value accepted, in bytes. A larger one is refused (it counts as broken)
/// and no more than this is ever read of it.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// Separator inside cache keys; it cannot occur in field names.
pub const CACHE_KEY_SEP: char = '\u{1}';
const SEP: char = CACHE_KEY_SEP;

impl Fetch {
    /// The worker-cache key of what this fetch loads.
    pub fn cache_key(&self) -> String {
        match self {
            Fetch::Meta(doc) => meta_cache_key(doc),
            Fetch::Field(doc, field) => field_cache_key(doc, *field),
            Fetch::Data(key) => data_cache_key(key),
        }
    }

    /// The document this reads from (none for a data key).
    pub fn doc(&self) -> Option<&DocRef> {
        match self {
            Fetch::Meta(doc) | Fetch::Field(doc, _) => Some(doc),
            Fetch::Data(_) => None,
        }
    }
}

impl std::fmt::Display for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fetch::Meta(doc) => write!(f, "{doc}"),
            Fetch::Field(doc, field) => write!(f, "{doc} version {field}"),
            Fetch::Data(key) => write!(f, "data \"{}\"", key.escape_debug()),
        }
    }
}

fn kind_tag(doc_is_page: bool) -> &'static str {
    if doc_is_page {
        "page:"
    } else {
        "tpl:"
    }
}

/// Writes the cache key of a document's meta into `buf` (cleared first): no allocation once
/// `buf` has grown.
pub fn write_meta_cache_key(buf: &mut String, doc_is_page: bool, name: &str) {
    buf.clear();
    buf.push('M');
    buf.push(SEP);
    buf.push_str(kind_tag(doc_is_page));
    buf.push_str(name);
}

/// Writes the cache key of one document field into `buf` (cleared first).
pub fn write_field_cache_key(buf: &mut String, doc_is_page: bool, name: &str, field: Field) {
    use std::fmt::Write;
    buf.clear();
    buf.push('F');
    buf.push(SEP);
    let _ = write!(buf, "{field}");
    buf.push(SEP);
    buf.push_str(kind_tag(doc_is_page));
    buf.push_str(name);
}

pub fn meta_cache_key(doc: &DocRef) -> String {
    let mut s = String::new();
    write_meta_cache_key(&mut s, matches!(doc, DocRef::Page(_)), doc.name());
    s
}

pub fn field_cache_key(doc: &DocRef, field: Field) -> String {
    let mut s = String::new();
    write_field_cache_key(&mut s, matches!(doc, DocRef::Page(_)), doc.name(), field);
    s
}

/// Writes the cache key of one data key (dimension mode) into `buf` (cleared first).
pub fn write_data_cache_key(buf: &mut String, key: &str) {
    buf.clear();
    buf.push('D');
    buf.push(SEP);
    buf.push_str(key);
}

/// Cache key of one data key (dimension mode).
pub fn data_cache_key(key: &str) -> String {
    let mut s = String::with_capacity(2 + key.len());
    write_data_cache_key(&mut s, key);
    s
}

/// What kind of value a cache key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKeyKind {
    Meta,
    Field(Field),
    Data,
}

/// A worker-cache key read back: which document (or data key) and which part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey<'a> {
    pub kind: CacheKeyKind,
    /// The document, for metas and fields.
    pub doc: Option<DocRef>,
    /// The page key, template name or data key.
    pub name: &'a str,
}

impl<'a> CacheKey<'a> {
    pub fn parse(key: &'a str) -> Option<CacheKey<'a>> {
        let (tag, rest) = key.split_once(SEP)?;
        let (kind, doc_part) = match tag {
            "M" => (CacheKeyKind::Meta, rest),
            "F" => {
                let (field, doc) = rest.split_once(SEP)?;
                (CacheKeyKind::Field(Field::parse(field)?), doc)
            }
            "D" => {
                return Some(CacheKey {
                    kind: CacheKeyKind::Data,
                    doc: None,
                    name: rest,
                })
            }
            _ => return None,
        };
        let doc = DocRef::parse_field_name(doc_part)?;
        let name = doc_part.split_once(':').map_or("", |(_, n)| n);
        Some(CacheKey {
            kind,
            doc: Some(doc),
            name,
        })
    }

    /// Whether the value can change without a new version (so events and resyncs drop it).
    pub fn is_mutable(&self) -> bool {
        match self.kind {
            CacheKeyKind::Meta | CacheKeyKind::Data => true,
            CacheKeyKind::Field(f) => !f.is_immutable(),
        }
    }
}

/// A document's field names and its raw `rollback` / `gray` entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawMeta {
    pub fields: Vec<String>,
    pub pin: Option<String>,
    pub gray: Option<String>,
}

/// What one fetch found: `None` when the document or field does not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Raw {
    Meta(Option<RawMeta>),
    Field(Option<Vec<u8>>),
    /// A data key's value; `Err` when it exists but cannot be used (too large, not a string).
    Data(Result<Option<Vec<u8>>, String>),
}

fn as_opt_string(v: Value) -> RedisResult<Option<String>> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Value::SimpleString(s) => Ok(Some(s)),
        other => Err(unexpected(&other)),
    }
}

fn as_opt_bytes(v: Value) -> RedisResult<Option<Vec<u8>>> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => Ok(Some(b)),
        Value::SimpleString(s) => Ok(Some(s.into_bytes())),
        other => Err(unexpected(&other)),
    }
}

fn as_strings(v: Value) -> RedisResult<Vec<String>> {
    match v {
        Value::Array(items) | Value::Set(items) => items
            .into_iter()
            .map(|i| as_opt_string(i).map(Option::unwrap_or_default))
            .collect(),
        Value::Nil => Ok(Vec::new()),
        other => Err(unexpected(&other)),
    }
}

fn unexpected(v: &Value) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected reply",
        format!("{v:?}").chars().take(120).collect::<String>(),
    ))
}

/// The commands that read `items`, in order.
fn batch_pipeline(layout: &Layout, items: &[Fetch]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    let rollback = layout.rollback_key();
    let gray = layout.gray_key();
    for item in items {
        match item {
            Fetch::Meta(doc) => {
                let name = doc.field_name();
                pipe.cmd("HKEYS").arg(layout.doc_key(doc));
                pipe.cmd("HGET").arg(&rollback).arg(&name);
                pipe.cmd("HGET").arg(&gray).arg(&name);
            }
            Fetch::Field(doc, field) => {
                pipe.cmd("HGET").arg(layout.doc_key(doc)).arg(field.name());
            }
            Fetch::Data(key) => {
                // The length first, so an oversized value is refused after reading no more
                // than the limit (plus one byte) of it.
                pipe.cmd("STRLEN").arg(key);
                pipe.cmd("GETRANGE").arg(key).arg(0).arg(MAX_DATA_BYTES);
            }
        }
    }
    pipe
}

/// Reads every item in one round trip (a pipeline), in order.
pub fn fetch_batch(
    con: &mut dyn ConnectionLike,
    layout: &Layout,
    items: &[Fetch],
) -> RedisResult<Vec<Raw>> {
    let replies: Vec<Value> = batch_pipeline(layout, items).query(con)?;
    decode_batch(items, replies)
}

/// A data key's `STRLEN` and `GETRANGE` replies. A key that is not a string (`WRONGTYPE`) is
/// that key's problem, not the source's; an empty string counts as missing.
fn decode_data(
    len: Option<Value>,
    range: Option<Value>,
) -> RedisResult<Result<Option<Vec<u8>>, String>> {
    let (Some(len), Some(range)) = (len, range) else {
        return Err(unexpected(&Value::Nil));
    };
    match (len, range) {
        (Value::ServerError(e), _) | (_, Value::ServerError(e)) => {
            if e.code() == "WRONGTYPE" {
                Ok(Err("the key does not hold a string".into()))
            } else {
                Err(e.into())
            }
        }
        (Value::Int(0), _) => Ok(Ok(None)),
        (Value::Int(n), _) if usize::try_from(n).map_or(true, |n| n > MAX_DATA_BYTES) => Ok(Err(
            format!("the value is {n} bytes, over the {MAX_DATA_BYTES} byte limit"),
        )),
        // Emptied between the two commands (a pipeline is not atomic): missing too.
        (Value::Int(_), range) => Ok(Ok(as_opt_bytes(range)?.filter(|b| !b.is_empty()))),
        (other, _) => Err(unexpected(&other)),
    }
}

fn decode_batch(items: &[Fetch], replies: Vec<Value>) -> RedisResult<Vec<Raw>> {
    let mut replies = replies.into_iter();
    let next = |replies: &mut std::vec::IntoIter<Value>| {
        replies
            .next()
            .ok_or_else(|| unexpected(&Value::Nil))
            .and_then(|v| match v {
                Value::ServerError(e) => Err(e.into()),
                v => Ok(v),
            })
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Fetch::Meta(_) => {
                let fields = as_strings(next(&mut replies)?)?;
                let pin = as_opt_string(next(&mut replies)?)?;
                let gray = as_opt_string(next(&mut replies)?)?;
                out.push(Raw::Meta(if fields.is_empty() {
                    None
                } else {
                    Some(RawMeta { fields, pin, gray })
                }));
            }
            Fetch::Field(..) => out.push(Raw::Field(as_opt_bytes(next(&mut replies)?)?)),
            Fetch::Data(_) => out.push(Raw::Data(decode_data(replies.next(), replies.next())?)),
        }
    }
    Ok(out)
}

/// Most fields one document may have (its versions, `predeploy`, `abVersion`). A document
/// with more is refused from its field count (`HLEN`), before its field list is asked for:
/// that document fails (stale inputs or 503), the source stays in use. `dynpagectl prune`
/// keeps a document under it.
pub const MAX_DOC_FIELDS: usize = 10_000;

/// Longest field name of a document that is read (a longer one fails its document).
pub const MAX_FIELD_NAME_BYTES: usize = 1024;

/// Longest `rollback` / `gray` entry that is read (a pin is a version, a share a percentage:
/// a longer one is not something Redis would be expected to hold, and fails the source).
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// Largest field value (a snapshot or a template version) that is read: the snapshot limit. A
/// larger one is refused from its length (`HSTRLEN`), before it is asked for, like a document
/// with too many fields. (A template over its own 1 MiB limit but within this one is read and
/// fails to compile, so the previous template version is used.)
pub const MAX_FIELD_BYTES: usize = crate::snapshot::MAX_SNAPSHOT_BYTES;

/// How one item of a batch failed at a Redis that otherwise answers: that item's (that
/// document's or data key's) failure, not the source's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemFailure {
    pub cause: String,
    /// Its reply did not arrive in time (rather than being refused): a source that is slow
    /// for several different keys is skipped.
    pub slow: bool,
}

impl ItemFailure {
    fn refused(cause: String) -> ItemFailure {
        ItemFailure { cause, slow: false }
    }
}

/// What one Redis said to a batch read with [`fetch_batch_within`].
#[derive(Debug, Default)]
pub struct BatchReply {
    /// The items it got to, in order: an answer, or why that item failed there.
    pub items: Vec<Result<Raw, ItemFailure>>,
    /// Why the connection failed, if it did (the source's failure): items past `items` got no
    /// answer.
    pub failed: Option<crate::resp::Error>,
    /// Every reply was read: the connection may serve the next batch.
    pub reusable: bool,
}

/// An item after the first round trip.
enum Step {
    Done(Result<Raw, ItemFailure>),
    /// A document within the field limit: its field list is asked next.
    Meta {
        pin: Option<String>,
        gray: Option<String>,
    },
    /// A field within the size limit: its value is asked next.
    Field,
}

/// Why replies could not be used: the item's problem or the source's.
enum Bad {
    Item(String),
    Source(String),
}

/// A server error reply: `WRONGTYPE` is the key's problem; any other (`LOADING`,
/// `MASTERDOWN`, `NOAUTH`, `ERR`...) says the server cannot answer at all.
fn server_error(e: &str) -> Bad {
    if e.starts_with("WRONGTYPE") {
        Bad::Item("the key holds another type".into())
    } else {
        Bad::Source(format!(
            "answered an error: {}",
            e.chars().take(200).collect::<String>()
        ))
    }
}

fn wrong_reply(command: &str, r: &crate::resp::Reply) -> Bad {
    match r {
        crate::resp::Reply::Error(e) => server_error(e),
        other => Bad::Source(format!("answered {command} with {}", other.describe())),
    }
}

fn count_reply(command: &str, r: &crate::resp::Reply) -> Result<usize, Bad> {
    match r {
        crate::resp::Reply::Int(n) => usize::try_from(*n).map_err(|_| wrong_reply(command, r)),
        other => Err(wrong_reply(command, other)),
    }
}

fn opt_text(command: &str, r: crate::resp::Reply) -> Result<Option<String>, Bad> {
    use crate::resp::Reply;
    match r {
        Reply::Nil => Ok(None),
        Reply::Bulk(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        other => Err(wrong_reply(command, &other)),
    }
}

/// Reads every item by `deadline`, on the module's bounded client, in at most two round trips
/// (pipelines): first the sizes (`HLEN` of a document, with its `rollback` / `gray` entries;
/// `HSTRLEN` of a field; a data key's `STRLEN` and `GETRANGE`), then, for what is within the
/// limits, the field lists (`HKEYS`) and values (`HGET`). So Redis is never asked for a field
/// list or a value over the limits (which would hold it up for everyone, and fill its output
/// buffer), and every reply is also read within them.
///
/// Who failed: no connection, no answer at all before the deadline, the connection closed, a
/// reply that is not RESP2, of a type no Redis gives, or an error any command gets (`LOADING`,
/// `MASTERDOWN`...) are the source's failure (`failed`). A document or value over the limits,
/// a reply cut off by the deadline after the source had begun answering (bytes of it, or an
/// earlier reply, arrived), or a key of the wrong type, is that item's failure. After a reply
/// cut off, the batch ends there (the connection is out of step).
pub fn fetch_batch_within(
    con: &mut crate::resp::Conn,
    layout: &Layout,
    items: &[Fetch],
    deadline: std::time::Instant,
) -> BatchReply {
    use crate::resp::{encode, Limits};
    const ENTRY: Limits = Limits {
        max_bulk: MAX_ENTRY_BYTES,
        max_elements: 0,
    };
    const DATA: Limits = Limits {
        max_bulk: MAX_DATA_BYTES + 1,
        max_elements: 0,
    };
    const NAMES: Limits = Limits {
        max_bulk: MAX_FIELD_NAME_BYTES,
        max_elements: MAX_DOC_FIELDS,
    };
    const VALUE: Limits = Limits {
        max_bulk: MAX_FIELD_BYTES,
        max_elements: 0,
    };
    let (rollback, gray) = (layout.rollback_key(), layout.gray_key());
    let max_data = MAX_DATA_BYTES.to_string();

    // Round 1: sizes.
    let mut packed = Vec::with_capacity(96 * items.len());
    for item in items {
        match item {
            Fetch::Meta(doc) => {
                let (key, name) = (layout.doc_key(doc), doc.field_name());
                encode(&[b"HLEN", key.as_bytes()], &mut packed);
                encode(
                    &[b"HGET", rollback.as_bytes(), name.as_bytes()],
                    &mut packed,
                );
                encode(&[b"HGET", gray.as_bytes(), name.as_bytes()], &mut packed);
            }
            Fetch::Field(doc, field) => {
                let key = layout.doc_key(doc);
                encode(
                    &[b"HSTRLEN", key.as_bytes(), field.name().as_bytes()],
                    &mut packed,
                );
            }
            Fetch::Data(key) => {
                // The length first, so an oversized value is refused after reading no more
                // than the limit (plus one byte) of it.
                encode(&[b"STRLEN", key.as_bytes()], &mut packed);
                encode(
                    &[b"GETRANGE", key.as_bytes(), b"0", max_data.as_bytes()],
                    &mut packed,
                );
            }
        }
    }
    let mut reader = Reader {
        con,
        deadline,
        answered_any: false,
        sizes: true,
    };
    if let Err(e) = reader.con.send(&packed, deadline) {
        return BatchReply {
            failed: Some(e),
            ..Default::default()
        };
    }
    let mut steps: Vec<Step> = Vec::with_capacity(items.len());
    let mut stop: Option<Stop> = None;
    for item in items {
        let limits: &[Limits] = match item {
            Fetch::Meta(_) => &[Limits::SMALL, ENTRY, ENTRY],
            Fetch::Field(..) => &[Limits::SMALL],
            Fetch::Data(_) => &[Limits::SMALL, DATA],
        };
        match reader.read(limits).and_then(|r| first_step(item, r)) {
            Ok(step) => steps.push(step),
            Err(s) => {
                stop = Some(s.place(&mut steps, None));
                break;
            }
        }
    }

    // Round 2: field lists and values, on a connection still in step.
    let second: Vec<usize> = if stop.is_none() {
        (0..steps.len())
            .filter(|&i| !matches!(steps[i], Step::Done(_)))
            .collect()
    } else {
        Vec::new()
    };
    if !second.is_empty() {
        reader.sizes = false;
        let mut packed = Vec::with_capacity(64 * second.len());
        for &i in &second {
            let key = items[i]
                .doc()
                .map(|d| layout.doc_key(d))
                .unwrap_or_default();
            match &items[i] {
                Fetch::Field(_, field) => encode(
                    &[b"HGET", key.as_bytes(), field.name().as_bytes()],
                    &mut packed,
                ),
                _ => encode(&[b"HKEYS", key.as_bytes()], &mut packed),
            }
        }
        if let Err(e) = reader.con.send(&packed, deadline) {
            stop = Some(Stop::Source(e));
        }
        for &i in &second {
            if stop.is_some() {
                break;
            }
            let limits: &[Limits] = match &items[i] {
                Fetch::Field(..) => &[VALUE],
                _ => &[NAMES],
            };
            let step = std::mem::replace(&mut steps[i], Step::Field);
            match reader.read(limits).and_then(|r| second_step(step, r)) {
                Ok(raw) => steps[i] = Step::Done(Ok(raw)),
                Err(s) => stop = Some(s.place(&mut steps, Some(i))),
            }
        }
    }

    // The answers, in order, up to the first item left incomplete.
    let mut out = BatchReply::default();
    for step in steps {
        match step {
            Step::Done(r) => out.items.push(r),
            Step::Meta { .. } | Step::Field => break,
        }
    }
    match stop {
        None => out.reusable = true,
        Some(Stop::Source(e)) => out.failed = Some(e),
        Some(Stop::Item(_)) => {}
    }
    out
}

/// Why reading a batch stopped.
enum Stop {
    /// The source failed.
    Source(crate::resp::Error),
    /// An item failed, and the connection is out of step after it (placed by [`Stop::place`]).
    Item(ItemFailure),
}

impl Stop {
    /// Puts an item's failure in the place of the first item left unanswered (all later ones
    /// wait on it), at most item `at` (by default the next one of round 1), leaving the items
    /// after it out: the batch ends there.
    fn place(self, steps: &mut Vec<Step>, at: Option<usize>) -> Stop {
        let Stop::Item(f) = self else {
            return self;
        };
        let at = at.unwrap_or(steps.len());
        let first_open = steps
            .iter()
            .position(|s| !matches!(s, Step::Done(_)))
            .unwrap_or(at)
            .min(at);
        steps.truncate(first_open);
        steps.push(Step::Done(Err(f.clone())));
        Stop::Item(f)
    }
}

/// Reads replies by the deadline and tells whose failure a failed read is.
struct Reader<'a> {
    con: &'a mut crate::resp::Conn,
    deadline: std::time::Instant,
    /// A reply of this batch was read: the source is answering.
    answered_any: bool,
    /// Round 1: its replies are sizes and short entries, so one over the limits means the
    /// server is not behaving like Redis (the source's failure); in round 2, a list or value
    /// over them is its item's (it grew since its size was read).
    sizes: bool,
}

impl Reader<'_> {
    fn read(&mut self, limits: &[crate::resp::Limits]) -> Result<Vec<crate::resp::Reply>, Stop> {
        use crate::resp::ErrorKind;
        let mut replies = Vec::with_capacity(limits.len());
        for l in limits {
            match self.con.read_reply(l, self.deadline) {
                Ok(r) => {
                    replies.push(r);
                    self.answered_any = true;
                }
                Err(e) if e.kind == ErrorKind::TooLarge && !self.sizes => {
                    return Err(Stop::Item(ItemFailure::refused(format!(
                        "its reply is too large: {e}"
                    ))))
                }
                Err(e) if e.kind == ErrorKind::TimedOut && (e.partial || self.answered_any) => {
                    return Err(Stop::Item(ItemFailure {
                        cause: "its reply did not arrive within the timeout".into(),
                        slow: true,
                    }))
                }
                Err(e) => return Err(Stop::Source(e)),
            }
        }
        Ok(replies)
    }
}

impl From<Bad> for Stop {
    fn from(b: Bad) -> Stop {
        match b {
            Bad::Item(cause) => Stop::Item(ItemFailure::refused(cause)),
            Bad::Source(cause) => Stop::Source(crate::resp::Error::server(cause)),
        }
    }
}

/// An item from its round-1 replies: done, or to be asked in round 2.
fn first_step(item: &Fetch, replies: Vec<crate::resp::Reply>) -> Result<Step, Stop> {
    use crate::resp::Reply;
    let mut replies = replies.into_iter();
    let mut next = || replies.next().unwrap_or(Reply::Nil);
    let done = |r: Result<Raw, Bad>| match r {
        Ok(raw) => Ok(Step::Done(Ok(raw))),
        Err(Bad::Item(cause)) => Ok(Step::Done(Err(ItemFailure::refused(cause)))),
        Err(source) => Err(Stop::from(source)),
    };
    match item {
        Fetch::Meta(_) => {
            let n = match count_reply("HLEN", &next()) {
                Ok(n) => n,
                Err(bad) => return done(Err(bad)),
            };
            let pin = opt_text("HGET", next())?;
            let gray = opt_text("HGET", next())?;
            if n > MAX_DOC_FIELDS {
                return done(Err(Bad::Item(format!(
                    "it has {n} fields, over the {MAX_DOC_FIELDS} field limit"
                ))));
            }
            Ok(Step::Meta { pin, gray })
        }
        Fetch::Field(..) => match count_reply("HSTRLEN", &next()) {
            Ok(n) if n > MAX_FIELD_BYTES => done(Err(Bad::Item(format!(
                "the value is {n} bytes, over the {MAX_FIELD_BYTES} byte limit"
            )))),
            Ok(_) => Ok(Step::Field),
            Err(bad) => done(Err(bad)),
        },
        Fetch::Data(_) => done(match (next(), next()) {
            (Reply::Error(e), _) | (_, Reply::Error(e)) => match server_error(&e) {
                Bad::Item(_) => Ok(Raw::Data(Err("the key does not hold a string".into()))),
                source => Err(source),
            },
            (Reply::Int(0), _) => Ok(Raw::Data(Ok(None))),
            (Reply::Int(n), _) if usize::try_from(n).map_or(true, |n| n > MAX_DATA_BYTES) => {
                Ok(Raw::Data(Err(format!(
                    "the value is {n} bytes, over the {MAX_DATA_BYTES} byte limit"
                ))))
            }
            // Emptied between the two commands (a pipeline is not atomic): missing too.
            (Reply::Int(_), Reply::Bulk(b)) if b.is_empty() => Ok(Raw::Data(Ok(None))),
            // Emptied between the two commands (a pipeline is not atomic): missing too.
            (Reply::Int(_), Reply::Bulk(b)) if b.is_empty() => Ok(Raw::Data(Ok(None))),
            (Reply::Int(_), Reply::Bulk(b)) => Ok(Raw::Data(Ok(Some(b)))),
            (Reply::Int(_), Reply::Nil) => Ok(Raw::Data(Ok(None))),
            (Reply::Int(_), other) => Err(wrong_reply("GETRANGE", &other)),
            (other, _) => Err(wrong_reply("STRLEN", &other)),
        }),
    }
}

/// An item from its round-2 reply (`HKEYS` or `HGET`).
fn second_step(step: Step, replies: Vec<crate::resp::Reply>) -> Result<Raw, Stop> {
    use crate::resp::Reply;
    let reply = replies.into_iter().next().unwrap_or(Reply::Nil);
    match step {
        Step::Meta { pin, gray } => {
            let fields = match reply {
                Reply::Array(names) => names
                    .into_iter()
                    .map(|n| match n {
                        Reply::Bulk(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
                        other => Err(wrong_reply("HKEYS", &other)),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                other => return Err(wrong_reply("HKEYS", &other).into()),
            };
            Ok(Raw::Meta(if fields.is_empty() {
                None
            } else {
                Some(RawMeta { fields, pin, gray })
            }))
        }
        Step::Field => match reply {
            Reply::Nil => Ok(Raw::Field(None)),
            Reply::Bulk(b) => Ok(Raw::Field(Some(b))),
            other => Err(wrong_reply("HGET", &other).into()),
        },
        Step::Done(_) => Err(Stop::Source(crate::resp::Error::server(
            "internal: an item asked twice",
        ))),
    }
}

/// Stores one field of a document and announces the document on `P events`.
pub fn put_field(
    con: &mut dyn ConnectionLike,
    layout: &Layout,
    doc: &DocRef,
    field: Field,
    value: &str,
) -> RedisResult<()> {
    let key = layout.doc_key(doc);
    redis::pipe()
        .cmd("HSET")
        .arg(&key)
        .arg(field.name())
        .arg(value)
        .ignore()
        .cmd("PUBLISH")
        .arg(layout.events_channel())
        .arg(&key)
        .ignore()
        .query::<()>(con)
}

/// Reads a document's meta (field names, pin, gray share).
pub fn get_meta(
    con: &mut dyn ConnectionLike,
    layout: &Layout,
    doc: &DocRef,
) -> RedisResult<Option<RawMeta>> {
    match fetch_batch(con, layout, &[Fetch::Meta(doc.clone())])?.pop() {
        Some(Raw::Meta(m)) => Ok(m),
        _ => Err(unexpected(&Value::Nil)),
    }
}

/// Sets (`Some`) or clears (`None`) a document's rollback pin, and announces the document.
pub fn set_pin(
    con: &mut dyn ConnectionLike,
    layout: &Layout,
    doc: &DocRef,
    version: Option<u64>,
) -> RedisResult<()> {
    set_doc_entry(con, layout, &layout.rollback_key(), doc, version)
}

/// Sets (or with `None` removes) a document's gray share, and announces the document.
pub fn set_gray(
    con: &mut dyn ConnectionLike,
    layout: &Layout,
    doc: &DocRef,
    percent: Option<u8>,
) -> RedisResult<()> {
    set_doc_entry(con, layout, &layout.gray_key(), doc, percent)
}

/// Sets or removes field `page:<key>` / `tpl:<name>` of `hash`, and announces the document.
fn set_doc_entry(
    con: &mut dyn ConnectionLike,
    layout: &Layout,
    hash: &str,
    doc: &DocRef,
    value: Option<impl ToString>,
) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    match value {
        Some(v) => pipe
            .cmd("HSET")
            .arg(hash)
            .arg(doc.field_name())
            .arg(v.to_string())
            .ignore(),
        None => pipe.cmd("HDEL").arg(hash).arg(doc.field_name()).ignore(),
    };
    pipe.cmd("PUBLISH")
        .arg(layout.events_channel())
        .arg(layout.doc_key(doc))
        .ignore()
        .query::<()>(con)
}

/// One field of a document as text, `None` if absent.
pub fn get_field(
    con: &mut dyn ConnectionLike,
    layout: &Layout,
    doc: &DocRef,
    field: Field,
) -> RedisResult<Option<String>> {
    redis::cmd("HGET")
        .arg(layout.doc_key(doc))
        .arg(field.name())
        .query(con)
}

/// Deletes fields of a document, and announces the document.
pub fn delete_fields(
    con: &mut dyn ConnectionLike,
    layout: &Layout,
    doc: &DocRef,
    fields: &[Field],
) -> RedisResult<()> {
    if fields.is_empty() {
        return Ok(());
    }
    let key = layout.doc_key(doc);
    let mut hdel = redis::cmd("HDEL");
    hdel.arg(&key);
    for f in fields {
        hdel.arg(f.name());
    }
    redis::pipe()
        .add_command(hdel)
        .ignore()
        .cmd("PUBLISH")
        .arg(layout.events_channel())
        .arg(&key)
        .ignore()
        .query::<()>(con)
}

/// Every page document under the prefix (SCAN, so Redis is never blocked).
pub fn list_pages(con: &mut dyn ConnectionLike, layout: &Layout) -> RedisResult<Vec<DocRef>> {
    let pattern = format!(
        "{}*",
        glob_escape(&layout.doc_key(&DocRef::Page(String::new())))
    );
    let mut cursor: u64 = 0;
    let mut pages = Vec::new();
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query(con)?;
        pages.extend(keys.iter().filter_map(|k| layout.parse_doc_key(k)));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    pages.sort_by(|a, b| a.name().cmp(b.name()));
    pages.dedup();
    Ok(pages)
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Checks a source URL (`redis://[user:pass@]host:port/db`, `redis+unix:///path?db=N`).
pub fn check_url(url: &str) -> Result<(), String> {
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| e.to_string().replace('\n', " "))
}

/// `url` as it may appear in logs: a password is replaced by `***`, in the user info
/// (`redis://user:pass@...`) and in the query (`redis+unix:///path?pass=...`, which the client
/// reads as the password of a unix socket URL).
pub fn redact_url(url: &str) -> String {
    // The URL parser drops tabs and line breaks wherever they are ("redis:/\n/u:pw@h").
    let url: String = url
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    // The query first: the user info is cut generously (up to the last `@` before a `/`), and
    // may take a `?` with it.
    redact_user_info(&redact_query(&url))
}

/// Every `pass=` pair after the first `?` (which may also be in a malformed user info), the
/// fragment included: more than the client reads, never less. A value runs to the next `&` or
/// `#`, as the client reads it.
fn redact_query(url: &str) -> String {
    let Some(q) = url.find('?') else {
        return url.to_string();
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..=q]);
    let mut rest = &url[q + 1..];
    loop {
        let key_end = rest.find(['=', '&', '?', '#']).unwrap_or(rest.len());
        if rest[key_end..].starts_with('=') && form_decoded(&rest[..key_end]) == "pass" {
            out.push_str(&rest[..=key_end]);
            out.push_str("***");
            let value = &rest[key_end + 1..];
            rest = &value[value.find(['&', '#']).unwrap_or(value.len())..];
        } else {
            let cut = rest.find(['&', '?', '#']).unwrap_or(rest.len());
            out.push_str(&rest[..cut]);
            rest = &rest[cut..];
        }
        let Some(delim) = rest.chars().next() else {
            break;
        };
        out.push(delim);
        rest = &rest[1..];
    }
    out
}

fn redact_user_info(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{}{user}{}", &url[..scheme_end], &rest[at..])
}

/// A query key as the URL parser reads it (`%70ass` and `p+ss` are keys too).
fn form_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens a blocking connection whose connect (handshake included), read and write each end
/// within `timeout`.
pub fn connect(url: &str, timeout: std::time::Duration) -> RedisResult<redis::Connection> {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info()?;
    // No CLIENT SETINFO: one round trip less, and the client ignores its failure, timeout
    // included, so a frozen server would cost a second timeout.
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    // The client gives each handshake reply (AUTH, SELECT) the whole remaining timeout: split
    // the budget so that the handshake as a whole stays within it.
    let replies = u32::from(settings.password().is_some()) + u32::from(settings.db() != 0);
    let info = info.set_redis_settings(settings);
    let client = redis::Client::open(info)?;
    let con = client.get_connection_with_timeout(timeout / replies.max(1))?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    Ok(con)
}

/// Stores `value` as a new production version at `at_ms` (or the first free millisecond after
/// it, never overwriting a version), announces the document, and returns the version.
pub fn put_new_version(
    con: &mut dyn ConnectionLike,
    layout: &Layout,
    doc: &DocRef,
    at_ms: u64,
    value: &str,
) -> RedisResult<u64> {
    let key = layout.doc_key(doc);
    let mut version = at_ms;
    loop {
        let created: bool = redis::cmd("HSETNX")
            .arg(&key)
            .arg(version.to_string())
            .arg(value)
            .query(con)?;
        if created {
            break;
        }
        version += 1;
    }
    publish(con, layout, &key)?;
    Ok(version)
}

/// Announces that `key` changed.
pub fn publish(con: &mut dyn ConnectionLike, layout: &Layout, key: &str) -> RedisResult<()> {
    redis::cmd("PUBLISH")
        .arg(layout.events_channel())
        .arg(key)
        .query::<()>(con)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            redact_url("redis://app:s3cret@10.0.0.1:6379/2"),
            "redis://app:***@10.0.0.1:6379/2"
        );
        assert_eq!(redact_url("redis://:pw@h/0"), "redis://:***@h/0");
        assert_eq!(redact_url("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?db=1"),
            "redis+unix:///run/redis.sock?db=1"
        );
    }

    mod bounded {
        use super::super::*;
        use crate::resp::{Conn, ErrorKind, Target};
        use std::io::{Read, Write};
        use std::net::TcpListener;
        use std::sync::mpsc::{channel, Receiver};
        use std::time::{Duration, Instant};

        /// A peer that answers each request it reads (one round trip) with the next of
        /// `answers`, then keeps the connection open a while (`drip`: a byte every 20 ms). It
        /// hands each request it read to the test.
        fn peer(answers: &'static [&'static [u8]], drip: bool) -> (Conn, Receiver<String>) {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = l.local_addr().unwrap().port();
            let (tx, rx) = channel();
            std::thread::spawn(move || {
                let Ok((mut s, _)) = l.accept() else { return };
                for answer in answers {
                    let mut buf = [0u8; 4096];
                    let Ok(n) = s.read(&mut buf) else { return };
                    let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                    if drip {
                        for b in *answer {
                            let _ = s.write_all(&[*b]);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    } else {
                        let _ = s.write_all(answer);
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            });
            let t = Target::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
            let con = Conn::connect(&t, Instant::now() + Duration::from_secs(1)).unwrap();
            (con, rx)
        }

        /// The command names of one request (each command's first argument).
        fn names(request: &str) -> Vec<String> {
            let lines: Vec<&str> = request.split("\r\n").collect();
            lines
                .windows(3)
                .filter(|w| w[0].starts_with('*') && w[1].starts_with('$'))
                .map(|w| w[2].to_string())
                .collect()
        }

        fn page(k: &str) -> DocRef {
            DocRef::Page(k.into())
        }

        /// The reply, and the command names of each round trip.
        fn ask(
            answers: &'static [&'static [u8]],
            drip: bool,
            items: &[Fetch],
            ms: u64,
        ) -> (BatchReply, Vec<Vec<String>>) {
            let (mut con, rx) = peer(answers, drip);
            let deadline = Instant::now() + Duration::from_millis(ms);
            let got = fetch_batch_within(&mut con, &Layout::default(), items, deadline);
            (got, rx.try_iter().map(|r| names(&r)).collect())
        }

        #[test]
        fn sizes_first_then_what_is_within_the_limits() {
            let items = [
                Fetch::Meta(page("/a")),
                Fetch::Field(page("/a"), Field::Version(1000)),
                Fetch::Data("shop:1".into()),
                Fetch::Data("shop:2".into()),
                Fetch::Field(page("/b"), Field::Version(1)),
                Fetch::Meta(page("/none")),
            ];
            let (got, rounds) = ask(
                &[
                    b":2\r\n$4\r\n1000\r\n$-1\r\n:2\r\n:2\r\n$2\r\n[]\r\n:0\r\n$0\r\n\r\n:0\r\n\
                      :0\r\n$-1\r\n$-1\r\n",
                    b"*2\r\n$4\r\n1000\r\n$9\r\npredeploy\r\n$2\r\n{}\r\n$-1\r\n*0\r\n",
                ],
                false,
                &items,
                1000,
            );
            assert_eq!(
                rounds,
                vec![
                    vec![
                        "HLEN", "HGET", "HGET", "HSTRLEN", "STRLEN", "GETRANGE", "STRLEN",
                        "GETRANGE", "HSTRLEN", "HLEN", "HGET", "HGET"
                    ],
                    vec!["HKEYS", "HGET", "HGET", "HKEYS"],
                ]
            );
            assert!(got.failed.is_none() && got.reusable, "{got:?}");
            assert_eq!(
                got.items,
                vec![
                    Ok(Raw::Meta(Some(RawMeta {
                        fields: vec!["1000".into(), "predeploy".into()],
                        pin: Some("1000".into()),
                        gray: None,
                    }))),
                    Ok(Raw::Field(Some(b"{}".to_vec()))),
                    Ok(Raw::Data(Ok(Some(b"[]".to_vec())))),
                    Ok(Raw::Data(Ok(None))),
                    Ok(Raw::Field(None)),
                    Ok(Raw::Meta(None)),
                ]
            );
        }

        #[test]
        fn a_document_with_too_many_fields_or_a_huge_value_fails_alone_unread() {
            let items = [
                Fetch::Meta(page("/big")),
                Fetch::Field(page("/a"), Field::Version(1)),
                Fetch::Meta(page("/a")),
            ];
            let (got, rounds) = ask(
                &[
                    b":300000\r\n$-1\r\n$-1\r\n:209715200\r\n:1\r\n$-1\r\n$-1\r\n",
                    b"*1\r\n$1\r\n1\r\n",
                ],
                false,
                &items,
                1000,
            );
            // Neither the field list of /big nor the value was asked for.
            assert_eq!(rounds[1], vec!["HKEYS"]);
            assert!(got.failed.is_none() && got.reusable, "{got:?}");
            assert_eq!(
                got.items[..2],
                [
                    Err(ItemFailure {
                        cause: "it has 300000 fields, over the 10000 field limit".into(),
                        slow: false
                    }),
                    Err(ItemFailure {
                        cause: "the value is 209715200 bytes, over the 8388608 byte limit".into(),
                        slow: false
                    }),
                ]
            );
            assert!(matches!(&got.items[2], Ok(Raw::Meta(Some(_)))));
        }

        #[test]
        fn a_reply_over_the_limits_is_refused_from_its_header() {
            // A peer that says a small count, then sends more: refused as it is read.
            let items = [
                Fetch::Field(page("/a"), Field::Version(1)),
                Fetch::Field(page("/b"), Field::Version(1)),
            ];
            let (got, _) = ask(
                &[b":1\r\n:1\r\n", b"$1099511627776\r\n\0\0\0\0"],
                false,
                &items,
                1000,
            );
            assert!(got.failed.is_none() && !got.reusable, "{got:?}");
            assert!(
                matches!(&got.items[..], [Err(f)] if f.cause.contains("1099511627776 bytes")),
                "{got:?}"
            );
            // In the first round trip (sizes, short entries), it is the source's failure.
            let (got, _) = ask(&[b":1\r\n$1099511627776\r\n"], false, &items, 1000);
            assert!(got.items.is_empty(), "{got:?}");
            assert_eq!(got.failed.map(|e| e.kind), Some(ErrorKind::TooLarge));
            let items = [Fetch::Meta(page("/a"))];
            let (got, _) = ask(
                &[b":1\r\n$-1\r\n$-1\r\n", b"*300000\r\n$1\r\n1\r\n"],
                false,
                &items,
                1000,
            );
            assert!(
                matches!(&got.items[..], [Err(f)] if f.cause
                    == "its reply is too large: a reply of 300000 elements, over the 10000 element limit"),
                "{got:?}"
            );
        }

        #[test]
        fn a_key_of_another_type_fails_alone_and_the_batch_goes_on() {
            let items = [
                Fetch::Meta(page("/s")),
                Fetch::Field(page("/a"), Field::Version(1)),
            ];
            let (got, _) = ask(
                &[
                    b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n\
                      $-1\r\n$-1\r\n:1\r\n",
                    b"$1\r\nx\r\n",
                ],
                false,
                &items,
                1000,
            );
            assert!(got.failed.is_none() && got.reusable, "{got:?}");
            assert!(matches!(&got.items[0], Err(f) if f.cause == "the key holds another type"));
            assert_eq!(got.items[1], Ok(Raw::Field(Some(b"x".to_vec()))));
        }

        #[test]
        fn errors_any_command_gets_and_odd_replies_are_the_sources_failure() {
            let items = [Fetch::Field(page("/a"), Field::Version(1))];
            let (got, _) = ask(&[b"-LOADING Redis is loading\r\n"], false, &items, 1000);
            assert!(got.items.is_empty());
            assert_eq!(
                got.failed.map(|e| (e.kind, e.detail)),
                Some((
                    ErrorKind::Server,
                    "answered an error: LOADING Redis is loading".into()
                ))
            );
            let (got, _) = ask(&[b"+OK\r\n"], false, &items, 1000);
            assert_eq!(
                got.failed.map(|e| e.detail),
                Some("answered HSTRLEN with a status (OK)".into())
            );
            let (got, _) = ask(&[b"!garbage\r\n"], false, &items, 1000);
            assert_eq!(got.failed.map(|e| e.kind), Some(ErrorKind::Protocol));
        }

        #[test]
        fn silence_is_the_sources_failure_a_dripped_reply_the_items() {
            let items = [
                Fetch::Field(page("/a"), Field::Version(1)),
                Fetch::Field(page("/b"), Field::Version(1)),
            ];
            let start = Instant::now();
            let (got, _) = ask(&[b""], false, &items, 100);
            assert!(start.elapsed() < Duration::from_millis(250));
            assert!(got.items.is_empty());
            assert_eq!(got.failed.map(|e| e.kind), Some(ErrorKind::TimedOut));

            // Dripped: the first item began arriving, so it is that item that was too slow.
            let start = Instant::now();
            let (got, _) = ask(&[b":20\r\n:0\r\n"], true, &items, 100);
            assert!(start.elapsed() < Duration::from_millis(250));
            assert!(got.failed.is_none() && !got.reusable);
            assert!(matches!(&got.items[..], [Err(f)] if f.slow), "{got:?}");

            // The sizes came, the values never did: the first value was too slow.
            let (got, _) = ask(&[b":1\r\n:1\r\n", b""], false, &items, 100);
            assert!(got.failed.is_none());
            assert!(matches!(&got.items[..], [Err(f)] if f.slow), "{got:?}");
        }
    }
}
