//! What one read asks Redis for ([`Fetch`]), what it finds ([`Raw`]), how one item of a batch
//! fails ([`ItemFailure`]), and the bounds on what is read.

use super::keys::{data_cache_key, field_cache_key, meta_cache_key};
use crate::layout::DocRef;
use crate::version::Field;

/// One thing to read from Redis for a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Fetch {
    /// A document's field names plus its rollback pin and gray share.
    Meta(DocRef),
    /// One field (version) of a document.
    Field(DocRef, Field),
    /// One dimension's data key (dimension mode), read as it is named: no prefix.
    Data(String),
}

impl Fetch {
    /// The worker-cache key of what this fetch loads.
    pub fn cache_key(&self) -> String {
        match self {
            Fetch::Meta(doc) => meta_cache_key(doc),
            Fetch::Field(doc, field) => field_cache_key(doc, *field),
            Fetch::Data(key) => data_cache_key(key),
        }
    }

    /// The document this reads from (none for a data key).
    pub fn doc(&self) -> Option<&DocRef> {
        match self {
            Fetch::Meta(doc) | Fetch::Field(doc, _) => Some(doc),
            Fetch::Data(_) => None,
        }
    }
}

impl std::fmt::Display for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fetch::Meta(doc) => write!(f, "{doc}"),
            Fetch::Field(doc, field) => write!(f, "{doc} version {field}"),
            Fetch::Data(key) => write!(f, "data \"{}\"", key.escape_debug()),
        }
    }
}

/// A document's field names and its raw `rollback` / `gray` entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawMeta {
    pub fields: Vec<String>,
    pub pin: Option<String>,
    pub gray: Option<String>,
}

/// What one fetch found: `None` when the document or field does not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Raw {
    Meta(Option<RawMeta>),
    Field(Option<Vec<u8>>),
    /// A data key's value; `Err` when it exists but cannot be used (too large, not a string).
    Data(Result<Option<Vec<u8>>, String>),
}

/// Largest dimension value accepted, in bytes. A larger one is refused (it counts as broken)
/// and no more than this is ever read of it.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// Most fields one document may have (its versions, `predeploy`, `abVersion`). A document
/// with more is refused from its field count (`HLEN`), before its field list is asked for:
/// that document fails (stale inputs or 503), the source stays in use. `dynpagectl prune`
/// keeps a document under it.
pub const MAX_DOC_FIELDS: usize = 10_000;

/// Longest field name of a document that is read (a longer one fails its document).
pub const MAX_FIELD_NAME_BYTES: usize = 1024;

/// Longest `rollback` / `gray` entry that is read (a pin is a version, a share a percentage:
/// a longer one is not something Redis would be expected to hold, and fails the source).
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// Largest field value (a snapshot or a template version) that is read: the snapshot limit. A
/// larger one is refused from its length (`HSTRLEN`), before it is asked for, like a document
/// with too many fields. (A template over its own 1 MiB limit but within this one is read and
/// fails to compile, so the previous template version is used.)
pub const MAX_FIELD_BYTES: usize = crate::snapshot::MAX_SNAPSHOT_BYTES;

/// How one item of a batch failed at a Redis that otherwise answers: that item's (that
/// document's or data key's) failure, not the source's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemFailure {
    pub cause: String,
    /// Its reply did not arrive in time (rather than being refused): a source that is slow
    /// for several different keys is skipped.
    pub slow: bool,
}

impl ItemFailure {
    pub(super) fn refused(cause: String) -> ItemFailure {
        ItemFailure { cause, slow: false }
    }
}
