//! The module's cluster client: a batch's commands grouped by node, one pipeline per node,
//! all written before any reply is read (so they are in flight together), every reply read by
//! the same deadline as a standalone Redis's. `MOVED` and `ASK` are followed (a few times per
//! command at most), and the slot map is read again after a `MOVED`, a `CLUSTERDOWN` or a
//! lost node, and when it is old ([`MAP_MAX_AGE`]): replicas added to the cluster, or listed
//! by Redis only once their first sync is done, are read from without waiting for an error.
//!
//! The `redis` crate's cluster client gives each read its whole timeout and retries on its
//! own schedule (sleeping between attempts), so it cannot keep a fetch within
//! `dynpage_redis_timeout`; this one reads with [`crate::resp`], where every read gets what is
//! left of one deadline.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::slot::key_slot;
use super::slot_map::{group, redirect, Node, Redirect, SlotMap};
use super::url::ClusterUrl;
use crate::resp::{
    encode, time_left, Commands, Conn, Error, ErrorKind, Limits, Pipe, Reply, Target,
};

/// Redirects followed for one command before it fails: a slot map that changes on every
/// request ends there, not in a loop.
pub const MAX_REDIRECTS: usize = 5;

/// A slot map older than this is read again before the next batch.
pub const MAP_MAX_AGE: Duration = Duration::from_secs(10);

/// ... and this, when `read_from=replicas` and some range has no replica yet (Redis lists a
/// replica only once its first sync is done).
pub const MAP_MAX_AGE_WITHOUT_REPLICA: Duration = Duration::from_secs(1);

/// What `CLUSTER SLOTS` may hold: a range per slot at worst, a few nodes each.
const SLOTS_LIMITS: Limits = Limits {
    max_bulk: 1024,
    max_elements: 1_000_000,
};

struct NodeConn {
    con: Conn,
    /// Replies sent for and not yet read: a connection that owes any once a batch is over is
    /// out of step, and dropped.
    owed: usize,
}

/// Where the reply of one command of the batch is to be read.
enum Pending {
    At(Node),
    /// Its node could not be reached or written to.
    Failed(Error),
}

pub struct Cluster {
    url: ClusterUrl,
    map: Option<SlotMap>,
    /// When the map was last read, or last tried to be read because it was old.
    map_read_at: Instant,
    /// Read the map again before the next batch.
    refresh: bool,
    conns: HashMap<Node, NodeConn>,
    /// The batch being read: its commands and, in order, where each reply is.
    cmds: Commands,
    queue: VecDeque<(usize, Pending)>,
    /// Which replica of a slot this client reads from (`read_from=replicas`).
    pick: usize,
}

fn node_error(node: &Node, e: Error) -> Error {
    Error {
        detail: format!("node {node}: {}", e.detail),
        ..e
    }
}

impl Cluster {
    /// `pick` spreads clients over the replicas of each slot.
    pub fn new(url: ClusterUrl, pick: usize) -> Cluster {
        Cluster {
            url,
            map: None,
            map_read_at: Instant::now(),
            refresh: true,
            conns: HashMap::new(),
            cmds: Commands::default(),
            queue: VecDeque::new(),
            pick,
        }
    }

    fn target(&self, node: &Node) -> Target {
        Target::tcp(
            &node.host,
            node.port,
            self.url.username.clone(),
            self.url.password.clone(),
            0,
        )
    }

    /// Whether the map is old enough to be read again (an attempt that fails is not
    /// repeated before the same age again; the old map goes on serving).
    fn map_is_old(&self, now: Instant) -> bool {
        let Some(map) = &self.map else {
            return false;
        };
        let max_age = if self.url.replicas && map.lacks_replicas() {
            MAP_MAX_AGE_WITHOUT_REPLICA
        } else {
            MAP_MAX_AGE
        };
        now.saturating_duration_since(self.map_read_at) >= max_age
    }

    /// Whether connections are kept from before (they may have been closed since).
    pub fn has_connections(&self) -> bool {
        !self.conns.is_empty()
    }

    /// Drops the connections that still owe replies (a batch that ended early).
    pub fn drop_out_of_step(&mut self) {
        self.conns.retain(|_, c| c.owed == 0);
        self.queue.clear();
    }

    /// Drops every connection (the cluster failed as a whole), and reads the map again next.
    pub fn reset(&mut self) {
        self.conns.clear();
        self.queue.clear();
        self.refresh = true;
    }

    /// A connection to `node` that owes nothing, opened if needed (`READONLY` on it when it
    /// is read from as a replica).
    fn conn(
        &mut self,
        node: &Node,
        readonly: bool,
        deadline: Instant,
    ) -> Result<&mut NodeConn, Error> {
        if self.conns.get(node).is_some_and(|c| c.owed > 0) {
            self.conns.remove(node);
        }
        if !self.conns.contains_key(node) {
            let mut con = Conn::connect(&self.target(node), deadline)?;
            if readonly {
                let mut cmd = Vec::new();
                encode(&[b"READONLY"], &mut cmd);
                con.send(&cmd, deadline)?;
                match con.read_reply(&Limits::SMALL, deadline) {
                    Ok(Reply::Status(_)) => {}
                    Ok(other) => {
                        return Err(Error::server(format!(
                            "answered READONLY with {}",
                            other.describe()
                        )))
                    }
                    Err(e) => return Err(e),
                }
            }
            self.conns.insert(node.clone(), NodeConn { con, owed: 0 });
        }
        self.conns
            .get_mut(node)
            .ok_or_else(|| Error::server("internal: no connection"))
    }

    /// Reads the slot map from the first node that answers: nodes already connected, then
    /// those of the map, then the seeds. Each is given half of what is left of the time (the
    /// last one all of it), so one node that does not answer cannot take the whole deadline.
    pub fn load_map(&mut self, deadline: Instant) -> Result<(), Error> {
        self.load_map_avoiding(&[], deadline)
    }

    /// As [`Cluster::load_map`], preferring a map in which none of `dead` (nodes that could
    /// not be reached) is a primary: right after a failover, the nodes that have not heard of
    /// it yet still name the old primary, the promoted replica and those that have heard do
    /// not. The first map read is used when no node knows better.
    fn load_map_avoiding(&mut self, dead: &[Node], deadline: Instant) -> Result<(), Error> {
        let mut candidates: Vec<Node> = self
            .conns
            .iter()
            .filter(|(n, c)| c.owed == 0 && !dead.contains(n))
            .map(|(n, _)| n.clone())
            .collect();
        candidates.sort();
        for n in self.known_nodes() {
            if !candidates.contains(&n) && !dead.contains(&n) {
                candidates.push(n);
            }
        }
        let mut last: Option<Error> = None;
        let mut fallback: Option<SlotMap> = None;
        let count = candidates.len();
        for (i, node) in candidates.iter().enumerate() {
            let Ok(left) = time_left(deadline) else {
                break;
            };
            let until = if i + 1 == count {
                deadline
            } else {
                Instant::now() + (left / 2).max(Duration::from_millis(1))
            };
            match self.ask_slots(node, until) {
                Ok(map) => {
                    let primaries = map.primaries();
                    if dead.iter().any(|d| primaries.contains(d)) {
                        fallback.get_or_insert(map);
                        continue;
                    }
                    self.use_map(map);
                    return Ok(());
                }
                Err(e) => {
                    self.conns.remove(node);
                    last = Some(node_error(node, e));
                }
            }
        }
        if let Some(map) = fallback {
            self.use_map(map);
            return Ok(());
        }
        let last = last.map_or_else(|| "no node known".to_string(), |e| e.detail);
        Err(Error {
            kind: ErrorKind::Connect,
            detail: format!("no node of the cluster gave its slot map ({count} asked; {last})"),
            partial: false,
        })
    }

    fn use_map(&mut self, map: SlotMap) {
        let nodes = map.nodes();
        self.conns.retain(|n, _| nodes.contains(n));
        self.map = Some(map);
        self.map_read_at = Instant::now();
        self.refresh = false;
    }

    fn ask_slots(&mut self, node: &Node, deadline: Instant) -> Result<SlotMap, Error> {
        let c = self.conn(node, false, deadline)?;
        let mut cmd = Vec::new();
        encode(&[b"CLUSTER", b"SLOTS"], &mut cmd);
        c.con.send(&cmd, deadline)?;
        match c.con.read_reply(&SLOTS_LIMITS, deadline)? {
            Reply::Error(e) => Err(Error::server(format!("answered CLUSTER SLOTS: {e}"))),
            r => SlotMap::parse(&r, &node.host).map_err(Error::server),
        }
    }

    /// The nodes of the map (primaries first), then the seeds not among them.
    pub fn known_nodes(&self) -> Vec<Node> {
        let mut out = self.map.as_ref().map(SlotMap::nodes).unwrap_or_default();
        for s in &self.url.seeds {
            if !out.contains(s) {
                out.push(s.clone());
            }
        }
        out
    }

    /// Where to subscribe to events (any node carries every PUBLISH of the cluster): the map
    /// is read again first if it can be, since a subscription is lost when its node is (a
    /// failover), then its nodes, primaries first, then the seeds.
    pub fn subscribe_targets(&mut self, deadline: Instant) -> Vec<Target> {
        let _ = self.load_map(deadline);
        // Subscriptions use connections of their own.
        self.conns.clear();
        self.known_nodes().iter().map(|n| self.target(n)).collect()
    }

    /// Follows the redirects of command `i` from `first`, on connections that owe nothing
    /// (a node's batch connection still owing replies is not used: a temporary one is).
    fn follow(
        &mut self,
        i: usize,
        first: Redirect,
        limits: &Limits,
        deadline: Instant,
    ) -> Result<Reply, Error> {
        let mut redirect_to = first;
        for _ in 0..MAX_REDIRECTS {
            let (node, asking) = match redirect_to {
                Redirect::Moved(slot, node) => {
                    if let Some(map) = self.map.as_mut() {
                        map.moved(slot, node.clone());
                    }
                    self.refresh = true;
                    (node, false)
                }
                Redirect::Ask(_, node) => (node, true),
            };
            let mut packed = Vec::new();
            if asking {
                encode(&[b"ASKING"], &mut packed);
            }
            packed.extend_from_slice(self.cmds.command(i));
            let busy = self.conns.get(&node).is_some_and(|c| c.owed > 0);
            let mut temp;
            let con: &mut Conn = if busy {
                temp = Conn::connect(&self.target(&node), deadline)
                    .map_err(|e| node_error(&node, e))?;
                &mut temp
            } else {
                match self.conn(&node, false, deadline) {
                    Ok(c) => &mut c.con,
                    Err(e) => {
                        self.refresh = true;
                        return Err(node_error(&node, e));
                    }
                }
            };
            let result = (|| {
                con.send(&packed, deadline)?;
                if asking {
                    con.read_reply(&Limits::SMALL, deadline)?;
                }
                con.read_reply(limits, deadline)
            })();
            let reply = match result {
                Ok(r) => r,
                Err(e) => {
                    if !busy {
                        self.conns.remove(&node);
                    }
                    return Err(node_error(&node, e));
                }
            };
            match &reply {
                Reply::Error(e) => match redirect(e) {
                    Some(r) => redirect_to = r,
                    None => return Ok(reply),
                },
                _ => return Ok(reply),
            }
        }
        self.refresh = true;
        Err(Error::server(format!(
            "more than {MAX_REDIRECTS} redirects (MOVED, ASK) for one key: the slot map keeps \
             changing"
        )))
    }
}

impl Pipe for Cluster {
    fn send_commands(&mut self, cmds: &Commands, deadline: Instant) -> Result<(), Error> {
        self.drop_out_of_step();
        self.cmds = cmds.clone();
        let slots: Vec<Option<u16>> = (0..cmds.len()).map(|i| cmds.key(i).map(key_slot)).collect();
        let mut dead: Vec<Node> = Vec::new();
        // A node that cannot be reached may have failed over: the map is read again (from a
        // node that knows of the failover, if one does) and the batch grouped again, once.
        // A map read again only for its age that cannot be read keeps serving, and is tried
        // again at the same age, not every batch (`refresh` is left as it was).
        let now = Instant::now();
        let mut aged = self.map_is_old(now);
        if aged {
            self.map_read_at = now;
        }
        let (groups, failed) = loop {
            if self.refresh || aged || self.map.is_none() {
                aged = false;
                if let Err(e) = self.load_map_avoiding(&dead, deadline) {
                    // An old map may still be right about most slots; without one, nothing
                    // can be asked.
                    if self.map.is_none() {
                        return Err(e);
                    }
                }
            }
            let Some(map) = self.map.as_ref() else {
                return Err(Error::server("internal: no slot map"));
            };
            let groups = group(map, &slots, self.url.replicas, self.pick, &self.url.seeds);
            let mut failed: Vec<(Node, Error)> = Vec::new();
            for (node, _) in &groups.nodes {
                let readonly = self.url.replicas && map_is_replica(self.map.as_ref(), node);
                if let Err(e) = self.conn(node, readonly, deadline) {
                    self.refresh = true;
                    failed.push((node.clone(), node_error(node, e)));
                }
            }
            let fresh = failed.iter().any(|(n, _)| !dead.contains(n));
            if failed.is_empty() || !fresh || time_left(deadline).is_err() || !dead.is_empty() {
                break (groups, failed);
            }
            dead.extend(failed.into_iter().map(|(n, _)| n));
        };
        let mut at: Vec<Option<Pending>> = (0..cmds.len()).map(|_| None).collect();
        for i in groups.unserved {
            self.refresh = true;
            at[i] = Some(Pending::Failed(Error::server(format!(
                "answered an error: CLUSTERDOWN no node serves slot {} (in the map read last)",
                slots[i].unwrap_or(0)
            ))));
        }
        for (node, idx) in groups.nodes {
            let mut packed = Vec::new();
            for &i in &idx {
                packed.extend_from_slice(cmds.command(i));
            }
            let sent = match failed.iter().find(|(n, _)| *n == node) {
                Some((_, e)) => Err(e.clone()),
                None => match self.conns.get_mut(&node) {
                    Some(c) => match c.con.send(&packed, deadline) {
                        Ok(()) => {
                            c.owed += idx.len();
                            Ok(())
                        }
                        Err(e) => Err(node_error(&node, e)),
                    },
                    None => Err(Error::server("internal: no connection")),
                },
            };
            if let Err(e) = sent {
                self.conns.remove(&node);
                self.refresh = true;
                for &i in &idx {
                    at[i] = Some(Pending::Failed(e.clone()));
                }
                continue;
            }
            for &i in &idx {
                at[i] = Some(Pending::At(node.clone()));
            }
        }
        self.queue = at
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    i,
                    p.unwrap_or_else(|| Pending::Failed(Error::server("internal: not sent"))),
                )
            })
            .collect();
        // Every node failed: the cluster's failure, as a standalone Redis's connect.
        if self
            .queue
            .iter()
            .all(|(_, p)| matches!(p, Pending::Failed(_)))
        {
            if let Some((_, Pending::Failed(e))) = self.queue.front() {
                let e = e.clone();
                self.queue.clear();
                return Err(e);
            }
        }
        Ok(())
    }

    fn next_reply(&mut self, limits: &Limits, deadline: Instant) -> Result<Reply, Error> {
        let Some((i, pending)) = self.queue.front() else {
            return Err(Error::server(
                "internal: a reply read that was not asked for",
            ));
        };
        let i = *i;
        let node = match pending {
            Pending::Failed(e) => {
                let e = e.clone();
                self.queue.pop_front();
                return Err(e);
            }
            Pending::At(node) => node.clone(),
        };
        let Some(c) = self.conns.get_mut(&node) else {
            self.queue.pop_front();
            return Err(Error::server("internal: a connection lost mid-batch"));
        };
        // On a timeout with nothing of the reply read, it stays next (the caller may read on).
        let reply = match c.con.read_reply(limits, deadline) {
            Ok(r) => {
                c.owed = c.owed.saturating_sub(1);
                self.queue.pop_front();
                r
            }
            Err(e) => {
                if !e.is_timeout() || e.partial {
                    self.queue.pop_front();
                }
                if matches!(e.kind, ErrorKind::Io | ErrorKind::Protocol) {
                    self.conns.remove(&node);
                    self.refresh = true;
                }
                return Err(node_error(&node, e));
            }
        };
        match &reply {
            Reply::Error(e) => {
                if let Some(r) = redirect(e) {
                    return self.follow(i, r, limits, deadline);
                }
                if e.starts_with("CLUSTERDOWN") || e.starts_with("TRYAGAIN") {
                    self.refresh = true;
                }
                Ok(reply)
            }
            _ => Ok(reply),
        }
    }
}

fn map_is_replica(map: Option<&SlotMap>, node: &Node) -> bool {
    map.is_some_and(|m| !m.is_primary(node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    /// A fake cluster node: answers `CLUSTER SLOTS` with `slots` (its own port substituted for
    /// `{me}`), `READONLY`/`ASKING` with +OK, and any other command with `answer(cmd, key)`.
    type Answer = Arc<dyn Fn(&str, &str) -> String + Send + Sync>;

    struct Fake {
        port: u16,
        seen: Arc<Mutex<Vec<String>>>,
    }

    fn args_of(buf: &[u8]) -> (Vec<Vec<String>>, usize) {
        // Parses complete RESP arrays of bulk strings from `buf`.
        let mut cmds = Vec::new();
        let mut at = 0;
        'outer: loop {
            let start = at;
            let text = &buf[at..];
            let Some(nl) = text.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let n: usize = std::str::from_utf8(&text[1..nl]).unwrap().parse().unwrap();
            at += nl + 2;
            let mut args = Vec::new();
            for _ in 0..n {
                let text = &buf[at..];
                let Some(nl) = text.windows(2).position(|w| w == b"\r\n") else {
                    at = start;
                    break 'outer;
                };
                let len: usize = std::str::from_utf8(&text[1..nl]).unwrap().parse().unwrap();
                if text.len() < nl + 2 + len + 2 {
                    at = start;
                    break 'outer;
                }
                args.push(String::from_utf8_lossy(&text[nl + 2..nl + 2 + len]).into_owned());
                at += nl + 2 + len + 2;
            }
            cmds.push(args);
        }
        (cmds, at)
    }

    fn fake(slots: Arc<Mutex<String>>, answer: Answer) -> Fake {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let (slots, answer, seen) = (slots.clone(), answer.clone(), seen2.clone());
                std::thread::spawn(move || serve(s, port, slots, answer, seen));
            }
        });
        Fake { port, seen }
    }

    fn serve(
        mut s: TcpStream,
        port: u16,
        slots: Arc<Mutex<String>>,
        answer: Answer,
        seen: Arc<Mutex<Vec<String>>>,
    ) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let Ok(n) = s.read(&mut chunk) else { return };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            let (cmds, used) = args_of(&buf);
            buf.drain(..used);
            let mut out = String::new();
            for c in cmds {
                seen.lock().unwrap().push(format!("{port} {}", c.join(" ")));
                match c[0].as_str() {
                    "CLUSTER" => out.push_str(&slots.lock().unwrap()),
                    "READONLY" | "ASKING" => out.push_str("+OK\r\n"),
                    cmd => out.push_str(&answer(cmd, c.get(1).map_or("", String::as_str))),
                }
            }
            if s.write_all(out.as_bytes()).is_err() {
                return;
            }
        }
    }

    fn slots_reply(ranges: &[(u16, u16, u16)]) -> String {
        let mut s = format!("*{}\r\n", ranges.len());
        for (a, b, port) in ranges {
            s.push_str(&format!(
                "*3\r\n:{a}\r\n:{b}\r\n*3\r\n$9\r\n127.0.0.1\r\n:{port}\r\n$2\r\nid\r\n"
            ));
        }
        s
    }

    fn bulk(s: &str) -> String {
        format!("${}\r\n{s}\r\n", s.len())
    }

    fn cluster(seeds: &[u16]) -> Cluster {
        let hosts: Vec<String> = seeds.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        Cluster::new(
            ClusterUrl::parse(&format!("redis+cluster://{}", hosts.join(","))).unwrap(),
            0,
        )
    }

    fn gets(keys: &[&str]) -> Commands {
        let mut c = Commands::default();
        for k in keys {
            c.push(&[b"GET", k.as_bytes()], Some(1));
        }
        c
    }

    const BIG: Limits = Limits {
        max_bulk: 1 << 20,
        max_elements: 100,
    };

    fn read_all(c: &mut Cluster, n: usize, deadline: Instant) -> Vec<Result<Reply, Error>> {
        (0..n).map(|_| c.next_reply(&BIG, deadline)).collect()
    }

    #[test]
    fn sends_one_pipeline_per_node_and_reads_replies_in_order() {
        let map = Arc::new(Mutex::new(String::new()));
        let a = fake(map.clone(), Arc::new(|_, k| bulk(&format!("a:{k}"))));
        let b = fake(map.clone(), Arc::new(|_, k| bulk(&format!("b:{k}"))));
        *map.lock().unwrap() = slots_reply(&[(0, 8191, a.port), (8192, 16383, b.port)]);
        // "foo" is slot 12182 (b), "bar" 5061 (a), "hello" 866 (a).
        let mut c = cluster(&[b.port]);
        let deadline = Instant::now() + Duration::from_secs(2);
        c.send_commands(&gets(&["foo", "bar", "hello", "{foo}x"]), deadline)
            .unwrap();
        let got = read_all(&mut c, 4, deadline);
        let want = ["b:foo", "a:bar", "a:hello", "b:{foo}x"];
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g, &Ok(Reply::Bulk(w.as_bytes().to_vec())));
        }
        let seen = a.seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                format!("{} GET bar", a.port),
                format!("{} GET hello", a.port)
            ]
        );
        assert!(b
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.ends_with("CLUSTER SLOTS")));
        // The next batch reuses the connections and the map.
        c.send_commands(&gets(&["bar"]), deadline).unwrap();
        assert_eq!(
            c.next_reply(&BIG, deadline),
            Ok(Reply::Bulk(b"a:bar".to_vec()))
        );
        let slots_asked = |f: &Fake| {
            f.seen
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.ends_with("CLUSTER SLOTS"))
                .count()
        };
        assert_eq!(slots_asked(&a) + slots_asked(&b), 1);
    }

    #[test]
    fn follows_moved_and_ask_and_reads_the_map_again() {
        let map = Arc::new(Mutex::new(String::new()));
        let b_port = Arc::new(Mutex::new(0u16));
        let bp = b_port.clone();
        // a says every key moved to b, except "ask:" keys, which it sends to b with ASK.
        let a = fake(
            map.clone(),
            Arc::new(move |_, k| {
                let slot = key_slot(k.as_bytes());
                let port = *bp.lock().unwrap();
                if k.starts_with("ask") {
                    format!("-ASK {slot} 127.0.0.1:{port}\r\n")
                } else {
                    format!("-MOVED {slot} 127.0.0.1:{port}\r\n")
                }
            }),
        );
        let b = fake(map.clone(), Arc::new(|_, k| bulk(&format!("b:{k}"))));
        *b_port.lock().unwrap() = b.port;
        *map.lock().unwrap() = slots_reply(&[(0, 16383, a.port)]);
        let mut c = cluster(&[a.port]);
        let deadline = Instant::now() + Duration::from_secs(2);
        c.send_commands(&gets(&["foo", "ask1", "bar"]), deadline)
            .unwrap();
        let got = read_all(&mut c, 3, deadline);
        assert_eq!(got[0], Ok(Reply::Bulk(b"b:foo".to_vec())));
        assert_eq!(got[1], Ok(Reply::Bulk(b"b:ask1".to_vec())));
        assert_eq!(got[2], Ok(Reply::Bulk(b"b:bar".to_vec())));
        let seen_b = b.seen.lock().unwrap().clone();
        assert!(
            seen_b
                .windows(2)
                .any(|w| w[0].ends_with("ASKING") && w[1].ends_with("GET ask1")),
            "{seen_b:?}"
        );
        // MOVED asks for the map again before the next batch.
        *map.lock().unwrap() = slots_reply(&[(0, 16383, b.port)]);
        c.send_commands(&gets(&["foo"]), deadline).unwrap();
        assert_eq!(
            c.next_reply(&BIG, deadline),
            Ok(Reply::Bulk(b"b:foo".to_vec()))
        );
        let at_a = a
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.ends_with("GET foo"))
            .count();
        assert_eq!(at_a, 1, "the second batch went straight to b");
    }

    #[test]
    fn a_batch_read_over_three_nodes_gets_every_item() {
        use crate::layout::{DocRef, Layout};
        use crate::store::{fetch_batch_within, Fetch, Raw, RawMeta};
        use crate::version::Field;
        let map = Arc::new(Mutex::new(String::new()));
        // Every node holds what it is asked for: a document has versions "1000" of 2 bytes.
        let answer: Answer = Arc::new(|cmd, key| match cmd {
            "HLEN" => ":1\r\n".into(),
            "HSTRLEN" => ":2\r\n".into(),
            "HKEYS" => "*1\r\n$4\r\n1000\r\n".into(),
            "HGET" if key.ends_with("rollback") || key.ends_with("gray") => "$-1\r\n".into(),
            "HGET" => "$2\r\n{}\r\n".into(),
            "STRLEN" => ":2\r\n".into(),
            "GETRANGE" => "$2\r\n[]\r\n".into(),
            other => format!("-ERR unexpected {other}\r\n"),
        });
        let nodes: Vec<Fake> = (0..3).map(|_| fake(map.clone(), answer.clone())).collect();
        *map.lock().unwrap() = slots_reply(&[
            (0, 5460, nodes[0].port),
            (5461, 10922, nodes[1].port),
            (10923, 16383, nodes[2].port),
        ]);
        let mut c = cluster(&[nodes[1].port]);
        let page = |k: &str| DocRef::Page(k.into());
        // Slots: dynpage:page:/a 12068, /b 8007, /c 3942; item:1:base 430; rollback 13258.
        let items = [
            Fetch::Meta(page("/a")),
            Fetch::Meta(page("/b")),
            Fetch::Field(page("/c"), Field::Version(1000)),
            Fetch::Data("item:1:base".into()),
        ];
        let deadline = Instant::now() + Duration::from_secs(2);
        let got = fetch_batch_within(&mut c, &Layout::default(), &items, deadline);
        assert!(got.failed.is_none() && got.reusable, "{got:?}");
        let meta = Raw::Meta(Some(RawMeta {
            fields: vec!["1000".into()],
            pin: None,
            gray: None,
        }));
        assert_eq!(
            got.items,
            vec![
                Ok(meta.clone()),
                Ok(meta),
                Ok(Raw::Field(Some(b"{}".to_vec()))),
                Ok(Raw::Data(Ok(Some(b"[]".to_vec())))),
            ]
        );
        // Each node was asked only for the keys of its slots.
        for (i, n) in nodes.iter().enumerate() {
            for line in n.seen.lock().unwrap().iter() {
                let mut words = line.split(' ').skip(1);
                let cmd = words.next().unwrap_or("");
                if cmd == "CLUSTER" {
                    continue;
                }
                let key = words.next().unwrap_or("");
                let slot = key_slot(key.as_bytes());
                let owner = match slot {
                    0..=5460 => 0,
                    5461..=10922 => 1,
                    _ => 2,
                };
                assert_eq!(owner, i, "{line}");
            }
        }
        assert!(nodes.iter().all(|n| n.seen.lock().unwrap().len() > 1));
    }

    #[test]
    fn a_slot_map_that_keeps_changing_ends_after_a_few_redirects() {
        let map = Arc::new(Mutex::new(String::new()));
        let own = Arc::new(Mutex::new(0u16));
        let o = own.clone();
        // Every node says the key moved to itself: an endless loop without a bound.
        let a = fake(
            map.clone(),
            Arc::new(move |_, k| {
                format!(
                    "-MOVED {} 127.0.0.1:{}\r\n",
                    key_slot(k.as_bytes()),
                    *o.lock().unwrap()
                )
            }),
        );
        *own.lock().unwrap() = a.port;
        *map.lock().unwrap() = slots_reply(&[(0, 16383, a.port)]);
        let mut c = cluster(&[a.port]);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(2);
        c.send_commands(&gets(&["foo"]), deadline).unwrap();
        let e = c.next_reply(&BIG, deadline).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Server);
        assert!(e.detail.contains("redirects"), "{e:?}");
        assert!(start.elapsed() < Duration::from_millis(500));
        let gets = a
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("GET"))
            .count();
        assert_eq!(gets, 1 + MAX_REDIRECTS);
    }

    #[test]
    fn all_nodes_down_fails_at_once_like_a_dead_redis() {
        // Ports that were free a moment ago: connections are refused.
        let ports: Vec<u16> = (0..3)
            .map(|_| {
                TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            })
            .collect();
        let mut c = cluster(&ports);
        let start = Instant::now();
        let e = c
            .send_commands(&gets(&["foo"]), start + Duration::from_millis(100))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Connect);
        assert!(
            e.detail
                .starts_with("no node of the cluster gave its slot map (3 asked"),
            "{e:?}"
        );
        assert!(start.elapsed() < Duration::from_millis(200));
    }

    #[test]
    fn a_silent_cluster_ends_by_the_deadline() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in l.incoming().flatten() {
                held.push(s);
            }
        });
        let mut c = cluster(&[port]);
        let start = Instant::now();
        let e = c
            .send_commands(&gets(&["foo"]), start + Duration::from_millis(100))
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Connect);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(95) && took < Duration::from_millis(250),
            "{took:?}"
        );
    }

    #[test]
    fn clusterdown_is_passed_on_and_the_map_read_again() {
        let map = Arc::new(Mutex::new(String::new()));
        let a = fake(
            map.clone(),
            Arc::new(|_, _| "-CLUSTERDOWN The cluster is down\r\n".to_string()),
        );
        *map.lock().unwrap() = slots_reply(&[(0, 16383, a.port)]);
        let mut c = cluster(&[a.port]);
        let deadline = Instant::now() + Duration::from_secs(1);
        c.send_commands(&gets(&["foo"]), deadline).unwrap();
        assert_eq!(
            c.next_reply(&BIG, deadline),
            Ok(Reply::Error("CLUSTERDOWN The cluster is down".into()))
        );
        assert!(c.refresh);
    }

    fn range_reply(primary: u16, replica: Option<u16>) -> String {
        let node = |port: u16| format!("*2\r\n$9\r\n127.0.0.1\r\n:{port}\r\n");
        match replica {
            Some(r) => format!("*1\r\n*4\r\n:0\r\n:16383\r\n{}{}", node(primary), node(r)),
            None => format!("*1\r\n*3\r\n:0\r\n:16383\r\n{}", node(primary)),
        }
    }

    /// `GET foo` through `c`, within a second.
    fn get_foo(c: &mut Cluster) -> Result<Reply, Error> {
        let deadline = Instant::now() + Duration::from_secs(1);
        c.send_commands(&gets(&["foo"]), deadline)?;
        c.next_reply(&BIG, deadline)
    }

    fn map_reads(f: &Fake) -> usize {
        let seen = f.seen.lock().unwrap();
        seen.iter().filter(|c| c.contains(" CLUSTER ")).count()
    }

    #[test]
    fn a_replica_listed_later_is_read_from_once_the_map_is_a_second_old() {
        let map = Arc::new(Mutex::new(String::new()));
        let p = fake(map.clone(), Arc::new(|_, k| bulk(&format!("p:{k}"))));
        let r = fake(map.clone(), Arc::new(|_, k| bulk(&format!("r:{k}"))));
        // The replica is still syncing: Redis leaves it out of CLUSTER SLOTS.
        *map.lock().unwrap() = range_reply(p.port, None);
        let url = ClusterUrl::parse(&format!(
            "redis+cluster://127.0.0.1:{}?read_from=replicas",
            p.port
        ))
        .unwrap();
        let mut c = Cluster::new(url, 0);
        assert_eq!(get_foo(&mut c), Ok(Reply::Bulk(b"p:foo".to_vec())));
        *map.lock().unwrap() = range_reply(p.port, Some(r.port));
        // Younger than a second: the map is not asked for again.
        assert_eq!(get_foo(&mut c), Ok(Reply::Bulk(b"p:foo".to_vec())));
        assert_eq!(map_reads(&p), 1);
        c.map_read_at -= MAP_MAX_AGE_WITHOUT_REPLICA;
        assert_eq!(get_foo(&mut c), Ok(Reply::Bulk(b"r:foo".to_vec())));
        assert_eq!(map_reads(&p), 2);
        // With a replica for every range, the map is read again only at MAP_MAX_AGE.
        c.map_read_at -= MAP_MAX_AGE_WITHOUT_REPLICA;
        assert_eq!(get_foo(&mut c), Ok(Reply::Bulk(b"r:foo".to_vec())));
        assert_eq!(map_reads(&p) + map_reads(&r), 2);
        c.map_read_at -= MAP_MAX_AGE;
        assert_eq!(get_foo(&mut c), Ok(Reply::Bulk(b"r:foo".to_vec())));
        assert_eq!(map_reads(&p) + map_reads(&r), 3);
    }

    #[test]
    fn an_old_map_that_cannot_be_read_again_goes_on_serving_and_is_not_asked_every_batch() {
        let map = Arc::new(Mutex::new(String::new()));
        let p = fake(map.clone(), Arc::new(|_, k| bulk(&format!("p:{k}"))));
        *map.lock().unwrap() = range_reply(p.port, None);
        let url = ClusterUrl::parse(&format!("redis+cluster://127.0.0.1:{}", p.port)).unwrap();
        let mut c = Cluster::new(url, 0);
        assert_eq!(get_foo(&mut c), Ok(Reply::Bulk(b"p:foo".to_vec())));
        // The node answers the map with an error now (as one that is loading would).
        *map.lock().unwrap() = "-LOADING Redis is loading the dataset in memory\r\n".into();
        c.map_read_at -= MAP_MAX_AGE;
        assert_eq!(get_foo(&mut c), Ok(Reply::Bulk(b"p:foo".to_vec())));
        assert_eq!(map_reads(&p), 2);
        assert_eq!(get_foo(&mut c), Ok(Reply::Bulk(b"p:foo".to_vec())));
        assert_eq!(map_reads(&p), 2);
    }

    #[test]
    fn reads_from_replicas_after_readonly() {
        let map = Arc::new(Mutex::new(String::new()));
        let p = fake(map.clone(), Arc::new(|_, k| bulk(&format!("p:{k}"))));
        let r = fake(map.clone(), Arc::new(|_, k| bulk(&format!("r:{k}"))));
        *map.lock().unwrap() = range_reply(p.port, Some(r.port));
        let url = ClusterUrl::parse(&format!(
            "redis+cluster://127.0.0.1:{}?read_from=replicas",
            p.port
        ))
        .unwrap();
        let mut c = Cluster::new(url, 0);
        let deadline = Instant::now() + Duration::from_secs(1);
        c.send_commands(&gets(&["foo"]), deadline).unwrap();
        assert_eq!(
            c.next_reply(&BIG, deadline),
            Ok(Reply::Bulk(b"r:foo".to_vec()))
        );
        let seen = r.seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                format!("{} READONLY", r.port),
                format!("{} GET foo", r.port)
            ]
        );
    }
}
