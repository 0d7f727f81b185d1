//! The source chain: each Redis in the order configured (the local replica first, then the
//! primary), then the CMS. A miss or an error at one Redis goes on to the next; "not found" from
//! the last Redis that answered is the answer; the CMS is asked only when no Redis answered.
//!
//! Failures are charged to what failed: a source that cannot be reached or does not answer
//! fails as a whole (`failures`); an item whose reply is too large or too slow at a source that
//! answers fails on its own (`item_failures`) and goes on to the next source like an item of a
//! failed source, but the source it failed at is not counted as failed.

use crate::layout::DocRef;
use crate::store::{Fetch, ItemFailure, Raw, RawMeta};
use crate::version::Field;

/// What one source said to a round trip.
#[derive(Debug, Default)]
pub struct SourceReply {
    /// The items it got to, in the order asked: an answer, or why that item failed there.
    /// Items past its end got no answer from this source.
    pub items: Vec<Result<Raw, ItemFailure>>,
    /// Why the source failed as a whole, if it did.
    pub failed: Option<String>,
    /// Answers read with others, nobody asked for yet (a document's likely version, read
    /// with its meta): answered as this source's.
    pub extra: Vec<(Fetch, Raw)>,
}

impl SourceReply {
    /// Every item answered.
    pub fn answered(raws: Vec<Raw>) -> SourceReply {
        SourceReply {
            items: raws.into_iter().map(Ok).collect(),
            ..Default::default()
        }
    }

    /// The source failed before answering anything.
    pub fn failed(cause: impl Into<String>) -> SourceReply {
        SourceReply {
            failed: Some(cause.into()),
            ..Default::default()
        }
    }
}

/// One Redis of the chain, as the fetch threads use it.
pub trait Source {
    /// One round trip for `items`.
    fn fetch(&mut self, items: &[Fetch]) -> SourceReply;
}

/// Asks the CMS for a page: its snapshot (200), `None` (404), or why it failed.
pub type AskCms<'a> = &'a mut dyn FnMut(&str) -> Result<Option<Vec<u8>>, String>;

/// Who answered an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The Redis at this index of the chain.
    Redis(usize),
    Cms,
}

/// What the chain made of one fetch.
#[derive(Debug, Default)]
pub struct ChainOutcome {
    /// Answered items (including "not found"), with who answered. The CMS adds the snapshot
    /// field that goes with the meta it makes up (see [`cms_answer`]).
    pub answered: Vec<(Fetch, Raw, Via)>,
    /// Items no source answered.
    pub unanswered: Vec<Fetch>,
    /// Sources that failed during this fetch: the Redis index (`None`: the CMS) and the cause.
    pub failures: Vec<(Option<usize>, String)>,
    /// Items that failed on their own at a Redis (its index), answered or not by a later one.
    pub item_failures: Vec<(usize, Fetch, ItemFailure)>,
}

/// Whether Redis had the thing asked for.
fn found(raw: &Raw) -> bool {
    match raw {
        Raw::Meta(m) => m.is_some(),
        Raw::Field(f) => f.is_some(),
        // A value that cannot be used is still an answer: the next Redis holds the same.
        Raw::Data(d) => !matches!(d, Ok(None)),
    }
}

/// Runs `items` through `sources` (skipping those `skip` names), then asks `cms` for the page
/// documents no Redis answered. `now_ms` versions what the CMS answers.
pub fn fetch_chain<S: Source>(
    sources: &mut [S],
    skip: impl Fn(usize) -> bool,
    cms: Option<AskCms<'_>>,
    items: Vec<Fetch>,
    now_ms: u64,
) -> ChainOutcome {
    let mut out = ChainOutcome::default();
    let mut pending: Vec<Fetch> = items;
    // "Not found" answers, kept in case a later Redis is down or misses too.
    let mut missing: Vec<(Fetch, Raw, usize)> = Vec::new();
    for (i, source) in sources.iter_mut().enumerate() {
        if pending.is_empty() {
            break;
        }
        if skip(i) {
            continue;
        }
        let reply = source.fetch(&pending);
        if reply.items.len() > pending.len() {
            out.failures
                .push((Some(i), "answered the wrong number of replies".into()));
            continue;
        }
        if let Some(cause) = reply.failed {
            out.failures.push((Some(i), cause));
        }
        out.answered.extend(
            reply
                .extra
                .into_iter()
                .map(|(f, raw)| (f, raw, Via::Redis(i))),
        );
        let mut replies = reply.items.into_iter();
        let mut still = Vec::new();
        for f in pending {
            match replies.next() {
                Some(Ok(raw)) if found(&raw) => out.answered.push((f, raw, Via::Redis(i))),
                Some(Ok(raw)) => {
                    missing.retain(|(m, _, _)| *m != f);
                    missing.push((f.clone(), raw, i));
                    still.push(f);
                }
                Some(Err(failure)) => {
                    out.item_failures.push((i, f.clone(), failure));
                    still.push(f);
                }
                None => still.push(f),
            }
        }
        pending = still;
    }
    for f in pending {
        match missing.iter().position(|(m, _, _)| *m == f) {
            Some(at) => {
                let (f, raw, i) = missing.swap_remove(at);
                out.answered.push((f, raw, Via::Redis(i)));
            }
            None => out.unanswered.push(f),
        }
    }
    let Some(cms) = cms else {
        return out;
    };
    // Only page documents can come from the CMS (it knows pages, not template versions), and
    // only those no Redis could answer: a document that failed on its own at a Redis that
    // answers (too large, too slow) fails, it does not move to the CMS.
    let failed_alone = |f: &Fetch| out.item_failures.iter().any(|(_, g, _)| g == f);
    let (ask, keep): (Vec<Fetch>, Vec<Fetch>) = std::mem::take(&mut out.unanswered)
        .into_iter()
        .partition(|f| matches!(f, Fetch::Meta(DocRef::Page(_))) && !failed_alone(f));
    out.unanswered = keep;
    for f in ask {
        let Fetch::Meta(DocRef::Page(key)) = &f else {
            continue;
        };
        match cms(key).and_then(check_snapshot) {
            Ok(body) => {
                let (meta, field) = cms_answer(key, body, now_ms);
                out.answered.push((f, meta, Via::Cms));
                out.answered
                    .extend(field.map(|(ff, raw)| (ff, raw, Via::Cms)));
            }
            Err(cause) => {
                if !out.failures.iter().any(|(s, _)| s.is_none()) {
                    out.failures.push((None, cause));
                }
                out.unanswered.push(f);
            }
        }
    }
    out
}

/// A CMS answer must be a snapshot: anything else (an error page with status 200, say) counts
/// as a failed source, not as a broken page.
fn check_snapshot(body: Option<Vec<u8>>) -> Result<Option<Vec<u8>>, String> {
    if let Some(bytes) = &body {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| "answered something that is not a snapshot: not UTF-8".to_string())?;
        crate::snapshot::Snapshot::parse(text)
            .map_err(|e| format!("answered something that is not a snapshot: {e}"))?;
    }
    Ok(body)
}

/// Turns a CMS answer for page `key` into what Redis would have said: a document with one
/// production version (`now_ms`) holding the snapshot, or no document (404).
fn cms_answer(key: &str, body: Option<Vec<u8>>, now_ms: u64) -> (Raw, Option<(Fetch, Raw)>) {
    match body {
        None => (Raw::Meta(None), None),
        Some(bytes) => (
            Raw::Meta(Some(RawMeta {
                fields: vec![now_ms.to_string()],
                pin: None,
                gray: None,
            })),
            Some((
                Fetch::Field(DocRef::Page(key.into()), Field::Version(now_ms)),
                Raw::Field(Some(bytes)),
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A Redis holding some page documents (key → versions), or failing.
    struct Fake {
        pages: HashMap<String, Vec<u64>>,
        fail: Option<&'static str>,
        calls: usize,
    }

    fn fake(pages: &[(&str, u64)], fail: Option<&'static str>) -> Fake {
        let mut map: HashMap<String, Vec<u64>> = HashMap::new();
        for (k, v) in pages {
            map.entry(k.to_string()).or_default().push(*v);
        }
        Fake {
            pages: map,
            fail,
            calls: 0,
        }
    }

    impl Source for Fake {
        fn fetch(&mut self, items: &[Fetch]) -> SourceReply {
            self.calls += 1;
            if let Some(e) = self.fail {
                return SourceReply::failed(e);
            }
            // "/big..." is too large here: that item fails, the others are answered (the
            // module's source asks them again on a new connection).
            if let Some(at) = items
                .iter()
                .position(|f| f.doc().is_some_and(|d| name(d).starts_with("/big")))
            {
                let mut reply = self.fetch(&items[..at]);
                reply.items.push(Err(ItemFailure {
                    cause: "too large".into(),
                    slow: false,
                }));
                reply.items.extend(self.fetch(&items[at + 1..]).items);
                self.calls -= 2;
                return reply;
            }
            SourceReply::answered(
                items
                    .iter()
                    .map(|f| match f {
                        Fetch::Meta(d) => Raw::Meta(self.pages.get(name(d)).map(|vs| RawMeta {
                            fields: vs.iter().map(|v| v.to_string()).collect(),
                            pin: None,
                            gray: None,
                        })),
                        Fetch::Field(d, field) => Raw::Field(
                            self.pages
                                .get(name(d))
                                .filter(|vs| vs.iter().any(|v| Field::Version(*v) == *field))
                                .map(|_| b"{}".to_vec()),
                        ),
                        Fetch::Data(k) => Raw::Data(Ok(self
                            .pages
                            .contains_key(k.as_str())
                            .then(|| b"{}".to_vec()))),
                    })
                    .collect(),
            )
        }
    }

    fn name(d: &DocRef) -> &str {
        match d {
            DocRef::Page(k) | DocRef::Template(k) => k,
        }
    }

    fn meta(key: &str) -> Fetch {
        Fetch::Meta(DocRef::Page(key.into()))
    }

    fn no_cms() -> Option<AskCms<'static>> {
        None
    }

    #[test]
    fn a_miss_at_the_replica_goes_on_to_the_primary() {
        let mut chain = [
            fake(&[("/a", 1)], None),
            fake(&[("/a", 1), ("/b", 2)], None),
        ];
        let out = fetch_chain(
            &mut chain,
            |_| false,
            no_cms(),
            vec![meta("/a"), meta("/b")],
            9,
        );
        let vias: Vec<(String, Via, bool)> = out
            .answered
            .iter()
            .map(|(f, r, v)| (name(f.doc().unwrap()).to_string(), *v, found(r)))
            .collect();
        assert_eq!(
            vias,
            vec![
                ("/a".into(), Via::Redis(0), true),
                ("/b".into(), Via::Redis(1), true)
            ]
        );
        assert_eq!(chain[1].calls, 1);
        assert!(out.failures.is_empty() && out.unanswered.is_empty());
    }

    #[test]
    fn data_keys_go_through_the_chain_but_never_to_the_cms() {
        let data = |k: &str| Fetch::Data(k.into());
        let mut chain = [fake(&[("shop:1", 1)], None), fake(&[("shop:2", 1)], None)];
        let mut asked = 0;
        let mut cms = |_: &str| -> Result<Option<Vec<u8>>, String> {
            asked += 1;
            Ok(None)
        };
        let out = fetch_chain(
            &mut chain,
            |_| false,
            Some(&mut cms),
            vec![data("shop:1"), data("shop:2"), data("shop:3")],
            9,
        );
        assert_eq!(asked, 0);
        let got: Vec<(Fetch, bool, Via)> = out
            .answered
            .iter()
            .map(|(f, r, v)| (f.clone(), found(r), *v))
            .collect();
        assert_eq!(
            got,
            vec![
                (data("shop:1"), true, Via::Redis(0)),
                (data("shop:2"), true, Via::Redis(1)),
                (data("shop:3"), false, Via::Redis(1)),
            ]
        );
    }

    #[test]
    fn not_found_everywhere_is_not_found_from_the_last_redis_that_answered() {
        let mut chain = [fake(&[], None), fake(&[], Some("connection refused"))];
        let out = fetch_chain(&mut chain, |_| false, no_cms(), vec![meta("/x")], 9);
        assert_eq!(out.answered.len(), 1);
        assert_eq!(out.answered[0].1, Raw::Meta(None));
        assert_eq!(out.answered[0].2, Via::Redis(0));
        assert_eq!(
            out.failures,
            vec![(Some(1), "connection refused".to_string())]
        );
    }

    #[test]
    fn errors_and_skipped_sources_go_on_to_the_next() {
        let mut chain = [
            fake(&[("/a", 1)], Some("timed out")),
            fake(&[("/a", 1)], None),
            fake(&[("/a", 1)], None),
        ];
        let out = fetch_chain(&mut chain, |i| i == 1, no_cms(), vec![meta("/a")], 9);
        assert_eq!(out.answered[0].2, Via::Redis(2));
        assert_eq!(chain[1].calls, 0, "a skipped source is not asked");
        assert_eq!(out.failures.len(), 1);
    }

    #[test]
    fn an_item_that_fails_on_its_own_is_not_the_sources_failure() {
        let mut asked = 0;
        let mut cms = |_: &str| -> Result<Option<Vec<u8>>, String> {
            asked += 1;
            Ok(None)
        };
        let mut chain = [
            fake(&[("/a", 1), ("/big", 1), ("/b", 1)], None),
            fake(&[("/big", 1), ("/c", 1)], None),
        ];
        let out = fetch_chain(
            &mut chain,
            |_| false,
            Some(&mut cms),
            vec![meta("/a"), meta("/big"), meta("/b"), meta("/c")],
            9,
        );
        // No source failed; "/big" failed at both, on its own, and is not asked of the CMS.
        assert!(out.failures.is_empty(), "{:?}", out.failures);
        assert_eq!(asked, 0);
        assert_eq!(out.unanswered, vec![meta("/big")]);
        let failed: Vec<(usize, Fetch)> = out
            .item_failures
            .iter()
            .map(|(i, f, _)| (*i, f.clone()))
            .collect();
        assert_eq!(failed, vec![(0, meta("/big")), (1, meta("/big"))]);
        // The other items were answered as usual.
        let vias: Vec<(Fetch, Via, bool)> = out
            .answered
            .iter()
            .map(|(f, r, v)| (f.clone(), *v, found(r)))
            .collect();
        assert_eq!(
            vias,
            vec![
                (meta("/a"), Via::Redis(0), true),
                (meta("/b"), Via::Redis(0), true),
                (meta("/c"), Via::Redis(1), true),
            ]
        );
    }

    #[test]
    fn the_cms_is_asked_only_when_no_redis_answered() {
        let mut asked = Vec::new();
        let mut cms = |key: &str| {
            asked.push(key.to_string());
            match key {
                "/gone" => Ok(None),
                "/bad" => Err("answered status 500".to_string()),
                "/garbage" => Ok(Some(b"<html>".to_vec())),
                _ => Ok(Some(br#"{"template":"x","data":{}}"#.to_vec())),
            }
        };
        let mut chain = [
            fake(&[("/a", 1)], Some("refused")),
            fake(&[], Some("refused")),
        ];
        let tpl = Fetch::Meta(DocRef::Template("t".into()));
        let out = fetch_chain(
            &mut chain,
            |_| false,
            Some(&mut cms),
            vec![
                meta("/a"),
                meta("/gone"),
                meta("/bad"),
                meta("/garbage"),
                tpl.clone(),
            ],
            77,
        );
        assert_eq!(asked, vec!["/a", "/gone", "/bad", "/garbage"]);
        // The page comes with a made-up version 77 and its snapshot.
        assert!(out.answered.iter().any(|(f, r, v)| *f == meta("/a")
            && *v == Via::Cms
            && matches!(r, Raw::Meta(Some(m)) if m.fields == vec!["77".to_string()])));
        assert!(out.answered.iter().any(|(f, r, _)| *f
            == Fetch::Field(DocRef::Page("/a".into()), Field::Version(77))
            && found(r)));
        assert!(out
            .answered
            .iter()
            .any(|(f, r, _)| *f == meta("/gone") && *r == Raw::Meta(None)));
        assert_eq!(out.unanswered, vec![tpl, meta("/bad"), meta("/garbage")]);
        // Both Redis failed; the CMS failure is reported once per fetch.
        assert_eq!(out.failures.len(), 3, "{:?}", out.failures);

        // A Redis that answers (even "not found") keeps the CMS out.
        let mut asked_again = 0;
        let mut cms = |_: &str| {
            asked_again += 1;
            Ok(None)
        };
        let mut chain = [fake(&[], None)];
        let out = fetch_chain(&mut chain, |_| false, Some(&mut cms), vec![meta("/a")], 1);
        assert_eq!(out.answered[0].1, Raw::Meta(None));
        assert_eq!(asked_again, 0);
    }
}
