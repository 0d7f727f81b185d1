//! The request path's decisions, as states and transitions: from what the worker cache holds,
//! what a request does next — fetch, look again accepting stale inputs, fall back to an earlier
//! version, answer 304 / 404 / 500, or render and answer 200. The nginx edge carries a
//! [`Decision`] out and nothing else.
//!
//! ```text
//!            ┌──────────── Need, sources down ──────────┐
//!            │                                          v
//!        [Current] ── Need ──> Fetch (wait, then    [Stale] ── Need ──> Unavailable
//!            │                  decide again)           │
//!            ├── NotFound ──> 404                       │ (the same arrows as Current)
//!            ├── Broken / render fails / known to fail ─┼──> [Fallback 1..3] ── fails ──> next
//!            ├── If-None-Match matches ──> 304          │          │            stage or 500
//!            └── rendered ──> 200                       │          └── rendered ──> 200 + alert
//! ```

use crate::coding::{Coding, Encoding};
use crate::etag::{coded_etag, etag_matches, etag_value, EtagBuf};
use crate::failures::Failures;
use crate::guard::Guard;
use crate::layout::DocRef;
use crate::limits::Limits;
use crate::output_cache::{Compressed, Output, OutputCache, Unused};
use crate::render::{RenderOptions, SkippedModule, Value};
use crate::resolve::{
    fallback_stages, resolve, resolve_dimensions, Body as PageBody, Dimension, Inputs, Outcome,
    Page,
};
use crate::store::Fetch;
use crate::version::{Ask, Field, Fnv, Variant};

use std::sync::Arc;

/// Where a response's inputs came from (`$dynpage_source`, `X-Dynpage: source=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Source {
    /// The worker cache, fresh.
    L1 = 1,
    /// Fetched from Redis for this request.
    Redis,
    /// Fetched from the CMS (`dynpage_cms`) for this request.
    Cms,
    /// Kept inputs (or a kept output) past their TTL, because no source answered.
    Stale,
    /// An earlier version, because the one in force failed to render or its guard.
    Fallback,
}

impl Source {
    /// Every value, in the order of the contract's table.
    pub const ALL: [Source; 5] = [
        Source::L1,
        Source::Redis,
        Source::Cms,
        Source::Stale,
        Source::Fallback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::L1 => "l1",
            Source::Redis => "redis",
            Source::Cms => "cms",
            Source::Stale => "stale",
            Source::Fallback => "fallback",
        }
    }
}

/// `$dynpage_cache_status`, like nginx's `$upstream_cache_status`: `HIT` (the worker cache,
/// fresh), `MISS` (fetched for this request), `STALE` (no source answered), `FALLBACK` (an
/// earlier version) or `BYPASS` (a predeploy response: a pre-release, not what the cache serves
/// to everyone).
pub fn cache_status(variant: Variant, source: Source) -> &'static str {
    match (variant, source) {
        (_, Source::Fallback) => "FALLBACK",
        (_, Source::Stale) => "STALE",
        (Variant::Predeploy, _) => "BYPASS",
        (_, Source::L1) => "HIT",
        (_, Source::Redis | Source::Cms) => "MISS",
    }
}

/// How a fetch a request waited for ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Redis,
    Cms,
    /// No source answered.
    Failed,
}

/// Which earlier versions a request tries after a failed render (all zero: none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fallback {
    /// `(page before, template before)` per stage; 0 means "as production chooses".
    stages: [(u64, u64); 3],
    len: u8,
    /// 1 + the stage being tried; 0 when not falling back.
    at: u8,
    /// The failed render the fallback stands in for (see [`Failures`]).
    id: u64,
}

impl Fallback {
    fn start(id: u64, stages: &[(Option<u64>, Option<u64>)]) -> Fallback {
        let mut f = Fallback {
            id,
            at: 1,
            ..Fallback::default()
        };
        for (slot, (p, t)) in f.stages.iter_mut().zip(stages) {
            *slot = (p.unwrap_or(0), t.unwrap_or(0));
            f.len += 1;
        }
        if f.len == 0 {
            f.at = 0;
        }
        f
    }

    /// Whether a stage is being tried.
    fn active(&self) -> bool {
        self.at > 0 && self.at <= self.len
    }

    /// Moves on to the next stage; false when there is none left.
    fn advance(&mut self) -> bool {
        self.at = self.at.saturating_add(1);
        self.active()
    }

    fn ask(&self) -> Ask<'static> {
        let (p, t) = self.stages[usize::from(self.at.saturating_sub(1)).min(2)];
        Ask {
            before_page: (p > 0).then_some(p),
            before_template: (t > 0).then_some(t),
            ..Ask::default()
        }
    }
}

/// A request's state, kept across its waits. Plain data: all zero (what a zeroed request
/// context holds) is the first state, `Current`, before anything was fetched.
#[derive(Clone, Copy, Debug, Default)]
pub struct State {
    /// The request waited for a fetch (`source=redis`)...
    fetched: bool,
    /// ...that the CMS answered (`source=cms`).
    from_cms: bool,
    /// `Stale`: no source answered for this request, or every source is being skipped; inputs
    /// loaded within `dynpage_stale_ttl` serve.
    stale: bool,
    /// `Fallback`: an earlier version is being tried.
    fallback: Fallback,
    /// Times this request fetched a snapshot again because it was held without its data (its
    /// output kept, then dropped): bounded by [`MAX_REFETCHES`].
    refetches: u8,
}

/// Most times one request fetches a hollow snapshot again. Each is needed only when the kept
/// output was dropped between another request keeping it and this one resuming (an output
/// cache far too small for its traffic); past it, the request is answered as when no source
/// answers (the shared zone's last good output, else 503), rather than waiting on and on.
const MAX_REFETCHES: u8 = 2;

impl State {
    /// A fetch the request waited for ended as `answer`.
    pub fn fetch_ended(&mut self, answer: Answer) {
        self.fetched = true;
        self.from_cms |= answer == Answer::Cms;
        self.stale |= answer == Answer::Failed;
    }

    /// The request gave up waiting: no source answered in time.
    pub fn timed_out(&mut self) {
        self.stale = true;
    }

    /// Whether stale inputs serve (the request is in `Stale`).
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Where a response given now gets its inputs from.
    pub fn source(&self) -> Source {
        if self.fallback.active() {
            Source::Fallback
        } else if self.stale {
            Source::Stale
        } else if self.from_cms {
            Source::Cms
        } else if self.fetched {
            Source::Redis
        } else {
            Source::L1
        }
    }
}

/// How a location renders.
#[derive(Clone, Copy, Debug)]
pub struct RenderRules<'a> {
    pub limits: Limits,
    /// `dynpage_module_errors skip`: a failing module is left out, not the page failed.
    pub skip_failed_modules: bool,
    /// `dynpage_guard`: what an output must hold.
    pub guard: Option<&'a Guard>,
}

/// One request, as the decisions see it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The page key (page mode) or the URI (dimension mode): what ids and log lines name.
    pub key: &'a str,
    /// Dimension mode: the template, and each dimension with this request's key.
    pub template: Option<&'a str>,
    pub dimensions: &'a [Dimension<'a>],
    /// `predeploy=true` from a client `dynpage_predeploy_allow` allows.
    pub predeploy: bool,
    /// The `dynpage_gray_by` value (`None`: production).
    pub gray_user: Option<&'a [u8]>,
    pub now_ms: u64,
    /// `dynpage_cache_ttl`: how long a failure is remembered.
    pub ttl_ms: u64,
    /// Identifies the location: whether an output fails depends on its guard and limits.
    pub location: u64,
    /// The templates' `request` value (`dynpage_var`), if the location declares any, and a
    /// hash of its values.
    pub request: Option<&'a Value>,
    pub request_hash: u64,
    /// The same values hashed with a key no client knows: what tells kept outputs apart (two
    /// values crafted to give one `request_hash`, and so one ETag, still get their own).
    pub vars_key: u64,
    /// The client's `If-None-Match` (main requests only).
    pub if_none_match: Option<&'a [u8]>,
    /// `dynpage_gzip`, `dynpage_brotli`: the codings this request takes that the location
    /// serves (main requests only; see `accept_encoding`), preferred first. Its kept output is
    /// served in the first one it has bytes for, compressed once at that coding's level.
    pub encodings: &'a [Encoding],
    pub render: RenderRules<'a>,
}

/// What the decisions need from the worker.
pub trait Env {
    /// The worker cache as the resolver reads it; with `stale`, entries loaded within
    /// `dynpage_stale_ttl` serve as well.
    fn inputs(&mut self, stale: bool) -> impl Inputs + '_;
    /// Whether every source is being skipped after a failure.
    fn sources_down(&self) -> bool;
    fn failures(&mut self) -> &mut Failures;
    /// Where a render writes the page.
    fn output(&mut self) -> &mut Vec<u8>;
    /// The worker's kept outputs, when it keeps any.
    fn outputs(&mut self) -> Option<&mut OutputCache>;
    /// The output of page `key`'s snapshot `field` is kept: keep the snapshot without its data
    /// (see `PreparedSnapshot::hollowed`). By default nothing is done.
    fn hollow(&mut self, _key: &str, _field: Field) {}
    /// The kept output of page `key`'s snapshot `field` was asked for again (it is protected
    /// in the output cache now): keep what resolving the page needs (its meta, its hollow
    /// snapshot) apart from the long tail, so that serving the output waits for no source.
    /// By default nothing is done.
    fn protect(&mut self, _key: &str, _field: Field) {}
}

/// What goes into a response's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub not_modified: bool,
    /// The output's (identity) ETag; with a `coding`, the response's is [`coded_etag`] of it.
    pub etag: EtagBuf,
    /// The body is the kept output's bytes in this coding (`Content-Encoding`), or the 304 is
    /// for them.
    pub coding: Option<Coding>,
    pub last_modified_secs: Option<i64>,
    pub variant: Variant,
    pub field: Field,
    pub source: Source,
}

impl Reply {
    fn of(page: &Page, etag: EtagBuf, source: Source, not_modified: bool) -> Reply {
        Reply {
            not_modified,
            etag,
            coding: None,
            last_modified_secs: page.last_modified_ms.map(|ms| (ms / 1000) as i64),
            variant: page.variant,
            field: page.field,
            source,
        }
    }
}

/// Where a 200's body is.
#[derive(Debug)]
pub enum Body {
    /// In [`Env::output`], just rendered (not kept: the worker keeps no outputs, or this one
    /// is a fallback or over the bound).
    Rendered,
    /// A kept output: the response points at these bytes (its compressed bytes when the reply
    /// names a `coding`), holding them until it is sent.
    Kept(Arc<Output>),
}

/// What the request does next.
#[derive(Debug)]
pub enum Decision {
    /// Wait until the first of these fetches ends, then decide again.
    Fetch(Vec<Fetch>),
    /// No source answered and nothing stale is held: the shared zone's last good output, else
    /// 503 (the failure was logged for the source).
    Unavailable,
    /// 404, with the cause for the log.
    NotFound(String),
    /// 304 when `reply.not_modified`, else 200 with the page in [`Env::output`]. `alert`: the
    /// line for a fallback served for the first time; `left_out`: what the page left out
    /// (modules, dimensions), when that is logged for the first time.
    Reply {
        reply: Reply,
        body: Body,
        alert: Option<String>,
        left_out: Vec<String>,
    },
    /// 500: nothing renders; the line to log when this failure is logged for the first time.
    Failed(Option<String>),
}

/// The transitions, named (for debug logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Inputs are missing: fetch them.
    Fetch,
    /// Inputs are missing and every source is skipped: look again accepting stale inputs.
    GoStale,
    /// Inputs are missing even stale.
    Unavailable,
    /// The page does not exist.
    NotFound,
    /// The inputs in force failed (unusable data, a failed render, or known to fail): try the
    /// first earlier version.
    FallBack,
    /// The earlier version tried failed too: try the next.
    NextStage,
    /// No earlier version is left, or there is none.
    GiveUp,
    /// The client holds this output.
    NotModified,
    /// The output of these inputs is kept: served without rendering.
    Kept,
    /// The page rendered; `passes` is one more for each module that failed and was left out,
    /// `known_failed` how many were left out from the start as known to fail.
    Rendered { passes: usize, known_failed: usize },
    /// The render failed; followed by `FallBack`, `NextStage` or `GiveUp`.
    RenderFailed,
    /// The kept output was compressed (`dynpage_gzip`, `dynpage_brotli`), once: the first
    /// request that takes the coding does it, the others find the compressed bytes kept.
    Compressed(Compressed),
    /// The page rendered but its output failed `dynpage_guard`; followed as `RenderFailed`.
    GuardFailed,
}

impl std::fmt::Display for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transition::Fetch => f.write_str("inputs missing, fetching them"),
            Transition::GoStale => f.write_str("every source is skipped, looking for stale inputs"),
            Transition::Unavailable => f.write_str("no source answered and nothing stale is held"),
            Transition::NotFound => f.write_str("not found"),
            Transition::FallBack => f.write_str("falling back to an earlier version"),
            Transition::NextStage => f.write_str("that failed too, trying the next earlier one"),
            Transition::GiveUp => f.write_str("no earlier version is left"),
            Transition::NotModified => f.write_str("the client holds this output, 304"),
            Transition::Kept => f.write_str("served the kept output"),
            Transition::Rendered {
                passes,
                known_failed,
            } => write!(
                f,
                "rendered in {passes} pass{}, {known_failed} module{} known to fail left out",
                if *passes == 1 { "" } else { "es" },
                if *known_failed == 1 { "" } else { "s" },
            ),
            Transition::RenderFailed => f.write_str("the render failed"),
            Transition::Compressed(c) => {
                let (bytes, to, with) = (c.bytes, c.encoded_bytes, c.coding.token());
                write!(f, "compressed {bytes} bytes to {to} with {with}")?;
                match c.unused {
                    None => Ok(()),
                    Some(Unused::NotSmaller) => f.write_str(", not smaller: serving identity"),
                    Some(Unused::TooLarge) => f.write_str(
                        ", over dynpage_output_cache_size beside the identity bytes: serving identity",
                    ),
                }
            }
            Transition::GuardFailed => f.write_str("the output failed its guard"),
        }
    }
}

enum Step {
    Again,
    Done(Decision),
}

/// Decides what the request does next, moving its `state` on. Each transition taken is handed
/// to `trace`, with the page when it is about one (a render, a 304). Ends: `Stale` is entered
/// once, and a fallback has at most three stages.
pub fn decide(
    req: &Request<'_>,
    state: &mut State,
    env: &mut impl Env,
    trace: &mut impl FnMut(Transition, Option<&Page>),
) -> Decision {
    loop {
        let (transition, step) = step(req, state, env, trace);
        if let Some(t) = transition {
            trace(t, None);
        }
        if let Step::Done(decision) = step {
            return decision;
        }
    }
}

fn step(
    req: &Request<'_>,
    state: &mut State,
    env: &mut impl Env,
    trace: &mut impl FnMut(Transition, Option<&Page>),
) -> (Option<Transition>, Step) {
    let falling_back = state.fallback.active();
    let ask = if falling_back {
        state.fallback.ask()
    } else {
        Ask {
            predeploy: req.predeploy,
            gray_user: req.gray_user,
            ..Ask::default()
        }
    };
    let outcome = {
        let mut inputs = env.inputs(state.stale);
        match req.template {
            Some(template) => {
                resolve_dimensions(template, req.dimensions, req.now_ms, &ask, &mut inputs)
            }
            None => resolve(req.key, req.now_ms, &ask, &mut inputs),
        }
    };
    match outcome {
        Outcome::Need(fetches) => need(state, env, fetches),
        Outcome::NotFound(_) | Outcome::Broken { .. } if falling_back => next_stage(state, env),
        Outcome::NotFound(cause) => (
            Some(Transition::NotFound),
            Step::Done(Decision::NotFound(cause)),
        ),
        Outcome::Broken {
            version,
            template,
            cause,
        } => {
            let id = broken_id(req.key, version, template.as_ref());
            let what = describe_inputs(version, template.as_ref());
            env.failures()
                .note_render(id, req.now_ms, retry_at(req), what, cause);
            let variant = match version {
                Some(Field::Version(_)) | None => Variant::Production,
                Some(_) => Variant::Gray,
            };
            let stages = fallback_stages(variant, version, template.map(|(_, f)| f));
            fall_back(state, env, id, &stages)
        }
        Outcome::Ready(page) => ready(req, state, env, &page, trace),
    }
}

/// Inputs are missing: fetch them, or serve stale ones when no source answers (`Stale`), or
/// give up when even those are missing.
fn need(state: &mut State, env: &mut impl Env, fetches: Vec<Fetch>) -> (Option<Transition>, Step) {
    if state.stale {
        return (
            Some(Transition::Unavailable),
            Step::Done(Decision::Unavailable),
        );
    }
    if env.sources_down() {
        state.stale = true;
        return (Some(Transition::GoStale), Step::Again);
    }
    (
        Some(Transition::Fetch),
        Step::Done(Decision::Fetch(fetches)),
    )
}

/// A failure is tried again once its note expires, like any cached input.
fn retry_at(req: &Request<'_>) -> u64 {
    req.now_ms.saturating_add(req.ttl_ms)
}

/// `Current` → `Fallback`: the inputs in force (`id`) failed.
fn fall_back(
    state: &mut State,
    env: &mut impl Env,
    id: u64,
    stages: &[(Option<u64>, Option<u64>)],
) -> (Option<Transition>, Step) {
    state.fallback = Fallback::start(id, stages);
    if state.fallback.active() {
        return (Some(Transition::FallBack), Step::Again);
    }
    give_up(env, id)
}

/// `Fallback n` → `Fallback n+1`, or 500.
fn next_stage(state: &mut State, env: &mut impl Env) -> (Option<Transition>, Step) {
    if state.fallback.advance() {
        return (Some(Transition::NextStage), Step::Again);
    }
    give_up(env, state.fallback.id)
}

fn give_up(env: &mut impl Env, id: u64) -> (Option<Transition>, Step) {
    let line = env
        .failures()
        .unlogged_render(id)
        .map(|b| format!("{} failed: {}; no earlier version renders", b.what, b.cause));
    (Some(Transition::GiveUp), Step::Done(Decision::Failed(line)))
}

/// The inputs resolved: 304, or render (200), or fall back.
fn ready(
    req: &Request<'_>,
    state: &mut State,
    env: &mut impl Env,
    page: &Page,
    trace: &mut impl FnMut(Transition, Option<&Page>),
) -> (Option<Transition>, Step) {
    let falling_back = state.fallback.active();
    let now = req.now_ms;
    // Per location too: whether an output fails depends on its guard and limits.
    let render_id = Fnv::default()
        .write_u64(page.etag)
        .write_u64(req.location)
        .finish();
    // Inputs that failed to render are not rendered again until the TTL passes (a fallback
    // stage's inputs included).
    if env.failures().render_failed(render_id, now) {
        if falling_back {
            return next_stage(state, env);
        }
        return fall_back(state, env, render_id, &page_fallback(page));
    }
    let skip = req.render.skip_failed_modules;
    // Modules that failed for these inputs and request values before are left out from the
    // start.
    let inputs_id = Fnv::default()
        .write_u64(render_id)
        .write_u64(req.request_hash)
        .finish();
    let known_failed = if skip {
        env.failures().failed_modules(inputs_id, now)
    } else {
        Vec::new()
    };
    // The ETag names the output: the versions, the `dynpage_var` values and what is left out
    // (so a 304 or an If-Range never pairs another output's bytes).
    let vars_hash = req.request.is_some().then_some(req.request_hash);
    let etag = output_etag(page.etag, vars_hash, &known_failed, &[]);
    let source = state.source();
    // A client that takes gzip (brotli) may hold the gzip (brotli) bytes, under their ETag, or
    // from before the identity bytes: each is this output.
    let holds = req.if_none_match.and_then(|v| {
        let coded = req
            .encodings
            .iter()
            .find(|e| etag_matches(v, &coded_etag(&etag, e.coding)));
        match coded {
            Some(e) => Some(Some(e.coding)),
            None => etag_matches(v, &etag).then_some(None),
        }
    });
    if let Some(coding) = holds {
        let reply = Reply {
            coding,
            ..Reply::of(page, etag, source, true)
        };
        let decision = Decision::Reply {
            reply,
            body: Body::Rendered,
            alert: None,
            left_out: Vec::new(),
        };
        trace(Transition::NotModified, Some(page));
        return (None, Step::Done(decision));
    }
    // The same inputs, request values and left-out modules in the same location give the same
    // bytes: the kept output, if there is one (never a fallback's: those are not kept).
    if !falling_back {
        let key = output_key(&etag, req.location, req.vars_key);
        if let Some((kept, protected_now)) = env.outputs().and_then(|c| c.get_protecting(key)) {
            // What serving it needs is a few hundred bytes (its snapshot is held hollow):
            // kept apart from the tail.
            if protected_now && held_hollow(page, req) {
                env.protect(req.key, page.field);
            }
            let coding = coded_kept(env, key, &kept, req, page, trace);
            let decision = Decision::Reply {
                reply: Reply {
                    coding,
                    ..Reply::of(page, etag, source, false)
                },
                body: Body::Kept(kept),
                alert: None,
                left_out: Vec::new(),
            };
            trace(Transition::Kept, Some(page));
            return (None, Step::Done(decision));
        }
    }
    // A snapshot kept without its data (its output was kept, then dropped): fetch it again to
    // render (page mode: `req.key` is the page).
    if let PageBody::Snapshot(s) = &page.body {
        if s.hollow {
            if state.refetches >= MAX_REFETCHES {
                return (
                    Some(Transition::Unavailable),
                    Step::Done(Decision::Unavailable),
                );
            }
            state.refetches += 1;
            let doc = DocRef::Page(req.key.into());
            return need(state, env, vec![Fetch::Field(doc, page.field)]);
        }
    }
    let mut skipped = Vec::new();
    let rendered = {
        let out = env.output();
        out.clear();
        let options = RenderOptions {
            limits: req.render.limits,
            skip_failed_modules: skip,
            known_failed_modules: &known_failed,
        };
        match page.skipped_modules.first() {
            Some(m) if !skip => Err(format!(
                "module \"{}\" failed: {}",
                m.name.escape_debug(),
                m.cause
            )),
            _ => page
                .render_with(req.request, &options, out, &mut skipped)
                .map_err(|e| e.to_string()),
        }
        .map_err(|cause| (Transition::RenderFailed, cause))
        .and_then(|()| {
            req.render.guard.map_or(Ok(()), |g| {
                g.check(out)
                    .map_err(|cause| (Transition::GuardFailed, cause))
            })
        })
    };
    let rendered_in = Transition::Rendered {
        passes: 1 + skipped.len(),
        known_failed: known_failed.len(),
    };
    trace(rendered_in, Some(page));
    let etag = if skipped.is_empty() {
        etag
    } else {
        let newly: Vec<&str> = skipped.iter().map(|m| m.name.as_str()).collect();
        output_etag(page.etag, vars_hash, &known_failed, &newly)
    };
    if !skipped.is_empty() {
        let mut failed = known_failed;
        failed.extend(skipped.iter().map(|m| m.name.clone()));
        env.failures()
            .note_modules(inputs_id, now, retry_at(req), failed);
    }
    let cause = match rendered {
        Ok(()) => {
            let something_left_out = !skipped.is_empty()
                || !page.skipped_modules.is_empty()
                || !page.bad_dimensions.is_empty();
            let left_out = if something_left_out && env.failures().first_notice(render_id) {
                left_out_lines(page, &skipped)
            } else {
                Vec::new()
            };
            let alert = if falling_back {
                env.failures().unlogged_render(state.fallback.id).map(|b| {
                    format!(
                        "{} failed: {}; serving {} instead",
                        b.what,
                        b.cause,
                        describe_inputs(page.page_field(), page.template_field.as_ref())
                    )
                })
            } else {
                None
            };
            let mut reply = Reply::of(page, etag, source, false);
            let body = if falling_back {
                Body::Rendered
            } else {
                keep_output(env, &etag, req)
            };
            if matches!(body, Body::Kept(_)) && held_hollow(page, req) {
                env.hollow(req.key, page.field);
            }
            if let Body::Kept(kept) = &body {
                let key = output_key(&etag, req.location, req.vars_key);
                reply.coding = coded_kept(env, key, kept, req, page, trace);
            }
            let decision = Decision::Reply {
                reply,
                body,
                alert,
                left_out,
            };
            return (None, Step::Done(decision));
        }
        Err((failed, cause)) => {
            trace(failed, Some(page));
            cause
        }
    };
    let what = describe_inputs(page.page_field(), page.template_field.as_ref());
    env.failures()
        .note_render(render_id, now, retry_at(req), what, cause);
    if falling_back {
        return next_stage(state, env);
    }
    fall_back(state, env, render_id, &page_fallback(page))
}

/// What identifies an output among the kept ones.
fn output_key(etag: &EtagBuf, location: u64, vars_key: u64) -> u64 {
    Fnv::default()
        .write(etag)
        .write_u64(location)
        .write_u64(vars_key)
        .finish()
}

/// Whether `page`'s snapshot is held without its data once its output is kept: a page-mode
/// production snapshot, unless the location's outputs also vary with request values (each
/// other output of the same snapshot would fetch it again); never a predeploy or gray one.
fn held_hollow(page: &Page, req: &Request<'_>) -> bool {
    matches!(
        (&page.body, req.request, page.variant),
        (PageBody::Snapshot(_), None, Variant::Production)
    )
}

/// Keeps the output just rendered under its ETag and location (see [`OutputCache`]).
fn keep_output(env: &mut impl Env, etag: &EtagBuf, req: &Request<'_>) -> Body {
    let key = output_key(etag, req.location, req.vars_key);
    let mut out = std::mem::take(env.output());
    let kept = env.outputs().and_then(|c| c.insert(key, &out));
    std::mem::swap(env.output(), &mut out);
    kept.map_or(Body::Rendered, Body::Kept)
}

/// The coding the kept output `kept` (under `key`) is served in to this request: the first of
/// the request's codings the output has bytes for, compressing it into each now if no request
/// did before (never again after: see [`OutputCache::compress`]); `None`: identity.
fn coded_kept(
    env: &mut impl Env,
    key: u64,
    kept: &Output,
    req: &Request<'_>,
    page: &Page,
    trace: &mut impl FnMut(Transition, Option<&Page>),
) -> Option<Coding> {
    req.encodings.iter().find_map(|e| {
        if !kept.compressed(e.coding) {
            if let Some(done) = env
                .outputs()
                .and_then(|c| c.compress(key, e.coding, e.level))
            {
                trace(Transition::Compressed(done), Some(page));
            }
        }
        kept.encoded(e.coding).map(|_| e.coding)
    })
}

/// The fallback stages after the render of `page` failed.
fn page_fallback(page: &Page) -> Vec<(Option<u64>, Option<u64>)> {
    fallback_stages(
        page.variant,
        page.page_field(),
        page.template_field.as_ref().map(|(_, f)| *f),
    )
}

/// The page version and main template version of a set of inputs, for log lines.
pub fn describe_inputs(page: Option<Field>, template: Option<&(String, Field)>) -> String {
    let template =
        template.map(|(name, f)| format!("template \"{}\" version {f}", name.escape_debug()));
    match (page, template) {
        (Some(f), Some(t)) => format!("version {f} ({t})"),
        (Some(f), None) => format!("version {f}"),
        (None, Some(t)) => t,
        (None, None) => "its data".to_string(),
    }
}

/// Identifies failed inputs that have no ETag (they never resolved to a page).
fn broken_id(key: &str, page: Option<Field>, template: Option<&(String, Field)>) -> u64 {
    let mut h = Fnv::default();
    h.write(key.as_bytes()).write(b"\0broken\0");
    h.write(describe_inputs(page, template).as_bytes());
    h.finish()
}

/// Log lines for what a rendered page left out.
fn left_out_lines(page: &Page, skipped: &[SkippedModule]) -> Vec<String> {
    page.skipped_modules
        .iter()
        .chain(skipped)
        .map(|m| format!("module \"{}\" left out: {}", m.name.escape_debug(), m.cause))
        .chain(page.bad_dimensions.iter().cloned())
        .collect()
}

/// The ETag of an output: the inputs' (`page_etag`) alone when nothing else changes the bytes,
/// else mixed with the `dynpage_var` values and the names of the modules left out.
fn output_etag(
    page_etag: u64,
    vars_hash: Option<u64>,
    known_failed: &[String],
    newly_failed: &[&str],
) -> EtagBuf {
    if vars_hash.is_none() && known_failed.is_empty() && newly_failed.is_empty() {
        return etag_value(page_etag);
    }
    let mut names: Vec<&str> = known_failed.iter().map(String::as_str).collect();
    names.extend_from_slice(newly_failed);
    names.sort_unstable();
    names.dedup();
    let mut h = Fnv::default();
    h.write_u64(page_etag).write_u64(vars_hash.unwrap_or(0));
    for n in names {
        h.write_u64(n.len() as u64).write(n.as_bytes());
    }
    etag_value(h.finish())
}
