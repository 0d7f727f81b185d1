//! A small, bounded RESP2 client for the module's fetch and events threads.
//!
//! Every call ends by a **deadline**, whatever the peer does: each read is given what is left of
//! the time (`SO_RCVTIMEO`), so a reply dripped one byte at a time ends when the deadline does,
//! not when the peer stops sending. Every reply is read under **limits** the caller gives: a
//! bulk string or an array announcing more than they allow is refused from its header, before
//! its body is read (a peer announcing a 2^40-byte bulk costs one header). Nothing is allocated
//! for a length before it is checked.
//!
//! The `redis` crate gives each read the whole timeout and reads any length; `dynpagectl` keeps
//! using it (no deadline matters there), the module's threads use this.
//!
//! Only RESP2 is spoken (no `HELLO`): the handshake is `AUTH` and `SELECT`, pipelined, within
//! the same deadline as the connect.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Longest status, error, integer or length line (without its CRLF).
pub const MAX_LINE: usize = 16 * 1024;

/// Deepest nesting of arrays in a reply.
pub const MAX_DEPTH: usize = 4;

/// Bytes asked of the socket per read when nothing says more is coming.
const READ_CHUNK: usize = 64 * 1024;

/// One reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `$-1` or `*-1`.
    Nil,
    /// `+OK`.
    Status(String),
    /// `-ERR ...`: the server refused this command (the connection is fine).
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Array(Vec<Reply>),
}

impl Reply {
    /// A short description for logs ("an integer (1)", "an array of 2 elements").
    pub fn describe(&self) -> String {
        match self {
            Reply::Nil => "nil".into(),
            Reply::Status(s) => format!("a status ({})", clip(s)),
            Reply::Error(e) => format!("an error ({})", clip(e)),
            Reply::Int(n) => format!("an integer ({n})"),
            Reply::Bulk(b) => format!("a bulk string of {} bytes", b.len()),
            Reply::Array(a) => format!("an array of {} elements", a.len()),
        }
    }
}

fn clip(s: &str) -> String {
    s.chars()
        .take(120)
        .collect::<String>()
        .escape_debug()
        .to_string()
}

/// What one reply may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one bulk string.
    pub max_bulk: usize,
    /// Array elements in the whole reply (all levels counted together).
    pub max_elements: usize,
}

impl Limits {
    /// For replies that are a status, an integer or a short string (handshake, `STRLEN`).
    pub const SMALL: Limits = Limits {
        max_bulk: 4096,
        max_elements: 16,
    };
}

/// How a call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Connecting or the handshake (`AUTH`, `SELECT`) failed, the deadline included.
    Connect,
    /// The deadline passed while reading or writing.
    TimedOut,
    /// The peer closed the connection, or another I/O error.
    Io,
    /// A reply announced more than the limits allow; its body was not read.
    TooLarge,
    /// Something that is not RESP2.
    Protocol,
    /// The server answered with an error it gives whatever the command (`LOADING`,
    /// `MASTERDOWN`, `NOAUTH`...), or with a reply no Redis gives to that command.
    Server,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub detail: String,
    /// Some bytes of the reply being read had arrived (a reply cut off, not one never begun).
    pub partial: bool,
}

impl Error {
    fn new(kind: ErrorKind, detail: impl Into<String>) -> Error {
        Error {
            kind,
            detail: detail.into(),
            partial: false,
        }
    }

    fn timed_out(partial: bool) -> Error {
        Error {
            kind: ErrorKind::TimedOut,
            detail: "timed out".into(),
            partial,
        }
    }

    /// A failure of the server as a whole (see [`ErrorKind::Server`]).
    pub fn server(detail: impl Into<String>) -> Error {
        Error::new(ErrorKind::Server, detail)
    }

    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::TimedOut
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// What is left of the time until `deadline`; a timeout once nothing is.
pub fn time_left(deadline: Instant) -> Result<Duration, Error> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| Error::timed_out(false))
}

/// Where a Redis is and how to log in: from a `dynpage_redis` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    addr: Addr,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Addr {
    Tcp(String, u16),
    Unix(PathBuf),
}

impl Target {
    /// A TCP target with the given login (a node of a cluster, a primary a sentinel named).
    pub fn tcp(
        host: &str,
        port: u16,
        username: Option<String>,
        password: Option<String>,
        db: i64,
    ) -> Target {
        Target {
            addr: Addr::Tcp(host.to_string(), port),
            username,
            password,
            db,
        }
    }

    /// `host:port` (or the socket path), for logs.
    pub fn address(&self) -> String {
        match &self.addr {
            Addr::Tcp(h, p) if h.contains(':') => format!("[{h}]:{p}"),
            Addr::Tcp(h, p) => format!("{h}:{p}"),
            Addr::Unix(path) => path.display().to_string(),
        }
    }

    /// Reads `redis://[user:pass@]host:port/db` or `redis+unix:///path?db=N` (the `redis`
    /// crate's URL rules, which `dynpage_redis` is checked with).
    pub fn parse(url: &str) -> Result<Target, String> {
        use redis::{ConnectionAddr, IntoConnectionInfo};
        let info = url
            .into_connection_info()
            .map_err(|e| e.to_string().replace('\n', " "))?;
        let addr = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Addr::Tcp(host.clone(), *port),
            ConnectionAddr::Unix(path) => Addr::Unix(path.clone()),
            _ => return Err("TLS connections are not supported".into()),
        };
        let settings = info.redis_settings();
        Ok(Target {
            addr,
            username: settings.username().map(str::to_string),
            password: settings.password().map(str::to_string),
            db: settings.db(),
        })
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn set_read_timeout(&self, d: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(Some(d)),
            Stream::Unix(s) => s.set_read_timeout(Some(d)),
        }
    }

    fn set_write_timeout(&self, d: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(Some(d)),
            Stream::Unix(s) => s.set_write_timeout(Some(d)),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
}

/// One connection. After any error but a timeout of [`Conn::read_reply`] with nothing of the
/// reply read, replies may be out of step with commands: drop the connection.
pub struct Conn {
    stream: Stream,
    /// Bytes read and not yet parsed are `buf[pos..end]`; `buf[end..]` is room already
    /// zeroed, read into without clearing it again.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// The socket's timeouts as last set: left as they are while they fit what is left of a
    /// deadline (see [`timeout_serves`]), which saves a system call per read and write.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

/// Whether a socket timeout of `set` serves a wait that must end within `left`: never longer,
/// and not so much shorter that the wait wakes up early again and again (an early wake-up is
/// harmless: the read is tried again with what is left).
fn timeout_serves(set: Option<Duration>, left: Duration) -> bool {
    set.is_some_and(|t| t <= left && left <= t.saturating_mul(2))
}

impl Conn {
    /// Connects and logs in (`AUTH`, `SELECT`), all by `deadline`. Every failure, the deadline
    /// included, is [`ErrorKind::Connect`].
    pub fn connect(target: &Target, deadline: Instant) -> Result<Conn, Error> {
        let connect_err = |e: Error| Error {
            kind: ErrorKind::Connect,
            ..e
        };
        let stream = open(&target.addr, deadline).map_err(connect_err)?;
        let mut con = Conn {
            stream,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            read_timeout: None,
            write_timeout: None,
        };
        let mut hello = Vec::new();
        let mut replies = 0;
        if let Some(pass) = &target.password {
            match &target.username {
                Some(user) => encode(&[b"AUTH", user.as_bytes(), pass.as_bytes()], &mut hello),
                None => encode(&[b"AUTH", pass.as_bytes()], &mut hello),
            }
            replies += 1;
        }
        if target.db != 0 {
            encode(&[b"SELECT", target.db.to_string().as_bytes()], &mut hello);
            replies += 1;
        }
        if replies > 0 {
            con.send(&hello, deadline).map_err(connect_err)?;
            for _ in 0..replies {
                match con.read_reply(&Limits::SMALL, deadline) {
                    Ok(Reply::Status(_)) => {}
                    Ok(Reply::Error(e)) => {
                        return Err(Error::new(
                            ErrorKind::Connect,
                            format!("login refused: {}", clip(&e)),
                        ))
                    }
                    Ok(other) => {
                        return Err(Error::new(
                            ErrorKind::Connect,
                            format!("login answered with {}", other.describe()),
                        ))
                    }
                    Err(e) => return Err(connect_err(e)),
                }
            }
        }
        Ok(con)
    }

    /// Writes all of `bytes` by `deadline`.
    pub fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), Error> {
        let mut at = 0;
        while at < bytes.len() {
            let left = time_left(deadline)?;
            if !timeout_serves(self.write_timeout, left) {
                self.stream.set_write_timeout(left).map_err(io_error)?;
                self.write_timeout = Some(left);
            }
            match self.stream.write(&bytes[at..]) {
                Ok(0) => return Err(Error::new(ErrorKind::Io, "connection closed")),
                Ok(n) => at += n,
                Err(e) if retry(&e) => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        Ok(())
    }

    /// Reads one reply by `deadline`, within `limits`. On a timeout, what arrived of the reply
    /// is kept: a later call goes on with it (the events thread reads with short deadlines).
    pub fn read_reply(&mut self, limits: &Limits, deadline: Instant) -> Result<Reply, Error> {
        loop {
            let mut budget = limits.max_elements;
            match parse(&self.buf[self.pos..self.end], 0, limits, 0, &mut budget)? {
                Parsed::Done(reply, end) => {
                    self.pos += end;
                    if self.pos == self.end {
                        self.pos = 0;
                        self.end = 0;
                        // Room a huge reply needed is not kept for the small ones after it.
                        if self.buf.len() > 2 * READ_CHUNK {
                            self.buf = Vec::new();
                        }
                    }
                    return Ok(reply);
                }
                Parsed::Need(n) => self.fill(n, deadline)?,
            }
        }
    }

    /// Reads until `buf[pos..]` holds at least `need` bytes.
    fn fill(&mut self, need: usize, deadline: Instant) -> Result<(), Error> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        while self.end < need {
            let partial = self.end > 0;
            let left = time_left(deadline).map_err(|_| Error::timed_out(partial))?;
            if !timeout_serves(self.read_timeout, left) {
                self.stream.set_read_timeout(left).map_err(io_error)?;
                self.read_timeout = Some(left);
            }
            let have = self.end;
            // Room for what is known to be missing, within bounds: the limits bound `need`.
            let room = (need - have).clamp(READ_CHUNK, 16 * READ_CHUNK);
            if self.buf.len() < have + room {
                self.buf.resize(have + room, 0);
            }
            let got = self.stream.read(&mut self.buf[have..]);
            self.end = have + *got.as_ref().unwrap_or(&0);
            match got {
                Ok(0) => {
                    return Err(Error {
                        partial,
                        ..Error::new(ErrorKind::Io, "connection closed by the server")
                    })
                }
                Ok(_) => {}
                Err(e) if retry(&e) => {}
                Err(e) => {
                    return Err(Error {
                        partial,
                        ..io_error(e)
                    })
                }
            }
        }
        Ok(())
    }
}

/// Commands to send as one pipeline, each with the key it works on (for a cluster: which node
/// it goes to).
#[derive(Clone, Debug, Default)]
pub struct Commands {
    bytes: Vec<u8>,
    /// Per command: where it ends in `bytes`, and where its key is (a range of `bytes`).
    cmds: Vec<(usize, Option<(usize, usize)>)>,
}

impl Commands {
    pub fn with_capacity(bytes: usize) -> Commands {
        Commands {
            bytes: Vec::with_capacity(bytes),
            cmds: Vec::new(),
        }
    }

    /// Adds a command; `key` is the index of its key among `args` (`None`: no key).
    pub fn push(&mut self, args: &[&[u8]], key: Option<usize>) {
        let start = self.bytes.len();
        encode(args, &mut self.bytes);
        let key = key.and_then(|k| args.get(k).map(|a| (k, a.len())));
        // The key's place in the encoded command: after the header and the arguments before it.
        let key = key.map(|(k, len)| {
            let mut at = start + format!("*{}\r\n", args.len()).len();
            for a in &args[..k] {
                at += format!("${}\r\n", a.len()).len() + a.len() + 2;
            }
            at += format!("${len}\r\n").len();
            (at, at + len)
        });
        self.cmds.push((self.bytes.len(), key));
    }

    /// All commands, encoded, in order.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    /// Command `i`, encoded.
    pub fn command(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.cmds[i - 1].0 };
        &self.bytes[start..self.cmds[i].0]
    }

    /// The key of command `i`, if it has one.
    pub fn key(&self, i: usize) -> Option<&[u8]> {
        self.cmds
            .get(i)
            .and_then(|(_, k)| k.map(|(s, e)| &self.bytes[s..e]))
    }
}

/// Where a batch read sends its pipelines and reads their replies: one connection, or the
/// connections of a cluster's nodes. Replies are read in the order of the commands.
pub trait Pipe {
    /// Sends every command by `deadline`.
    fn send_commands(&mut self, cmds: &Commands, deadline: Instant) -> Result<(), Error>;
    /// Reads the reply of the next command not yet answered, by `deadline`, within `limits`.
    fn next_reply(&mut self, limits: &Limits, deadline: Instant) -> Result<Reply, Error>;
}

impl Pipe for Conn {
    fn send_commands(&mut self, cmds: &Commands, deadline: Instant) -> Result<(), Error> {
        self.send(cmds.bytes(), deadline)
    }

    fn next_reply(&mut self, limits: &Limits, deadline: Instant) -> Result<Reply, Error> {
        self.read_reply(limits, deadline)
    }
}

/// Splits encoded commands (as [`encode`] writes them, and as the `redis` crate packs a
/// pipeline) into their arguments; `None` when the bytes are not such commands.
pub fn split_commands(bytes: &[u8]) -> Option<Vec<Vec<Vec<u8>>>> {
    fn number(bytes: &[u8], at: &mut usize, kind: u8) -> Option<usize> {
        if bytes.get(*at) != Some(&kind) {
            return None;
        }
        let rest = &bytes[*at + 1..];
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
        *at += 1 + end + 2;
        Some(n)
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = number(bytes, &mut at, b'*')?;
        let mut args = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let len = number(bytes, &mut at, b'$')?;
            let end = at.checked_add(len)?;
            if bytes.get(end..end + 2) != Some(b"\r\n") {
                return None;
            }
            args.push(bytes[at..end].to_vec());
            at = end + 2;
        }
        out.push(args);
    }
    Some(out)
}

/// Writes one command (`*N` then each argument as a bulk string) to `out`.
pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn open(addr: &Addr, deadline: Instant) -> Result<Stream, Error> {
    match addr {
        Addr::Tcp(host, port) => {
            // A host name is resolved by the system resolver (an address needs no lookup).
            let addrs = (host.as_str(), *port).to_socket_addrs().map_err(|e| {
                Error::new(ErrorKind::Connect, format!("cannot resolve {host}: {e}"))
            })?;
            let mut last = Error::new(ErrorKind::Connect, format!("{host} has no address"));
            for a in addrs {
                let left = time_left(deadline)?;
                match TcpStream::connect_timeout(&a, left) {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        return Ok(Stream::Tcp(s));
                    }
                    Err(e) => last = io_error(e),
                }
            }
            Err(last)
        }
        Addr::Unix(path) => {
            time_left(deadline)?;
            UnixStream::connect(path)
                .map(Stream::Unix)
                .map_err(io_error)
        }
    }
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn io_error(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::timed_out(false),
        _ => Error::new(ErrorKind::Io, e.to_string()),
    }
}

/// What parsing from a position found.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// A reply, and where it ends.
    Done(Reply, usize),
    /// Incomplete: nothing can be decided before the buffer holds this many bytes.
    Need(usize),
}

fn protocol(detail: impl Into<String>) -> Error {
    Error {
        partial: true,
        ..Error::new(ErrorKind::Protocol, detail)
    }
}

fn too_large(detail: String) -> Error {
    Error {
        partial: true,
        ..Error::new(ErrorKind::TooLarge, detail)
    }
}

/// The line starting at `at` (without its CRLF) and where the next one starts.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, Error> {
    let window = &buf[at..buf.len().min(at + MAX_LINE + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some((&buf[at..at + i], at + i + 2))),
        None if window.len() >= MAX_LINE + 2 => {
            Err(protocol(format!("a line longer than {MAX_LINE} bytes")))
        }
        None => Ok(None),
    }
}

/// A length or an integer: `-`? digits. `None` when it is not one; a number too large for i64
/// is `Some(i64::MAX)` (only lengths can be that large, and they are refused as too large).
fn number(text: &[u8]) -> Option<i64> {
    let (neg, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Negative numbers are accumulated downwards: i64::MIN has no positive counterpart.
    let mut n: i64 = 0;
    for d in digits {
        let d = i64::from(d - b'0');
        n = match n.checked_mul(10).and_then(|n| {
            if neg {
                n.checked_sub(d)
            } else {
                n.checked_add(d)
            }
        }) {
            Some(n) => n,
            None if neg => return None,
            None => return Some(i64::MAX),
        };
    }
    Some(n)
}

/// Parses the reply starting at `at`. `budget` is what is left of the reply's element limit.
fn parse(
    buf: &[u8],
    at: usize,
    limits: &Limits,
    depth: usize,
    budget: &mut usize,
) -> Result<Parsed, Error> {
    let Some(&kind) = buf.get(at) else {
        return Ok(Parsed::Need(at + 1));
    };
    let Some((text, next)) = line(buf, at + 1)? else {
        return Ok(Parsed::Need(buf.len() + 1));
    };
    let lossy = || String::from_utf8_lossy(text).into_owned();
    match kind {
        b'+' => Ok(Parsed::Done(Reply::Status(lossy()), next)),
        b'-' => Ok(Parsed::Done(Reply::Error(lossy()), next)),
        b':' => match number(text) {
            Some(n) if n != i64::MAX || text == i64::MAX.to_string().as_bytes() => {
                Ok(Parsed::Done(Reply::Int(n), next))
            }
            _ => Err(protocol(format!("a bad integer \"{}\"", clip(&lossy())))),
        },
        b'$' => {
            let len = match number(text) {
                Some(-1) => return Ok(Parsed::Done(Reply::Nil, next)),
                Some(n) if n >= 0 => n,
                _ => return Err(protocol(format!("a bad length \"{}\"", clip(&lossy())))),
            };
            let len = match usize::try_from(len) {
                Ok(l) if l <= limits.max_bulk => l,
                _ => {
                    return Err(too_large(format!(
                        "a value of {} bytes, over the {} byte limit",
                        lossy(),
                        limits.max_bulk
                    )))
                }
            };
            let end = next + len + 2;
            if buf.len() < end {
                return Ok(Parsed::Need(end));
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(protocol("a bulk string not ended by CRLF"));
            }
            Ok(Parsed::Done(Reply::Bulk(buf[next..end - 2].to_vec()), end))
        }
        b'*' => {
            let count = match number(text) {
                Some(-1) => return Ok(Parsed::Done(Reply::Nil, next)),
                Some(n) if n >= 0 => n,
                _ => return Err(protocol(format!("a bad length \"{}\"", clip(&lossy())))),
            };
            let count = match usize::try_from(count) {
                Ok(c) if c <= *budget => c,
                _ => {
                    return Err(too_large(format!(
                        "a reply of {} elements, over the {} element limit",
                        lossy(),
                        limits.max_elements
                    )))
                }
            };
            if depth >= MAX_DEPTH {
                return Err(protocol(format!("arrays nested over {MAX_DEPTH} deep")));
            }
            *budget -= count;
            // The capacity is bounded by the limit just checked, and by what has arrived.
            let mut items = Vec::with_capacity(count.min(buf.len() - next));
            let mut pos = next;
            for _ in 0..count {
                match parse(buf, pos, limits, depth + 1, budget)? {
                    Parsed::Done(item, end) => {
                        items.push(item);
                        pos = end;
                    }
                    need => return Ok(need),
                }
            }
            Ok(Parsed::Done(Reply::Array(items), pos))
        }
        other => Err(protocol(format!(
            "a reply that is not RESP2 (it starts with byte 0x{other:02x})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    const BIG: Limits = Limits {
        max_bulk: 1 << 20,
        max_elements: 1000,
    };

    fn parse_all(bytes: &[u8], limits: &Limits) -> Result<Parsed, Error> {
        let mut budget = limits.max_elements;
        parse(bytes, 0, limits, 0, &mut budget)
    }

    fn done(bytes: &[u8]) -> Reply {
        match parse_all(bytes, &BIG) {
            Ok(Parsed::Done(r, end)) => {
                assert_eq!(end, bytes.len(), "{bytes:?}");
                r
            }
            other => panic!("{bytes:?}: {other:?}"),
        }
    }

    #[test]
    fn parses_every_resp2_type() {
        assert_eq!(done(b"+OK\r\n"), Reply::Status("OK".into()));
        assert_eq!(done(b"-ERR no\r\n"), Reply::Error("ERR no".into()));
        assert_eq!(done(b":-42\r\n"), Reply::Int(-42));
        assert_eq!(done(b":9223372036854775807\r\n"), Reply::Int(i64::MAX));
        assert_eq!(done(b"$3\r\na\r\n\r\n"), Reply::Bulk(b"a\r\n".to_vec()));
        assert_eq!(done(b"$0\r\n\r\n"), Reply::Bulk(Vec::new()));
        assert_eq!(done(b"$-1\r\n"), Reply::Nil);
        assert_eq!(done(b"*-1\r\n"), Reply::Nil);
        assert_eq!(done(b"*0\r\n"), Reply::Array(Vec::new()));
        assert_eq!(
            done(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n*1\r\n:1\r\n"),
            Reply::Array(vec![
                Reply::Bulk(b"message".to_vec()),
                Reply::Bulk(b"c".to_vec()),
                Reply::Array(vec![Reply::Int(1)])
            ])
        );
    }

    #[test]
    fn an_incomplete_reply_says_what_it_needs() {
        let full = b"*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n";
        for cut in 0..full.len() {
            match parse_all(&full[..cut], &BIG) {
                Ok(Parsed::Need(n)) => assert!(n > cut && n <= full.len(), "{cut}: {n}"),
                other => panic!("{cut}: {other:?}"),
            }
        }
        // Once the header of a bulk is in, the whole bulk is asked for at once.
        assert_eq!(
            parse_all(b"$1000\r\nab", &BIG),
            Ok(Parsed::Need(7 + 1000 + 2))
        );
    }

    #[test]
    fn lengths_over_the_limits_are_refused_from_the_header() {
        let small = Limits {
            max_bulk: 10,
            max_elements: 3,
        };
        for (bytes, want) in [
            (
                &b"$1099511627776\r\n"[..],
                "a value of 1099511627776 bytes, over the 10 byte limit",
            ),
            (b"$11\r\n", "a value of 11 bytes, over the 10 byte limit"),
            (
                b"$99999999999999999999999\r\n",
                "a value of 99999999999999999999999 bytes, over the 10 byte limit",
            ),
            (
                b"*300000\r\n",
                "a reply of 300000 elements, over the 3 element limit",
            ),
            // The element limit counts every level.
            (
                b"*2\r\n*2\r\n:1\r\n:2\r\n",
                "a reply of 2 elements, over the 3 element limit",
            ),
        ] {
            let e = parse_all(bytes, &small).unwrap_err();
            assert_eq!((e.kind, e.detail.as_str()), (ErrorKind::TooLarge, want));
        }
        assert!(matches!(
            parse_all(b"$10\r\n", &small),
            Ok(Parsed::Need(17))
        ));
    }

    #[test]
    fn what_is_not_resp2_is_a_protocol_error() {
        for bytes in [
            &b"hello\r\n"[..],
            b"$-2\r\n",
            b"$abc\r\n",
            b"*-5\r\n",
            b":12a\r\n",
            b":99999999999999999999\r\n",
            b"$3\r\nabcde\r\n",
            b"%1\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            let e = parse_all(bytes, &BIG).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Protocol, "{bytes:?}: {e:?}");
        }
        let long = [b"+".as_slice(), &vec![b'a'; MAX_LINE + 2]].concat();
        assert_eq!(
            parse_all(&long, &BIG).unwrap_err().kind,
            ErrorKind::Protocol
        );
    }

    #[test]
    fn commands_know_their_keys() {
        let mut c = Commands::default();
        c.push(&[b"HGET", b"k1", b"f"], Some(1));
        c.push(&[b"PING"], None);
        c.push(&[b"GETRANGE", b"{x}y", b"0", b"10"], Some(1));
        assert_eq!(c.len(), 3);
        assert_eq!(c.key(0), Some(&b"k1"[..]));
        assert_eq!(c.key(1), None);
        assert_eq!(c.key(2), Some(&b"{x}y"[..]));
        assert_eq!(c.command(1), b"*1\r\n$4\r\nPING\r\n");
        let mut all = Vec::new();
        for i in 0..c.len() {
            all.extend_from_slice(c.command(i));
        }
        assert_eq!(all, c.bytes());
    }

    #[test]
    fn splits_commands() {
        let mut out = Vec::new();
        encode(&[b"HSET", b"k", b"f", b"a\r\nb"], &mut out);
        encode(&[b"PING"], &mut out);
        assert_eq!(
            split_commands(&out),
            Some(vec![
                vec![
                    b"HSET".to_vec(),
                    b"k".to_vec(),
                    b"f".to_vec(),
                    b"a\r\nb".to_vec()
                ],
                vec![b"PING".to_vec()]
            ])
        );
        assert_eq!(split_commands(b"*1\r\n$4\r\nPIN"), None);
        assert_eq!(split_commands(b"+OK\r\n"), None);
        assert_eq!(split_commands(b""), Some(vec![]));
    }

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode(&[b"HGET", b"k", b""], &mut out);
        assert_eq!(out, b"*3\r\n$4\r\nHGET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn reads_urls() {
        let t = Target::parse("redis://app:s3cret@127.0.0.1:6380/3").unwrap();
        assert_eq!(t.addr, Addr::Tcp("127.0.0.1".into(), 6380));
        assert_eq!(t.username.as_deref(), Some("app"));
        assert_eq!(t.password.as_deref(), Some("s3cret"));
        assert_eq!(t.db, 3);
        let t = Target::parse("redis+unix:///run/r.sock?db=2").unwrap();
        assert_eq!(t.addr, Addr::Unix("/run/r.sock".into()));
        assert_eq!(t.db, 2);
        assert!(Target::parse("http://x").is_err());
    }

    /// A peer that answers each connection by running `script` on it.
    fn peer(script: impl Fn(TcpStream) + Send + 'static) -> Target {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                script(s);
            }
        });
        Target::parse(&format!("redis://127.0.0.1:{port}")).unwrap()
    }

    fn drip(mut s: TcpStream, bytes: &[u8], every: Duration) {
        for b in bytes {
            if s.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(every);
        }
    }

    #[test]
    fn a_dripped_reply_ends_at_the_deadline_not_per_read() {
        let t = peer(|s| {
            drip(
                s,
                b"$40\r\n0123456789012345678901234567890123456789\r\n",
                Duration::from_millis(10),
            )
        });
        let start = Instant::now();
        let mut c = Conn::connect(&t, start + Duration::from_millis(100)).unwrap();
        let e = c
            .read_reply(&BIG, start + Duration::from_millis(100))
            .unwrap_err();
        let took = start.elapsed();
        assert_eq!(e.kind, ErrorKind::TimedOut);
        assert!(e.partial, "bytes of the reply had arrived");
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_millis(250),
            "{took:?}"
        );
    }

    #[test]
    fn a_silent_peer_times_out_with_nothing_partial() {
        let t = peer(|s| {
            thread::sleep(Duration::from_millis(300));
            drop(s)
        });
        let deadline = Instant::now() + Duration::from_millis(50);
        let mut c = Conn::connect(&t, deadline).unwrap();
        let e = c.read_reply(&BIG, deadline).unwrap_err();
        assert_eq!((e.kind, e.partial), (ErrorKind::TimedOut, false));
    }

    #[test]
    fn a_dripped_login_ends_within_the_connect_deadline() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                drip(s, b"+OK\r\n+OK\r\n", Duration::from_millis(30));
            }
        });
        let t = Target::parse(&format!("redis://:pw@127.0.0.1:{port}/2")).unwrap();
        let start = Instant::now();
        let e = Conn::connect(&t, start + Duration::from_millis(100))
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::Connect);
        assert!(
            start.elapsed() < Duration::from_millis(250),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn logs_in_and_reports_a_refused_login() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        thread::spawn(move || {
            for (i, s) in l.incoming().flatten().enumerate() {
                let mut s = s;
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf);
                let reply: &[u8] = if i == 0 {
                    b"+OK\r\n+OK\r\n"
                } else {
                    b"-WRONGPASS no\r\n-NOAUTH\r\n"
                };
                let _ = s.write_all(reply);
                thread::sleep(Duration::from_millis(50));
            }
        });
        let t = Target::parse(&format!("redis://u:pw@127.0.0.1:{port}/2")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        assert!(Conn::connect(&t, deadline).is_ok());
        let e = Conn::connect(&t, deadline).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Connect);
        assert_eq!(e.detail, "login refused: WRONGPASS no");
    }

    #[test]
    fn a_huge_announced_bulk_is_refused_without_reading_it() {
        let t = peer(|mut s| {
            let _ = s.write_all(b"$1099511627776\r\n");
            let zeros = vec![0u8; 1 << 20];
            let mut sent = 0usize;
            while sent < 64 << 20 && s.write_all(&zeros).is_ok() {
                sent += zeros.len();
            }
        });
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut c = Conn::connect(&t, deadline).unwrap();
        let e = c.read_reply(&BIG, deadline).unwrap_err();
        assert_eq!(e.kind, ErrorKind::TooLarge);
        assert!(c.buf.capacity() <= 16 * READ_CHUNK, "{}", c.buf.capacity());
    }

    #[test]
    fn a_socket_timeout_is_set_again_only_when_it_no_longer_fits_the_deadline() {
        let s = Duration::from_millis;
        assert!(!timeout_serves(None, s(100)));
        assert!(timeout_serves(Some(s(100)), s(100)));
        assert!(timeout_serves(Some(s(100)), s(180)));
        // Longer than what is left: a read could outlive the deadline.
        assert!(!timeout_serves(Some(s(100)), s(99)));
        // Far shorter: a read would wake up early again and again.
        assert!(!timeout_serves(Some(s(100)), s(201)));
    }

    #[test]
    fn a_timeout_keeps_what_arrived_for_the_next_read() {
        let t = peer(|mut s| {
            let _ = s.write_all(b"*3\r\n$7\r\nmessage\r\n");
            thread::sleep(Duration::from_millis(80));
            let _ = s.write_all(b"$1\r\nc\r\n$3\r\nkey\r\n+PONG\r\n");
            thread::sleep(Duration::from_millis(200));
        });
        let mut c = Conn::connect(&t, Instant::now() + Duration::from_secs(1)).unwrap();
        let e = c
            .read_reply(&BIG, Instant::now() + Duration::from_millis(30))
            .unwrap_err();
        assert_eq!((e.kind, e.partial), (ErrorKind::TimedOut, true));
        let r = c
            .read_reply(&BIG, Instant::now() + Duration::from_secs(1))
            .unwrap();
        assert_eq!(
            r,
            Reply::Array(vec![
                Reply::Bulk(b"message".to_vec()),
                Reply::Bulk(b"c".to_vec()),
                Reply::Bulk(b"key".to_vec())
            ])
        );
        assert_eq!(
            c.read_reply(&BIG, Instant::now() + Duration::from_secs(1)),
            Ok(Reply::Status("PONG".into()))
        );
        let e = c
            .read_reply(&BIG, Instant::now() + Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Io, "closed: {e:?}");
    }
}
