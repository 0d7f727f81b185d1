//! Every transition of the request path's state machine (`dynpage_core::serve`), driven
//! against a fake worker: a cache filled by "fetches" from an in-memory store, a switch for
//! "every source is skipped", and entries that only serve stale.

use std::collections::HashMap;
use std::sync::Arc;

use dynpage_core::coding::{Coding, Encoding};
use dynpage_core::failures::Failures;
use dynpage_core::guard::Guard;
use dynpage_core::limits::Limits;
use dynpage_core::output_cache::OutputCache;
use dynpage_core::prepare::{Prepared, PreparedData, PreparedSnapshot};
use dynpage_core::render::CompiledTemplate;
use dynpage_core::resolve::{Dimension, Inputs, Loaded, Slot};
use dynpage_core::serve::{
    cache_status, decide, Answer, Body, Decision, Env, RenderRules, Reply, Request, Source, State,
    Transition,
};
use dynpage_core::store::Fetch;
use dynpage_core::version::{DocMeta, Field, Variant};

use Transition::*;

mod common;
use common::{page, tpl, Cached, Lookup, Store};

/// The store, the worker cache and what the decisions need from a worker.
#[derive(Default)]
struct World {
    store: Store,
    /// Fresh entries, by cache key.
    cache: HashMap<String, Prepared>,
    /// Entries past their TTL: they serve only in `Stale`.
    expired: HashMap<String, Prepared>,
    /// Every source is being skipped.
    down: bool,
    failures: Failures,
    out: Vec<u8>,
    /// Kept outputs (`None`: the worker keeps none).
    outputs: Option<OutputCache>,
    fetches: usize,
    /// Snapshots whose output is kept are kept without their data, as the worker does.
    hollowing: bool,
    /// A fetched snapshot is hollowed at once (another request kept its output and it was
    /// dropped again before this one resumed).
    churn: bool,
    /// The pages and fields `Env::protect` was called for, in order.
    protected: Vec<(String, Field)>,
}

impl std::ops::Deref for World {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl std::ops::DerefMut for World {
    fn deref_mut(&mut self) -> &mut Store {
        &mut self.store
    }
}

impl World {
    /// What a fetch thread would do for `f`.
    fn fetch(&mut self, f: &Fetch) {
        self.fetches += 1;
        let value = self.store.fetch(f);
        self.cache.insert(f.cache_key(), value);
        if self.churn {
            self.hollow_key(&f.cache_key());
        }
    }

    fn hollow_key(&mut self, key: &str) {
        if let Some(Prepared::Snapshot(Some(Ok(s)))) = self.cache.get(key) {
            let hollow = Arc::new(s.hollowed());
            self.cache
                .insert(key.to_string(), Prepared::Snapshot(Some(Ok(hollow))));
        }
    }

    /// Whether page `key`'s snapshot `field` is cached without its data.
    fn is_hollow(&self, key: &str, field: Field) -> bool {
        let k = Fetch::Field(page(key), field).cache_key();
        matches!(self.cache.get(&k), Some(Prepared::Snapshot(Some(Ok(s)))) if s.hollow)
    }

    /// Every fresh entry becomes one that only serves stale (the TTL passed).
    fn expire_all(&mut self) {
        self.expired.extend(self.cache.drain());
    }
}

/// The cache as a request sees it: expired entries too when it is in `Stale`.
struct View<'a> {
    world: &'a World,
    stale: bool,
}

impl Lookup for View<'_> {
    fn lookup(&self, key: &str) -> Option<&Prepared> {
        self.world
            .cache
            .get(key)
            .or_else(|| self.stale.then(|| self.world.expired.get(key)).flatten())
    }
}

impl Env for World {
    fn inputs(&mut self, stale: bool) -> impl Inputs + '_ {
        ViewInputs(View { world: self, stale })
    }
    fn sources_down(&self) -> bool {
        self.down
    }
    fn failures(&mut self) -> &mut Failures {
        &mut self.failures
    }
    fn output(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }
    fn outputs(&mut self) -> Option<&mut OutputCache> {
        self.outputs.as_mut()
    }
    fn hollow(&mut self, key: &str, field: Field) {
        if self.hollowing {
            self.hollow_key(&Fetch::Field(page(key), field).cache_key());
        }
    }
    fn protect(&mut self, key: &str, field: Field) {
        self.protected.push((key.to_string(), field));
    }
}

/// `Inputs` over a [`View`] it owns.
struct ViewInputs<'a>(View<'a>);

impl Inputs for ViewInputs<'_> {
    fn meta(&mut self, page: bool, name: &str) -> Slot<Option<Arc<DocMeta>>> {
        Cached(&self.0).meta(page, name)
    }
    fn snapshot(&mut self, key: &str, field: Field) -> Slot<Loaded<PreparedSnapshot>> {
        Cached(&self.0).snapshot(key, field)
    }
    fn template(&mut self, name: &str, field: Field) -> Slot<Loaded<CompiledTemplate>> {
        Cached(&self.0).template(name, field)
    }
    fn data(&mut self, key: &str) -> Slot<Loaded<PreparedData>> {
        Cached(&self.0).data(key)
    }
}

const NOW: u64 = 1_000_000;

fn request<'a>(key: &'a str) -> Request<'a> {
    Request {
        key,
        template: None,
        dimensions: &[],
        predeploy: false,
        gray_user: None,
        now_ms: NOW,
        ttl_ms: 60_000,
        location: 1,
        request: None,
        request_hash: 0,
        vars_key: 0,
        if_none_match: None,
        encodings: &[],
        render: RenderRules {
            limits: Limits::default(),
            skip_failed_modules: false,
            guard: None,
        },
    }
}

/// One call of `decide`: the decision and the transitions taken.
fn once(w: &mut World, req: &Request<'_>, state: &mut State) -> (Decision, Vec<Transition>) {
    let mut trail = Vec::new();
    let d = decide(req, state, w, &mut |t, _| trail.push(t));
    (d, trail)
}

/// A request from start to answer: each `Fetch` is carried out and the request decides again,
/// as a resumed request does. Returns the final decision and every transition taken.
fn serve(w: &mut World, req: &Request<'_>) -> (Decision, Vec<Transition>) {
    let mut state = State::default();
    let mut all = Vec::new();
    for _ in 0..10 {
        let (d, trail) = once(w, req, &mut state);
        all.extend(trail);
        match d {
            Decision::Fetch(fetches) => {
                fetches.iter().for_each(|f| w.fetch(f));
                state.fetch_ended(Answer::Redis);
            }
            other => return (other, all),
        }
    }
    panic!("the request did not end: {all:?}")
}

fn reply(d: Decision) -> (Reply, Option<String>, Vec<String>) {
    reply_body(d).0
}

/// The reply and the bytes of its body (the kept output's, or what was rendered into the
/// worker's buffer; empty for a 304).
fn reply_body(d: Decision) -> ((Reply, Option<String>, Vec<String>), Body) {
    match d {
        Decision::Reply {
            reply,
            body,
            alert,
            left_out,
        } => ((reply, alert, left_out), body),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn bytes(w: &World, body: &Body) -> Vec<u8> {
    match body {
        Body::Rendered => w.out.clone(),
        Body::Kept(o) => o.body.to_vec(),
    }
}

fn keeping() -> World {
    World {
        outputs: Some(OutputCache::new(1 << 20)),
        ..World::default()
    }
}

/// The transitions other than fetches.
fn decisions(trail: &[Transition]) -> Vec<Transition> {
    trail.iter().copied().filter(|t| *t != Fetch).collect()
}

fn rendered(passes: usize) -> Transition {
    Rendered {
        passes,
        known_failed: 0,
    }
}

#[test]
fn current_fetches_what_is_missing_then_renders_and_the_next_request_is_an_l1_hit() {
    let mut w = World::default();
    w.put(
        page("/a"),
        "100",
        r#"{"template":"hello {{ x }}","data":{"x":"you"}}"#,
    );
    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!(trail, vec![Fetch, Fetch, rendered(1)]);
    let (r, alert, left_out) = reply(d);
    assert_eq!(r.source, Source::Redis);
    assert_eq!(
        (r.variant, r.field),
        (Variant::Production, Field::Version(100))
    );
    assert!(!r.not_modified && alert.is_none() && left_out.is_empty());
    assert_eq!(w.out, b"hello you");

    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!(trail, vec![rendered(1)]);
    assert_eq!(reply(d).0.source, Source::L1);
}

#[test]
fn a_missing_page_is_not_found() {
    let mut w = World::default();
    let (d, trail) = serve(&mut w, &request("/nope"));
    assert_eq!(trail, vec![Fetch, NotFound]);
    assert!(matches!(d, Decision::NotFound(_)));
}

#[test]
fn sources_down_goes_stale_and_serves_expired_inputs() {
    let mut w = World::default();
    w.put(page("/a"), "100", r#"{"template":"old","data":{}}"#);
    serve(&mut w, &request("/a"));
    w.expire_all();
    w.down = true;
    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!(trail, vec![GoStale, rendered(1)]);
    assert_eq!(reply(d).0.source, Source::Stale);
    assert_eq!(
        w.fetches, 2,
        "nothing fetched while every source is skipped"
    );
}

#[test]
fn stale_with_nothing_kept_is_unavailable() {
    let mut w = World {
        down: true,
        ..World::default()
    };
    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!(trail, vec![GoStale, Unavailable]);
    assert!(matches!(d, Decision::Unavailable));

    // A fetch the request waited for failed: straight to Stale.
    w.down = false;
    let mut state = State::default();
    let (d, _) = once(&mut w, &request("/a"), &mut state);
    assert!(matches!(d, Decision::Fetch(_)));
    state.fetch_ended(Answer::Failed);
    assert!(state.is_stale());
    let (d, trail) = once(&mut w, &request("/a"), &mut state);
    assert_eq!(trail, vec![Unavailable]);
    assert!(matches!(d, Decision::Unavailable));
}

#[test]
fn a_timed_out_wait_serves_stale_inputs() {
    let mut w = World::default();
    w.put(page("/a"), "100", r#"{"template":"old","data":{}}"#);
    serve(&mut w, &request("/a"));
    w.expire_all();
    let mut state = State::default();
    let (d, _) = once(&mut w, &request("/a"), &mut state);
    assert!(matches!(d, Decision::Fetch(_)));
    state.timed_out();
    let (d, trail) = once(&mut w, &request("/a"), &mut state);
    assert_eq!(trail, vec![rendered(1)]);
    assert_eq!(reply(d).0.source, Source::Stale);
}

#[test]
fn the_cms_answer_is_the_source() {
    let mut w = World::default();
    w.put(page("/a"), "100", r#"{"template":"x","data":{}}"#);
    let mut state = State::default();
    let req = request("/a");
    loop {
        match once(&mut w, &req, &mut state).0 {
            Decision::Fetch(fs) => {
                fs.iter().for_each(|f| w.fetch(f));
                state.fetch_ended(Answer::Cms);
            }
            d => {
                assert_eq!(reply(d).0.source, Source::Cms);
                break;
            }
        }
    }
}

#[test]
fn a_matching_if_none_match_is_not_modified_without_rendering() {
    let mut w = World::default();
    w.put(page("/a"), "100", r#"{"template":"x","data":{}}"#);
    let (r, _, _) = reply(serve(&mut w, &request("/a")).0);
    w.out.clear();
    let etag = r.etag;
    let req = Request {
        if_none_match: Some(&etag),
        ..request("/a")
    };
    let (d, trail) = serve(&mut w, &req);
    assert_eq!(trail, vec![NotModified]);
    let (r304, _, _) = reply(d);
    assert!(r304.not_modified);
    assert_eq!(r304.etag, etag);
    assert!(w.out.is_empty(), "a 304 renders nothing");
    // Another output's ETag does not match.
    let req = Request {
        if_none_match: Some(b"\"0000000000000000\""),
        ..request("/a")
    };
    assert_eq!(serve(&mut w, &req).1, vec![rendered(1)]);
}

#[test]
fn unusable_data_falls_back_to_the_version_before_and_alerts_once() {
    let mut w = World::default();
    w.put(page("/a"), "100", r#"{"template":"good","data":{}}"#);
    w.put(page("/a"), "200", r#"{"template":"bad","data":"#);
    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!(decisions(&trail), vec![FallBack, rendered(1)]);
    let (r, alert, _) = reply(d);
    assert_eq!((r.source, r.field), (Source::Fallback, Field::Version(100)));
    let alert = alert.expect("the first fallback alerts");
    assert!(alert.starts_with("version 200 failed: "), "{alert}");
    assert!(alert.ends_with("; serving version 100 instead"), "{alert}");
    assert_eq!(w.out, b"good");

    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!(trail, vec![FallBack, rendered(1)]);
    assert!(reply(d).1.is_none(), "logged once");
}

#[test]
fn a_failed_render_falls_back_and_is_not_rendered_again_within_the_ttl() {
    let mut w = World::default();
    w.put(page("/a"), "100", r#"{"template":"v1","data":{}}"#);
    w.put(
        page("/a"),
        "200",
        r#"{"template":"v2 {{ x.y }}","data":{"x":1}}"#,
    );
    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!(
        decisions(&trail),
        vec![rendered(1), RenderFailed, FallBack, rendered(1)]
    );
    let (r, alert, _) = reply(d);
    assert_eq!((r.source, r.field), (Source::Fallback, Field::Version(100)));
    assert!(alert.is_some_and(|a| a.starts_with("version 200 failed: ")));

    // Known to fail: the fallback is served without rendering version 200 again.
    let (_, trail) = serve(&mut w, &request("/a"));
    assert_eq!(trail, vec![FallBack, rendered(1)]);
    // Once the note expires, version 200 is tried again.
    let later = Request {
        now_ms: NOW + 60_000,
        ..request("/a")
    };
    let (_, trail) = serve(&mut w, &later);
    assert_eq!(
        trail,
        vec![rendered(1), RenderFailed, FallBack, rendered(1)]
    );
}

#[test]
fn a_guard_failure_falls_back() {
    let mut w = World::default();
    w.put(
        page("/a"),
        "100",
        r#"{"template":"a long enough page","data":{}}"#,
    );
    w.put(page("/a"), "200", r#"{"template":"short","data":{}}"#);
    let guard = Guard::parse(&["min_bytes=10"])
        .ok()
        .flatten()
        .expect("a guard");
    let mut req = request("/a");
    req.render.guard = Some(&guard);
    let (d, trail) = serve(&mut w, &req);
    assert_eq!(
        decisions(&trail),
        vec![rendered(1), GuardFailed, FallBack, rendered(1)]
    );
    assert_eq!(reply(d).0.field, Field::Version(100));
    assert_eq!(w.out, b"a long enough page");
}

#[test]
fn every_stage_failing_gives_up_with_one_line() {
    let mut w = World::default();
    w.put(
        page("/a"),
        "100",
        r#"{"template":{"name":"t"},"data":{"x":1}}"#,
    );
    w.put(
        page("/a"),
        "200",
        r#"{"template":{"name":"t"},"data":{"x":1}}"#,
    );
    w.put(tpl("t"), "10", "{{ x.a }}");
    w.put(tpl("t"), "20", "{{ x.b }}");
    // Stages: template before, page before, both before: each fails.
    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!(
        decisions(&trail),
        vec![
            rendered(1),
            RenderFailed,
            FallBack,
            rendered(1),
            RenderFailed,
            NextStage,
            rendered(1),
            RenderFailed,
            NextStage,
            rendered(1),
            RenderFailed,
            GiveUp
        ]
    );
    let Decision::Failed(Some(line)) = d else {
        panic!("expected a 500 with a line")
    };
    assert!(
        line.starts_with("version 200 (template \"t\" version 20) failed: "),
        "{line}"
    );
    assert!(line.ends_with("; no earlier version renders"), "{line}");
    // Logged once; the known failures are not rendered again.
    let (d, trail) = serve(&mut w, &request("/a"));
    assert!(matches!(d, Decision::Failed(None)));
    assert_eq!(trail, vec![FallBack, NextStage, NextStage, GiveUp]);
}

#[test]
fn no_earlier_version_gives_up_at_once() {
    let mut w = World::default();
    w.put(
        page("/a"),
        "100",
        r#"{"template":"{{ x.y }}","data":{"x":1}}"#,
    );
    // An inline template and one version: one stage (the page before 100), which finds
    // nothing.
    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!(
        decisions(&trail),
        vec![rendered(1), RenderFailed, FallBack, GiveUp]
    );
    assert!(matches!(d, Decision::Failed(Some(_))));
}

#[test]
fn a_failing_module_is_left_out_once_then_known() {
    let mut w = World::default();
    w.put(
        page("/a"),
        "100",
        r#"{"template":{"name":"main"},"data":{"x":1}}"#,
    );
    w.put(tpl("main"), "1", r#"[{% include "mod" with x %}]"#);
    w.put(tpl("mod"), "1", "{{ a.b }}");
    let mut req = request("/a");
    req.render.skip_failed_modules = true;
    let (d, trail) = serve(&mut w, &req);
    assert_eq!(trail.last(), Some(&rendered(2)));
    let (r, _, left_out) = reply(d);
    assert_eq!(w.out, b"[]");
    assert_eq!(left_out.len(), 1);
    assert!(
        left_out[0].starts_with("module \"mod\" left out: "),
        "{left_out:?}"
    );
    let first_etag = r.etag;

    let (d, trail) = serve(&mut w, &req);
    assert_eq!(
        trail,
        vec![Rendered {
            passes: 1,
            known_failed: 1
        }]
    );
    let (r, _, left_out) = reply(d);
    assert!(left_out.is_empty(), "logged once");
    assert_eq!(r.etag, first_etag, "the same output, the same ETag");

    // Failing modules fail the page when the location says so.
    req.render.skip_failed_modules = false;
    req.location = 2;
    let (d, _) = serve(&mut w, &req);
    assert!(matches!(d, Decision::Failed(Some(_))));
}

#[test]
fn request_values_change_the_etag_and_reach_the_template() {
    let mut w = World::default();
    w.put(
        page("/a"),
        "100",
        r#"{"template":"hi {{ request.who }}","data":{}}"#,
    );
    let mut etags = Vec::new();
    for (who, hash) in [("ann", 1), ("bob", 2)] {
        let value = dynpage_core::render::request_value([("who".to_string(), who.to_string())]);
        let req = Request {
            request: Some(&value),
            request_hash: hash,
            ..request("/a")
        };
        let (r, _, _) = reply(serve(&mut w, &req).0);
        assert_eq!(w.out, format!("hi {who}").as_bytes());
        etags.push(r.etag);
    }
    assert_ne!(etags[0], etags[1]);
}

#[test]
fn a_failing_gray_or_predeploy_version_falls_back_to_production() {
    let mut w = World::default();
    w.put(page("/a"), "100", r#"{"template":"prod","data":{}}"#);
    w.put(
        page("/a"),
        "abVersion",
        r#"{"template":"gray {{ x.y }}","data":{"x":1}}"#,
    );
    w.put(
        page("/a"),
        "predeploy",
        r#"{"template":"pre {{ x.y }}","data":{"x":1}}"#,
    );
    w.gray.insert(page("/a"), "100".into());
    let gray = Request {
        gray_user: Some(b"user"),
        ..request("/a")
    };
    let predeploy = Request {
        predeploy: true,
        ..request("/a")
    };
    for (req, failed) in [(gray, "abVersion"), (predeploy, "predeploy")] {
        let (d, trail) = serve(&mut w, &req);
        assert_eq!(
            decisions(&trail),
            vec![rendered(1), RenderFailed, FallBack, rendered(1)]
        );
        let (r, alert, _) = reply(d);
        assert_eq!(
            (r.variant, r.field),
            (Variant::Production, Field::Version(100))
        );
        assert_eq!(w.out, b"prod");
        let alert = alert.expect("alerted once");
        assert!(
            alert.starts_with(&format!("version {failed} failed: ")),
            "{alert}"
        );
    }
}

#[test]
fn a_gray_user_gets_the_gray_version() {
    let mut w = World::default();
    w.put(page("/a"), "100", r#"{"template":"prod","data":{}}"#);
    w.put(page("/a"), "abVersion", r#"{"template":"gray","data":{}}"#);
    w.gray.insert(page("/a"), "100".into());
    let req = Request {
        gray_user: Some(b"user"),
        ..request("/a")
    };
    let (r, _, _) = reply(serve(&mut w, &req).0);
    assert_eq!(r.variant, Variant::Gray);
    assert_eq!(w.out, b"gray");
    // Without a gray_by value, production.
    let (r, _, _) = reply(serve(&mut w, &request("/a")).0);
    assert_eq!(r.variant, Variant::Production);
}

#[test]
fn dimension_mode_resolves_each_dimension() {
    let mut w = World::default();
    w.put(tpl("item"), "1", "price {{ price }}");
    let dims = [Dimension {
        name: "price",
        key: "p:1",
        required: false,
    }];
    let req = Request {
        template: Some("item"),
        dimensions: &dims,
        ..request("/item/1")
    };
    w.data.insert("p:1".into(), "42".into());
    let (d, trail) = serve(&mut w, &req);
    assert_eq!(trail, vec![Fetch, Fetch, rendered(1)]);
    let (r, _, left_out) = reply(d);
    assert_eq!(r.field, Field::Version(1));
    assert!(left_out.is_empty());
    assert_eq!(w.out, b"price 42");
    // A required dimension that is missing: 404.
    let dims = [Dimension {
        name: "stock",
        key: "s:1",
        required: true,
    }];
    let req = Request {
        template: Some("item"),
        dimensions: &dims,
        ..request("/item/1")
    };
    let (d, _) = serve(&mut w, &req);
    assert!(matches!(d, Decision::NotFound(_)), "{d:?}");
}

#[test]
fn the_source_names_every_state() {
    let mut s = State::default();
    assert_eq!(s.source(), Source::L1);
    s.fetch_ended(Answer::Redis);
    assert_eq!(s.source(), Source::Redis);
    s.fetch_ended(Answer::Cms);
    assert_eq!(s.source(), Source::Cms);
    s.fetch_ended(Answer::Failed);
    assert_eq!(s.source(), Source::Stale);
    let names: Vec<&str> = Source::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, ["l1", "redis", "cms", "stale", "fallback"]);
}

#[test]
fn a_rendered_output_is_kept_and_served_without_rendering() {
    let mut w = keeping();
    w.put(
        page("/a"),
        "100",
        r#"{"template":"hello {{ x }}","data":{"x":"you"}}"#,
    );
    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!(trail, vec![Fetch, Fetch, rendered(1)]);
    let (first, body) = reply_body(d);
    assert!(
        matches!(body, Body::Kept(_)),
        "kept at once: no second copy"
    );
    assert_eq!(bytes(&w, &body), b"hello you");
    w.out.clear();
    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!(trail, vec![Kept]);
    let (again, body) = reply_body(d);
    assert_eq!(bytes(&w, &body), b"hello you");
    assert_eq!(again.0.etag, first.0.etag);
    assert_eq!(again.0.source, Source::L1);
}

#[test]
fn a_new_version_is_rendered_not_the_kept_output_of_the_old_one() {
    let mut w = keeping();
    w.put(page("/a"), "100", r#"{"template":"one","data":{}}"#);
    serve(&mut w, &request("/a"));
    // An event drops the cached meta; the next request reads the new version list.
    w.put(page("/a"), "200", r#"{"template":"two","data":{}}"#);
    w.cache.retain(|k, _| !k.starts_with('M'));
    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!(decisions(&trail), vec![rendered(1)]);
    let (_, body) = reply_body(d);
    assert_eq!(bytes(&w, &body), b"two");
    // Version 200 withdrawn (as a rollback does for a page): version 100 is in force again,
    // and its kept output is served.
    if let Some(fields) = w.docs.get_mut(&page("/a")) {
        fields.retain(|(k, _)| k != "200");
    }
    w.cache.retain(|k, _| !k.starts_with('M'));
    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!(trail, vec![Fetch, Kept]);
    let (_, body) = reply_body(d);
    assert_eq!(bytes(&w, &body), b"one");
}

#[test]
fn outputs_are_kept_per_variant_and_per_request_value() {
    let mut w = keeping();
    w.put(
        page("/a"),
        "100",
        r#"{"template":"prod {{ request.who }}","data":{}}"#,
    );
    w.put(
        page("/a"),
        "predeploy",
        r#"{"template":"pre {{ request.who }}","data":{}}"#,
    );
    let mut seen = Vec::new();
    for predeploy in [false, true] {
        for (who, hash) in [("ann", 1), ("bob", 2)] {
            let value = dynpage_core::render::request_value([("who".to_string(), who.to_string())]);
            let req = Request {
                predeploy,
                request: Some(&value),
                request_hash: hash,
                vars_key: hash,
                ..request("/a")
            };
            for round in 0..2 {
                let (d, trail) = serve(&mut w, &req);
                let (_, body) = reply_body(d);
                let text = String::from_utf8(bytes(&w, &body)).unwrap_or_default();
                let want = format!("{} {who}", if predeploy { "pre" } else { "prod" });
                assert_eq!(text, want);
                if round == 1 {
                    assert_eq!(trail, vec![Kept], "{want}");
                }
                seen.push(text);
            }
        }
    }
    assert_eq!(seen.len(), 8);
}

#[test]
fn a_fallback_is_never_kept() {
    let mut w = keeping();
    w.put(page("/a"), "100", r#"{"template":"good","data":{}}"#);
    w.put(
        page("/a"),
        "200",
        r#"{"template":"bad {{ x.y }}","data":{"x":1}}"#,
    );
    for _ in 0..2 {
        let (d, trail) = serve(&mut w, &request("/a"));
        assert!(!trail.contains(&Kept), "{trail:?}");
        let ((r, _, _), body) = reply_body(d);
        assert_eq!(r.source, Source::Fallback);
        assert!(matches!(body, Body::Rendered));
        assert_eq!(w.out, b"good");
    }
    assert_eq!(w.outputs.as_ref().map(|o| o.len()), Some(0));
}

#[test]
fn an_output_over_the_bound_is_served_not_kept() {
    let mut w = World {
        outputs: Some(OutputCache::new(64)),
        ..World::default()
    };
    w.put(
        page("/a"),
        "100",
        r#"{"template":"a page longer than the whole bound","data":{}}"#,
    );
    for _ in 0..2 {
        let (d, trail) = serve(&mut w, &request("/a"));
        assert!(!trail.contains(&Kept));
        let (_, body) = reply_body(d);
        assert!(matches!(body, Body::Rendered));
        assert_eq!(w.out, b"a page longer than the whole bound");
    }
    assert_eq!(w.outputs.as_ref().map(|o| o.too_large()), Some(2));
}

#[test]
fn a_republished_predeploy_or_gray_version_is_another_output() {
    let mut w = keeping();
    w.put(page("/a"), "100", r#"{"template":"prod","data":{}}"#);
    w.put(
        page("/a"),
        "predeploy",
        r#"{"template":"pre one","data":{}}"#,
    );
    let req = Request {
        predeploy: true,
        ..request("/a")
    };
    let (d, _) = serve(&mut w, &req);
    let ((first, _, _), body) = reply_body(d);
    assert_eq!(bytes(&w, &body), b"pre one");
    // The same field, written again (as `dynpagectl page put --predeploy` does), and its event.
    w.put(
        page("/a"),
        "predeploy",
        r#"{"template":"pre two","data":{}}"#,
    );
    w.cache.clear();
    let (d, trail) = serve(&mut w, &req);
    assert!(!trail.contains(&Kept), "{trail:?}");
    let ((second, _, _), body) = reply_body(d);
    assert_eq!(bytes(&w, &body), b"pre two");
    assert_ne!(
        first.etag, second.etag,
        "a client holding the old one gets the new one"
    );
    // Likewise a template's predeploy field.
    let mut w = keeping();
    w.put(page("/b"), "100", r#"{"template":{"name":"t"},"data":{}}"#);
    w.put(tpl("t"), "1", "t one");
    w.put(tpl("t"), "predeploy", "t pre one");
    let req = Request {
        predeploy: true,
        ..request("/b")
    };
    let ((first, _, _), body) = reply_body(serve(&mut w, &req).0);
    assert_eq!(bytes(&w, &body), b"t pre one");
    w.put(tpl("t"), "predeploy", "t pre two");
    w.cache.clear();
    let ((second, _, _), body) = reply_body(serve(&mut w, &req).0);
    assert_eq!(bytes(&w, &body), b"t pre two");
    assert_ne!(first.etag, second.etag);
}

#[test]
fn two_request_values_with_one_etag_still_get_their_own_outputs() {
    // As if a client had crafted two values whose ETag hash collides: the kept outputs are
    // told apart by the keyed hash.
    let mut w = keeping();
    w.put(
        page("/a"),
        "100",
        r#"{"template":"for {{ request.q }}","data":{}}"#,
    );
    for (q, key) in [("one", 11), ("two", 22)] {
        let value = dynpage_core::render::request_value([("q".to_string(), q.to_string())]);
        let req = Request {
            request: Some(&value),
            request_hash: 7,
            vars_key: key,
            ..request("/a")
        };
        let (d, trail) = serve(&mut w, &req);
        assert!(!trail.contains(&Kept), "{q}: {trail:?}");
        let (_, body) = reply_body(d);
        assert_eq!(bytes(&w, &body), format!("for {q}").as_bytes());
    }
}

#[test]
fn the_cache_status_names_where_a_response_came_from() {
    let cases = [
        (Variant::Production, Source::L1, "HIT"),
        (Variant::Gray, Source::L1, "HIT"),
        (Variant::Production, Source::Redis, "MISS"),
        (Variant::Production, Source::Cms, "MISS"),
        (Variant::Production, Source::Stale, "STALE"),
        (Variant::Production, Source::Fallback, "FALLBACK"),
        (Variant::Predeploy, Source::L1, "BYPASS"),
        (Variant::Predeploy, Source::Redis, "BYPASS"),
        (Variant::Predeploy, Source::Fallback, "FALLBACK"),
    ];
    for (variant, source, want) in cases {
        assert_eq!(
            cache_status(variant, source),
            want,
            "{variant:?} {source:?}"
        );
    }
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map(|_| out)
        .unwrap_or_default()
}

const GZIP: &[Encoding] = &[Encoding {
    coding: Coding::Gzip,
    level: 6,
}];

fn takes_gzip(key: &str) -> Request<'_> {
    Request {
        encodings: GZIP,
        ..request(key)
    }
}

#[test]
fn a_kept_output_is_compressed_once_for_the_clients_that_take_gzip() {
    let mut w = keeping();
    let text = "<p>hello</p>".repeat(100);
    w.put(
        page("/a"),
        "100",
        &format!(r#"{{"template":"{text}","data":{{}}}}"#),
    );
    // A client that does not take gzip: rendered, kept, nothing compressed.
    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!(trail, vec![Fetch, Fetch, rendered(1)]);
    let ((identity, _, _), body) = reply_body(d);
    assert_eq!(identity.coding, None);
    assert_eq!(bytes(&w, &body), text.as_bytes());
    // The first that does compresses the kept output...
    let (d, trail) = serve(&mut w, &takes_gzip("/a"));
    assert!(
        matches!(trail[..], [Compressed(c), Kept] if c.bytes == 1200 && c.encoded_bytes < 100 && c.unused.is_none()),
        "{trail:?}"
    );
    let ((r, _, _), body) = reply_body(d);
    assert!(r.coding == Some(Coding::Gzip) && !r.not_modified);
    assert_eq!(
        r.etag, identity.etag,
        "the reply names the output; the edge adds -gz"
    );
    let Body::Kept(output) = body else {
        panic!("a gzip reply is a kept output")
    };
    let gz = output.gzip().unwrap_or_default();
    assert_eq!(gunzip(gz), text.as_bytes());
    // ...the next ones find its gzip bytes kept, the same ones; identity clients its identity.
    for _ in 0..3 {
        let (d, trail) = serve(&mut w, &takes_gzip("/a"));
        assert_eq!(trail, vec![Kept]);
        let ((r, _, _), body) = reply_body(d);
        assert_eq!(r.coding, Some(Coding::Gzip));
        assert!(
            matches!(&body, Body::Kept(o) if o.gzip().map(<[u8]>::as_ptr) == Some(gz.as_ptr()))
        );
        let (d, _) = serve(&mut w, &request("/a"));
        let ((r, _, _), body) = reply_body(d);
        assert_eq!(r.coding, None);
        assert_eq!(bytes(&w, &body), text.as_bytes());
    }
}

#[test]
fn a_fresh_render_for_a_client_that_takes_gzip_is_kept_and_compressed_at_once() {
    let mut w = keeping();
    let text = "<li>item</li>".repeat(50);
    w.put(
        page("/a"),
        "100",
        &format!(r#"{{"template":"{text}","data":{{}}}}"#),
    );
    let (d, trail) = serve(&mut w, &takes_gzip("/a"));
    assert!(
        matches!(trail[..], [Fetch, Fetch, Rendered { .. }, Compressed(c)] if c.unused.is_none()),
        "{trail:?}"
    );
    let ((r, _, _), body) = reply_body(d);
    assert_eq!(r.coding, Some(Coding::Gzip));
    assert!(
        matches!(&body, Body::Kept(o) if gunzip(o.gzip().unwrap_or_default()) == text.as_bytes())
    );
}

#[test]
fn if_none_match_with_the_gzip_etag_is_a_304_for_a_client_that_takes_gzip() {
    let mut w = keeping();
    w.put(
        page("/a"),
        "100",
        r#"{"template":"{% for i in n %}compressible {% endfor %}","data":{"n":[1,2,3,4,5,6,7,8,9,10]}}"#,
    );
    let (d, _) = serve(&mut w, &takes_gzip("/a"));
    let (r, _, _) = reply(d);
    assert_eq!(r.coding, Some(Coding::Gzip));
    let gz_tag = dynpage_core::etag::coded_etag(&r.etag, Coding::Gzip);
    let req = Request {
        if_none_match: Some(&gz_tag),
        ..takes_gzip("/a")
    };
    let (d, trail) = serve(&mut w, &req);
    assert_eq!(trail, vec![NotModified]);
    let (r304, _, _) = reply(d);
    assert!(r304.not_modified && r304.coding == Some(Coding::Gzip));
    // The identity ETag is this output too: 304, naming the identity bytes.
    let id_tag = r.etag;
    let req = Request {
        if_none_match: Some(&id_tag),
        ..takes_gzip("/a")
    };
    let (r304, _, _) = reply(serve(&mut w, &req).0);
    assert!(r304.not_modified && r304.coding.is_none());
    // A client that does not take gzip cannot hold the gzip bytes: 200, identity.
    let req = Request {
        if_none_match: Some(&gz_tag),
        ..request("/a")
    };
    let (d, trail) = serve(&mut w, &req);
    assert_eq!(trail, vec![Kept]);
    let (r, _, _) = reply(d);
    assert!(!r.not_modified && r.coding.is_none());
}

#[test]
fn gzip_is_only_for_kept_outputs_that_it_makes_smaller() {
    // Too small to gain: compressed once, then identity for everyone, never compressed again.
    let mut w = keeping();
    w.put(page("/s"), "100", r#"{"template":"hi","data":{}}"#);
    let (d, trail) = serve(&mut w, &takes_gzip("/s"));
    assert!(
        matches!(trail[..], [Fetch, Fetch, Rendered { .. }, Compressed(c)] if c.unused == Some(dynpage_core::output_cache::Unused::NotSmaller)),
        "{trail:?}"
    );
    assert_eq!(reply(d).0.coding, None);
    let (d, trail) = serve(&mut w, &takes_gzip("/s"));
    assert_eq!(trail, vec![Kept]);
    assert_eq!(reply(d).0.coding, None);
    // No kept outputs (dynpage_output_cache off): identity, nginx's gzip filter may compress.
    let mut w = World::default();
    w.put(
        page("/a"),
        "100",
        r#"{"template":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","data":{}}"#,
    );
    let (d, trail) = serve(&mut w, &takes_gzip("/a"));
    assert!(!trail.iter().any(|t| matches!(t, Compressed(_))));
    let ((r, _, _), body) = reply_body(d);
    assert!(r.coding.is_none() && matches!(body, Body::Rendered));
    // A fallback is never kept, so never gzip-compressed by dynpage either.
    let mut w = keeping();
    w.put(
        page("/f"),
        "100",
        r#"{"template":"good good good good good good good good","data":{}}"#,
    );
    w.put(
        page("/f"),
        "200",
        r#"{"template":"bad {{ x.y }}","data":{"x":1}}"#,
    );
    let (d, trail) = serve(&mut w, &takes_gzip("/f"));
    assert!(!trail.iter().any(|t| matches!(t, Compressed(_))));
    let ((r, _, _), body) = reply_body(d);
    assert!(r.source == Source::Fallback && r.coding.is_none() && matches!(body, Body::Rendered));
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096)
        .read_to_end(&mut out)
        .map(|_| out)
        .unwrap_or_default()
}

#[test]
fn brotli_and_gzip_each_compressed_once_in_the_order_a_client_prefers() {
    let mut w = keeping();
    let text = "<p>hello</p>".repeat(100);
    w.put(
        page("/a"),
        "100",
        &format!(r#"{{"template":"{text}","data":{{}}}}"#),
    );
    let br_first = [
        Encoding {
            coding: Coding::Br,
            level: 5,
        },
        Encoding {
            coding: Coding::Gzip,
            level: 6,
        },
    ];
    let br_req = Request {
        encodings: &br_first,
        ..request("/a")
    };
    let (d, trail) = serve(&mut w, &br_req);
    assert!(
        matches!(trail[..], [Fetch, Fetch, Rendered { .. }, Compressed(c)] if c.coding == Coding::Br && c.unused.is_none()),
        "{trail:?}"
    );
    let ((r, _, _), body) = reply_body(d);
    assert_eq!(r.coding, Some(Coding::Br));
    let Body::Kept(output) = body else {
        panic!("a brotli reply is a kept output")
    };
    assert_eq!(
        unbrotli(output.encoded(Coding::Br).unwrap_or_default()),
        text.as_bytes()
    );
    assert!(
        output.gzip().is_none(),
        "gzip not compressed: nobody needed it"
    );
    // A gzip client compresses gzip once; then both are served from their kept bytes.
    let (d, trail) = serve(&mut w, &takes_gzip("/a"));
    assert!(
        matches!(trail[..], [Compressed(c), Kept] if c.coding == Coding::Gzip),
        "{trail:?}"
    );
    assert_eq!(reply(d).0.coding, Some(Coding::Gzip));
    for (req, want) in [(&br_req, Coding::Br), (&takes_gzip("/a"), Coding::Gzip)] {
        let (d, trail) = serve(&mut w, req);
        assert_eq!(trail, vec![Kept]);
        assert_eq!(reply(d).0.coding, Some(want));
    }
    // A 304 for the brotli ETag names brotli; the gzip ETag, gzip.
    let etag = reply(serve(&mut w, &request("/a")).0).0.etag;
    for coding in [Coding::Br, Coding::Gzip] {
        let tag = dynpage_core::etag::coded_etag(&etag, coding);
        let req = Request {
            if_none_match: Some(&tag),
            ..br_req
        };
        let (r304, _, _) = reply(serve(&mut w, &req).0);
        assert!(r304.not_modified && r304.coding == Some(coding));
    }
}

#[test]
fn brotli_bytes_that_are_not_kept_leave_the_next_coding_to_serve() {
    let mut w = keeping();
    w.put(page("/s"), "100", r#"{"template":"hi","data":{}}"#);
    let both = [
        Encoding {
            coding: Coding::Br,
            level: 5,
        },
        Encoding {
            coding: Coding::Gzip,
            level: 6,
        },
    ];
    let req = Request {
        encodings: &both,
        ..request("/s")
    };
    // "hi" gains nothing in either coding: both tried once, identity served, never again.
    let (d, trail) = serve(&mut w, &req);
    let tried: Vec<Coding> = trail
        .iter()
        .filter_map(|t| match t {
            Compressed(c) => Some(c.coding),
            _ => None,
        })
        .collect();
    assert_eq!(tried, [Coding::Br, Coding::Gzip]);
    assert_eq!(reply(d).0.coding, None);
    let (d, trail) = serve(&mut w, &req);
    assert_eq!(trail, vec![Kept]);
    assert_eq!(reply(d).0.coding, None);
}

/// A world keeping outputs whose snapshots are held hollow once their output is kept.
fn hollowing() -> World {
    World {
        hollowing: true,
        ..keeping()
    }
}

#[test]
fn a_snapshot_whose_output_is_kept_is_held_without_its_data_and_fetched_again_to_render() {
    let mut w = hollowing();
    w.put(
        page("/a"),
        "100",
        r#"{"template":"hi {{ x }}","data":{"x":1}}"#,
    );
    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!(trail, vec![Fetch, Fetch, rendered(1)]);
    assert!(matches!(reply_body(d).1, Body::Kept(_)));
    assert!(w.is_hollow("/a", Field::Version(100)));
    // The kept output serves: no fetch, no render.
    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!((trail, w.fetches), (vec![Kept], 2));
    assert_eq!(bytes(&w, &reply_body(d).1), b"hi 1");
    // The output dropped (evicted): the snapshot is fetched again (one fetch), rendered, kept,
    // and held hollow again.
    w.outputs = Some(OutputCache::new(1 << 20));
    let (d, trail) = serve(&mut w, &request("/a"));
    assert_eq!((trail, w.fetches), (vec![Fetch, rendered(1)], 3));
    let (r, body) = reply_body(d);
    assert_eq!(
        (bytes(&w, &body), r.0.source),
        (b"hi 1".to_vec(), Source::Redis)
    );
    assert!(w.is_hollow("/a", Field::Version(100)));
}

#[test]
fn the_page_whose_kept_output_is_asked_for_again_is_protected_once() {
    let mut w = hollowing();
    w.put(page("/a"), "100", r#"{"template":"hi","data":{}}"#);
    let (_, trail) = serve(&mut w, &request("/a"));
    assert_eq!(trail, vec![Fetch, Fetch, rendered(1)]);
    assert!(
        w.protected.is_empty(),
        "an output kept once is not protected yet"
    );
    let (_, trail) = serve(&mut w, &request("/a"));
    assert_eq!(trail, vec![Kept]);
    assert_eq!(w.protected, vec![("/a".to_string(), Field::Version(100))]);
    let (_, trail) = serve(&mut w, &request("/a"));
    assert_eq!(trail, vec![Kept]);
    assert_eq!(w.protected.len(), 1, "protected once, not on every hit");
}

#[test]
fn outputs_that_vary_with_request_values_keep_their_snapshot_whole() {
    let mut w = hollowing();
    w.put(
        page("/a"),
        "100",
        r#"{"template":"{{ request.q }}","data":{}}"#,
    );
    let value = dynpage_core::render::request_value([("q".to_string(), "x".to_string())]);
    let req = Request {
        request: Some(&value),
        request_hash: 7,
        vars_key: 7,
        ..request("/a")
    };
    let (d, _) = serve(&mut w, &req);
    assert!(matches!(reply_body(d).1, Body::Kept(_)));
    assert!(!w.is_hollow("/a", Field::Version(100)));
}

#[test]
fn a_hollow_snapshot_without_a_source_is_unavailable_and_refetches_are_bounded() {
    let mut w = hollowing();
    w.put(page("/a"), "100", r#"{"template":"hi","data":{}}"#);
    serve(&mut w, &request("/a"));
    w.outputs = Some(OutputCache::new(1 << 20));
    // Every source skipped: the data cannot be had; no wait.
    w.down = true;
    let (d, trail) = serve(&mut w, &request("/a"));
    assert!(matches!(d, Decision::Unavailable), "{d:?}");
    assert_eq!(decisions(&trail), vec![GoStale, Unavailable]);
    // Outputs dropped again and again before the request resumes: two fetches, then it is
    // answered as when no source answers.
    w.down = false;
    w.churn = true;
    let before = w.fetches;
    let (d, trail) = serve(&mut w, &request("/a"));
    assert!(matches!(d, Decision::Unavailable), "{d:?}");
    assert_eq!(
        (trail, w.fetches - before),
        (vec![Fetch, Fetch, Unavailable], 2)
    );
}
