//! The state of `dynpagectl check` shared by its parts: the checker (its connection, report and
//! template cache), the documents and fields as they are read, and the bounds of each round.

use std::collections::HashMap;
use std::rc::Rc;

use redis::Value;

use dynpage_core::layout::DocRef;

use super::report::{Kind, Report};
use crate::context::{fail, redis_err, Con, Ctx, Result};

/// `COUNT` of each SCAN / HSCAN: a hint to Redis of how much one call walks.
pub(super) const SCAN_COUNT: usize = 500;
/// Most commands in one pipeline of per-field commands (`HSTRLEN`, `EXISTS`).
pub(super) const PIPELINE_COMMANDS: usize = 1000;
/// Most templates whose versions are remembered at once (the cache starts over when full).
pub(super) const TEMPLATE_CACHE: usize = 4096;

/// What is known of a template document, for the pages and templates that refer to it.
#[derive(Clone, Debug)]
pub(super) enum Facts {
    Missing,
    /// Its production versions, ascending (shared: the cache hands out clones).
    Versions(Rc<[u64]>),
    /// It exists but its fields are not read (not a hash, or over the field count limit): that is
    /// reported on the template itself.
    Unlisted,
}

/// A document of one SCAN reply, as it is read.
pub(super) struct Doc {
    /// The key as Redis holds it (used for every command).
    pub(super) key: Vec<u8>,
    /// The key for messages.
    pub(super) shown: String,
    pub(super) doc: DocRef,
    /// Its field count.
    pub(super) len: usize,
    pub(super) pin_len: Option<usize>,
    pub(super) gray_len: Option<usize>,
}

/// A field whose value is to be read and checked.
pub(super) struct FieldWork {
    pub(super) doc: usize,
    pub(super) name: Vec<u8>,
    pub(super) shown: String,
    pub(super) len: usize,
}

pub(super) struct Checker<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) con: Con,
    pub(super) now: u64,
    pub(super) report: Report,
    pub(super) templates: HashMap<String, Facts>,
    pub(super) pages: usize,
    pub(super) template_docs: usize,
}

impl Checker<'_> {
    pub(super) fn problem(
        &mut self,
        key: &str,
        field: Option<&str>,
        kind: Kind,
        msg: &str,
    ) -> Result<()> {
        self.report.add(key, field, kind, msg)
    }

    /// Sends `pipe` (its commands' errors come back as values) and checks it got `n` replies.
    pub(super) fn query(&mut self, pipe: &mut redis::Pipeline, n: usize) -> Result<Vec<Value>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let replies: Vec<Value> = pipe
            .ignore_errors()
            .query(&mut self.con)
            .or_else(redis_err)?;
        if replies.len() != n {
            return fail(format!(
                "redis: {} replies to a pipeline of {n} commands",
                replies.len()
            ));
        }
        Ok(replies)
    }
}
