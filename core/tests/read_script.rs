//! The one-round-trip read (`store::fetch_batch_scripted`) against a real redis-server: what a
//! cold document brings back with its meta, how many round trips it took, and that whatever
//! the script cannot do is read the two-round way with the same answers and failures.

mod common;

use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use dynpage_core::layout::{DocRef, Layout};
use dynpage_core::resp::{Commands, Conn, Error, Limits, Pipe, Reply, Target};
use dynpage_core::store::{
    fetch_batch_scripted, fetch_batch_within, BatchReply, Fetch, Guess, Raw, ReadScript,
    VersionHints,
};
use dynpage_core::version::Field;

/// A connection that counts its round trips (pipelines sent).
struct Counted {
    con: Conn,
    rounds: usize,
}

impl Pipe for Counted {
    fn send_commands(&mut self, cmds: &Commands, deadline: Instant) -> Result<(), Error> {
        self.rounds += 1;
        self.con.send_commands(cmds, deadline)
    }
    fn next_reply(&mut self, limits: &Limits, deadline: Instant) -> Result<Reply, Error> {
        self.con.next_reply(limits, deadline)
    }
}

fn connect(r: &RedisServer) -> Counted {
    let target = Target::parse(&r.url()).expect("url");
    let con = Conn::connect(&target, Instant::now() + Duration::from_secs(2)).expect("connects");
    Counted { con, rounds: 0 }
}

fn page(key: &str) -> DocRef {
    DocRef::Page(key.into())
}

const NOW: u64 = 3000;

/// How a test reads a batch at `NOW`.
#[derive(Clone, Copy)]
struct Way<'a> {
    /// Keys may share a script call.
    one_slot: bool,
    /// A version's value is wanted with a document's meta (not for a meta the worker refreshes).
    wanted: bool,
    hints: Option<&'a VersionHints>,
}

const COLD: Way<'static> = Way {
    one_slot: true,
    wanted: true,
    hints: None,
};

fn read_with(c: &mut Counted, script: &mut ReadScript, items: &[Fetch], way: Way) -> BatchReply {
    let Way {
        one_slot,
        wanted,
        hints,
    } = way;
    fetch_batch_scripted(
        c,
        &Layout::default(),
        items,
        Instant::now() + Duration::from_secs(2),
        script,
        &move |_: &[&[u8]]| one_slot,
        Guess {
            now_ms: NOW,
            wanted: &move |_| wanted,
            hints,
        },
    )
}

/// Reads `items` the scripted way at `NOW`; `one_slot`: keys may share a script call.
fn read(c: &mut Counted, script: &mut ReadScript, items: &[Fetch], one_slot: bool) -> BatchReply {
    read_with(c, script, items, Way { one_slot, ..COLD })
}

fn meta_fields(raw: &Raw) -> Vec<String> {
    match raw {
        Raw::Meta(Some(m)) => {
            let mut f = m.fields.clone();
            f.sort();
            f
        }
        other => panic!("not a document: {other:?}"),
    }
}

/// The rollback pin and gray share of the first item, a document.
fn entries(got: &BatchReply) -> (Option<&str>, Option<&str>) {
    match &got.items[0] {
        Ok(Raw::Meta(Some(meta))) => (meta.pin.as_deref(), meta.gray.as_deref()),
        other => panic!("not a document: {other:?}"),
    }
}

/// A page with versions 1000, 2000 and 5000 (scheduled after NOW).
fn seed_page(r: &RedisServer, key: &str) {
    let doc = format!("dynpage:page:{key}");
    for v in ["1000", "2000", "5000"] {
        r.cli(&["HSET", &doc, v, &format!("snapshot {v}")]);
    }
}

#[test]
fn a_cold_document_comes_with_the_version_the_rules_choose_in_one_round_trip() {
    let r = RedisServer::start("dynpage-read-script");
    seed_page(&r, "/a");
    let mut c = connect(&r);
    let mut script = ReadScript::default();
    let items = [Fetch::Meta(page("/a")), Fetch::Meta(page("/none"))];
    let got = read(&mut c, &mut script, &items, true);
    assert_eq!(c.rounds, 1, "{got:?}");
    assert!(got.failed.is_none() && got.reusable, "{got:?}");
    assert_eq!(
        meta_fields(&got.items[0].clone().unwrap()),
        ["1000", "2000", "5000"]
    );
    assert_eq!(got.items[1], Ok(Raw::Meta(None)));
    // The greatest version <= now, not the scheduled one.
    assert_eq!(
        got.extra,
        vec![(
            Fetch::Field(page("/a"), Field::Version(2000)),
            Raw::Field(Some(b"snapshot 2000".to_vec()))
        )]
    );

    // A meta the worker refreshes (it holds its versions) comes without one.
    let refresh = Way {
        wanted: false,
        ..COLD
    };
    let warm = read_with(&mut c, &mut script, &[Fetch::Meta(page("/a"))], refresh);
    assert_eq!(
        meta_fields(&warm.items[0].clone().unwrap()),
        ["1000", "2000", "5000"]
    );
    assert!(warm.extra.is_empty(), "{warm:?}");

    // Loaded now: the next batch (by EVALSHA) is one round trip too, a field included.
    c.rounds = 0;
    let items = [
        Fetch::Field(page("/a"), Field::Version(1000)),
        Fetch::Field(page("/a"), Field::Version(7)),
        Fetch::Data("dim".into()),
    ];
    r.cli(&["SET", "dim", "{\"x\":1}"]);
    let got = read(&mut c, &mut script, &items, true);
    assert_eq!(c.rounds, 1, "{got:?}");
    assert_eq!(
        got.items,
        vec![
            Ok(Raw::Field(Some(b"snapshot 1000".to_vec()))),
            Ok(Raw::Field(None)),
            Ok(Raw::Data(Ok(Some(b"{\"x\":1}".to_vec())))),
        ]
    );
}

#[test]
fn a_pin_and_a_gray_release_are_read_with_the_meta() {
    let r = RedisServer::start("dynpage-read-script");
    seed_page(&r, "/p");
    r.cli(&["HSET", "dynpage:page:/p", "abVersion", "gray one"]);
    r.cli(&["HSET", "dynpage:rollback", "page:/p", "1000"]);
    r.cli(&["HSET", "dynpage:gray", "page:/p", "30"]);
    let mut c = connect(&r);
    let mut script = ReadScript::default();
    let got = read(&mut c, &mut script, &[Fetch::Meta(page("/p"))], true);
    assert_eq!(c.rounds, 1);
    assert_eq!(entries(&got), (Some("1000"), Some("30")));
    assert_eq!(
        got.extra,
        vec![
            (
                Fetch::Field(page("/p"), Field::Version(1000)),
                Raw::Field(Some(b"snapshot 1000".to_vec()))
            ),
            (
                Fetch::Field(page("/p"), Field::Ab),
                Raw::Field(Some(b"gray one".to_vec()))
            ),
        ]
    );

    // A cluster whose keys are in different slots: the entries are read beside the script
    // (same round trip), and the guess goes without the pin.
    c.rounds = 0;
    let got = read(&mut c, &mut script, &[Fetch::Meta(page("/p"))], false);
    assert_eq!(c.rounds, 1);
    assert_eq!(entries(&got), (Some("1000"), Some("30")));
    assert_eq!(
        got.extra,
        vec![(
            Fetch::Field(page("/p"), Field::Version(2000)),
            Raw::Field(Some(b"snapshot 2000".to_vec()))
        )]
    );
}

#[test]
fn what_the_script_cannot_do_is_read_the_two_round_way_with_the_same_answers() {
    let r = RedisServer::start("dynpage-read-script");
    seed_page(&r, "/a");
    r.cli(&["SET", "dynpage:page:/s", "a string"]);
    // A document over the field limit.
    let mut args = vec!["HSET".to_string(), "dynpage:page:/big".to_string()];
    for i in 0..10_001 {
        args.extend([i.to_string(), "x".to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    r.cli(&args);
    let items = [
        Fetch::Meta(page("/big")),
        Fetch::Meta(page("/s")),
        Fetch::Meta(page("/a")),
        Fetch::Field(page("/s"), Field::Version(1)),
    ];
    let mut c = connect(&r);
    let mut script = ReadScript::default();
    let got = read(&mut c, &mut script, &items, true);
    let mut plain = connect(&r);
    let layout = Layout::default();
    let ordinary = fetch_batch_within(
        &mut plain,
        &layout,
        &items,
        Instant::now() + Duration::from_secs(2),
    );
    assert_eq!(got.items, ordinary.items);
    assert!(got.reusable && got.failed.is_none());
    assert!(
        matches!(&got.items[0], Err(f) if f.cause == "it has 10001 fields, over the 10000 field limit"),
        "{got:?}"
    );
    assert!(matches!(&got.items[1], Err(f) if f.cause == "the key holds another type"));
    // The scripted round, then the ordinary first round for what it left (both fail there:
    // their field lists are never asked for).
    assert_eq!(c.rounds, 2);
}

#[test]
fn a_flushed_script_is_loaded_again_and_a_refused_one_is_left_alone_for_a_while() {
    let r = RedisServer::start("dynpage-read-script");
    seed_page(&r, "/a");
    let items = [Fetch::Meta(page("/a"))];
    let mut c = connect(&r);
    let mut script = ReadScript::default();
    let first = read(&mut c, &mut script, &items, true);
    assert_eq!(first.extra.len(), 1);

    // SCRIPT FLUSH: EVALSHA says NOSCRIPT; this batch is read the ordinary way, the next
    // loads the script again (EVAL) and is one round trip.
    r.cli(&["SCRIPT", "FLUSH"]);
    c.rounds = 0;
    let got = read(&mut c, &mut script, &items, true);
    assert_eq!(
        (got.items.clone(), got.extra.len(), c.rounds),
        (first.items.clone(), 0, 3)
    );
    c.rounds = 0;
    let got = read(&mut c, &mut script, &items, true);
    assert_eq!(
        (got.items.clone(), got.extra.len(), c.rounds),
        (first.items.clone(), 1, 1)
    );

    // A Redis that refuses scripts (here an ACL): the same answers, the two-round way, and
    // the script is not tried again for a while.
    r.cli(&["ACL", "SETUSER", "default", "-eval", "-evalsha"]);
    let mut c = connect(&r);
    let mut script = ReadScript::default();
    let got = read(&mut c, &mut script, &items, true);
    assert_eq!(
        (got.items.clone(), got.extra.len(), c.rounds),
        (first.items.clone(), 0, 3)
    );
    assert!(!script.in_use(NOW) && script.in_use(NOW + 60_000));
    c.rounds = 0;
    let got = read(&mut c, &mut script, &items, true);
    assert_eq!((got.items, c.rounds), (first.items, 2));
}

/// Script calls (`EVAL` and `EVALSHA`) the server has run since its start.
fn script_calls(r: &RedisServer) -> u64 {
    r.cli(&["INFO", "commandstats"])
        .lines()
        .filter(|l| l.starts_with("cmdstat_eval"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Reads `items` at `NOW` with the worker's `hints`.
fn read_hinted(
    c: &mut Counted,
    script: &mut ReadScript,
    items: &[Fetch],
    hints: &VersionHints,
) -> BatchReply {
    let hints = Some(hints);
    read_with(c, script, items, Way { hints, ..COLD })
}

#[test]
fn a_document_read_before_is_read_with_plain_commands_and_the_same_answers() {
    let r = RedisServer::start("dynpage-read-plain");
    seed_page(&r, "/a");
    let mut c = connect(&r);
    let mut script = ReadScript::default();
    let hints = VersionHints::within(4096);
    let key = b"dynpage:page:/a".as_slice();
    let items = [Fetch::Meta(page("/a"))];

    // First sight: through the script, which notes the version it brought.
    let first = read_hinted(&mut c, &mut script, &items, &hints);
    assert_eq!(script_calls(&r), 1, "{first:?}");
    assert_eq!(hints.get(key).map(|h| h.version), Some(2000));

    // Again (the document left the cache): plain commands, one round trip, the same answer.
    c.rounds = 0;
    let again = read_hinted(&mut c, &mut script, &items, &hints);
    assert_eq!((c.rounds, script_calls(&r)), (1, 1), "{again:?}");
    assert_eq!((&again.items, &again.extra), (&first.items, &first.extra));
    assert!(again.reusable && again.failed.is_none(), "{again:?}");

    // A meta the worker refreshes (it holds its versions): plain, without a value.
    let refresh = Way {
        wanted: false,
        hints: Some(&hints),
        ..COLD
    };
    let warm = read_with(&mut c, &mut script, &items, refresh);
    assert_eq!(script_calls(&r), 1);
    assert_eq!((&warm.items, warm.extra.len()), (&first.items, 0));

    // A version read before, on its own: a plain HGET.
    let field = [Fetch::Field(page("/a"), Field::Version(2000))];
    let got = read_hinted(&mut c, &mut script, &field, &hints);
    assert_eq!(script_calls(&r), 1);
    assert_eq!(
        got.items,
        vec![Ok(Raw::Field(Some(b"snapshot 2000".to_vec())))]
    );

    // A newer version went live: the meta tells, the hinted value is not passed on as the
    // page's, and the hint is dropped (the script reads the new one next, and notes it).
    r.cli(&["HSET", "dynpage:page:/a", "2500", "snapshot 2500"]);
    let newer = read_hinted(&mut c, &mut script, &items, &hints);
    assert_eq!(script_calls(&r), 1);
    assert_eq!(
        meta_fields(&newer.items[0].clone().unwrap()),
        ["1000", "2000", "2500", "5000"]
    );
    assert!(newer.extra.is_empty(), "{newer:?}");
    assert_eq!(hints.get(key), None);
    let noted = read_hinted(&mut c, &mut script, &items, &hints);
    assert_eq!(script_calls(&r), 2);
    assert_eq!(
        noted.extra[0].0,
        Fetch::Field(page("/a"), Field::Version(2500))
    );
    assert_eq!(hints.get(key).map(|h| h.version), Some(2500));

    // A pin to the hinted version is read plainly with its value; the entries come with it.
    r.cli(&["HSET", "dynpage:rollback", "page:/a", "2500"]);
    let pinned = read_hinted(&mut c, &mut script, &items, &hints);
    assert_eq!(script_calls(&r), 2);
    assert_eq!(entries(&pinned), (Some("2500"), None));
    assert_eq!(pinned.extra, noted.extra);

    // During a gray release the document goes through the script again (it brings the gray
    // version's value too).
    r.cli(&["HSET", "dynpage:page:/a", "abVersion", "snapshot ab"]);
    r.cli(&["HSET", "dynpage:gray", "page:/a", "10"]);
    let _ = read_hinted(&mut c, &mut script, &items, &hints);
    assert_eq!(
        script_calls(&r),
        2,
        "the hint did not know of the gray release yet"
    );
    assert!(hints.get(key).is_some_and(|h| h.gray));
    let gray = read_hinted(&mut c, &mut script, &items, &hints);
    assert_eq!(script_calls(&r), 3);
    assert!(
        gray.extra
            .iter()
            .any(|(f, _)| *f == Fetch::Field(page("/a"), Field::Ab)),
        "{gray:?}"
    );

    // A document that grew over the limits since: refused as it is read, and its hint is
    // dropped, so the next read goes through the script, which has Redis send none of it.
    seed_page(&r, "/big");
    let big = [Fetch::Meta(page("/big"))];
    let _ = read_hinted(&mut c, &mut script, &big, &hints);
    assert!(hints.get(b"dynpage:page:/big").is_some());
    let grow = "for i = 1, 10001 do redis.call('HSET', KEYS[1], 'f' .. i, 'x') end";
    r.cli(&["EVAL", grow, "1", "dynpage:page:/big"]);
    let calls = script_calls(&r);
    let refused = read_hinted(&mut connect(&r), &mut script, &big, &hints);
    assert!(
        matches!(&refused.items[0], Err(f) if f.cause.contains("too large")),
        "{refused:?}"
    );
    assert_eq!(hints.get(b"dynpage:page:/big"), None);
    let told = read_hinted(&mut connect(&r), &mut script, &big, &hints);
    assert_eq!(script_calls(&r), calls + 1, "through the script");
    assert!(
        matches!(&told.items[0], Err(f) if f.cause.contains("fields")),
        "{told:?}"
    );

    // A key of another type is left to the two-round read, which says why.
    r.cli(&["DEL", "dynpage:page:/a"]);
    r.cli(&["SET", "dynpage:page:/a", "text"]);
    hints.put(
        key,
        dynpage_core::store::Hint {
            version: 2500,
            gray: false,
        },
    );
    let wrong = read_hinted(&mut c, &mut script, &items, &hints);
    assert!(
        matches!(&wrong.items[0], Err(f) if f.cause.contains("another type")),
        "{wrong:?}"
    );
}

#[test]
fn a_source_that_refuses_the_script_reads_a_batch_of_documents_read_before_in_one_round_trip() {
    let r = RedisServer::start("dynpage-read-plain-noscript");
    seed_page(&r, "/a");
    let hints = VersionHints::within(4096);
    let items = [Fetch::Meta(page("/a"))];
    let first = read_hinted(&mut connect(&r), &mut ReadScript::default(), &items, &hints);

    // From now on the source is read without the script (as after it refused one).
    r.cli(&["ACL", "SETUSER", "default", "-eval", "-evalsha"]);
    let off = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let mut script = ReadScript::sharing(off);
    let mut c = connect(&r);
    let again = read_hinted(&mut c, &mut script, &items, &hints);
    assert_eq!(c.rounds, 1, "{again:?}");
    assert_eq!((&again.items, &again.extra), (&first.items, &first.extra));

    // With a document not read before, the batch is read the two-round way.
    c.rounds = 0;
    let both = [Fetch::Meta(page("/a")), Fetch::Meta(page("/none"))];
    let got = read_hinted(&mut c, &mut script, &both, &hints);
    assert_eq!(c.rounds, 2, "{got:?}");
    assert_eq!(got.items[0], first.items[0]);
    assert_eq!(got.items[1], Ok(Raw::Meta(None)));
}
