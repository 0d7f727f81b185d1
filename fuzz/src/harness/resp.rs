//! Redis replies: what the module reads from a Redis, as bytes on a socket (the bounded RESP2
//! client, `core/src/resp.rs`), and what dynpagectl reads, as decoded values.
//!
//! - `fetch_batch_within`: a fake Redis (a thread on a local port) answers the batch with the
//!   replies a Redis holding a modelled store gives (sometimes one over the limits, sometimes
//!   behind a login), or with those mutated (cut, flipped, wrong types, server errors, huge
//!   lengths, deep nesting, a peer that stops answering). Well-formed replies decode to the
//!   model's `Raw`s; anything else ends with answers of the right kinds or a failure, within
//!   the deadline, without a panic.
//! - `Conn::read_reply`: any reply tree, encoded, read under random limits, against a model of
//!   the limits (the first violation's kind), sometimes arriving in pieces or cut short (a
//!   timeout, partial when bytes arrived); mutated bytes that it reads, the redis crate must
//!   read alike.
//! - `fetch_batch` (dynpagectl's path, through `ConnectionLike`): a fake connection returning
//!   generated `redis::Value`s, checked the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dynpage_core::layout::{DocRef, Layout, MAX_VERSION};
use dynpage_core::resp::{self, Conn, Reply, Target};
use dynpage_core::store::{
    fetch_batch, fetch_batch_within, Fetch, ItemFailure, Raw, RawMeta, MAX_DATA_BYTES,
    MAX_DOC_FIELDS, MAX_FIELD_BYTES, MAX_FIELD_NAME_BYTES,
};
use dynpage_core::version::Field;
use redis::{ConnectionLike, RedisResult, Value};

use crate::driver::{Case, Check};
use crate::ensure;
use crate::gen;
use crate::rng::Rng;

pub fn run(c: &mut Case) -> Check {
    match c.rng.weighted(&[3, 4, 3]) {
        0 => batch(c),
        1 => reader(c),
        _ => as_values(c),
    }
}

/// What the store holds for one item.
#[derive(Clone, Debug)]
enum Held {
    Meta {
        fields: Vec<Vec<u8>>,
        pin: Option<Vec<u8>>,
        gray: Option<Vec<u8>>,
    },
    Field(Option<Vec<u8>>),
    /// A data key: its length as `STRLEN` says and what `GETRANGE` returns.
    Data {
        len: i64,
        range: Vec<u8>,
    },
    /// A data key that is not a string.
    WrongType,
}

fn bytes_value(rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        0 => Vec::new(),
        1 => {
            let n = rng.size(40);
            rng.bytes(n)
        }
        2 => crate::harness::snapshot::version_string(rng).into_bytes(),
        _ => gen::string(rng, 8).into_bytes(),
    }
}

fn field_name(rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        0 => b"predeploy".to_vec(),
        1 => b"abVersion".to_vec(),
        2 => (rng.next_u64() % (MAX_VERSION + 1))
            .to_string()
            .into_bytes(),
        _ => bytes_value(rng),
    }
}

fn doc(rng: &mut Rng) -> DocRef {
    let name = gen::string(rng, 3);
    if rng.chance(50) {
        DocRef::Page(name)
    } else {
        DocRef::Template(name)
    }
}

fn item(rng: &mut Rng) -> (Fetch, Held) {
    match rng.below(4) {
        0 => {
            let n = rng.size(6);
            let fields = (0..n).map(|_| field_name(rng)).collect();
            let pin = rng.chance(30).then(|| field_name(rng));
            let gray = rng.chance(30).then(|| bytes_value(rng));
            (Fetch::Meta(doc(rng)), Held::Meta { fields, pin, gray })
        }
        1 => {
            let field = match rng.below(3) {
                0 => Field::Predeploy,
                1 => Field::Ab,
                _ => Field::Version(rng.next_u64() % (MAX_VERSION + 1)),
            };
            let v = rng.chance(70).then(|| bytes_value(rng));
            (Fetch::Field(doc(rng), field), Held::Field(v))
        }
        _ => {
            let held = match rng.below(8) {
                0 => Held::WrongType,
                1 => Held::Data {
                    len: 0,
                    range: Vec::new(),
                },
                2 => {
                    // Over the limit: the range holds the first bytes only.
                    let len = MAX_DATA_BYTES as i64 + 1 + rng.below(1 << 20) as i64;
                    let n = rng.size(16);
                    Held::Data {
                        len,
                        range: rng.bytes(n),
                    }
                }
                3 => Held::Data {
                    len: MAX_DATA_BYTES as i64,
                    range: vec![b'7'; MAX_DATA_BYTES],
                },
                _ => {
                    let range = bytes_value(rng);
                    Held::Data {
                        len: range.len() as i64,
                        range,
                    }
                }
            };
            (Fetch::Data(gen::string(rng, 3)), held)
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What `fetch_batch*` must decode for `held`.
fn expected(held: &Held) -> Raw {
    match held {
        Held::Meta { fields, pin, gray } => Raw::Meta((!fields.is_empty()).then(|| RawMeta {
            fields: fields.iter().map(|f| lossy(f)).collect(),
            pin: pin.as_deref().map(lossy),
            gray: gray.as_deref().map(lossy),
        })),
        Held::Field(v) => Raw::Field(v.clone()),
        Held::Data { len: 0, .. } => Raw::Data(Ok(None)),
        Held::Data { len, .. } if *len as usize > MAX_DATA_BYTES => Raw::Data(Err(format!(
            "the value is {len} bytes, over the {MAX_DATA_BYTES} byte limit"
        ))),
        Held::Data { range, .. } => Raw::Data(Ok(Some(range.clone()))),
        Held::WrongType => Raw::Data(Err("the key does not hold a string".into())),
    }
}

/// Whether `raw` is the kind of answer `fetch` asks for.
fn same_kind(fetch: &Fetch, raw: &Raw) -> bool {
    matches!(
        (fetch, raw),
        (Fetch::Meta(_), Raw::Meta(_))
            | (Fetch::Field(..), Raw::Field(_))
            | (Fetch::Data(_), Raw::Data(_))
    )
}

/// Tokens that bend RESP: other types, bad lengths, server errors, RESP3.
const RESP_TOKENS: &[&str] = &[
    "$-1\r\n",
    "*-1\r\n",
    "_\r\n",
    "-ERR oops\r\n",
    "-WRONGTYPE x\r\n",
    "-\r\n",
    ":5\r\n",
    ":-5\r\n",
    ":99999999999999999999\r\n",
    "+OK\r\n",
    "+\r\n",
    "$0\r\n\r\n",
    "$999999999999\r\n",
    "$-2\r\n",
    "*99999999999\r\n",
    "*3\r\n",
    "%1\r\n",
    "%-1\r\n",
    "~2\r\n",
    ">2\r\n",
    "|1\r\n",
    "(123\r\n",
    ",1.5\r\n",
    ",nan\r\n",
    "#t\r\n",
    "#x\r\n",
    "=5\r\ntxt:a\r\n",
    "!3\r\nerr\r\n",
    "\r\n",
    "\r",
    "\n",
    "$",
    "*",
    ":",
    "\u{0}",
    "\u{ff}",
    ":-9223372036854775808\r\n",
    ":9223372036854775808\r\n",
    "$-0\r\n",
    "*-0\r\n",
    "$01\r\nx\r\n",
];

// ---- The fake Redis -------------------------------------------------------------------------

/// What the fake Redis does on one connection.
enum Script {
    /// Writes these bytes (pausing at `cuts`, so they arrive in pieces), then hangs up or not.
    Bytes {
        bytes: Vec<u8>,
        cuts: Vec<usize>,
        close: bool,
    },
    /// Answers every command from a modelled store, as Redis would; `fault` spoils one answer.
    Store {
        store: Store,
        login_refused: bool,
        fault: Option<Fault>,
    },
}

/// What goes wrong with the answer to command `at` (counted from the first, a login included).
#[derive(Clone, Debug)]
struct Fault {
    at: usize,
    kind: FaultKind,
    seed: u64,
}

#[derive(Clone, Copy, Debug)]
enum FaultKind {
    /// The answer's bytes mutated.
    Mangle,
    /// Another answer instead (a server error, another type, a huge length...).
    Replace,
    /// Part of the answer, then the connection closed.
    Cut,
    /// Part of the answer, then nothing more (the client's deadline ends it).
    Stall,
}

/// A value held by the store: bytes, or (to keep cases small) a filler of that many bytes.
#[derive(Clone, Debug)]
enum Held2 {
    Bytes(Vec<u8>),
    Filler(usize),
}

impl Held2 {
    fn len(&self) -> usize {
        match self {
            Held2::Bytes(b) => b.len(),
            Held2::Filler(n) => *n,
        }
    }

    fn bytes(&self, limit: usize) -> Vec<u8> {
        match self {
            Held2::Bytes(b) => b[..b.len().min(limit)].to_vec(),
            Held2::Filler(n) => vec![b'7'; (*n).min(limit)],
        }
    }
}

/// What a Redis holds: hashes (documents, `rollback`, `gray`), strings (data keys), and keys
/// of another type.
#[derive(Clone, Debug, Default)]
struct Store {
    hashes: BTreeMap<Vec<u8>, Vec<(Vec<u8>, Held2)>>,
    strings: BTreeMap<Vec<u8>, Held2>,
    other_type: BTreeSet<Vec<u8>>,
}

const WRONGTYPE: &[u8] = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

fn bulk_into(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

impl Store {
    fn hash(&self, key: &[u8]) -> Option<&Vec<(Vec<u8>, Held2)>> {
        self.hashes.get(key)
    }

    fn field(&self, key: &[u8], field: &[u8]) -> Option<&Held2> {
        self.hash(key)?
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, v)| v)
    }

    fn is_string_key(&self, key: &[u8]) -> bool {
        self.strings.contains_key(key) || self.other_type.contains(key)
    }

    /// Redis's answer to one command.
    fn answer(&self, args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        let name = args
            .first()
            .map(|a| a.to_ascii_uppercase())
            .unwrap_or_default();
        let arg = |i: usize| args.get(i).map(Vec::as_slice).unwrap_or_default();
        let hash_cmd = |out: &mut Vec<u8>| {
            if self.is_string_key(arg(1)) {
                out.extend_from_slice(WRONGTYPE);
                false
            } else {
                true
            }
        };
        match name.as_slice() {
            b"AUTH" | b"SELECT" => out.extend_from_slice(b"+OK\r\n"),
            b"PING" => out.extend_from_slice(b"+PONG\r\n"),
            b"HLEN" if hash_cmd(&mut out) => {
                let n = self.hash(arg(1)).map_or(0, Vec::len);
                out.extend_from_slice(format!(":{n}\r\n").as_bytes());
            }
            b"HGET" if hash_cmd(&mut out) => match self.field(arg(1), arg(2)) {
                Some(v) => bulk_into(&mut out, &v.bytes(usize::MAX)),
                None => out.extend_from_slice(b"$-1\r\n"),
            },
            b"HSTRLEN" if hash_cmd(&mut out) => {
                let n = self.field(arg(1), arg(2)).map_or(0, Held2::len);
                out.extend_from_slice(format!(":{n}\r\n").as_bytes());
            }
            b"HKEYS" if hash_cmd(&mut out) => {
                let fields = self.hash(arg(1)).map(Vec::as_slice).unwrap_or_default();
                out.extend_from_slice(format!("*{}\r\n", fields.len()).as_bytes());
                for (f, _) in fields {
                    bulk_into(&mut out, f);
                }
            }
            b"HLEN" | b"HGET" | b"HSTRLEN" | b"HKEYS" => {}
            b"STRLEN" | b"GETRANGE"
                if self.other_type.contains(arg(1)) || self.hashes.contains_key(arg(1)) =>
            {
                out.extend_from_slice(WRONGTYPE)
            }
            b"STRLEN" => {
                let n = self.strings.get(arg(1)).map_or(0, Held2::len);
                out.extend_from_slice(format!(":{n}\r\n").as_bytes());
            }
            b"GETRANGE" => {
                // Only `GETRANGE key 0 end` (end >= 0) is modelled.
                let end = std::str::from_utf8(arg(3))
                    .ok()
                    .and_then(|e| e.parse::<usize>().ok())
                    .unwrap_or(0);
                let v = self
                    .strings
                    .get(arg(1))
                    .map(|v| v.bytes(end.saturating_add(1)))
                    .unwrap_or_default();
                bulk_into(&mut out, &v);
            }
            _ => out.extend_from_slice(b"-ERR unknown command\r\n"),
        }
        out
    }

    /// What the module must make of `fetch` on this store: the answer, or `Err(())` when it is
    /// over the limits (the item fails, and the batch may end with it).
    fn expected(&self, layout: &Layout, fetch: &Fetch) -> Result<Raw, ()> {
        match fetch {
            Fetch::Meta(doc) => {
                let key = layout.doc_key(doc).into_bytes();
                let name = doc.field_name().into_bytes();
                let fields = self.hash(&key).map(Vec::as_slice).unwrap_or_default();
                if fields.len() > MAX_DOC_FIELDS
                    || fields.iter().any(|(f, _)| f.len() > MAX_FIELD_NAME_BYTES)
                {
                    return Err(());
                }
                let entry = |hash: String| {
                    self.field(hash.as_bytes(), &name)
                        .map(|v| lossy(&v.bytes(usize::MAX)))
                };
                Ok(Raw::Meta((!fields.is_empty()).then(|| RawMeta {
                    fields: fields.iter().map(|(f, _)| lossy(f)).collect(),
                    pin: entry(layout.rollback_key()),
                    gray: entry(layout.gray_key()),
                })))
            }
            Fetch::Field(doc, field) => {
                let key = layout.doc_key(doc).into_bytes();
                match self.field(&key, field.name().as_bytes()) {
                    Some(v) if v.len() > MAX_FIELD_BYTES => Err(()),
                    v => Ok(Raw::Field(v.map(|v| v.bytes(usize::MAX)))),
                }
            }
            Fetch::Data(key) => {
                let key = key.as_bytes();
                if self.other_type.contains(key) || self.hashes.contains_key(key) {
                    return Ok(Raw::Data(Err("another type".into())));
                }
                Ok(Raw::Data(match self.strings.get(key) {
                    None => Ok(None),
                    Some(v) if v.len() == 0 => Ok(None),
                    Some(v) if v.len() > MAX_DATA_BYTES => Err("too large".into()),
                    Some(v) => Ok(Some(v.bytes(usize::MAX))),
                }))
            }
        }
    }
}

/// The commands of a client's pipeline found complete in `buf`: each as its arguments, and
/// the bytes they took. `None` when what is there is not a command.
fn commands(buf: &[u8]) -> Option<(Vec<Vec<Vec<u8>>>, usize)> {
    fn line(buf: &[u8], at: usize) -> Option<(usize, usize)> {
        let i = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(&buf[at..at + i]).ok()?.parse().ok()?;
        Some((n, at + i + 2))
    }
    let mut cmds = Vec::new();
    let mut at = 0;
    'next: while at < buf.len() {
        if buf[at] != b'*' {
            return None;
        }
        let Some((n, mut i)) = line(buf, at + 1) else {
            break;
        };
        let mut args = Vec::with_capacity(n);
        for _ in 0..n {
            if buf.get(i) != Some(&b'$') {
                if i >= buf.len() {
                    break 'next;
                }
                return None;
            }
            let Some((len, j)) = line(buf, i + 1) else {
                break 'next;
            };
            if buf.len() < j + len + 2 {
                break 'next;
            }
            args.push(buf[j..j + len].to_vec());
            i = j + len + 2;
        }
        cmds.push(args);
        at = i;
    }
    Some((cmds, at))
}

/// The fake Redis of this thread: answers each connection with the next script.
struct FakeRedis {
    port: u16,
    scripts: mpsc::Sender<Script>,
}

thread_local! {
    static FAKE: FakeRedis = FakeRedis::start();
}

impl FakeRedis {
    fn start() -> FakeRedis {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
        let port = listener.local_addr().expect("a local address").port();
        let (tx, rx) = mpsc::channel::<Script>();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(script) = rx.recv() else {
                    return;
                };
                let Ok(mut s) = stream else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                match script {
                    Script::Bytes { bytes, cuts, close } => {
                        write_in_pieces(&mut s, &bytes, &cuts);
                        if close {
                            let _ = s.shutdown(Shutdown::Write);
                        }
                    }
                    Script::Store {
                        store,
                        login_refused,
                        fault,
                    } => serve(&mut s, &store, login_refused, fault),
                }
                // Read what the client sends until it hangs up, so that closing never resets.
                let mut buf = [0u8; 16 * 1024];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            }
        });
        FakeRedis { port, scripts: tx }
    }
}

fn write_in_pieces(s: &mut TcpStream, bytes: &[u8], cuts: &[usize]) {
    let mut at = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let cut = cut.clamp(at, bytes.len());
        if s.write_all(&bytes[at..cut]).is_err() {
            return;
        }
        at = cut;
        if at < bytes.len() {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
}

/// Answers commands from `store` until the client hangs up (or the fault ends it).
fn serve(s: &mut TcpStream, store: &Store, login_refused: bool, fault: Option<Fault>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut index = 0;
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let Some((cmds, used)) = commands(&buf) else {
            return;
        };
        buf.drain(..used);
        let mut out = Vec::new();
        for args in cmds {
            let mut answer = if login_refused
                && args
                    .first()
                    .is_some_and(|a| a.eq_ignore_ascii_case(b"AUTH"))
            {
                b"-WRONGPASS invalid username-password pair\r\n".to_vec()
            } else {
                store.answer(&args)
            };
            match &fault {
                Some(f) if f.at == index => {
                    let mut rng = Rng::new(f.seed);
                    match f.kind {
                        FaultKind::Mangle => gen::mutate(&mut rng, &mut answer, RESP_TOKENS),
                        FaultKind::Replace => answer = rng.pick(RESP_TOKENS).as_bytes().to_vec(),
                        FaultKind::Cut | FaultKind::Stall => {
                            answer.truncate(rng.below(answer.len().max(1)));
                            out.extend_from_slice(&answer);
                            let _ = s.write_all(&out);
                            if matches!(f.kind, FaultKind::Cut) {
                                let _ = s.shutdown(Shutdown::Write);
                            }
                            return;
                        }
                    }
                }
                _ => {}
            }
            out.extend_from_slice(&answer);
            index += 1;
        }
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

/// Connects to this thread's fake Redis, which will follow `script` (sometimes behind a login:
/// `AUTH`, and `SELECT` when a database is named).
fn fake_connection(
    c: &mut Case,
    script: Script,
    deadline: Instant,
) -> Result<Result<Conn, resp::Error>, String> {
    let login = c.rng.chance(10);
    let db = login && c.rng.chance(50);
    let refused = login && c.rng.chance(30);
    let script = match script {
        Script::Bytes {
            mut bytes, close, ..
        } => {
            if login {
                let mut hello: Vec<u8> = if refused {
                    b"-WRONGPASS invalid username-password pair\r\n".to_vec()
                } else {
                    b"+OK\r\n".to_vec()
                };
                if db {
                    hello.extend_from_slice(b"+OK\r\n");
                }
                bytes.splice(0..0, hello);
            }
            let cuts = if c.rng.chance(10) {
                let n = c.rng.range(1, 3);
                let mut cuts: Vec<usize> = (0..n).map(|_| c.rng.below(bytes.len() + 1)).collect();
                cuts.sort_unstable();
                cuts
            } else {
                Vec::new()
            };
            Script::Bytes { bytes, cuts, close }
        }
        Script::Store {
            store, mut fault, ..
        } => {
            // The fault counts commands from the first: after the login's.
            let hello = usize::from(login) + usize::from(db);
            if let Some(f) = &mut fault {
                f.at += hello;
            }
            Script::Store {
                store,
                login_refused: refused,
                fault,
            }
        }
    };
    let sent = FAKE.with(|f| (f.port, f.scripts.send(script)));
    let (port, sent) = sent;
    sent.map_err(|e| format!("the fake redis is gone: {e}"))?;
    let url = match (login, db) {
        (false, _) => format!("redis://127.0.0.1:{port}"),
        (true, false) => format!("redis://:pw@127.0.0.1:{port}"),
        (true, true) => format!("redis://u:pw@127.0.0.1:{port}/3"),
    };
    let target = Target::parse(&url)?;
    let con = Conn::connect(&target, deadline);
    match (&con, refused) {
        (Ok(_), true) => Err("a refused login connected".into()),
        (Err(e), false) if e.kind != resp::ErrorKind::Connect => {
            Err(format!("connect failed with {e:?}, not a Connect error"))
        }
        (Err(e), true) => {
            ensure!(
                e.kind == resp::ErrorKind::Connect && e.detail.contains("WRONGPASS"),
                "a refused login failed with {e:?}"
            );
            c.count("login refused");
            Ok(con)
        }
        _ => Ok(con),
    }
}

/// How long a call may take past its deadline (scheduling, the fake's pauses).
const SLACK: Duration = Duration::from_millis(300);

// ---- fetch_batch_within ----------------------------------------------------------------------

/// A store of a few documents, rollback / gray entries and data keys, and items to read from
/// it (some of them missing).
fn store_and_items(rng: &mut Rng, layout: &Layout) -> (Store, Vec<Fetch>) {
    let mut store = Store::default();
    let mut items = Vec::new();
    for _ in 0..rng.range(1, 3) {
        let d = doc(rng);
        let key = layout.doc_key(&d).into_bytes();
        let mut fields: Vec<(Vec<u8>, Held2)> = Vec::new();
        let big = rng.chance(4);
        let n = if big { rng.range(0, 3) } else { rng.size(6) };
        for _ in 0..n {
            let name = field_name(rng);
            if fields.iter().any(|(f, _)| *f == name) {
                continue;
            }
            let value = match rng.below(30) {
                0 => Held2::Filler(MAX_FIELD_BYTES + 1 + rng.below(100)),
                1 => Held2::Filler(rng.size(MAX_DATA_BYTES)),
                _ => Held2::Bytes(bytes_value(rng)),
            };
            fields.push((name, value));
        }
        if big {
            match rng.below(2) {
                0 => fields.push((
                    vec![b'9'; MAX_FIELD_NAME_BYTES + rng.range(1, 3)],
                    Held2::Bytes(b"{}".to_vec()),
                )),
                _ => {
                    for i in 0..=MAX_DOC_FIELDS {
                        fields.push((i.to_string().into_bytes(), Held2::Bytes(Vec::new())));
                    }
                }
            }
        }
        let name = d.field_name().into_bytes();
        for hash in [layout.rollback_key(), layout.gray_key()] {
            if rng.chance(30) {
                let v = Held2::Bytes(field_name(rng));
                store
                    .hashes
                    .entry(hash.into_bytes())
                    .or_default()
                    .push((name.clone(), v));
            }
        }
        let fetch_fields: Vec<Field> = fields
            .iter()
            .filter_map(|(f, _)| Field::parse(std::str::from_utf8(f).ok()?))
            .collect();
        if !fields.is_empty() || rng.chance(50) {
            store.hashes.insert(key, fields);
        }
        items.push(Fetch::Meta(d.clone()));
        for f in fetch_fields.into_iter().take(3) {
            items.push(Fetch::Field(d.clone(), f));
        }
        if rng.chance(30) {
            items.push(Fetch::Field(
                d,
                Field::Version(rng.next_u64() % (MAX_VERSION + 1)),
            ));
        }
    }
    for _ in 0..rng.range(0, 3) {
        let key = gen::string(rng, 3);
        match rng.below(8) {
            0 => {
                store.other_type.insert(key.clone().into_bytes());
            }
            1 => {}
            2 => {
                store.strings.insert(
                    key.clone().into_bytes(),
                    Held2::Filler(MAX_DATA_BYTES + rng.range(1, 1 << 20)),
                );
            }
            3 => {
                store
                    .strings
                    .insert(key.clone().into_bytes(), Held2::Filler(MAX_DATA_BYTES));
            }
            _ => {
                store
                    .strings
                    .insert(key.clone().into_bytes(), Held2::Bytes(bytes_value(rng)));
            }
        }
        items.push(Fetch::Data(key));
    }
    // Any order, and sometimes the same item twice.
    for i in (1..items.len()).rev() {
        let j = rng.below(i + 1);
        items.swap(i, j);
    }
    if rng.chance(10) {
        let dup = items[rng.below(items.len())].clone();
        items.push(dup);
    }
    (store, items)
}

fn batch(c: &mut Case) -> Check {
    let layout = Layout::default();
    let (store, items) = store_and_items(&mut c.rng, &layout);
    let fault = c.rng.chance(40).then(|| Fault {
        at: c.rng.below(2 * items.len() + 2),
        kind: c.rng.pick(&[
            FaultKind::Mangle,
            FaultKind::Mangle,
            FaultKind::Replace,
            FaultKind::Replace,
            FaultKind::Cut,
            FaultKind::Stall,
        ]),
        seed: c.rng.next_u64(),
    });
    let stall = matches!(
        fault,
        Some(Fault {
            kind: FaultKind::Stall,
            ..
        })
    );
    c.show("items", &items);
    c.show("store", &store);
    c.show("fault", &fault);
    let want: Vec<Result<Raw, ()>> = items.iter().map(|f| store.expected(&layout, f)).collect();
    let started = Instant::now();
    let budget = if stall {
        Duration::from_millis(30)
    } else {
        Duration::from_secs(3)
    };
    let deadline = started + budget;
    let script = Script::Store {
        store,
        login_refused: false,
        fault: fault.clone(),
    };
    let Ok(mut con) = fake_connection(c, script, deadline)? else {
        return Ok(());
    };
    let reply = fetch_batch_within(&mut con, &layout, &items, deadline);
    drop(con);
    let took = started.elapsed();
    ensure!(
        took < budget + SLACK,
        "fetch_batch_within took {took:?}: {reply:?}"
    );
    let n = items.len();
    ensure!(
        reply.items.len() <= n
            && reply
                .items
                .iter()
                .zip(&items)
                .all(|(r, f)| r.as_ref().map_or(true, |raw| same_kind(f, raw))),
        "{n} items answered with {:?}",
        reply.items
    );
    ensure!(
        !reply.reusable || (reply.failed.is_none() && reply.items.len() == n),
        "reusable after {reply:?}"
    );
    for raw in reply.items.iter().flatten() {
        match raw {
            Raw::Data(Ok(Some(b))) => ensure!(
                !b.is_empty() && b.len() <= MAX_DATA_BYTES + 1,
                "data of {} bytes accepted",
                b.len()
            ),
            Raw::Meta(Some(m)) => ensure!(
                !m.fields.is_empty() && m.fields.len() <= MAX_DOC_FIELDS,
                "a meta of {} fields accepted",
                m.fields.len()
            ),
            Raw::Field(Some(v)) => ensure!(
                v.len() <= MAX_FIELD_BYTES,
                "a field of {} bytes accepted",
                v.len()
            ),
            _ => {}
        }
    }
    if fault.is_some() {
        c.count(match (&reply.failed, reply.reusable) {
            (Some(_), _) => "batch: fault, source failed",
            (None, true) => "batch: fault, answered",
            (None, false) => "batch: fault, an item failed",
        });
        return Ok(());
    }
    // No fault: each item as the store says, up to one over the limits (the batch may end
    // there); the source never fails.
    let matches = |g: &Result<Raw, ItemFailure>, w: &Result<Raw, ()>| match (g, w) {
        (Ok(Raw::Data(Err(_))), Ok(Raw::Data(Err(_)))) => true,
        (Ok(g), Ok(w)) => g == w,
        (Err(_), Err(())) => true,
        _ => false,
    };
    let first_over = want.iter().position(Result::is_err);
    let complete = reply.items.len() == n;
    ensure!(
        reply.failed.is_none()
            && reply.items.iter().zip(&want).all(|(g, w)| matches(g, w))
            && (complete
                || (reply.items.last().is_some_and(Result::is_err)
                    && want.get(reply.items.len() - 1).is_some_and(Result::is_err)))
            && (reply.reusable || first_over.is_some()),
        "the store's answers read as {reply:?}, expected {want:?}"
    );
    c.count(if first_over.is_some() {
        "batch: one over the limits"
    } else {
        "batch: decoded"
    });
    Ok(())
}

// ---- read_reply ------------------------------------------------------------------------------

fn text_line(rng: &mut Rng) -> String {
    if rng.chance(2) {
        return "x".repeat(resp::MAX_LINE + rng.below(3));
    }
    gen::string(rng, 4).replace(['\r', '\n'], "")
}

fn reply_tree(rng: &mut Rng, depth: usize, nodes: &mut usize) -> Reply {
    *nodes = nodes.saturating_sub(1);
    let leaf = depth > resp::MAX_DEPTH + 1 || *nodes == 0;
    match rng.below(if leaf { 5 } else { 7 }) {
        0 => Reply::Nil,
        1 => Reply::Status(text_line(rng)),
        2 => Reply::Error(text_line(rng)),
        3 => Reply::Int(match rng.below(3) {
            0 => rng.next_u64() as i64,
            1 => rng.pick(&[i64::MIN, i64::MAX, -1, 0]),
            _ => rng.below(100) as i64,
        }),
        4 => {
            let n = rng.size(40);
            Reply::Bulk(rng.bytes(n))
        }
        _ => {
            let n = rng.size(5);
            Reply::Array((0..n).map(|_| reply_tree(rng, depth + 1, nodes)).collect())
        }
    }
}

fn encode_reply(rng: &mut Rng, r: &Reply, out: &mut Vec<u8>) {
    match r {
        Reply::Nil => out.extend_from_slice(if rng.chance(50) {
            b"$-1\r\n"
        } else {
            b"*-1\r\n"
        }),
        Reply::Status(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
        Reply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
        Reply::Int(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
        Reply::Bulk(b) => {
            out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Array(items) => {
            out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            for i in items {
                encode_reply(rng, i, out);
            }
        }
    }
}

/// What reading `r` under `limits` gives: the reply, or the kind of its first violation in
/// the order the reader meets them.
fn model_read(r: &Reply, limits: &resp::Limits) -> Result<Reply, resp::ErrorKind> {
    fn walk(
        r: &Reply,
        limits: &resp::Limits,
        depth: usize,
        budget: &mut usize,
    ) -> Result<(), resp::ErrorKind> {
        match r {
            Reply::Status(s) | Reply::Error(s) if s.len() > resp::MAX_LINE => {
                Err(resp::ErrorKind::Protocol)
            }
            Reply::Bulk(b) if b.len() > limits.max_bulk => Err(resp::ErrorKind::TooLarge),
            Reply::Array(items) => {
                if items.len() > *budget {
                    return Err(resp::ErrorKind::TooLarge);
                }
                if depth >= resp::MAX_DEPTH {
                    return Err(resp::ErrorKind::Protocol);
                }
                *budget -= items.len();
                items
                    .iter()
                    .try_for_each(|i| walk(i, limits, depth + 1, budget))
            }
            _ => Ok(()),
        }
    }
    let mut budget = limits.max_elements;
    walk(r, limits, 0, &mut budget).map(|()| r.clone())
}

/// The redis crate's reading of the same bytes, as a `Reply` (RESP2 types only).
fn from_redis(v: &Value) -> Option<Reply> {
    Some(match v {
        Value::Nil => Reply::Nil,
        Value::Okay => Reply::Status("OK".into()),
        Value::SimpleString(s) => Reply::Status(s.clone()),
        Value::Int(n) => Reply::Int(*n),
        Value::BulkString(b) => Reply::Bulk(b.clone()),
        Value::Array(items) => Reply::Array(items.iter().map(from_redis).collect::<Option<_>>()?),
        Value::ServerError(_) => Reply::Error(String::new()),
        _ => return None,
    })
}

/// Errors compared by kind only.
fn same_shape(a: &Reply, b: &Reply) -> bool {
    match (a, b) {
        (Reply::Error(_), Reply::Error(_)) => true,
        (Reply::Array(x), Reply::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_shape(a, b))
        }
        (a, b) => a == b,
    }
}

fn reader(c: &mut Case) -> Check {
    let mut nodes = c.rng.range(1, 30);
    let tree = reply_tree(&mut c.rng, 0, &mut nodes);
    let limits = resp::Limits {
        max_bulk: if c.rng.chance(50) {
            1 << 20
        } else {
            c.rng.below(40)
        },
        max_elements: if c.rng.chance(50) {
            1000
        } else {
            c.rng.below(12)
        },
    };
    let mut bytes = Vec::new();
    encode_reply(&mut c.rng, &tree, &mut bytes);
    let reply_len = bytes.len();
    let mutated = c.rng.chance(40);
    if mutated {
        gen::mutate(&mut c.rng, &mut bytes, RESP_TOKENS);
    }
    let hang = c.rng.chance(3);
    let truncated = hang && !mutated && reply_len > 0;
    if truncated {
        bytes.truncate(c.rng.below(reply_len));
    } else {
        bytes.extend_from_slice(b"+END\r\n");
    }
    c.show("tree", &tree);
    c.show("limits", &limits);
    c.show("bytes", &String::from_utf8_lossy(&bytes));
    let started = Instant::now();
    let budget = if hang {
        Duration::from_millis(20)
    } else {
        Duration::from_secs(3)
    };
    let deadline = started + budget;
    let script = Script::Bytes {
        bytes: bytes.clone(),
        cuts: Vec::new(),
        close: !hang,
    };
    let Ok(mut con) = fake_connection(c, script, deadline)? else {
        return Ok(());
    };
    let got = con.read_reply(&limits, deadline);
    let took = started.elapsed();
    ensure!(took < budget + SLACK, "read_reply took {took:?}: {got:?}");
    if truncated {
        // Cut short and the peer silent: a timeout, partial if anything arrived.
        c.count("reader: cut short");
        let model = model_read(&tree, &limits);
        let e = match got {
            Err(e) => e,
            Ok(r) => return Err(format!("a reply cut short read as {r:?}")),
        };
        if model.is_ok() {
            ensure!(
                e.kind == resp::ErrorKind::TimedOut && e.partial != bytes.is_empty(),
                "a reply cut short after {} bytes failed with {e:?}",
                bytes.len()
            );
        }
        return Ok(());
    }
    if !mutated {
        let want = model_read(&tree, &limits);
        match (&got, &want) {
            (Ok(g), Ok(w)) => {
                ensure!(g == w, "read {g:?}, wrote {w:?}");
                // Exactly the reply was consumed: the next one is the marker.
                let next = con.read_reply(&limits, deadline);
                ensure!(
                    next == Ok(Reply::Status("END".into())),
                    "after {g:?} the next reply is {next:?}"
                );
                c.count("reader: well-formed, read");
            }
            (Err(e), Err(k)) => {
                ensure!(e.kind == *k, "failed with {e:?}, the model says {k:?}");
                c.count("reader: well-formed, over the limits");
            }
            _ => return Err(format!("read_reply = {got:?}, the model says {want:?}")),
        }
        return Ok(());
    }
    // Mutated: when both read a reply, the bounded reader and the redis crate agree.
    c.count(if got.is_ok() {
        "reader: mutated, read"
    } else {
        "reader: mutated, refused"
    });
    if let Ok(g) = &got {
        if let Ok(v) = redis::parse_redis_value(&bytes) {
            if let Some(r) = from_redis(&v) {
                ensure!(
                    same_shape(g, &r),
                    "the bounded reader read {g:?}, the redis crate {r:?}"
                );
                c.count("reader: mutated, both read the same");
            }
        }
    }
    Ok(())
}

// ---- fetch_batch (dynpagectl) ----------------------------------------------------------------

fn check_result(
    c: &mut Case,
    items: &[(Fetch, Held)],
    mutated: bool,
    result: Result<Vec<Raw>, String>,
) -> Check {
    if !mutated {
        let want: Vec<Raw> = items.iter().map(|(_, h)| expected(h)).collect();
        // A data key that cannot be used: its reason is free text.
        let matches = |got: &Raw, want: &Raw| match (got, want) {
            (Raw::Data(Err(_)), Raw::Data(Err(_))) => true,
            (g, w) => g == w,
        };
        ensure!(
            result
                .as_ref()
                .is_ok_and(|got| got.len() == want.len()
                    && got.iter().zip(&want).all(|(g, w)| matches(g, w))),
            "well-formed values decoded to {result:?}, expected {want:?}"
        );
        c.count("values: well-formed, decoded");
        return Ok(());
    }
    match result {
        Ok(raws) => {
            c.count("values: mutated, decoded");
            ensure!(
                !raws
                    .iter()
                    .any(|r| matches!(r, Raw::Data(Ok(Some(b))) if b.is_empty())),
                "an empty data value decoded as present: {raws:?}"
            );
            ensure!(
                raws.len() == items.len()
                    && items.iter().zip(&raws).all(|((f, _), r)| same_kind(f, r)),
                "{} items answered with {raws:?}",
                items.len()
            );
        }
        Err(_) => c.count("values: mutated, refused"),
    }
    Ok(())
}

// ---- Values through ConnectionLike -----------------------------------------------------------

/// A connection that answers a pipeline with prepared values.
struct Canned(Option<RedisResult<Vec<Value>>>);

impl ConnectionLike for Canned {
    fn req_packed_command(&mut self, _cmd: &[u8]) -> RedisResult<Value> {
        Err((redis::ErrorKind::Client, "single commands are not expected").into())
    }

    fn req_packed_commands(
        &mut self,
        _cmd: &[u8],
        _offset: usize,
        _count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.0
            .take()
            .unwrap_or_else(|| Err((redis::ErrorKind::Client, "asked twice").into()))
    }

    fn get_db(&self) -> i64 {
        0
    }

    fn check_connection(&mut self) -> bool {
        true
    }

    fn is_open(&self) -> bool {
        true
    }
}

fn parse_one(bytes: &[u8]) -> Value {
    redis::parse_redis_value(bytes).unwrap_or(Value::Nil)
}

fn value_str(rng: &mut Rng, b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) if rng.chance(20) && s != "OK" => Value::SimpleString(s.into()),
        _ => Value::BulkString(b.to_vec()),
    }
}

fn value_replies(rng: &mut Rng, held: &Held, out: &mut Vec<Value>) {
    match held {
        Held::Meta { fields, pin, gray } => {
            let items: Vec<Value> = fields.iter().map(|f| value_str(rng, f)).collect();
            out.push(if rng.chance(20) {
                Value::Set(items)
            } else if items.is_empty() && rng.chance(30) {
                Value::Nil
            } else {
                Value::Array(items)
            });
            for v in [pin, gray] {
                out.push(match v {
                    Some(v) => value_str(rng, v),
                    None => Value::Nil,
                });
            }
        }
        Held::Field(Some(v)) => out.push(value_str(rng, v)),
        Held::Field(None) => out.push(Value::Nil),
        Held::Data { len, range } => {
            out.push(Value::Int(*len));
            out.push(value_str(rng, range));
        }
        // A pipeline with a server error fails as a whole through `query`.
        Held::WrongType => {
            let e = parse_one(b"-WRONGTYPE Operation against a key holding the wrong kind\r\n");
            out.push(e.clone());
            out.push(e);
        }
    }
}

fn any_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth == 0 { 9 } else { 13 }) {
        0 => Value::Nil,
        1 => Value::Int(rng.next_u64() as i64),
        2 => Value::Int(rng.below(3) as i64 - 1),
        3 => Value::BulkString(bytes_value(rng)),
        4 => Value::SimpleString(gen::string(rng, 3)),
        5 => Value::Okay,
        6 => Value::Double(f64::from_bits(rng.next_u64())),
        7 => Value::Boolean(rng.chance(50)),
        8 => parse_one(rng.pick(&[
            &b"-ERR oops\r\n"[..],
            b"-WRONGTYPE x\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"(123456789012345678901234567890\r\n",
        ])),
        9 | 10 => {
            let n = rng.size(4);
            let items = (0..n).map(|_| any_value(rng, depth - 1)).collect();
            if rng.chance(50) {
                Value::Array(items)
            } else {
                Value::Set(items)
            }
        }
        11 => {
            let n = rng.size(3);
            Value::Map(
                (0..n)
                    .map(|_| (any_value(rng, depth - 1), any_value(rng, depth - 1)))
                    .collect(),
            )
        }
        _ => parse_one(b">2\r\n$7\r\nmessage\r\n$1\r\nx\r\n"),
    }
}

fn as_values(c: &mut Case) -> Check {
    let n = c.rng.range(1, 5);
    let items: Vec<(Fetch, Held)> = (0..n).map(|_| item(&mut c.rng)).collect();
    let fetches: Vec<Fetch> = items.iter().map(|(f, _)| f.clone()).collect();
    let mut values = Vec::new();
    for (_, held) in &items {
        value_replies(&mut c.rng, held, &mut values);
    }
    let has_error = items.iter().any(|(_, h)| matches!(h, Held::WrongType));
    let mutated = has_error || c.rng.chance(60);
    if mutated && !has_error {
        for _ in 0..c.rng.range(1, 3) {
            let len = values.len();
            match c.rng.below(4) {
                0 if len > 0 => {
                    let i = c.rng.below(len);
                    values[i] = any_value(&mut c.rng, 3);
                }
                1 if len > 0 => {
                    values.truncate(c.rng.below(len));
                }
                2 => {
                    let at = c.rng.below(len + 1);
                    let v = any_value(&mut c.rng, 3);
                    values.insert(at, v);
                }
                _ => {
                    if let Some(Value::Array(a)) =
                        values.iter_mut().find(|v| matches!(v, Value::Array(_)))
                    {
                        let v = any_value(&mut c.rng, 2);
                        a.push(v);
                    }
                }
            }
        }
    }
    c.show("items", &items);
    c.show("values", &values);
    let canned = if mutated && c.rng.chance(5) {
        Err((redis::ErrorKind::Io, "connection reset").into())
    } else {
        Ok(values)
    };
    let mut con = Canned(Some(canned));
    let result = fetch_batch(&mut con, &Layout::default(), &fetches).map_err(|e| e.to_string());
    if has_error {
        // `query` fails the whole pipeline on a server error.
        c.count("values: server error");
        ensure!(result.is_err(), "a WRONGTYPE reply decoded as {result:?}");
        return Ok(());
    }
    check_result(c, &items, mutated, result)
}
