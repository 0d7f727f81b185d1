//! One item's replies in a bounded batch read: its answer, its own failure, or the source's.

use super::fetch::{
    Fetch, ItemFailure, Raw, RawMeta, MAX_DATA_BYTES, MAX_DOC_FIELDS, MAX_FIELD_BYTES,
    MAX_FIELD_NAME_BYTES,
};

/// One item's answer from the read script or plain commands, with the values read with a
/// document's meta; `None`: the item is read the two-round way.
pub(super) type Scripted = Option<(Raw, Vec<(crate::version::Field, Vec<u8>)>)>;

/// A reply element that is text or nil (an entry, a field name).
pub(super) fn text(r: Option<crate::resp::Reply>) -> Result<Option<String>, ()> {
    use crate::resp::Reply;
    match r {
        None | Some(Reply::Nil) => Ok(None),
        Some(Reply::Bulk(b)) if b.len() <= super::fetch::MAX_ENTRY_BYTES => {
            Ok(Some(String::from_utf8_lossy(&b).into_owned()))
        }
        Some(_) => Err(()),
    }
}

/// A document's field names from the elements of an `HKEYS` reply (or the script's list of
/// them); `Err`: the first element that is not a name within the limit.
pub(super) fn field_names(
    names: Vec<crate::resp::Reply>,
) -> Result<Vec<String>, crate::resp::Reply> {
    use crate::resp::Reply;
    names
        .into_iter()
        .map(|n| match n {
            Reply::Bulk(b) if b.len() <= MAX_FIELD_NAME_BYTES => {
                Ok(String::from_utf8_lossy(&b).into_owned())
            }
            other => Err(other),
        })
        .collect()
}

/// A document's meta: none when it has no fields (its key does not exist).
pub(super) fn doc_meta(fields: Vec<String>, pin: Option<String>, gray: Option<String>) -> Raw {
    Raw::Meta((!fields.is_empty()).then_some(RawMeta { fields, pin, gray }))
}

/// An item after the first round trip.
pub(super) enum Step {
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

/// Why reading a batch stopped.
pub(super) enum Stop {
    /// The source failed.
    Source(crate::resp::Error),
    /// An item failed, and the connection is out of step after it (placed by [`Stop::place`]).
    Item(ItemFailure),
}

impl Stop {
    /// Puts an item's failure in the place of the first item left unanswered (all later ones
    /// wait on it), at most item `at` (by default the next one of round 1), leaving the items
    /// after it out: the batch ends there.
    pub(super) fn place(self, steps: &mut Vec<Step>, at: Option<usize>) -> Stop {
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

impl From<Bad> for Stop {
    fn from(b: Bad) -> Stop {
        match b {
            Bad::Item(cause) => Stop::Item(ItemFailure::refused(cause)),
            Bad::Source(cause) => Stop::Source(crate::resp::Error::server(cause)),
        }
    }
}

/// An item from its round-1 replies: done, or to be asked in round 2.
pub(super) fn first_step(item: &Fetch, replies: Vec<crate::resp::Reply>) -> Result<Step, Stop> {
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
            (Reply::Int(_), Reply::Bulk(b)) => Ok(Raw::Data(Ok(Some(b)))),
            (Reply::Int(_), Reply::Nil) => Ok(Raw::Data(Ok(None))),
            (Reply::Int(_), other) => Err(wrong_reply("GETRANGE", &other)),
            (other, _) => Err(wrong_reply("STRLEN", &other)),
        }),
    }
}

/// An item from its round-2 reply (`HKEYS` or `HGET`).
pub(super) fn second_step(step: Step, replies: Vec<crate::resp::Reply>) -> Result<Raw, Stop> {
    use crate::resp::Reply;
    let reply = replies.into_iter().next().unwrap_or(Reply::Nil);
    match step {
        Step::Meta { pin, gray } => {
            let fields = match reply {
                // The reply was read within the limits: every name is within them.
                Reply::Array(names) => {
                    field_names(names).map_err(|other| wrong_reply("HKEYS", &other))?
                }
                other => return Err(wrong_reply("HKEYS", &other).into()),
            };
            Ok(doc_meta(fields, pin, gray))
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
