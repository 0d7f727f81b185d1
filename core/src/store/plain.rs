//! The items of [`super::fetch_batch_scripted`]'s round trip that are read with plain commands
//! rather than the read script: a document this worker read before (its hint, see
//! [`super::hints`]) or whose versions it holds, and a version it read before. Same one round
//! trip, a tenth of Redis's CPU: handing a 13 KB value to a script and back costs Redis 7 about
//! 25 µs, a plain `HGET` 2 µs.
//!
//! What makes the script's size checks unneeded here: the worker read that document's field
//! list, or that (never rewritten) version, within the limits before. Whatever is over them
//! now is refused while it is read, as the item's failure, like anything that grows between a
//! size and a read ([`super::fetch_batch_within`]'s second round).

use super::bounded::{Reader, ENTRY, NAMES, VALUE};
use super::fetch::{Fetch, Raw, RawMeta};
use super::hints::{Hint, VersionHints};
use super::replies::{doc_meta, field_names, text, Scripted, Stop};
use crate::layout::{DocRef, Layout};
use crate::resp::{Commands, Reply};
use crate::version::{DocMeta, Field};

/// How an item is read without the script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Plain {
    /// A document's meta, and the value of the version its hint names (if any).
    Meta { value: Option<u64> },
    /// A version of a document.
    Field(Field),
}

/// How `item` is read without the script, if it can be: `wanted` says whether a version's
/// value is to come with a document's meta.
pub(super) fn choose(
    layout: &Layout,
    item: &Fetch,
    wanted: bool,
    hints: Option<&VersionHints>,
) -> Option<Plain> {
    // Only a document read before within the limits (it has a hint).
    let hint = hints?.get(layout.doc_key(item.doc()?).as_bytes())?;
    match item {
        // The worker holds its versions: only the meta is read.
        Fetch::Meta(_) if !wanted => Some(Plain::Meta { value: None }),
        // During a gray release the script also brings the gray version's value.
        Fetch::Meta(_) if hint.gray => None,
        Fetch::Meta(_) => Some(Plain::Meta {
            value: Some(hint.version),
        }),
        Fetch::Field(_, field @ Field::Version(v)) if hint.version == *v => {
            Some(Plain::Field(*field))
        }
        Fetch::Field(..) | Fetch::Data(_) => None,
    }
}

/// Encodes `item`'s commands.
pub(super) fn push(packed: &mut Commands, layout: &Layout, item: &Fetch, how: &Plain) {
    let Some(doc) = item.doc() else { return };
    let key = layout.doc_key(doc);
    match how {
        Plain::Meta { value } => {
            let name = doc.field_name();
            packed.push(&[b"HKEYS", key.as_bytes()], Some(1));
            let (rollback, gray) = (layout.rollback_key(), layout.gray_key());
            packed.push(&[b"HGET", rollback.as_bytes(), name.as_bytes()], Some(1));
            packed.push(&[b"HGET", gray.as_bytes(), name.as_bytes()], Some(1));
            if let Some(v) = value {
                packed.push(
                    &[b"HGET", key.as_bytes(), v.to_string().as_bytes()],
                    Some(1),
                );
            }
        }
        Plain::Field(field) => {
            packed.push(&[b"HGET", key.as_bytes(), field.name().as_bytes()], Some(1))
        }
    }
}

/// Reads `item`'s replies and notes what they say in `hints`; `None`: an answer that is not
/// a plain one (a key of another type...), for the two-round read to tell.
pub(super) fn read(
    reader: &mut Reader<'_>,
    layout: &Layout,
    item: &Fetch,
    how: &Plain,
    now_ms: u64,
    hints: Option<&VersionHints>,
) -> Result<Scripted, Stop> {
    let Some(doc) = item.doc() else {
        return Ok(None);
    };
    let got = read_replies(reader, how, now_ms);
    if let Some(hints) = hints {
        let key = layout.doc_key(doc);
        match (&got, how) {
            // Over the limits: the script reads it next, and tells why it fails without Redis
            // sending it.
            (Err(Stop::Item(_)), _) => hints.forget(key.as_bytes()),
            // The hinted version's value came: the hint holds (its gray state as read now).
            (Ok(Some((Raw::Meta(Some(meta)), values))), _) if !values.is_empty() => {
                note(hints, key.as_bytes(), meta, values)
            }
            // Wrong (a newer version, a pin) or gone: the script reads it next time, and
            // checks its size.
            (Ok(_), Plain::Meta { value: Some(_) })
            | (Ok(Some((Raw::Field(None), _))), Plain::Field(_)) => hints.forget(key.as_bytes()),
            _ => {}
        }
    }
    got
}

/// `item`'s replies, as [`read`] says.
fn read_replies(reader: &mut Reader<'_>, how: &Plain, now_ms: u64) -> Result<Scripted, Stop> {
    match how {
        Plain::Meta { value } => {
            let mut replies = reader.read(&[NAMES, ENTRY, ENTRY])?;
            let value_reply = match value {
                Some(_) => reader.read(&[VALUE])?.pop(),
                None => None,
            };
            let gray = replies.pop();
            let pin = replies.pop();
            let names = replies.pop();
            Ok(meta_of(names, pin, gray, *value, value_reply, now_ms))
        }
        Plain::Field(_) => Ok(match reader.read(&[VALUE])?.pop() {
            Some(Reply::Bulk(v)) => Some((Raw::Field(Some(v)), Vec::new())),
            Some(Reply::Nil) => Some((Raw::Field(None), Vec::new())),
            _ => None,
        }),
    }
}

/// A document's meta from its plain replies, with the hinted version's value when the rules
/// choose that version at `now_ms` (the module's own rule: [`DocMeta::production`]).
fn meta_of(
    names: Option<Reply>,
    pin: Option<Reply>,
    gray: Option<Reply>,
    hinted: Option<u64>,
    value: Option<Reply>,
    now_ms: u64,
) -> Scripted {
    let (pin, gray) = match (text(pin), text(gray)) {
        (Ok(p), Ok(g)) => (p, g),
        _ => return None,
    };
    let fields = match names {
        Some(Reply::Array(names)) => field_names(names).ok()?,
        _ => return None,
    };
    let raw = doc_meta(fields, pin, gray);
    let mut values = Vec::new();
    if let (Raw::Meta(Some(meta)), Some(v), Some(Reply::Bulk(bytes))) = (&raw, hinted, value) {
        if rules_of(meta).production(now_ms) == Some(v) {
            values.push((Field::Version(v), bytes));
        }
    }
    Some((raw, values))
}

/// What the version rules make of a document's raw meta.
fn rules_of(meta: &RawMeta) -> DocMeta {
    let fields = meta.fields.iter().map(String::as_str);
    DocMeta::from_fields(fields, meta.pin.as_deref(), meta.gray.as_deref())
}

/// Notes the production version a document's read brought (with its gray state), if it did.
pub(super) fn note_read(
    layout: &Layout,
    doc: &DocRef,
    got: &Scripted,
    hints: Option<&VersionHints>,
) {
    if let (Some(hints), Some((Raw::Meta(Some(meta)), values))) = (hints, got) {
        note(hints, layout.doc_key(doc).as_bytes(), meta, values);
    }
}

/// Notes the production version among `values` read with `meta` under `key`.
fn note(hints: &VersionHints, key: &[u8], meta: &RawMeta, values: &[(Field, Vec<u8>)]) {
    let Some(version) = values.iter().find_map(|(f, _)| f.version()) else {
        return;
    };
    let rules = rules_of(meta);
    let gray = rules.gray > 0 && rules.has_ab;
    hints.put(key, Hint { version, gray });
}

/// Notes a version of a document read through the script, for a document without a hint (a
/// document's hint is its production version, which a read of another version, an older
/// template's or a pinned one, would not be).
pub(super) fn note_field(
    layout: &Layout,
    doc: &DocRef,
    field: Field,
    hints: Option<&VersionHints>,
) {
    let (Some(hints), Field::Version(version)) = (hints, field) else {
        return;
    };
    let key = layout.doc_key(doc);
    if hints.get(key.as_bytes()).is_none() {
        let gray = false;
        hints.put(key.as_bytes(), Hint { version, gray });
    }
}
