//! `dynpagectl`'s writes: new versions and fields, pins, gray shares, deletions, each announced
//! on `P events`.

use redis::{ConnectionLike, RedisResult};

use crate::layout::{DocRef, Layout};
use crate::version::Field;

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
