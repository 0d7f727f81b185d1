//! [`fetch_batch_scripted`]: the module's batch read in one round trip, through a read-only
//! server-side script (`read_script.lua`). A cold document's meta comes back with the value of
//! the production version the rules will likely choose (and abVersion's during a gray
//! release), so a cold page costs one exchange per source instead of four; a field's value
//! comes without its size being asked first. The script checks the same limits as the
//! two-round read ([`fetch_batch_within`]) on the server; whatever it cannot do (an item over
//! the limits, a key of another type, a Redis without scripting) is read the two-round way, in
//! the same call, so every failure reads as it did.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bounded::{fetch_batch_within, BatchReply, Reader, DATA, ENTRY};
use super::fetch::{
    Fetch, ItemFailure, Raw, MAX_DOC_FIELDS, MAX_ENTRY_BYTES, MAX_FIELD_BYTES, MAX_FIELD_NAME_BYTES,
};
use super::hints::VersionHints;
use super::plain::{self, Plain};
use super::replies::{doc_meta, field_names, first_step, text, Scripted, Step, Stop};
use crate::layout::{Layout, MAX_VERSION};
use crate::resp::{Commands, Limits, Pipe, Reply};
use crate::version::Field;

/// The script's source.
pub const READ_SCRIPT: &str = include_str!("read_script.lua");

/// How long a source whose Redis refused the script (no scripting, an ACL, an old Redis) is
/// read the two-round way before the script is tried again.
pub const SCRIPT_RETRY: Duration = Duration::from_secs(60);

/// A fetch thread's use of the script at one source.
#[derive(Debug)]
pub struct ReadScript {
    sha: String,
    /// The source's Redis has run it since it was last found missing: `EVALSHA` serves.
    loaded: bool,
    /// Wall clock (ms) until which the source is read the two-round way, after it refused the
    /// script: shared by the threads that read the source, so it is found out once.
    off_until_ms: Arc<AtomicU64>,
}

impl Default for ReadScript {
    fn default() -> ReadScript {
        ReadScript::sharing(Arc::default())
    }
}

impl ReadScript {
    /// One that shares with others the time until which the source is not asked to run it.
    pub fn sharing(off_until_ms: Arc<AtomicU64>) -> ReadScript {
        ReadScript {
            sha: sha1_smol::Sha1::from(READ_SCRIPT).digest().to_string(),
            loaded: false,
            off_until_ms,
        }
    }

    /// The script is to be used at `now_ms` (wall clock).
    pub fn in_use(&self, now_ms: u64) -> bool {
        now_ms >= self.off_until_ms.load(Relaxed)
    }

    /// Encodes the script call with `keys` and `args`: `EVALSHA` once the Redis holds it,
    /// else `EVAL` (which also loads it). The first key routes it in a cluster.
    fn push(&self, cmds: &mut Commands, keys: &[&[u8]], args: &[&[u8]]) {
        let count = keys.len().to_string();
        let mut all: Vec<&[u8]> = Vec::with_capacity(3 + keys.len() + args.len());
        if self.loaded {
            all.extend([b"EVALSHA".as_slice(), self.sha.as_bytes()]);
        } else {
            all.extend([b"EVAL".as_slice(), READ_SCRIPT.as_bytes()]);
        }
        all.push(count.as_bytes());
        all.extend_from_slice(keys);
        all.extend_from_slice(args);
        cmds.push(&all, Some(3));
    }

    /// What an error reply to the script says about the script at this source.
    fn refused(&mut self, error: &str, now_ms: u64) {
        // A Redis that cannot answer anything just now: the item is read the two-round way
        // (which says why it fails), and the script stays in use.
        const PASSING: [&str; 7] = [
            "LOADING",
            "BUSY",
            "MASTERDOWN",
            "CLUSTERDOWN",
            "TRYAGAIN",
            "MOVED",
            "ASK",
        ];
        if error.starts_with("NOSCRIPT") {
            // Flushed, or a Redis that restarted or failed over: `EVAL` loads it again.
            self.loaded = false;
        } else if !PASSING.iter().any(|p| error.starts_with(p)) {
            let retry = u64::try_from(SCRIPT_RETRY.as_millis()).unwrap_or(u64::MAX);
            self.off_until_ms
                .store(now_ms.saturating_add(retry), Relaxed);
        }
    }
}

/// Which version a document's read brings with its meta: the one the rules choose at `now_ms`
/// (the fetch thread's clock), for the metas `wanted` says; `hints` (the worker's, if any)
/// lets a document read before be read with plain commands.
#[derive(Clone, Copy)]
pub struct Guess<'a> {
    pub now_ms: u64,
    pub wanted: &'a dyn Fn(&Fetch) -> bool,
    pub hints: Option<&'a VersionHints>,
}

/// Reads every item by `deadline` in one round trip where the script can, the rest the
/// two-round way ([`fetch_batch_within`]) right after. `now_ms` is the clock the version is
/// guessed by; `same_slot(keys)` says whether those keys may be read by one script call (a
/// cluster: only keys of one slot); `guess(meta)` whether a version is read with that meta
/// (not for a meta the worker refreshes: it holds its versions). Values read with a document's
/// meta are in [`BatchReply::extra`].
pub fn fetch_batch_scripted(
    con: &mut dyn Pipe,
    layout: &Layout,
    items: &[Fetch],
    deadline: Instant,
    script: &mut ReadScript,
    same_slot: &dyn Fn(&[&[u8]]) -> bool,
    guess: Guess<'_>,
) -> BatchReply {
    let Guess {
        now_ms,
        wanted,
        hints,
    } = guess;
    // Per item: how it is read without the script, if it can be (chosen once: the hints change
    // under other threads). A source that refused the script: a batch of documents read before
    // goes plainly all the same (one round trip); any other the two-round way (two).
    let chosen: Vec<Option<Plain>> = items
        .iter()
        .map(|item| plain::choose(layout, item, wanted(item), hints))
        .collect();
    if items.is_empty() || (!script.in_use(now_ms) && chosen.iter().any(Option::is_none)) {
        return fetch_batch_within(con, layout, items, deadline);
    }
    let (rollback, gray) = (layout.rollback_key(), layout.gray_key());
    let args = DocArgs::new(now_ms);
    let mut packed = Commands::with_capacity(160 * items.len());
    // Per item: whether its rollback / gray entries are read beside the script (not in it).
    let mut beside: Vec<bool> = Vec::with_capacity(items.len());
    for (item, how) in items.iter().zip(&chosen) {
        let mut apart = false;
        if let Some(how) = how {
            plain::push(&mut packed, layout, item, how);
            beside.push(false);
            continue;
        }
        match item {
            Fetch::Meta(doc) => {
                let (key, name) = (layout.doc_key(doc), doc.field_name());
                let keys: [&[u8]; 3] = [key.as_bytes(), rollback.as_bytes(), gray.as_bytes()];
                apart = !same_slot(&keys);
                let keys = if apart { &keys[..1] } else { &keys[..] };
                script.push(&mut packed, keys, &args.doc(name.as_bytes(), wanted(item)));
                if apart {
                    packed.push(&[b"HGET", rollback.as_bytes(), name.as_bytes()], Some(1));
                    packed.push(&[b"HGET", gray.as_bytes(), name.as_bytes()], Some(1));
                }
            }
            Fetch::Field(doc, field) => {
                let (key, name) = (layout.doc_key(doc), field.name());
                let largest = MAX_FIELD_BYTES.to_string();
                script.push(
                    &mut packed,
                    &[key.as_bytes()],
                    &[b"field", name.as_bytes(), largest.as_bytes()],
                );
            }
            Fetch::Data(key) => {
                let largest = super::fetch::MAX_DATA_BYTES.to_string();
                packed.push(&[b"STRLEN", key.as_bytes()], Some(1));
                packed.push(
                    &[b"GETRANGE", key.as_bytes(), b"0", largest.as_bytes()],
                    Some(1),
                );
            }
        }
        beside.push(apart);
    }
    let mut reader = Reader::new(con, deadline, false);
    if let Err(e) = reader.con.send_commands(&packed, deadline) {
        return BatchReply {
            failed: Some(e),
            round_trips: 1,
            ..Default::default()
        };
    }

    // The one round trip's answers; `None`: read the two-round way.
    let mut answers: Vec<Option<Result<Raw, ItemFailure>>> = Vec::with_capacity(items.len());
    let mut extra: Vec<(Fetch, Raw)> = Vec::new();
    let mut stop: Option<Stop> = None;
    for ((item, &apart), how) in items.iter().zip(&beside).zip(&chosen) {
        let got: Result<Option<Result<Scripted, ItemFailure>>, Stop> = match (item, how) {
            (_, Some(how)) => plain::read(&mut reader, layout, item, how, now_ms, hints)
                .map(|answer| Some(Ok(answer))),
            (Fetch::Data(_), None) => reader
                .read(&[Limits::SMALL, DATA])
                .and_then(|r| first_step(item, r))
                .map(|step| match step {
                    Step::Done(r) => Some(r.map(|raw| Some((raw, Vec::new())))),
                    _ => None,
                }),
            (Fetch::Meta(doc), None) => reader.read(&[SCRIPT_REPLY]).and_then(|mut r| {
                let entries = if apart {
                    Some((reader.read(&[ENTRY])?, reader.read(&[ENTRY])?))
                } else {
                    None
                };
                let got = meta_of(script, now_ms, r.pop(), entries);
                plain::note_read(layout, doc, &got, hints);
                Ok(Some(Ok(got)))
            }),
            (Fetch::Field(doc, field), None) => reader.read(&[SCRIPT_REPLY]).map(|mut r| {
                let got = field_of(script, now_ms, r.pop());
                if let Some((Raw::Field(Some(_)), _)) = &got {
                    plain::note_field(layout, doc, *field, hints);
                }
                Some(Ok(got))
            }),
        };
        match got {
            Ok(Some(Ok(Some((raw, values))))) => {
                if let Fetch::Meta(doc) = item {
                    extra.extend(
                        values
                            .into_iter()
                            .map(|(f, v)| (Fetch::Field(doc.clone(), f), Raw::Field(Some(v)))),
                    );
                }
                answers.push(Some(Ok(raw)));
            }
            Ok(Some(Ok(None))) | Ok(None) => answers.push(None),
            Ok(Some(Err(failure))) => answers.push(Some(Err(failure))),
            Err(s) => {
                if let Stop::Item(f) = &s {
                    // As `Stop::place`: the failure takes the place of the first item left
                    // without an answer (the later ones wait on it), so the batch reports it
                    // and makes progress.
                    let at = answers
                        .iter()
                        .position(Option::is_none)
                        .unwrap_or(answers.len());
                    answers.truncate(at);
                    answers.push(Some(Err(f.clone())));
                }
                stop = Some(s);
                break;
            }
        }
    }

    let mut out = BatchReply {
        extra,
        round_trips: 1,
        ..Default::default()
    };
    let ordinary: Vec<Fetch> = answers
        .iter()
        .zip(items)
        .filter(|(a, _)| a.is_none())
        .map(|(_, f)| f.clone())
        .collect();
    let mut later = match (&stop, ordinary.is_empty()) {
        (None, false) => {
            let got = fetch_batch_within(reader.con, layout, &ordinary, deadline);
            out.failed = got.failed;
            out.reusable = got.reusable;
            out.round_trips += got.round_trips;
            got.items.into_iter()
        }
        (None, true) => {
            out.reusable = true;
            Vec::new().into_iter()
        }
        (Some(Stop::Source(e)), _) => {
            out.failed = Some(e.clone());
            Vec::new().into_iter()
        }
        (Some(Stop::Item(_)), _) => Vec::new().into_iter(),
    };
    // In order, up to the first item left without an answer.
    for answer in answers {
        match answer.or_else(|| later.next()) {
            Some(a) => out.items.push(a),
            None => break,
        }
    }
    out
}

/// A script reply: a document's field names and two values, or one value.
const SCRIPT_REPLY: Limits = Limits {
    max_bulk: MAX_FIELD_BYTES,
    max_elements: MAX_DOC_FIELDS + 8,
};

/// The script's arguments for a document, but its name.
struct DocArgs {
    numbers: [String; 6],
}

impl DocArgs {
    fn new(now_ms: u64) -> DocArgs {
        DocArgs {
            numbers: [
                now_ms.to_string(),
                MAX_DOC_FIELDS.to_string(),
                MAX_FIELD_NAME_BYTES.to_string(),
                MAX_ENTRY_BYTES.to_string(),
                MAX_FIELD_BYTES.to_string(),
                MAX_VERSION.to_string(),
            ],
        }
    }

    fn doc<'a>(&'a self, name: &'a [u8], guess: bool) -> [&'a [u8]; 9] {
        let n = &self.numbers;
        [
            b"doc",
            name,
            n[0].as_bytes(),
            n[1].as_bytes(),
            n[2].as_bytes(),
            n[3].as_bytes(),
            n[4].as_bytes(),
            n[5].as_bytes(),
            if guess { b"1" } else { b"0" },
        ]
    }
}

/// A reply's elements after its leading `1`; `None`: not a done reply (or refused).
fn done_elements(script: &mut ReadScript, now_ms: u64, reply: Option<Reply>) -> Option<Vec<Reply>> {
    match reply {
        Some(Reply::Array(mut parts)) => {
            // It ran (`{0}` too): `EVALSHA` serves from now on.
            script.loaded = true;
            if !matches!(parts.first(), Some(Reply::Int(1))) {
                return None;
            }
            parts.remove(0);
            Some(parts)
        }
        Some(Reply::Error(e)) => {
            script.refused(&e, now_ms);
            None
        }
        _ => None,
    }
}

/// A document from the script's reply (and, when they were read beside it, its rollback and
/// gray entries' replies).
fn meta_of(
    script: &mut ReadScript,
    now_ms: u64,
    reply: Option<Reply>,
    entries: Option<(Vec<Reply>, Vec<Reply>)>,
) -> Scripted {
    let parts = done_elements(script, now_ms, reply);
    let entry = |r: Vec<Reply>| text(r.into_iter().next());
    let (pin, gray) = match entries {
        // Beside the script: an error there (another type) is for the two-round read to tell.
        Some((p, g)) => match (entry(p), entry(g)) {
            (Ok(p), Ok(g)) => (p, g),
            _ => return None,
        },
        None => (None, None),
    };
    let parts = parts?;
    let mut parts = parts.into_iter();
    let (in_pin, in_gray) = match (text(parts.next()), text(parts.next())) {
        (Ok(p), Ok(g)) => (p, g),
        _ => return None,
    };
    let fields = match parts.next() {
        Some(Reply::Array(names)) => field_names(names).ok()?,
        _ => return None,
    };
    let guess = text(parts.next()).ok().flatten();
    let mut values = Vec::new();
    if let (Some(field), Some(Reply::Bulk(v))) =
        (guess.as_deref().and_then(Field::parse), parts.next())
    {
        values.push((field, v));
    }
    if let Some(Reply::Bulk(v)) = parts.next() {
        values.push((Field::Ab, v));
    }
    if fields.is_empty() {
        values.clear();
    }
    Some((doc_meta(fields, pin.or(in_pin), gray.or(in_gray)), values))
}

/// A field's value from the script's reply.
fn field_of(script: &mut ReadScript, now_ms: u64, reply: Option<Reply>) -> Scripted {
    let parts = done_elements(script, now_ms, reply)?;
    match parts.into_iter().next() {
        None | Some(Reply::Nil) => Some((Raw::Field(None), Vec::new())),
        Some(Reply::Bulk(v)) => Some((Raw::Field(Some(v)), Vec::new())),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;
    use crate::layout::DocRef;
    use crate::resp::{Error, ErrorKind};

    /// Answers each read with the next of its replies (a timeout once they run out).
    struct Replies(VecDeque<Result<Reply, Error>>);

    impl Pipe for Replies {
        fn send_commands(&mut self, _: &Commands, _: Instant) -> Result<(), Error> {
            Ok(())
        }

        fn next_reply(&mut self, _: &Limits, _: Instant) -> Result<Reply, Error> {
            self.0.pop_front().unwrap_or(Err(Error {
                kind: ErrorKind::TimedOut,
                detail: "no reply".into(),
                partial: false,
            }))
        }
    }

    fn field(key: &str) -> Fetch {
        Fetch::Field(DocRef::Page(key.into()), Field::Version(1000))
    }

    fn fetch(replies: Vec<Result<Reply, Error>>, items: &[Fetch]) -> BatchReply {
        let mut pipe = Replies(replies.into());
        fetch_batch_scripted(
            &mut pipe,
            &Layout::new("dynpage"),
            items,
            Instant::now() + Duration::from_secs(1),
            &mut ReadScript::default(),
            &|_| true,
            Guess {
                now_ms: 1,
                wanted: &|_| true,
                hints: None,
            },
        )
    }

    #[test]
    fn an_item_cut_off_takes_the_place_of_the_first_unanswered_one() {
        let too_large = Error {
            kind: ErrorKind::TooLarge,
            detail: "a bulk of 99 MB".into(),
            partial: false,
        };
        // The first item is left to the two-round read (the script did not end it), the
        // second's reply is refused: the batch ends at the first item with that failure
        // (the later ones wait on it), rather than with nothing answered and no progress.
        let got = fetch(
            vec![Ok(Reply::Array(vec![Reply::Int(0)])), Err(too_large)],
            &[field("/a"), field("/b")],
        );
        assert_eq!(got.items.len(), 1, "{:?}", got.items);
        assert!(
            matches!(&got.items[0], Err(f) if f.cause.contains("too large")),
            "{:?}",
            got.items
        );
        assert!(got.failed.is_none());
        // Answered items before it stay in place.
        let got = fetch(
            vec![
                Ok(Reply::Array(vec![
                    Reply::Int(1),
                    Reply::Bulk(b"x".to_vec()),
                ])),
                Err(Error {
                    kind: ErrorKind::TooLarge,
                    detail: "a bulk of 99 MB".into(),
                    partial: false,
                }),
            ],
            &[field("/a"), field("/b"), field("/c")],
        );
        assert_eq!(got.items.len(), 2, "{:?}", got.items);
        assert!(matches!(&got.items[0], Ok(Raw::Field(Some(v))) if v == b"x"));
        assert!(got.items[1].is_err());
    }
}
