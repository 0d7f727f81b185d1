//! What `dynpage_status` answers, from the counters as read ([`Values`]): JSON (the default),
//! Prometheus text (exposition format 0.0.4, `?format=prometheus`) or a self-contained HTML page
//! (`?format=html`) that polls the JSON and draws the last minutes.

use std::fmt::Write;

use serde_json::{json, Map, Value};

use crate::metrics::{
    HistogramValues, SourceKind, Values, BUCKETS, LOOKUP_RESULTS, OUTPUT_RESULTS, REQUEST_SOURCES,
    STATUS_CLASSES, TRANSITIONS, VARIANTS,
};

/// The formats, as `format=` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Prometheus,
    Html,
}

pub const FORMATS: &str = "json, prometheus, html";

impl Format {
    /// The format a query string asks for (`format=`; none: JSON), or the value not known.
    pub fn from_query(query: &[u8]) -> Result<Format, String> {
        let value = query
            .split(|b| *b == b'&')
            .find_map(|pair| pair.strip_prefix(b"format="));
        match value {
            None | Some(b"json") => Ok(Format::Json),
            Some(b"prometheus") => Ok(Format::Prometheus),
            Some(b"html") => Ok(Format::Html),
            Some(other) => Err(String::from_utf8_lossy(&other[..other.len().min(64)]).into_owned()),
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

/// What the counters do not hold: the build and the moment.
pub struct About<'a> {
    pub dynpage_version: &'a str,
    pub nginx_version: &'a str,
    pub now_ms: u64,
}

/// The answer's body in `format`.
pub fn body(format: Format, v: &Values, about: &About<'_>) -> String {
    match format {
        Format::Json => {
            let mut s = json_value(v, about).to_string();
            s.push('\n');
            s
        }
        Format::Prometheus => prometheus(v, about),
        Format::Html => html(v, about),
    }
}

fn histogram_json(h: &HistogramValues) -> Value {
    let buckets: Vec<Value> = BUCKETS
        .iter()
        .zip(&h.cumulative)
        .map(|(le, n)| json!({"le": le, "count": n}))
        .collect();
    json!({"count": h.count(), "sum": h.sum_us as f64 / 1e6, "buckets": buckets})
}

fn named(names: &[&str], values: &[u64]) -> Value {
    let map: Map<String, Value> = names
        .iter()
        .zip(values)
        .map(|(n, v)| ((*n).to_string(), json!(v)))
        .collect();
    Value::Object(map)
}

fn kind_str(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Redis => "redis",
        SourceKind::Cms => "cms",
    }
}

/// The counters as one JSON object.
fn json_value(v: &Values, about: &About<'_>) -> Value {
    let by: Vec<Value> = v
        .requests_by()
        .map(|(vi, si, ci, n)| {
            json!({
                "variant": VARIANTS[vi],
                "source": REQUEST_SOURCES[si],
                "status": STATUS_CLASSES[ci],
                "count": n,
            })
        })
        .collect();
    let sources: Vec<Value> = v
        .sources
        .iter()
        .map(|s| {
            json!({
                "kind": kind_str(s.kind),
                "name": s.name,
                "up": about.now_ms >= s.down_until_ms,
                "fetches": s.fetches,
                "round_trips": s.round_trips,
                "errors": s.errors,
                "skips": s.skips,
                "fetch_seconds": histogram_json(&s.latency),
            })
        })
        .collect();
    let by_source: Map<String, Value> = REQUEST_SOURCES
        .iter()
        .enumerate()
        .map(|(i, s)| ((*s).to_string(), json!(v.requests_from(i))))
        .collect();
    let g = &v.gauges;
    json!({
        "dynpage_version": about.dynpage_version,
        "nginx_version": about.nginx_version,
        "now_ms": about.now_ms,
        "started_ms": v.started_ms,
        "workers": v.workers,
        "requests": {
            "total": v.requests_total(),
            "hit_ratio": v.hit_ratio(),
            "by_source": by_source,
            "by": by,
            "suspended": g.suspended,
        },
        "cache": {
            "lookups": named(&LOOKUP_RESULTS, &v.lookups),
            "entries": g.cache_entries,
            "bytes": g.cache_bytes,
            "bound": g.cache_bound,
            "evictions": g.cache_evictions,
        },
        "outputs": {
            "lookups": named(&OUTPUT_RESULTS, &v.output_lookups),
            "entries": g.output_entries,
            "bytes": g.output_bytes,
            "bound": g.output_bound,
            "evictions": g.output_evictions,
            "too_large": g.output_too_large,
        },
        "transitions": named(&TRANSITIONS, &v.transitions),
        "modules_left_out": v.modules_left_out,
        "dimensions": {"missing": v.dimensions_missing, "broken": v.dimensions_broken},
        "render_seconds": histogram_json(&v.render),
        "events": {
            "messages": v.events,
            "unknown": v.events_unknown,
            "resyncs": v.resyncs,
            "reconnects": v.reconnects,
        },
        "stale_outputs": v.stale_outputs,
        "sources": sources,
    })
}

/// A label value as the exposition format writes it.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{labels}}} {value}");
        }
    }

    fn histogram(&mut self, name: &str, labels: &str, h: &HistogramValues) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (le, n) in BUCKETS.iter().zip(&h.cumulative) {
            let _ = writeln!(self.out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {n}");
        }
        let _ = writeln!(
            self.out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            h.count()
        );
        self.sample(&format!("{name}_sum"), labels, h.sum_us as f64 / 1e6);
        self.sample(&format!("{name}_count"), labels, h.count());
    }
}

/// The counters in Prometheus' text exposition format 0.0.4.
pub fn prometheus(v: &Values, about: &About<'_>) -> String {
    let mut e = Exposition { out: String::new() };
    e.family(
        "dynpage_build_info",
        "gauge",
        "The dynpage and nginx versions running (always 1).",
    );
    e.sample(
        "dynpage_build_info",
        &format!(
            "version=\"{}\",nginx_version=\"{}\"",
            label(about.dynpage_version),
            label(about.nginx_version)
        ),
        1,
    );
    e.family(
        "dynpage_start_time_seconds",
        "gauge",
        "When the counters started (nginx's start; a reload keeps them).",
    );
    e.sample("dynpage_start_time_seconds", "", v.started_ms as f64 / 1e3);
    e.family(
        "dynpage_workers",
        "gauge",
        "Workers reporting their caches.",
    );
    e.sample("dynpage_workers", "", v.workers);
    e.family(
        "dynpage_requests_total",
        "counter",
        "Requests answered in dynpage locations, by variant, source and status class.",
    );
    for (vi, si, ci, n) in v.requests_by() {
        e.sample(
            "dynpage_requests_total",
            &format!(
                "variant=\"{}\",source=\"{}\",status=\"{}\"",
                VARIANTS[vi], REQUEST_SOURCES[si], STATUS_CLASSES[ci]
            ),
            n,
        );
    }
    e.family(
        "dynpage_requests_suspended",
        "gauge",
        "Requests waiting for a fetch now.",
    );
    e.sample("dynpage_requests_suspended", "", v.gauges.suspended);
    e.family(
        "dynpage_cache_lookups_total",
        "counter",
        "Worker cache (inputs) and kept-output lookups, by result.",
    );
    for (r, n) in LOOKUP_RESULTS.iter().zip(&v.lookups) {
        e.sample(
            "dynpage_cache_lookups_total",
            &format!("cache=\"inputs\",result=\"{r}\""),
            n,
        );
    }
    for (r, n) in OUTPUT_RESULTS.iter().zip(&v.output_lookups) {
        e.sample(
            "dynpage_cache_lookups_total",
            &format!("cache=\"outputs\",result=\"{r}\""),
            n,
        );
    }
    let g = &v.gauges;
    let per_cache = [
        (
            "dynpage_cache_entries",
            "gauge",
            "Entries held, all workers.",
            g.cache_entries,
            g.output_entries,
        ),
        (
            "dynpage_cache_bytes",
            "gauge",
            "Bytes held (the caches' own weights), all workers.",
            g.cache_bytes,
            g.output_bytes,
        ),
        (
            "dynpage_cache_bound_bytes",
            "gauge",
            "The caches' bounds, all workers.",
            g.cache_bound,
            g.output_bound,
        ),
        (
            "dynpage_cache_evictions_total",
            "counter",
            "Entries dropped to stay within the bound, by the workers running.",
            g.cache_evictions,
            g.output_evictions,
        ),
    ];
    for (name, kind, help, inputs, outputs) in per_cache {
        e.family(name, kind, help);
        e.sample(name, "cache=\"inputs\"", inputs);
        e.sample(name, "cache=\"outputs\"", outputs);
    }
    e.family(
        "dynpage_outputs_too_large_total",
        "counter",
        "Outputs served but not kept: alone they exceed the bound.",
    );
    e.sample("dynpage_outputs_too_large_total", "", g.output_too_large);
    e.family(
        "dynpage_transitions_total",
        "counter",
        "The request path's steps: fetches, fallbacks, render and guard failures, 304s...",
    );
    for (t, n) in TRANSITIONS.iter().zip(&v.transitions) {
        e.sample(
            "dynpage_transitions_total",
            &format!("transition=\"{t}\""),
            n,
        );
    }
    let plain = [
        (
            "dynpage_modules_left_out_total",
            "Modules left out of pages that rendered.",
            v.modules_left_out,
        ),
        (
            "dynpage_dimensions_missing_total",
            "Dimensions whose key does not exist (they render as null).",
            v.dimensions_missing,
        ),
        (
            "dynpage_dimensions_broken_total",
            "Dimensions present but not usable (they render as null).",
            v.dimensions_broken,
        ),
        (
            "dynpage_stale_outputs_total",
            "Last good outputs served from the shared zone.",
            v.stale_outputs,
        ),
        (
            "dynpage_events_total",
            "P events messages received.",
            v.events,
        ),
        (
            "dynpage_events_unknown_total",
            "P events messages naming nothing cached.",
            v.events_unknown,
        ),
        (
            "dynpage_events_resyncs_total",
            "Times every mutable entry was dropped (after a reconnect).",
            v.resyncs,
        ),
        (
            "dynpage_events_reconnects_total",
            "Times the events subscription was lost.",
            v.reconnects,
        ),
    ];
    for (name, help, n) in plain {
        e.family(name, "counter", help);
        e.sample(name, "", n);
    }
    e.family(
        "dynpage_render_duration_seconds",
        "histogram",
        "Time a request spent deciding and rendering a page it rendered.",
    );
    e.histogram("dynpage_render_duration_seconds", "", &v.render);
    let sources: Vec<(String, &crate::metrics::SourceValues)> = v
        .sources
        .iter()
        .map(|s| {
            (
                format!(
                    "kind=\"{}\",source=\"{}\"",
                    kind_str(s.kind),
                    label(&s.name)
                ),
                s,
            )
        })
        .collect();
    type Pick = fn(&crate::metrics::SourceValues, u64) -> u64;
    let per_source: [(&str, &str, &str, Pick); 5] = [
        (
            "dynpage_source_up",
            "gauge",
            "1 while the source is used, 0 while it is skipped after a failure.",
            |s, now| u64::from(now >= s.down_until_ms),
        ),
        (
            "dynpage_source_fetches_total",
            "counter",
            "Fetches from the source (one batch of items each).",
            |s, _| s.fetches,
        ),
        (
            "dynpage_source_round_trips_total",
            "counter",
            "Pipelines sent to the source: one per fetch where the read script serves.",
            |s, _| s.round_trips,
        ),
        (
            "dynpage_source_errors_total",
            "counter",
            "Fetches that failed.",
            |s, _| s.errors,
        ),
        (
            "dynpage_source_skips_total",
            "counter",
            "Times the source was skipped after a failure.",
            |s, _| s.skips,
        ),
    ];
    for (name, kind, help, pick) in per_source {
        e.family(name, kind, help);
        for (labels, s) in &sources {
            e.sample(name, labels, pick(s, about.now_ms));
        }
    }
    e.family(
        "dynpage_source_fetch_duration_seconds",
        "histogram",
        "Round trip time to the source.",
    );
    for (labels, s) in &sources {
        e.histogram("dynpage_source_fetch_duration_seconds", labels, &s.latency);
    }
    e.out
}

/// The live page: the counters now, embedded, then polled as JSON every two seconds.
pub fn html(v: &Values, about: &About<'_>) -> String {
    // `</` cannot end the script early: JSON allows `\/` for `/`.
    let data = json_value(v, about).to_string().replace("</", "<\\/");
    HTML_PAGE.replace("/*DATA*/null", &data)
}

const HTML_PAGE: &str = r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dynpage status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.2em 0 .4em}
.tiles{display:flex;flex-wrap:wrap;gap:.8em}
.tile{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:9em}
.tile .n{font-size:1.6em;font-weight:600}.tile .l{color:#666;font-size:.85em}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:.3em .7em;text-align:right}
th{background:#f0f0f0}td.name{text-align:left;font-family:monospace}
.up{color:#176b2c;font-weight:600}.down{color:#b00020;font-weight:600}
#chart{background:#fff;border:1px solid #ddd;border-radius:6px}
.small{color:#666;font-size:.85em}
</style></head>
<body>
<h1>dynpage status</h1>
<div class="small">dynpage <span id="dynpage-version">–</span> on nginx <span id="nginx-version">–</span>,
<span id="workers">–</span> worker(s); updated <span id="updated">–</span></div>
<h2>Requests</h2>
<div class="tiles">
<div class="tile"><div class="n" id="requests-total">–</div><div class="l">requests</div></div>
<div class="tile"><div class="n" id="rps">–</div><div class="l">requests per second</div></div>
<div class="tile"><div class="n" id="hit-ratio">–</div><div class="l">worker-cache hit ratio</div></div>
<div class="tile"><div class="n" id="stale">–</div><div class="l">served stale</div></div>
<div class="tile"><div class="n" id="fallback">–</div><div class="l">served a fallback</div></div>
<div class="tile"><div class="n" id="suspended">–</div><div class="l">waiting for a fetch</div></div>
</div>
<h2>Requests per second, last minutes</h2>
<svg id="chart" width="600" height="120" viewBox="0 0 600 120"><polyline id="line" fill="none" stroke="#2a6fdb" stroke-width="2" points=""/></svg>
<h2>Caches</h2>
<table><tr><th>cache</th><th>entries</th><th>bytes</th><th>bound</th><th>used</th><th>evictions</th></tr>
<tr><td class="name">inputs</td><td id="cache-entries">–</td><td id="cache-bytes">–</td><td id="cache-bound">–</td><td id="cache-used">–</td><td id="cache-evictions">–</td></tr>
<tr><td class="name">outputs</td><td id="output-entries">–</td><td id="output-bytes">–</td><td id="output-bound">–</td><td id="output-used">–</td><td id="output-evictions">–</td></tr>
</table>
<h2>Sources</h2>
<table><thead><tr><th>kind</th><th>source</th><th>health</th><th>fetches</th><th>errors</th><th>skips</th><th>mean latency</th></tr></thead>
<tbody id="sources"></tbody></table>
<script>
"use strict";
const initial = /*DATA*/null;
const history = [];
function pct(x){return (100*x).toFixed(1)+"%";}
function set(id, text){const e=document.getElementById(id); if(e) e.textContent=String(text);}
function render(d){
  set("dynpage-version", d.dynpage_version); set("nginx-version", d.nginx_version);
  set("workers", d.workers); set("updated", new Date(d.now_ms).toISOString());
  const r = d.requests;
  set("requests-total", r.total); set("hit-ratio", pct(r.hit_ratio));
  set("stale", r.by_source.stale); set("fallback", r.by_source.fallback);
  set("suspended", r.suspended);
  for (const [p, c] of [["cache", d.cache], ["output", d.outputs]]) {
    set(p+"-entries", c.entries); set(p+"-bytes", c.bytes); set(p+"-bound", c.bound);
    set(p+"-used", c.bound ? pct(c.bytes/c.bound) : "–"); set(p+"-evictions", c.evictions);
  }
  const body = document.getElementById("sources");
  body.textContent = "";
  for (const s of d.sources) {
    const tr = document.createElement("tr");
    const h = s.fetch_seconds;
    const cells = [s.kind, s.name, s.up ? "up" : "skipped", s.fetches, s.errors, s.skips,
      h.count ? (1000*h.sum/h.count).toFixed(2)+" ms" : "–"];
    cells.forEach((v, i) => {
      const td = document.createElement("td");
      td.textContent = String(v);
      if (i === 1) td.className = "name";
      if (i === 2) td.className = s.up ? "up" : "down";
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }
  history.push({t: d.now_ms, n: r.total});
  while (history.length > 150) history.shift();
  if (history.length > 1) {
    const a = history[history.length-2], b = history[history.length-1];
    set("rps", b.t > a.t ? ((b.n-a.n)*1000/(b.t-a.t)).toFixed(1) : "0");
    const rates = [];
    for (let i = 1; i < history.length; i++) {
      const p = history[i-1], q = history[i];
      rates.push(q.t > p.t ? (q.n-p.n)*1000/(q.t-p.t) : 0);
    }
    const max = Math.max(1, ...rates);
    set("line", "");
    document.getElementById("line").setAttribute("points",
      rates.map((v, i) => (i*600/149).toFixed(1)+","+(115-110*v/max).toFixed(1)).join(" "));
  } else {
    set("rps", "–");
  }
}
async function poll(){
  try {
    const res = await fetch(location.pathname + "?format=json", {cache: "no-store"});
    if (res.ok) render(await res.json());
  } catch (e) { /* the next poll tries again */ }
}
render(initial);
setInterval(poll, 2000);
</script>
</body></html>
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Counters;
    use crate::serve::Source;
    use crate::version::Variant;

    fn about() -> About<'static> {
        About {
            dynpage_version: "0.1.0",
            nginx_version: "1.28.3",
            now_ms: 2_000,
        }
    }

    #[test]
    fn format_comes_from_the_query() {
        assert_eq!(Format::from_query(b""), Ok(Format::Json));
        assert_eq!(Format::from_query(b"a=1&format=html"), Ok(Format::Html));
        assert_eq!(
            Format::from_query(b"format=prometheus"),
            Ok(Format::Prometheus)
        );
        assert_eq!(Format::from_query(b"format=xml"), Err("xml".to_string()));
        assert_eq!(Format::from_query(b"format="), Err(String::new()));
    }

    #[test]
    fn prometheus_text_has_one_help_and_type_per_family_and_escaped_labels() {
        let c = Counters::default();
        c.init(1_000);
        c.retired
            .request(Some((Variant::Production, Source::L1)), 200);
        c.source(crate::metrics::SourceKind::Redis, "redis://a\"b\\c:1")
            .fetched(300, true, 1);
        let text = prometheus(&c.read(|_| true), &about());
        assert!(text.contains(
            "dynpage_requests_total{variant=\"production\",source=\"l1\",status=\"2xx\"} 1\n"
        ));
        assert!(text.contains("source=\"redis://a\\\"b\\\\c:1\""));
        assert!(text.contains(
            "dynpage_source_fetch_duration_seconds_bucket{kind=\"redis\",source=\"redis://a\\\"b\\\\c:1\",le=\"+Inf\"} 1\n"
        ));
        let mut seen = std::collections::HashSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(seen.insert(line.to_string()), "{line} twice");
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn json_and_html_carry_the_same_numbers() {
        let c = Counters::default();
        c.init(1_000);
        for _ in 0..3 {
            c.retired
                .request(Some((Variant::Production, Source::L1)), 200);
        }
        c.retired
            .request(Some((Variant::Production, Source::Stale)), 200);
        let v = c.read(|_| true);
        let j = json_value(&v, &about());
        assert_eq!(j["requests"]["total"], 4);
        assert_eq!(j["requests"]["by_source"]["stale"], 1);
        assert_eq!(j["requests"]["hit_ratio"], 0.75);
        let page = html(&v, &about());
        assert!(page.contains("\"total\":4"));
        assert!(!page.contains("/*DATA*/"));
    }

    #[test]
    fn html_data_cannot_close_the_script() {
        let c = Counters::default();
        c.source(crate::metrics::SourceKind::Cms, "http://x/</script><b>");
        let page = html(&c.read(|_| true), &about());
        assert_eq!(page.matches("</script>").count(), 1);
    }
}
