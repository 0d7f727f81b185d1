//! Which node serves which slot: read from `CLUSTER SLOTS`, changed by `MOVED` redirects.

use super::slot::SLOTS;
use crate::resp::Reply;

/// A node of a cluster, as it names itself (`host`, `port`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    pub host: String,
    pub port: u16,
}

impl Node {
    pub fn new(host: &str, port: u16) -> Node {
        Node {
            host: host.to_string(),
            port,
        }
    }

    /// Reads `host:port` (`[v6]:port` too), as `MOVED` and `ASK` name nodes.
    pub fn parse(text: &str) -> Option<Node> {
        let (host, port) = text.rsplit_once(':')?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
        (!host.is_empty()).then(|| Node::new(host, port))
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A range of slots and who serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: u16,
    pub end: u16,
    pub primary: Node,
    pub replicas: Vec<Node>,
}

/// The slot map: per slot, the index of its range (`u16::MAX`: no node serves it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotMap {
    ranges: Vec<Range>,
    slots: Vec<u16>,
}

const NONE: u16 = u16::MAX;

impl SlotMap {
    /// A map of these ranges (later ones win where they overlap).
    pub fn new(ranges: Vec<Range>) -> SlotMap {
        let mut slots = vec![NONE; usize::from(SLOTS)];
        for (i, r) in ranges.iter().enumerate() {
            for s in r.start..=r.end.min(SLOTS - 1) {
                slots[usize::from(s)] = u16::try_from(i).unwrap_or(NONE);
            }
        }
        SlotMap { ranges, slots }
    }

    /// Reads a `CLUSTER SLOTS` reply. A node named with an empty host (`""`: the node that
    /// answered does not know its own address) is `asked_host`.
    pub fn parse(reply: &Reply, asked_host: &str) -> Result<SlotMap, String> {
        let Reply::Array(items) = reply else {
            return Err(format!(
                "answered CLUSTER SLOTS with {}, not an array",
                reply.describe()
            ));
        };
        let mut ranges = Vec::with_capacity(items.len());
        for item in items {
            let bad = || format!("answered CLUSTER SLOTS with a malformed range ({item:?})");
            let Reply::Array(parts) = item else {
                return Err(bad());
            };
            let slot = |r: Option<&Reply>| match r {
                Some(Reply::Int(n)) => u16::try_from(*n).ok().filter(|s| *s < SLOTS),
                _ => None,
            };
            let (Some(start), Some(end)) = (slot(parts.first()), slot(parts.get(1))) else {
                return Err(bad());
            };
            if start > end {
                return Err(bad());
            }
            let mut nodes = parts[2..].iter().map(|n| node(n, asked_host));
            let Some(Some(primary)) = nodes.next() else {
                return Err(bad());
            };
            // A replica without an address (being set up) is left out.
            let replicas = nodes.flatten().collect();
            ranges.push(Range {
                start,
                end,
                primary,
                replicas,
            });
        }
        if ranges.is_empty() {
            return Err("answered CLUSTER SLOTS with no slots: the cluster is not set up".into());
        }
        Ok(SlotMap::new(ranges))
    }

    /// The range serving `slot`, if any.
    pub fn range(&self, slot: u16) -> Option<&Range> {
        let i = *self.slots.get(usize::from(slot))?;
        self.ranges.get(usize::from(i))
    }

    /// The primary serving `slot`.
    pub fn primary(&self, slot: u16) -> Option<&Node> {
        self.range(slot).map(|r| &r.primary)
    }

    /// A replica serving `slot`: one of `near` if any is, else one chosen by `pick` among
    /// them; its primary when it has none.
    pub fn replica(&self, slot: u16, pick: usize, near: &[Node]) -> Option<&Node> {
        let r = self.range(slot)?;
        let close: Vec<&Node> = r.replicas.iter().filter(|n| near.contains(n)).collect();
        if !close.is_empty() {
            return close.get(pick % close.len()).copied();
        }
        match r.replicas.len() {
            0 => Some(&r.primary),
            n => r.replicas.get(pick % n),
        }
    }

    /// After `MOVED slot node`: `node` serves `slot` now (as a primary without replicas until
    /// the map is read again).
    pub fn moved(&mut self, slot: u16, node: Node) {
        if slot >= SLOTS {
            return;
        }
        let at = match self.ranges.iter().position(|r| {
            r.start == slot && r.end == slot && r.primary == node && r.replicas.is_empty()
        }) {
            Some(i) => i,
            None => {
                self.ranges.push(Range {
                    start: slot,
                    end: slot,
                    primary: node,
                    replicas: Vec::new(),
                });
                self.ranges.len() - 1
            }
        };
        self.slots[usize::from(slot)] = u16::try_from(at).unwrap_or(NONE);
    }

    /// Every node of the map, primaries first, each once.
    pub fn nodes(&self) -> Vec<Node> {
        let mut out: Vec<Node> = Vec::new();
        for r in &self.ranges {
            if !out.contains(&r.primary) {
                out.push(r.primary.clone());
            }
        }
        for r in &self.ranges {
            for n in &r.replicas {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
        }
        out
    }

    /// Whether some range has no replica (then `read_from=replicas` reads it from its
    /// primary).
    pub fn lacks_replicas(&self) -> bool {
        self.ranges.iter().any(|r| r.replicas.is_empty())
    }

    /// The primaries, each once.
    pub fn primaries(&self) -> Vec<Node> {
        let mut out: Vec<Node> = Vec::new();
        for (i, r) in self.ranges.iter().enumerate() {
            // Only ranges still named by some slot (a MOVED may have replaced one).
            let used = self.slots.iter().any(|&s| usize::from(s) == i && s != NONE);
            if used && !out.contains(&r.primary) {
                out.push(r.primary.clone());
            }
        }
        out
    }

    /// Whether `node` is the primary of some range (cheap: no walk over the slots).
    pub fn is_primary(&self, node: &Node) -> bool {
        self.ranges.iter().any(|r| r.primary == *node)
    }

    /// Slots no node serves.
    pub fn uncovered(&self) -> usize {
        self.slots.iter().filter(|&&s| s == NONE).count()
    }
}

/// One node of a range: `[host, port, id?, metadata?]`.
fn node(reply: &Reply, asked_host: &str) -> Option<Node> {
    let Reply::Array(parts) = reply else {
        return None;
    };
    let host = match parts.first()? {
        Reply::Bulk(b) => String::from_utf8(b.clone()).ok()?,
        Reply::Status(s) => s.clone(),
        _ => return None,
    };
    let port = match parts.get(1)? {
        Reply::Int(p) => u16::try_from(*p).ok().filter(|p| *p != 0)?,
        _ => return None,
    };
    // "?" is what a node not yet known by address is named as (`cluster-preferred-endpoint-type
    // unknown-endpoint`); "" is the node that answered.
    match host.as_str() {
        "?" => None,
        "" => Some(Node::new(asked_host, port)),
        h => Some(Node::new(h, port)),
    }
}

/// Which commands of a batch go to which node: the nodes in the order they are first needed,
/// each with the indexes of its commands in order. A command whose slot no node serves is in
/// `unserved`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Groups {
    pub nodes: Vec<(Node, Vec<usize>)>,
    pub unserved: Vec<usize>,
}

/// Groups commands (by the slot of each, `None` for a command without a key, which goes to
/// the first node used, else any primary) by node. `replicas`: read from a replica of each
/// slot (one of `near` if any, else chosen by `pick`), not its primary.
pub fn group(
    map: &SlotMap,
    slots: &[Option<u16>],
    replicas: bool,
    pick: usize,
    near: &[Node],
) -> Groups {
    let mut out = Groups::default();
    for (i, slot) in slots.iter().enumerate() {
        let node = match slot {
            Some(s) if replicas => map.replica(*s, pick, near),
            Some(s) => map.primary(*s),
            None => out
                .nodes
                .first()
                .map(|(n, _)| n)
                .or_else(|| map.ranges.first().map(|r| &r.primary)),
        };
        let Some(node) = node.cloned() else {
            out.unserved.push(i);
            continue;
        };
        match out.nodes.iter_mut().find(|(n, _)| *n == node) {
            Some((_, cmds)) => cmds.push(i),
            None => out.nodes.push((node, vec![i])),
        }
    }
    out
}

/// A redirect a node answered instead of a reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redirect {
    /// `MOVED slot host:port`: the slot is served there now (the map is out of date).
    Moved(u16, Node),
    /// `ASK slot host:port`: the slot is being migrated; ask there, once, after `ASKING`.
    Ask(u16, Node),
}

/// Reads an error reply as a redirect, if it is one.
pub fn redirect(error: &str) -> Option<Redirect> {
    let mut words = error.split_ascii_whitespace();
    let kind = words.next()?;
    let slot = words.next()?.parse::<u16>().ok().filter(|s| *s < SLOTS)?;
    let node = Node::parse(words.next()?)?;
    if words.next().is_some() {
        return None;
    }
    match kind {
        "MOVED" => Some(Redirect::Moved(slot, node)),
        "ASK" => Some(Redirect::Ask(slot, node)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    fn node_reply(host: &str, port: i64) -> Reply {
        Reply::Array(vec![
            bulk(host),
            Reply::Int(port),
            bulk("e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"),
            Reply::Array(vec![]),
        ])
    }

    fn range_reply(start: i64, end: i64, nodes: &[(&str, i64)]) -> Reply {
        let mut parts = vec![Reply::Int(start), Reply::Int(end)];
        parts.extend(nodes.iter().map(|(h, p)| node_reply(h, *p)));
        Reply::Array(parts)
    }

    fn three() -> SlotMap {
        SlotMap::parse(
            &Reply::Array(vec![
                range_reply(0, 5460, &[("127.0.0.1", 30001), ("127.0.0.1", 30004)]),
                range_reply(5461, 10922, &[("127.0.0.1", 30002), ("127.0.0.1", 30005)]),
                range_reply(10923, 16383, &[("", 30003), ("127.0.0.1", 30006)]),
            ]),
            "10.0.0.9",
        )
        .unwrap()
    }

    #[test]
    fn reads_cluster_slots() {
        let m = three();
        assert_eq!(m.uncovered(), 0);
        assert_eq!(m.primary(0), Some(&Node::new("127.0.0.1", 30001)));
        assert_eq!(m.primary(5460), Some(&Node::new("127.0.0.1", 30001)));
        assert_eq!(m.primary(5461), Some(&Node::new("127.0.0.1", 30002)));
        // "" is the node asked.
        assert_eq!(m.primary(16383), Some(&Node::new("10.0.0.9", 30003)));
        assert_eq!(m.replica(100, 7, &[]), Some(&Node::new("127.0.0.1", 30004)));
        assert_eq!(m.nodes().len(), 6);
        assert_eq!(m.primaries().len(), 3);
    }

    #[test]
    fn a_partial_map_leaves_slots_unserved() {
        let m = SlotMap::parse(
            &Reply::Array(vec![range_reply(0, 99, &[("127.0.0.1", 1)])]),
            "h",
        )
        .unwrap();
        assert_eq!(m.uncovered(), 16384 - 100);
        assert_eq!(m.primary(100), None);
        // A primary without replicas serves reads too.
        assert_eq!(m.replica(5, 3, &[]), Some(&Node::new("127.0.0.1", 1)));
    }

    #[test]
    fn refuses_what_is_not_a_slot_map() {
        for bad in [
            Reply::Int(1),
            Reply::Array(vec![]),
            Reply::Array(vec![Reply::Array(vec![Reply::Int(0)])]),
            Reply::Array(vec![range_reply(10, 5, &[("h", 1)])]),
            Reply::Array(vec![range_reply(0, 16384, &[("h", 1)])]),
            Reply::Array(vec![range_reply(0, 5, &[("h", 0)])]),
            Reply::Array(vec![range_reply(0, 5, &[])]),
            Reply::Array(vec![Reply::Array(vec![
                Reply::Int(0),
                Reply::Int(5),
                Reply::Int(3),
            ])]),
        ] {
            assert!(SlotMap::parse(&bad, "h").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn replicas_among_the_seeds_are_read_first() {
        let two = SlotMap::new(vec![Range {
            start: 0,
            end: 16383,
            primary: Node::new("p", 1),
            replicas: vec![Node::new("far", 2), Node::new("near", 3)],
        }]);
        let near = [Node::new("near", 3), Node::new("p", 1)];
        for pick in 0..4 {
            assert_eq!(two.replica(9, pick, &near), Some(&Node::new("near", 3)));
        }
        assert_eq!(two.replica(9, 0, &[]), Some(&Node::new("far", 2)));
        assert_eq!(two.replica(9, 1, &[]), Some(&Node::new("near", 3)));
    }

    #[test]
    fn moved_changes_one_slot() {
        let mut m = three();
        let n = Node::new("127.0.0.1", 30009);
        m.moved(42, n.clone());
        assert_eq!(m.primary(42), Some(&n));
        assert_eq!(m.replica(42, 1, &[]), Some(&n));
        assert_eq!(m.primary(41), Some(&Node::new("127.0.0.1", 30001)));
        m.moved(42, n.clone());
        assert_eq!(m.ranges.len(), 4, "the same move twice adds one range");
        assert!(m.primaries().contains(&n));
    }

    #[test]
    fn reads_redirects() {
        assert_eq!(
            redirect("MOVED 3999 127.0.0.1:6381"),
            Some(Redirect::Moved(3999, Node::new("127.0.0.1", 6381)))
        );
        assert_eq!(
            redirect("ASK 3999 127.0.0.1:6381"),
            Some(Redirect::Ask(3999, Node::new("127.0.0.1", 6381)))
        );
        assert_eq!(
            redirect("MOVED 1 [::1]:7000"),
            Some(Redirect::Moved(1, Node::new("::1", 7000)))
        );
        for not in [
            "ERR unknown",
            "MOVED",
            "MOVED 16384 h:1",
            "MOVED x h:1",
            "MOVED 1 h",
            "MOVED 1 h:0",
            "MOVED 1 :5",
            "MOVED 1 h:1 extra",
            "CLUSTERDOWN The cluster is down",
            "TRYAGAIN Multiple keys request during rehashing of slot",
        ] {
            assert_eq!(redirect(not), None, "{not}");
        }
    }

    #[test]
    fn groups_commands_by_node_in_order() {
        let m = three();
        let slots = [Some(0), Some(6000), Some(1), None, Some(12000), Some(6001)];
        let g = group(&m, &slots, false, 0, &[]);
        assert_eq!(
            g.nodes,
            vec![
                (Node::new("127.0.0.1", 30001), vec![0, 2, 3]),
                (Node::new("127.0.0.1", 30002), vec![1, 5]),
                (Node::new("10.0.0.9", 30003), vec![4]),
            ]
        );
        assert!(g.unserved.is_empty());
        let g = group(&m, &slots[..2], true, 0, &[]);
        assert_eq!(
            g.nodes,
            vec![
                (Node::new("127.0.0.1", 30004), vec![0]),
                (Node::new("127.0.0.1", 30005), vec![1]),
            ]
        );
        let partial = SlotMap::parse(
            &Reply::Array(vec![range_reply(0, 99, &[("127.0.0.1", 1)])]),
            "h",
        )
        .unwrap();
        let g = group(&partial, &[Some(5), Some(500)], false, 0, &[]);
        assert_eq!(g.unserved, vec![1]);
    }

    #[test]
    fn slots_of_keys_that_share_a_hash_tag_group_together() {
        let m = three();
        let a = super::super::slot::key_slot(b"{user1000}.following");
        let b = super::super::slot::key_slot(b"{user1000}.followers");
        let g = group(&m, &[Some(a), Some(b)], false, 0, &[]);
        assert_eq!(g.nodes.len(), 1);
    }
}
