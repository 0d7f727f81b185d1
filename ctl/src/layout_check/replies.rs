//! Reading the replies of `dynpagectl check`'s pipelines (sent with `ignore_errors`, so each
//! command's error is its own reply): a key of another type is that key's problem, any other
//! error or an unexpected reply fails the check. Never a panic on what Redis sends.

use redis::Value;

use crate::context::{fail, redis_err, Result};

/// One reply of a pipeline sent with `ignore_errors`: a WRONGTYPE error is the key's problem
/// (`None`), any other error fails the check.
fn wrong_type_or(v: Value) -> Result<Option<Value>> {
    match v {
        Value::ServerError(e) if e.code() == "WRONGTYPE" => Ok(None),
        Value::ServerError(e) => redis_err(e.into()),
        v => Ok(Some(v)),
    }
}

fn unexpected<T>(command: &str, v: &Value) -> Result<T> {
    let shown: String = format!("{v:?}").chars().take(80).collect();
    fail(format!("redis: unexpected reply to {command}: {shown}"))
}

/// An integer reply (`HLEN`, `HSTRLEN`, `EXISTS`); `None` for a key of another type.
pub(super) fn int_reply(command: &str, v: Value) -> Result<Option<usize>> {
    match wrong_type_or(v)? {
        None => Ok(None),
        Some(Value::Int(n)) => Ok(Some(usize::try_from(n).unwrap_or(0))),
        Some(other) => unexpected(command, &other),
    }
}

/// A bulk reply (`HGET`); `None` when absent or of another type.
pub(super) fn bytes_reply(command: &str, v: Value) -> Result<Option<Vec<u8>>> {
    match wrong_type_or(v)? {
        None | Some(Value::Nil) => Ok(None),
        Some(Value::BulkString(b)) => Ok(Some(b)),
        Some(Value::SimpleString(s)) => Ok(Some(s.into_bytes())),
        Some(other) => unexpected(command, &other),
    }
}

/// A list of strings (`HKEYS`); `None` for a key of another type.
pub(super) fn list_reply(command: &str, v: Value) -> Result<Option<Vec<Vec<u8>>>> {
    let items = match wrong_type_or(v)? {
        None => return Ok(None),
        Some(Value::Array(items) | Value::Set(items)) => items,
        Some(Value::Nil) => Vec::new(),
        Some(other) => return unexpected(command, &other),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::BulkString(b) => out.push(b),
            Value::SimpleString(s) => out.push(s.into_bytes()),
            other => return unexpected(command, &other),
        }
    }
    Ok(Some(out))
}
