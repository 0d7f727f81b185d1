//! dynpagectl's connection to a Redis Cluster or to a Redis behind sentinels, with the same
//! URLs as `dynpage_redis`. A cluster connection routes each command of a pipeline to the node
//! owning its key (one pipeline per node), follows `MOVED` and `ASK`, and runs `SCAN` over
//! every primary in turn (the cursor carries which one), so every command works unchanged.
//! PUBLISH goes to any node: a cluster carries it to all of them.
//!
//! The `redis` crate's own cluster connection sends a whole pipeline to the node of its first
//! command and has no cluster-wide SCAN, which dynpagectl's pipelines (a document, its pin and
//! its gray share: three slots) and `check` need.

use std::collections::HashMap;
use std::time::Duration;

use dynpage_core::resp::{split_commands, Reply};
use dynpage_core::store;
use dynpage_core::topology::{
    key_slot, parse_master_addr, redirect, ClusterUrl, Node, Redirect, SentinelUrl, SlotMap,
    MAX_REDIRECTS,
};
use redis::{ConnectionLike, RedisError, RedisResult, Value};

fn error(detail: String) -> RedisError {
    RedisError::from((redis::ErrorKind::Io, "cluster", detail))
}

/// A `redis` crate value as the core's reply type (for the core's parsers).
fn reply(v: &Value) -> Reply {
    match v {
        Value::Nil => Reply::Nil,
        Value::Int(n) => Reply::Int(*n),
        Value::BulkString(b) => Reply::Bulk(b.clone()),
        Value::SimpleString(s) => Reply::Status(s.clone()),
        Value::Okay => Reply::Status("OK".into()),
        Value::Array(items) | Value::Set(items) => Reply::Array(items.iter().map(reply).collect()),
        Value::ServerError(e) => {
            Reply::Error(format!("{} {}", e.code(), e.details().unwrap_or("")))
        }
        Value::Map(kv) => Reply::Array(kv.iter().flat_map(|(k, v)| [reply(k), reply(v)]).collect()),
        other => Reply::Status(format!("{other:?}")),
    }
}

fn redis_url(
    host: &str,
    port: u16,
    user: &Option<String>,
    pass: &Option<String>,
    db: i64,
) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    let login = match (user, pass) {
        (Some(u), Some(p)) => format!("{}:{}@", enc(u), enc(p)),
        (None, Some(p)) => format!(":{}@", enc(p)),
        (Some(u), None) => format!("{}@", enc(u)),
        (None, None) => String::new(),
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    format!("redis://{login}{host}:{port}/{db}")
}

/// Asks the sentinels for the master and connects to it.
pub fn connect_sentinel(url: &SentinelUrl, timeout: Duration) -> RedisResult<redis::Connection> {
    let mut last = String::from("no sentinel");
    for s in &url.sentinels {
        let asked = store::connect(&redis_url(&s.host, s.port, &None, &None, 0), timeout).and_then(
            |mut con| {
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&url.master)
                    .query::<Value>(&mut con)
            },
        );
        match asked.map(|v| parse_master_addr(&reply(&v))) {
            Ok(Ok(Some(node))) => {
                let master = redis_url(&node.host, node.port, &url.username, &url.password, url.db);
                return store::connect(&master, timeout);
            }
            Ok(Ok(None)) => last = format!("sentinel {s} does not know master \"{}\"", url.master),
            Ok(Err(e)) => last = format!("sentinel {s}: {e}"),
            Err(e) => last = format!("sentinel {s}: {e}"),
        }
    }
    Err(error(format!(
        "no sentinel gave the address of \"{}\" ({last})",
        url.master
    )))
}

pub struct ClusterCon {
    url: ClusterUrl,
    map: SlotMap,
    conns: HashMap<Node, redis::Connection>,
    timeout: Duration,
}

/// Commands that name no key (they go to any node; SCAN to each primary in turn).
fn keyless(name: &[u8]) -> bool {
    [
        &b"PUBLISH"[..],
        b"PING",
        b"SCAN",
        b"INFO",
        b"CLUSTER",
        b"SELECT",
        b"AUTH",
        b"HELLO",
        b"CLIENT",
        b"MULTI",
        b"EXEC",
    ]
    .iter()
    .any(|k| name.eq_ignore_ascii_case(k))
}

/// Bits of a cluster SCAN cursor that hold the node's own cursor; the bits above say which
/// primary.
const CURSOR_BITS: u32 = 48;

impl ClusterCon {
    pub fn connect(url: &ClusterUrl, timeout: Duration) -> RedisResult<ClusterCon> {
        let mut con = ClusterCon {
            url: url.clone(),
            map: SlotMap::new(Vec::new()),
            conns: HashMap::new(),
            timeout,
        };
        con.load_map()?;
        Ok(con)
    }

    fn load_map(&mut self) -> RedisResult<()> {
        let mut candidates = self.map.nodes();
        for s in &self.url.seeds {
            if !candidates.contains(s) {
                candidates.push(s.clone());
            }
        }
        let mut last = String::from("no node");
        for node in candidates {
            let got = self
                .node(&node)
                .and_then(|c| redis::cmd("CLUSTER").arg("SLOTS").query::<Value>(c));
            match got.map(|v| SlotMap::parse(&reply(&v), &node.host)) {
                Ok(Ok(map)) => {
                    self.map = map;
                    return Ok(());
                }
                Ok(Err(e)) => last = format!("node {node}: {e}"),
                Err(e) => {
                    self.conns.remove(&node);
                    last = format!("node {node}: {e}");
                }
            }
        }
        Err(error(format!(
            "no node of the cluster gave its slot map ({last})"
        )))
    }

    fn node(&mut self, node: &Node) -> RedisResult<&mut redis::Connection> {
        if !self.conns.contains_key(node) {
            let url = redis_url(
                &node.host,
                node.port,
                &self.url.username,
                &self.url.password,
                0,
            );
            let con = store::connect(&url, self.timeout)?;
            self.conns.insert(node.clone(), con);
        }
        self.conns
            .get_mut(node)
            .ok_or_else(|| error("no connection".into()))
    }

    fn node_of(&self, args: &[Vec<u8>]) -> Result<Node, RedisError> {
        let any = || {
            self.map
                .primaries()
                .into_iter()
                .next()
                .ok_or_else(|| error("the cluster has no primary".into()))
        };
        match (args.first(), args.get(1)) {
            (Some(name), Some(key)) if !keyless(name) => self
                .map
                .primary(key_slot(key))
                .cloned()
                .ok_or_else(|| error(format!("no node serves slot {}", key_slot(key)))),
            _ => any(),
        }
    }

    fn packed(cmds: &[&Vec<Vec<u8>>]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in cmds {
            let args: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
            dynpage_core::resp::encode(&args, &mut out);
        }
        out
    }

    /// One SCAN over the primaries: the cursor's top bits say which.
    fn scan(&mut self, args: &[Vec<u8>]) -> RedisResult<Value> {
        let cursor: u64 = args
            .get(1)
            .and_then(|c| std::str::from_utf8(c).ok())
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| error("SCAN needs a cursor".into()))?;
        let mut primaries = self.map.primaries();
        primaries.sort();
        let at = usize::try_from(cursor >> CURSOR_BITS).unwrap_or(usize::MAX);
        let Some(node) = primaries.get(at).cloned() else {
            return Ok(Value::Array(vec![
                Value::BulkString(b"0".to_vec()),
                Value::Array(Vec::new()),
            ]));
        };
        let mut own = args.to_vec();
        own[1] = (cursor & ((1 << CURSOR_BITS) - 1)).to_string().into_bytes();
        let packed = Self::packed(&[&own]);
        let v = self.node(&node)?.req_packed_command(&packed)?;
        let Value::Array(mut parts) = v else {
            return Ok(v);
        };
        let next: u64 = match parts.first() {
            Some(Value::BulkString(b)) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            _ => 0,
        };
        if next >> CURSOR_BITS != 0 {
            return Err(error("a SCAN cursor too large to carry the node".into()));
        }
        let at = at as u64;
        let next = match next {
            0 if (at as usize) + 1 < primaries.len() => (at + 1) << CURSOR_BITS,
            0 => 0,
            n => (at << CURSOR_BITS) | n,
        };
        if let Some(first) = parts.first_mut() {
            *first = Value::BulkString(next.to_string().into_bytes());
        }
        Ok(Value::Array(parts))
    }

    /// Runs commands, each on the node owning its key (one pipeline per node), and follows
    /// redirects; the replies in order.
    fn run(&mut self, cmds: &[Vec<Vec<u8>>]) -> RedisResult<Vec<Value>> {
        if let [one] = cmds {
            if one.first().is_some_and(|n| n.eq_ignore_ascii_case(b"SCAN")) {
                return self.scan(one).map(|v| vec![v]);
            }
        }
        let mut groups: Vec<(Node, Vec<usize>)> = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            let node = self.node_of(c)?;
            match groups.iter_mut().find(|(n, _)| *n == node) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((node, vec![i])),
            }
        }
        let mut out: Vec<Value> = vec![Value::Nil; cmds.len()];
        for (node, idx) in groups {
            let packed = Self::packed(&idx.iter().map(|&i| &cmds[i]).collect::<Vec<_>>());
            let con = self.node(&node)?;
            let replies = match con.req_packed_commands(&packed, 0, idx.len()) {
                Ok(r) => r,
                Err(e) => {
                    self.conns.remove(&node);
                    return Err(e);
                }
            };
            for (i, v) in idx.into_iter().zip(replies) {
                out[i] = v;
            }
        }
        let mut reload = false;
        for (i, v) in out.iter_mut().enumerate() {
            let mut hops = 0;
            while let Value::ServerError(e) = &*v {
                let Some(r) = redirect(&format!("{} {}", e.code(), e.details().unwrap_or("")))
                else {
                    break;
                };
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Err(error(format!(
                        "more than {MAX_REDIRECTS} redirects for one command"
                    )));
                }
                let mut packed = Vec::new();
                let (node, asking) = match r {
                    Redirect::Moved(slot, node) => {
                        self.map.moved(slot, node.clone());
                        reload = true;
                        (node, false)
                    }
                    Redirect::Ask(_, node) => (node, true),
                };
                if asking {
                    dynpage_core::resp::encode(&[b"ASKING"], &mut packed);
                }
                packed.extend(Self::packed(&[&cmds[i]]));
                let n = 1 + usize::from(asking);
                let mut replies = self.node(&node)?.req_packed_commands(&packed, 0, n)?;
                *v = replies.pop().unwrap_or(Value::Nil);
            }
        }
        if reload {
            let _ = self.load_map();
        }
        Ok(out)
    }
}

impl ConnectionLike for ClusterCon {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        let cmds = split_commands(cmd).ok_or_else(|| error("a command that is not RESP".into()))?;
        let v = self.run(&cmds)?.pop().unwrap_or(Value::Nil);
        match v {
            Value::ServerError(e) => Err(e.into()),
            v => Ok(v),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let cmds = split_commands(cmd).ok_or_else(|| error("a command that is not RESP".into()))?;
        let out = self.run(&cmds)?;
        Ok(out.into_iter().skip(offset).take(count).collect())
    }

    fn get_db(&self) -> i64 {
        0
    }

    fn check_connection(&mut self) -> bool {
        self.conns.values_mut().all(|c| c.check_connection())
    }

    fn is_open(&self) -> bool {
        self.conns.values().all(|c| c.is_open())
    }
}

/// The master the sentinels name. A command refused with `READONLY` (the node was demoted by a
/// failover) or a connection lost asks the sentinels again and runs once more on the master
/// they name then (a pipeline refused with `READONLY` wrote nothing: a replica refuses every
/// write of it).
pub struct SentinelCon {
    url: SentinelUrl,
    con: redis::Connection,
    timeout: Duration,
}

impl SentinelCon {
    pub fn connect(url: &SentinelUrl, timeout: Duration) -> RedisResult<SentinelCon> {
        Ok(SentinelCon {
            url: url.clone(),
            con: connect_sentinel(url, timeout)?,
            timeout,
        })
    }

    /// Runs `f`, and once more on the master the sentinels name now if it failed in a way a
    /// failover explains.
    fn again<T>(
        &mut self,
        f: impl Fn(&mut redis::Connection) -> RedisResult<T>,
        failed_over: impl Fn(&RedisResult<T>) -> bool,
    ) -> RedisResult<T> {
        let first = f(&mut self.con);
        if !failed_over(&first) {
            return first;
        }
        self.con = connect_sentinel(&self.url, self.timeout)?;
        f(&mut self.con)
    }
}

fn readonly_or_lost<T>(r: &RedisResult<T>) -> bool {
    match r {
        Err(e) => e.code() == Some("READONLY") || e.is_io_error() || e.is_connection_dropped(),
        Ok(_) => false,
    }
}

fn any_readonly(r: &RedisResult<Vec<Value>>) -> bool {
    match r {
        Ok(values) => values
            .iter()
            .any(|v| matches!(v, Value::ServerError(e) if e.code() == "READONLY")),
        err => readonly_or_lost(err),
    }
}

impl ConnectionLike for SentinelCon {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.again(|c| c.req_packed_command(cmd), readonly_or_lost)
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        self.again(|c| c.req_packed_commands(cmd, offset, count), any_readonly)
    }

    fn get_db(&self) -> i64 {
        self.con.get_db()
    }

    fn check_connection(&mut self) -> bool {
        self.con.check_connection()
    }

    fn is_open(&self) -> bool {
        self.con.is_open()
    }
}

/// dynpagectl's connection: one Redis, the master sentinels name, or a cluster.
pub enum Con {
    One(redis::Connection),
    Sentinel(SentinelCon),
    Cluster(ClusterCon),
}

impl ConnectionLike for Con {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        match self {
            Con::One(c) => c.req_packed_command(cmd),
            Con::Sentinel(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands(
        &mut self,
        cmd: &[u8],
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        match self {
            Con::One(c) => c.req_packed_commands(cmd, offset, count),
            Con::Sentinel(c) => c.req_packed_commands(cmd, offset, count),
            Con::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::One(c) => c.get_db(),
            Con::Sentinel(c) => c.get_db(),
            Con::Cluster(c) => c.get_db(),
        }
    }

    fn check_connection(&mut self) -> bool {
        match self {
            Con::One(c) => c.check_connection(),
            Con::Sentinel(c) => c.check_connection(),
            Con::Cluster(c) => c.check_connection(),
        }
    }

    fn is_open(&self) -> bool {
        match self {
            Con::One(c) => c.is_open(),
            Con::Sentinel(c) => c.is_open(),
            Con::Cluster(c) => c.is_open(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_node_urls() {
        assert_eq!(
            redis_url(
                "127.0.0.1",
                7000,
                &Some("app".into()),
                &Some("p@ss word".into()),
                0
            ),
            "redis://app:p%40ss%20word@127.0.0.1:7000/0"
        );
        assert_eq!(
            redis_url("::1", 7000, &None, &None, 2),
            "redis://[::1]:7000/2"
        );
    }

    #[test]
    fn knows_keyless_commands() {
        assert!(keyless(b"publish") && keyless(b"SCAN"));
        assert!(!keyless(b"HSET") && !keyless(b"GET"));
    }
}
