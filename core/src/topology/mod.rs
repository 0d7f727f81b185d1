//! The shapes a `dynpage_redis` source can have: one Redis (`redis://`, `redis+unix://`), a
//! Redis Cluster (`redis+cluster://`), or a Redis managed by Sentinel (`redis+sentinel://`);
//! and [`Client`], a fetch thread's connection(s) to one of them.

mod cluster;
mod sentinel;
mod slot;
mod slot_map;
mod url;

pub use cluster::{Cluster, MAX_REDIRECTS};
pub use sentinel::{parse_master_addr, parse_replicas, parse_role, Sentinel};
pub use slot::{crc16, hash_tag, key_slot, SLOTS};
pub use slot_map::{group, redirect, Groups, Node, Range, Redirect, SlotMap};
pub use url::{ClusterUrl, SentinelUrl, CLUSTER_SCHEME, SENTINEL_SCHEME};

use std::time::Instant;

use crate::layout::Layout;
use crate::resp::{Conn, Error, Target};
use crate::store::{fetch_batch_scripted, BatchReply, Fetch, Guess, ReadScript};

/// A source URL, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceUrl {
    Single(Target),
    Cluster(ClusterUrl),
    Sentinel(SentinelUrl),
}

impl SourceUrl {
    pub fn parse(url: &str) -> Result<SourceUrl, String> {
        let lower = url
            .get(..SENTINEL_SCHEME.len())
            .unwrap_or(url)
            .to_ascii_lowercase();
        if lower.starts_with(CLUSTER_SCHEME) {
            ClusterUrl::parse(url).map(SourceUrl::Cluster)
        } else if lower.starts_with(SENTINEL_SCHEME) {
            SentinelUrl::parse(url).map(SourceUrl::Sentinel)
        } else {
            Target::parse(url).map(SourceUrl::Single)
        }
    }
}

/// One thread's connection(s) to a source.
pub enum Client {
    Single {
        target: Target,
        con: Option<Conn>,
    },
    Sentinel {
        sentinel: Sentinel,
        con: Option<Conn>,
    },
    Cluster(Box<Cluster>),
}

impl Client {
    /// `pick` spreads threads over replicas (cluster `read_from=replicas`, sentinel
    /// `role=replica`).
    pub fn new(url: &str, pick: usize) -> Result<Client, String> {
        Ok(match SourceUrl::parse(url)? {
            SourceUrl::Single(target) => Client::Single { target, con: None },
            SourceUrl::Sentinel(u) => Client::Sentinel {
                sentinel: Sentinel::new(u, pick),
                con: None,
            },
            SourceUrl::Cluster(u) => Client::Cluster(Box::new(Cluster::new(u, pick))),
        })
    }

    /// Reads `items` by `deadline` in one round trip where the read script or plain commands
    /// serve (see [`fetch_batch_scripted`]; `guess` says which version comes with a meta),
    /// connecting first if needed. Also says whether connections kept from before were used
    /// (they may have been closed by a Redis that restarted since, which says nothing about
    /// the Redis now).
    pub fn batch(
        &mut self,
        layout: &Layout,
        items: &[Fetch],
        deadline: Instant,
        script: &mut ReadScript,
        guess: Guess<'_>,
    ) -> (BatchReply, bool) {
        // One Redis takes any keys in one script call; a cluster only keys of one slot.
        let any = |_: &[&[u8]]| true;
        let one_slot = |keys: &[&[u8]]| keys.windows(2).all(|w| key_slot(w[0]) == key_slot(w[1]));
        let failed = |e: Error| BatchReply {
            failed: Some(e),
            ..Default::default()
        };
        match self {
            Client::Single { target, con } => {
                let reused = con.is_some();
                let mut c = match con.take() {
                    Some(c) => c,
                    None => match Conn::connect(target, deadline) {
                        Ok(c) => c,
                        Err(e) => return (failed(e), false),
                    },
                };
                let got =
                    fetch_batch_scripted(&mut c, layout, items, deadline, script, &any, guess);
                // After anything but a clean round trip the connection may hold late
                // replies: never reuse it.
                if got.reusable {
                    *con = Some(c);
                }
                (got, reused)
            }
            Client::Sentinel { sentinel, con } => {
                let reused = con.is_some();
                let mut c = match con.take() {
                    Some(c) => c,
                    None => match sentinel.connect(deadline) {
                        Ok(c) => c,
                        Err(e) => {
                            sentinel.forget();
                            return (failed(e), false);
                        }
                    },
                };
                let got =
                    fetch_batch_scripted(&mut c, layout, items, deadline, script, &any, guess);
                if got.reusable {
                    *con = Some(c);
                } else if got.failed.is_some() {
                    // The master may have moved: ask the sentinels on the next connection.
                    sentinel.forget();
                }
                (got, reused)
            }
            Client::Cluster(cluster) => {
                let reused = cluster.has_connections();
                let got = fetch_batch_scripted(
                    cluster.as_mut(),
                    layout,
                    items,
                    deadline,
                    script,
                    &one_slot,
                    guess,
                );
                if got.failed.is_some() {
                    cluster.reset();
                } else if !got.reusable {
                    cluster.drop_out_of_step();
                }
                (got, reused)
            }
        }
    }

    /// Where to subscribe to events, in the order to try: the Redis, the master the sentinels
    /// name now, or the cluster's nodes (any carries every PUBLISH of the cluster).
    pub fn subscribe_targets(&mut self, deadline: Instant) -> Result<Vec<Target>, Error> {
        match self {
            Client::Single { target, .. } => Ok(vec![target.clone()]),
            Client::Sentinel { sentinel, .. } => sentinel.master(deadline).map(|t| vec![t]),
            Client::Cluster(cluster) => Ok(cluster.subscribe_targets(deadline)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_the_url_forms_apart() {
        assert!(matches!(
            SourceUrl::parse("redis://127.0.0.1:6379/0"),
            Ok(SourceUrl::Single(_))
        ));
        assert!(matches!(
            SourceUrl::parse("redis+cluster://127.0.0.1:7000,127.0.0.1:7001/"),
            Ok(SourceUrl::Cluster(_))
        ));
        assert!(matches!(
            SourceUrl::parse("redis+sentinel://127.0.0.1:26379/mymaster"),
            Ok(SourceUrl::Sentinel(_))
        ));
        assert!(SourceUrl::parse("redis+cluster://").is_err());
        assert!(SourceUrl::parse("http://x").is_err());
    }
}
