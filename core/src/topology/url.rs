//! The URL forms of a cluster and of a Sentinel-managed Redis:
//!
//! - `redis+cluster://[user:pass@]host1:port1,host2:port2[/][?read_from=replicas]`
//! - `redis+sentinel://[user:pass@]s1:26379,s2:26379/<master name>[/db][?role=replica]`
//!
//! The user and password are the data nodes' (the sentinels are asked without a login).

use super::slot_map::Node;

pub const CLUSTER_SCHEME: &str = "redis+cluster://";
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// Where a cluster is: a few of its nodes (any will do) and how to log in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterUrl {
    pub seeds: Vec<Node>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Read from replicas (`READONLY` on their connections) rather than primaries.
    pub replicas: bool,
}

/// Where a Sentinel-managed Redis is: the sentinels, the master's name, and which role to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelUrl {
    pub sentinels: Vec<Node>,
    pub master: String,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Use a replica of the master (`?role=replica`) rather than the master.
    pub replica: bool,
}

/// The parts every such URL has.
struct Parts {
    nodes: Vec<Node>,
    username: Option<String>,
    password: Option<String>,
    path: Vec<String>,
    query: Vec<(String, String)>,
}

fn split(url: &str, scheme: &str, default_port: u16) -> Result<Parts, String> {
    let rest = url
        .strip_prefix(scheme)
        .ok_or_else(|| format!("it does not start with {scheme}"))?;
    if rest.contains('#') {
        return Err("a URL fragment (#) is not allowed".into());
    }
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, q),
        None => (rest, ""),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = match u.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (u, None),
            };
            let user = decode(user)?;
            let pass = pass.map(decode).transpose()?;
            (
                Some(user).filter(|u| !u.is_empty()),
                pass.filter(|p| !p.is_empty()),
            )
        }
    };
    let mut nodes = Vec::new();
    for h in hosts.split(',') {
        if h.is_empty() {
            return Err("an empty host in the host list".into());
        }
        let node = if h.starts_with('[') || h.matches(':').count() == 1 {
            if h.ends_with(']') {
                Node::parse(&format!("{h}:{default_port}"))
            } else {
                Node::parse(h)
            }
        } else if !h.contains(':') {
            Some(Node::new(h, default_port))
        } else {
            None
        };
        let node = node.ok_or_else(|| format!("\"{h}\" is not host:port"))?;
        if node.host.chars().any(|c| c.is_whitespace() || c == '%') {
            return Err(format!("\"{h}\" is not host:port"));
        }
        if !nodes.contains(&node) {
            nodes.push(node);
        }
    }
    let path = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(decode)
        .collect::<Result<_, _>>()?;
    let query = query
        .split('&')
        .filter(|q| !q.is_empty())
        .map(|q| {
            let (k, v) = q.split_once('=').unwrap_or((q, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect::<Result<_, String>>()?;
    Ok(Parts {
        nodes,
        username,
        password,
        path,
        query,
    })
}

fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let byte = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a bad %-escape")?;
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a %-escape that is not UTF-8".to_string())
}

impl ClusterUrl {
    pub fn parse(url: &str) -> Result<ClusterUrl, String> {
        let p = split(url, CLUSTER_SCHEME, 6379)?;
        match p.path.as_slice() {
            [] => {}
            [db] if db == "0" => {}
            _ => return Err("a cluster has only database 0: the path must be empty".into()),
        }
        let mut replicas = false;
        for (k, v) in &p.query {
            match (k.as_str(), v.as_str()) {
                ("read_from", "replicas") => replicas = true,
                ("read_from", "primaries" | "primary") => replicas = false,
                ("read_from", other) => {
                    return Err(format!(
                        "read_from is \"primaries\" or \"replicas\", not \"{other}\""
                    ))
                }
                (other, _) => return Err(format!("unknown parameter \"{other}\"")),
            }
        }
        Ok(ClusterUrl {
            seeds: p.nodes,
            username: p.username,
            password: p.password,
            replicas,
        })
    }
}

impl SentinelUrl {
    pub fn parse(url: &str) -> Result<SentinelUrl, String> {
        let p = split(url, SENTINEL_SCHEME, 26379)?;
        let (master, db) = match p.path.as_slice() {
            [m] => (m.clone(), 0),
            [m, db] => (
                m.clone(),
                db.parse::<i64>()
                    .ok()
                    .filter(|d| *d >= 0)
                    .ok_or_else(|| format!("\"{db}\" is not a database number"))?,
            ),
            _ => {
                return Err(
                    "the path must name the master, as in redis+sentinel://host:26379/mymaster"
                        .into(),
                )
            }
        };
        let mut replica = false;
        for (k, v) in &p.query {
            match (k.as_str(), v.as_str()) {
                ("role", "replica" | "slave") => replica = true,
                ("role", "master" | "primary") => replica = false,
                ("role", other) => {
                    return Err(format!(
                        "role is \"master\" or \"replica\", not \"{other}\""
                    ))
                }
                (other, _) => return Err(format!("unknown parameter \"{other}\"")),
            }
        }
        Ok(SentinelUrl {
            sentinels: p.nodes,
            master,
            db,
            username: p.username,
            password: p.password,
            replica,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cluster_urls() {
        let u = ClusterUrl::parse("redis+cluster://app:s%40cret@10.0.0.1:7000,h2:7001/").unwrap();
        assert_eq!(
            u.seeds,
            vec![Node::new("10.0.0.1", 7000), Node::new("h2", 7001)]
        );
        assert_eq!(u.username.as_deref(), Some("app"));
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert!(!u.replicas);
        let u = ClusterUrl::parse("redis+cluster://h1?read_from=replicas").unwrap();
        assert_eq!(u.seeds, vec![Node::new("h1", 6379)]);
        assert!(u.replicas);
        let u = ClusterUrl::parse("redis+cluster://:pw@[::1]:7000,[::1]/0").unwrap();
        assert_eq!(
            u.seeds,
            vec![Node::new("::1", 7000), Node::new("::1", 6379)]
        );
        assert_eq!((u.username, u.password.as_deref()), (None, Some("pw")));
        for bad in [
            "redis://h:1",
            "redis+cluster://",
            "redis+cluster://h:1,,h:2",
            "redis+cluster://h:x",
            "redis+cluster://h:1/3",
            "redis+cluster://h:1?read_from=nearest",
            "redis+cluster://h:1?db=2",
            "redis+cluster://h:1#x",
            "redis+cluster://h:99999",
        ] {
            assert!(ClusterUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_sentinel_urls() {
        let u = SentinelUrl::parse("redis+sentinel://s1:26379,s2/mymaster/2?role=replica").unwrap();
        assert_eq!(
            u.sentinels,
            vec![Node::new("s1", 26379), Node::new("s2", 26379)]
        );
        assert_eq!((u.master.as_str(), u.db, u.replica), ("mymaster", 2, true));
        let u = SentinelUrl::parse("redis+sentinel://u:p@127.0.0.1:5000/m").unwrap();
        assert_eq!((u.db, u.replica), (0, false));
        assert_eq!(u.password.as_deref(), Some("p"));
        for bad in [
            "redis+sentinel://s1:26379",
            "redis+sentinel://s1:26379/",
            "redis+sentinel://s1/m/x",
            "redis+sentinel://s1/m/1/2",
            "redis+sentinel://s1/m?role=any",
        ] {
            assert!(SentinelUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
