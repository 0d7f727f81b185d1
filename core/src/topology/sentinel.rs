//! A Redis managed by Sentinel: the sentinels are asked where the master (or a replica) is,
//! and asked again whenever a connection to it fails or it turns out to have another role (a
//! failover), so a failover is followed without a reload.

use std::time::{Duration, Instant};

use super::slot_map::Node;
use super::url::SentinelUrl;
use crate::resp::{encode, time_left, Conn, Error, ErrorKind, Limits, Reply, Target};

/// What a sentinel's answers may hold (`SENTINEL replicas`: some 40 fields per replica).
const SENTINEL_LIMITS: Limits = Limits {
    max_bulk: 4096,
    max_elements: 100_000,
};

pub struct Sentinel {
    url: SentinelUrl,
    /// Where the sentinels said it is, until a connection there fails.
    resolved: Option<Target>,
    pick: usize,
}

/// Reads `SENTINEL get-master-addr-by-name`: `[host, port]`, or nil for a master the sentinel
/// does not know.
pub fn parse_master_addr(reply: &Reply) -> Result<Option<Node>, String> {
    match reply {
        Reply::Nil => Ok(None),
        Reply::Array(items) if items.len() == 2 => {
            let text = |r: &Reply| match r {
                Reply::Bulk(b) => String::from_utf8(b.clone()).ok(),
                _ => None,
            };
            let host = text(&items[0]).filter(|h| !h.is_empty());
            let port = text(&items[1]).and_then(|p| p.parse::<u16>().ok().filter(|p| *p != 0));
            match (host, port) {
                (Some(h), Some(p)) => Ok(Some(Node::new(&h, p))),
                _ => Err(format!("answered a malformed address ({reply:?})")),
            }
        }
        Reply::Error(e) => Err(format!("answered an error: {e}")),
        other => Err(format!(
            "answered get-master-addr-by-name with {}",
            other.describe()
        )),
    }
}

/// Reads `SENTINEL replicas`: the replicas that are up and linked to their master.
pub fn parse_replicas(reply: &Reply) -> Result<Vec<Node>, String> {
    let Reply::Array(items) = reply else {
        return match reply {
            Reply::Error(e) => Err(format!("answered an error: {e}")),
            other => Err(format!(
                "answered SENTINEL replicas with {}",
                other.describe()
            )),
        };
    };
    let mut out = Vec::new();
    for item in items {
        let Reply::Array(kv) = item else { continue };
        let field = |name: &str| {
            kv.chunks(2).find_map(|p| match p {
                [Reply::Bulk(k), Reply::Bulk(v)] if k == name.as_bytes() => {
                    String::from_utf8(v.clone()).ok()
                }
                _ => None,
            })
        };
        let flags = field("flags").unwrap_or_default();
        let down = flags
            .split(',')
            .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"));
        let linked = field("master-link-status").is_none_or(|s| s == "ok");
        let (Some(ip), Some(port)) = (field("ip"), field("port").and_then(|p| p.parse().ok()))
        else {
            continue;
        };
        if !down && linked && port != 0 {
            out.push(Node::new(&ip, port));
        }
    }
    Ok(out)
}

/// Reads `ROLE`: `master`, `slave` or `sentinel`.
pub fn parse_role(reply: &Reply) -> Option<String> {
    match reply {
        Reply::Array(items) => match items.first() {
            Some(Reply::Bulk(b)) => String::from_utf8(b.clone()).ok(),
            _ => None,
        },
        _ => None,
    }
}

impl Sentinel {
    pub fn new(url: SentinelUrl, pick: usize) -> Sentinel {
        Sentinel {
            url,
            resolved: None,
            pick,
        }
    }

    fn target(&self, node: &Node) -> Target {
        Target::tcp(
            &node.host,
            node.port,
            self.url.username.clone(),
            self.url.password.clone(),
            self.url.db,
        )
    }

    /// The next connection asks the sentinels again (a connection failed).
    pub fn forget(&mut self) {
        self.resolved = None;
    }

    /// Asks the sentinels, in order, until one knows: the master's address, or (`replica`) a
    /// replica that is up (the master when none is). Each sentinel gets half of what is left.
    pub fn ask(&self, replica: bool, deadline: Instant) -> Result<Node, Error> {
        let mut last = String::from("no sentinel");
        let n = self.url.sentinels.len();
        for (i, s) in self.url.sentinels.iter().enumerate() {
            let left = time_left(deadline)?;
            let until = if i + 1 == n {
                deadline
            } else {
                Instant::now() + (left / 2).max(Duration::from_millis(1))
            };
            match self.ask_one(s, replica, until) {
                Ok(Some(node)) => return Ok(node),
                Ok(None) => {
                    last = format!("sentinel {s} does not know master \"{}\"", self.url.master)
                }
                Err(e) => last = format!("sentinel {s}: {}", e.detail),
            }
        }
        Err(Error {
            kind: ErrorKind::Connect,
            detail: format!(
                "no sentinel gave the address of \"{}\" ({last})",
                self.url.master
            ),
            partial: false,
        })
    }

    fn ask_one(&self, s: &Node, replica: bool, deadline: Instant) -> Result<Option<Node>, Error> {
        let mut con = Conn::connect(&Target::tcp(&s.host, s.port, None, None, 0), deadline)?;
        let master = self.url.master.as_bytes();
        let mut cmd = Vec::new();
        encode(&[b"SENTINEL", b"get-master-addr-by-name", master], &mut cmd);
        if replica {
            encode(&[b"SENTINEL", b"replicas", master], &mut cmd);
        }
        con.send(&cmd, deadline)?;
        let primary = parse_master_addr(&con.read_reply(&SENTINEL_LIMITS, deadline)?)
            .map_err(Error::server)?;
        if !replica {
            return Ok(primary);
        }
        let replicas =
            parse_replicas(&con.read_reply(&SENTINEL_LIMITS, deadline)?).map_err(Error::server)?;
        Ok(match replicas.len() {
            0 => primary,
            n => replicas.get(self.pick % n).cloned(),
        })
    }

    /// Where the master is now (for the events subscription).
    pub fn master(&self, deadline: Instant) -> Result<Target, Error> {
        self.ask(false, deadline).map(|n| self.target(&n))
    }

    /// A connection to the master (or a replica), logged in and checked with `ROLE`: a node
    /// that has another role since (demoted by a failover) is not used, and the sentinels are
    /// asked again next time.
    pub fn connect(&mut self, deadline: Instant) -> Result<Conn, Error> {
        let target = match self.resolved.take() {
            Some(t) => t,
            None => {
                let node = self.ask(self.url.replica, deadline)?;
                self.target(&node)
            }
        };
        let mut con = Conn::connect(&target, deadline).map_err(|e| Error {
            detail: format!("{}: {}", target.address(), e.detail),
            ..e
        })?;
        let mut cmd = Vec::new();
        encode(&[b"ROLE"], &mut cmd);
        con.send(&cmd, deadline)?;
        let role = parse_role(&con.read_reply(&SENTINEL_LIMITS, deadline)?);
        let want: &[&str] = if self.url.replica {
            &["slave", "master"]
        } else {
            &["master"]
        };
        match role {
            Some(r) if want.contains(&r.as_str()) => {
                self.resolved = Some(target);
                Ok(con)
            }
            other => Err(Error {
                kind: ErrorKind::Connect,
                detail: format!(
                    "{} is {} now, not the {} (a failover): asking the sentinels again",
                    target.address(),
                    other.unwrap_or_else(|| "of an unknown role".into()),
                    if self.url.replica {
                        "replica"
                    } else {
                        "master"
                    }
                ),
                partial: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_the_masters_address() {
        assert_eq!(
            parse_master_addr(&Reply::Array(vec![bulk("127.0.0.1"), bulk("6380")])),
            Ok(Some(Node::new("127.0.0.1", 6380)))
        );
        assert_eq!(parse_master_addr(&Reply::Nil), Ok(None));
        assert!(parse_master_addr(&Reply::Array(vec![bulk("h"), bulk("x")])).is_err());
        assert!(parse_master_addr(&Reply::Int(1)).is_err());
        assert!(parse_master_addr(&Reply::Error("ERR no".into())).is_err());
    }

    fn replica(ip: &str, port: &str, flags: &str, link: &str) -> Reply {
        Reply::Array(
            [
                ("name", format!("{ip}:{port}")),
                ("ip", ip.into()),
                ("port", port.into()),
                ("flags", flags.into()),
                ("master-link-status", link.into()),
            ]
            .iter()
            .flat_map(|(k, v)| [bulk(k), bulk(v)])
            .collect(),
        )
    }

    #[test]
    fn keeps_the_replicas_that_are_up_and_linked() {
        let r = Reply::Array(vec![
            replica("127.0.0.1", "7001", "slave", "ok"),
            replica("127.0.0.1", "7002", "s_down,slave,disconnected", "err"),
            replica("127.0.0.1", "7003", "slave", "err"),
            replica("127.0.0.1", "7004", "slave", "ok"),
        ]);
        assert_eq!(
            parse_replicas(&r),
            Ok(vec![
                Node::new("127.0.0.1", 7001),
                Node::new("127.0.0.1", 7004)
            ])
        );
        assert_eq!(parse_replicas(&Reply::Array(vec![])), Ok(vec![]));
        assert!(parse_replicas(&Reply::Error("ERR No such master".into())).is_err());
    }

    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// A peer answering every command it reads with `answer(command text)`.
    fn peer(answer: Arc<dyn Fn(&str) -> String + Send + Sync>) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let answer = answer.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            return;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        // One command per read is enough for these tests, except the
                        // sentinel's pipelined pair, answered together.
                        let mut out = String::new();
                        for cmd in text.split('*').filter(|c| !c.is_empty()) {
                            out.push_str(&answer(cmd));
                        }
                        if s.write_all(out.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    fn role(r: &'static str) -> u16 {
        peer(Arc::new(move |_| format!("*1\r\n${}\r\n{r}\r\n", r.len())))
    }

    #[test]
    fn follows_what_the_sentinels_say_and_refuses_a_demoted_master() {
        let master = role("master");
        let demoted = role("slave");
        let points_to = Arc::new(Mutex::new(master));
        let p = points_to.clone();
        let sentinel = peer(Arc::new(move |cmd| {
            if cmd.contains("get-master-addr-by-name") {
                let port = p.lock().unwrap().to_string();
                format!("*2\r\n$9\r\n127.0.0.1\r\n${}\r\n{port}\r\n", port.len())
            } else {
                "-ERR unexpected\r\n".into()
            }
        }));
        // The first sentinel is down: the second is asked.
        let down = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = SentinelUrl::parse(&format!(
            "redis+sentinel://127.0.0.1:{down},127.0.0.1:{sentinel}/mymaster"
        ))
        .unwrap();
        let mut s = Sentinel::new(url, 0);
        let deadline = Instant::now() + Duration::from_secs(2);
        assert!(s.connect(deadline).is_ok());
        assert_eq!(
            s.resolved.as_ref().map(Target::address),
            Some(format!("127.0.0.1:{master}"))
        );
        // A failover: the sentinels name another node; the old one says it is a replica.
        *points_to.lock().unwrap() = demoted;
        s.forget();
        let e = s.connect(deadline).err().unwrap();
        assert_eq!(e.kind, ErrorKind::Connect);
        assert!(e.detail.contains("is slave now, not the master"), "{e:?}");
        assert!(s.resolved.is_none());
        *points_to.lock().unwrap() = master;
        assert!(s.connect(deadline).is_ok());
    }

    #[test]
    fn no_sentinel_answering_fails_by_the_deadline() {
        let down = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = SentinelUrl::parse(&format!("redis+sentinel://127.0.0.1:{down}/m")).unwrap();
        let mut s = Sentinel::new(url, 0);
        let e = s
            .connect(Instant::now() + Duration::from_millis(100))
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::Connect);
        assert!(
            e.detail
                .starts_with("no sentinel gave the address of \"m\""),
            "{e:?}"
        );
    }

    #[test]
    fn reads_roles() {
        assert_eq!(
            parse_role(&Reply::Array(vec![bulk("master"), Reply::Int(0)])),
            Some("master".into())
        );
        assert_eq!(parse_role(&Reply::Int(0)), None);
    }
}
