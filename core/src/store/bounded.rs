//! [`fetch_batch_within`]: the module's batch read, on its bounded client, by a deadline, in at
//! most two round trips (sizes first, then what is within the limits).

use super::fetch::{
    Fetch, ItemFailure, Raw, MAX_DATA_BYTES, MAX_DOC_FIELDS, MAX_ENTRY_BYTES, MAX_FIELD_BYTES,
    MAX_FIELD_NAME_BYTES,
};
use super::replies::{first_step, second_step, Step, Stop};
use crate::layout::Layout;

/// A `rollback` / `gray` entry's reply.
pub(super) const ENTRY: crate::resp::Limits = crate::resp::Limits {
    max_bulk: MAX_ENTRY_BYTES,
    max_elements: 0,
};

/// A document's `HKEYS` reply.
pub(super) const NAMES: crate::resp::Limits = crate::resp::Limits {
    max_bulk: MAX_FIELD_NAME_BYTES,
    max_elements: MAX_DOC_FIELDS,
};

/// A field's `HGET` reply.
pub(super) const VALUE: crate::resp::Limits = crate::resp::Limits {
    max_bulk: MAX_FIELD_BYTES,
    max_elements: 0,
};

/// A data key's `GETRANGE` reply (one byte over the limit tells an oversized value).
pub(super) const DATA: crate::resp::Limits = crate::resp::Limits {
    max_bulk: MAX_DATA_BYTES + 1,
    max_elements: 0,
};

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
    /// Field values read with a document's meta ([`super::fetch_batch_scripted`]): answers
    /// nobody asked for yet, which the request that asked for the meta will ask for next.
    pub extra: Vec<(Fetch, Raw)>,
    /// Pipelines sent (network round trips).
    pub round_trips: u64,
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
    con: &mut dyn crate::resp::Pipe,
    layout: &Layout,
    items: &[Fetch],
    deadline: std::time::Instant,
) -> BatchReply {
    use crate::resp::{Commands, Limits};
    let (rollback, gray) = (layout.rollback_key(), layout.gray_key());
    let max_data = MAX_DATA_BYTES.to_string();

    // Round 1: sizes.
    let mut packed = Commands::with_capacity(96 * items.len());
    for item in items {
        match item {
            Fetch::Meta(doc) => {
                let (key, name) = (layout.doc_key(doc), doc.field_name());
                packed.push(&[b"HLEN", key.as_bytes()], Some(1));
                packed.push(&[b"HGET", rollback.as_bytes(), name.as_bytes()], Some(1));
                packed.push(&[b"HGET", gray.as_bytes(), name.as_bytes()], Some(1));
            }
            Fetch::Field(doc, field) => {
                let key = layout.doc_key(doc);
                packed.push(
                    &[b"HSTRLEN", key.as_bytes(), field.name().as_bytes()],
                    Some(1),
                );
            }
            Fetch::Data(key) => {
                // The length first, so an oversized value is refused after reading no more
                // than the limit (plus one byte) of it.
                packed.push(&[b"STRLEN", key.as_bytes()], Some(1));
                packed.push(
                    &[b"GETRANGE", key.as_bytes(), b"0", max_data.as_bytes()],
                    Some(1),
                );
            }
        }
    }
    let mut reader = Reader::new(con, deadline, true);
    if let Err(e) = reader.con.send_commands(&packed, deadline) {
        return BatchReply {
            failed: Some(e),
            round_trips: 1,
            ..Default::default()
        };
    }
    let mut round_trips = 1;
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
        let mut packed = Commands::with_capacity(64 * second.len());
        for &i in &second {
            let key = items[i]
                .doc()
                .map(|d| layout.doc_key(d))
                .unwrap_or_default();
            match &items[i] {
                Fetch::Field(_, field) => {
                    packed.push(&[b"HGET", key.as_bytes(), field.name().as_bytes()], Some(1))
                }
                _ => packed.push(&[b"HKEYS", key.as_bytes()], Some(1)),
            }
        }
        round_trips += 1;
        if let Err(e) = reader.con.send_commands(&packed, deadline) {
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
    let mut out = BatchReply {
        round_trips,
        ..Default::default()
    };
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

/// Reads replies by the deadline and tells whose failure a failed read is.
pub(super) struct Reader<'a> {
    pub(super) con: &'a mut dyn crate::resp::Pipe,
    deadline: std::time::Instant,
    /// A reply of this batch was read: the source is answering.
    answered_any: bool,
    /// Round 1: its replies are sizes and short entries, so one over the limits means the
    /// server is not behaving like Redis (the source's failure); in round 2, a list or value
    /// over them is its item's (it grew since its size was read).
    sizes: bool,
}

impl<'a> Reader<'a> {
    /// `sizes`: see the field.
    pub(super) fn new(
        con: &'a mut dyn crate::resp::Pipe,
        deadline: std::time::Instant,
        sizes: bool,
    ) -> Reader<'a> {
        Reader {
            con,
            deadline,
            answered_any: false,
            sizes,
        }
    }

    pub(super) fn read(
        &mut self,
        limits: &[crate::resp::Limits],
    ) -> Result<Vec<crate::resp::Reply>, Stop> {
        use crate::resp::ErrorKind;
        let mut replies = Vec::with_capacity(limits.len());
        for l in limits {
            match self.con.next_reply(l, self.deadline) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::DocRef;
    use crate::resp::{Conn, ErrorKind, Target};
    use crate::store::fetch::RawMeta;
    use crate::version::Field;
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
                    "HLEN", "HGET", "HGET", "HSTRLEN", "STRLEN", "GETRANGE", "STRLEN", "GETRANGE",
                    "HSTRLEN", "HLEN", "HGET", "HGET"
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
