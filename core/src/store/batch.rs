//! [`fetch_batch`]: a batch read in one pipeline on a `redis` crate connection (`dynpagectl`
//! and tests), and the decoding of its replies.

use redis::{ConnectionLike, RedisResult, Value};

use super::fetch::{Fetch, Raw, RawMeta, MAX_DATA_BYTES};
use crate::layout::Layout;

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

pub(super) fn unexpected(v: &Value) -> redis::RedisError {
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
