//! What every command shares: how it fails ([`Failure`], [`Result`]), the Redis it works on
//! ([`Ctx`]), and reading a document's meta.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dynpage_core::layout::{DocRef, Layout, DEFAULT_PREFIX};
use dynpage_core::store;
use dynpage_core::version::DocMeta;

use crate::args::{Args, Usage};

/// Why a command failed.
pub enum Failure {
    Usage(String),
    Fail(String),
}

impl From<Usage> for Failure {
    fn from(u: Usage) -> Self {
        Failure::Usage(u.0)
    }
}

pub(crate) type Result<T> = std::result::Result<T, Failure>;

pub(crate) fn usage<T>(m: impl Into<String>) -> Result<T> {
    Err(Failure::Usage(m.into()))
}

pub(crate) fn fail<T>(m: impl Into<String>) -> Result<T> {
    Err(Failure::Fail(m.into()))
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) struct Ctx {
    pub url: String,
    pub layout: Layout,
}

impl Ctx {
    pub fn new(args: &Args) -> Ctx {
        let url = args
            .opt("redis")
            .map(str::to_string)
            .or_else(|| std::env::var("DYNPAGE_REDIS").ok())
            .unwrap_or_else(|| "redis://127.0.0.1:6379".to_string());
        Ctx {
            url,
            layout: Layout::new(args.opt("prefix").unwrap_or(DEFAULT_PREFIX)),
        }
    }

    /// A connection to the Redis, the cluster (routing each command to the node owning its
    /// key) or the master the sentinels name, as the URL says.
    pub fn connect(&self) -> Result<Con> {
        use dynpage_core::topology::SourceUrl;
        store::check_url(&self.url).or_else(|e| usage(format!("bad --redis URL: {e}")))?;
        let timeout = Duration::from_secs(5);
        let shown = store::redact_url(&self.url);
        let con: Con = match SourceUrl::parse(&self.url) {
            Ok(SourceUrl::Cluster(u)) => Con::Cluster(
                crate::topology::ClusterCon::connect(&u, timeout)
                    .or_else(|e| fail(format!("cannot connect to {shown}: {e}")))?,
            ),
            Ok(SourceUrl::Sentinel(u)) => Con::Sentinel(
                crate::topology::SentinelCon::connect(&u, timeout)
                    .or_else(|e| fail(format!("cannot connect to {shown}: {e}")))?,
            ),
            _ => Con::One(
                store::connect(&self.url, timeout)
                    .or_else(|e| fail(format!("cannot connect to {shown}: {e}")))?,
            ),
        };
        Ok(con)
    }
}

pub(crate) use crate::topology::Con;

pub(crate) fn redis_err<T>(e: redis::RedisError) -> Result<T> {
    fail(format!("redis: {}", e.to_string().replace('\n', " ")))
}

pub(crate) fn load_meta(ctx: &Ctx, con: &mut Con, doc: &DocRef) -> Result<DocMeta> {
    match store::get_meta(con, &ctx.layout, doc).or_else(redis_err)? {
        Some(raw) => Ok(DocMeta::from_fields(
            raw.fields.iter().map(String::as_str),
            raw.pin.as_deref(),
            raw.gray.as_deref(),
        )),
        None => fail(format!("{doc} does not exist")),
    }
}
