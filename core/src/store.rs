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

/// Like [`fetch_batch`], but the whole round trip ends by `deadline`: each reply is read with
/// what is left of the time, and the first failure ends it (the client's own pipeline reads
/// every remaining reply, each with the full timeout, even after one timed out).
pub fn fetch_batch_by(
    con: &mut redis::Connection,
    layout: &Layout,
    items: &[Fetch],
    deadline: std::time::Instant,
) -> RedisResult<Vec<Raw>> {
    let pipe = batch_pipeline(layout, items);
    con.send_packed_command(&pipe.get_packed_pipeline())?;
    let mut replies = Vec::with_capacity(pipe.len());
    for _ in 0..pipe.len() {
        con.set_read_timeout(Some(time_left(deadline)?))?;
        replies.push(con.recv_response()?);
    }
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

/// What is left of the time until `deadline`; a timeout error once nothing is.
pub fn time_left(deadline: std::time::Instant) -> RedisResult<std::time::Duration> {
    deadline
        .checked_duration_since(std::time::Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out",
            ))
        })
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
}
