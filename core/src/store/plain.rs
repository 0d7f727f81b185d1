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
use super::replies::{text, Scripted, Stop};
use crate::layout::{check_gray_share, parse_version, DocRef, Layout, FIELD_AB};
use crate::resp::{Commands, Reply};
use crate::version::Field;

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
/// a plain one (a key of another type...), for the two-round read to tell. A reply over the
/// limits drops the document's hint: the script reads it next, and tells why it fails without
/// Redis sending it.
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
    let got = read_replies(reader, layout, doc, how, now_ms, hints);
    if let (Err(Stop::Item(_)), Some(hints)) = (&got, hints) {
        hints.forget(layout.doc_key(doc).as_bytes());
    }
    got
}

fn read_replies(
    reader: &mut Reader<'_>,
    layout: &Layout,
    doc: &DocRef,
    how: &Plain,
    now_ms: u64,
    hints: Option<&VersionHints>,
) -> Result<Scripted, Stop> {
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
            let got = meta_of(names, pin, gray, *value, value_reply, now_ms);
            if value.is_some() {
                note_read(layout, doc, &got, hints);
                if !matches!(&got, Some((_, values)) if !values.is_empty()) {
                    // Wrong (a newer version, a pin) or gone: the script reads it next time,
                    // and checks its size.
                    if let Some(hints) = hints {
                        hints.forget(layout.doc_key(doc).as_bytes());
                    }
                }
            }
            Ok(got)
        }
        Plain::Field(_) => Ok(match reader.read(&[VALUE])?.pop() {
            Some(Reply::Bulk(v)) => Some((Raw::Field(Some(v)), Vec::new())),
            Some(Reply::Nil) => {
                if let Some(hints) = hints {
                    hints.forget(layout.doc_key(doc).as_bytes());
                }
                Some((Raw::Field(None), Vec::new()))
            }
            _ => None,
        }),
    }
}

/// A document's meta from its plain replies, with the hinted version's value when the rules
/// choose that version at `now_ms`.
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
    let Some(Reply::Array(names)) = names else {
        return None;
    };
    let mut fields = Vec::with_capacity(names.len());
    for n in names {
        match n {
            Reply::Bulk(b) => fields.push(String::from_utf8_lossy(&b).into_owned()),
            _ => return None,
        }
    }
    if fields.is_empty() {
        return Some((Raw::Meta(None), Vec::new()));
    }
    let meta = RawMeta { fields, pin, gray };
    let mut values = Vec::new();
    if let (Some(v), Some(Reply::Bulk(bytes))) = (hinted, value) {
        if production(&meta, now_ms) == Some(v) {
            values.push((Field::Version(v), bytes));
        }
    }
    Some((Raw::Meta(Some(meta)), values))
}

/// The production version the rules choose at `now_ms` (the read script's guess): the pinned
/// version if the document has it, else the greatest version not after `now_ms`.
fn production(meta: &RawMeta, now_ms: u64) -> Option<u64> {
    let versions = || meta.fields.iter().filter_map(|f| parse_version(f));
    let pinned = meta.pin.as_deref().and_then(parse_version);
    pinned
        .filter(|p| versions().any(|v| v == *p))
        .or_else(|| versions().filter(|v| *v <= now_ms).max())
}

/// Notes the production version a document's read brought (with its gray state), if it did.
pub(super) fn note_read(
    layout: &Layout,
    doc: &DocRef,
    got: &Scripted,
    hints: Option<&VersionHints>,
) {
    let (Some(hints), Some((Raw::Meta(Some(meta)), values))) = (hints, got) else {
        return;
    };
    let gray = meta.fields.iter().any(|f| f == FIELD_AB)
        && meta
            .gray
            .as_deref()
            .is_some_and(|g| check_gray_share(g).is_ok_and(|p| p > 0));
    for (field, _) in values {
        if let Field::Version(version) = field {
            hints.put(
                layout.doc_key(doc).as_bytes(),
                Hint {
                    version: *version,
                    gray,
                },
            );
        }
    }
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
