//! dynpagectl end to end, against a private redis-server on a free loopback port.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

#[path = "../../core/tests/common/redis_server.rs"]
mod redis_server;

/// The private redis-server a test runs dynpagectl against.
struct Redis(redis_server::RedisServer);

impl std::ops::Deref for Redis {
    type Target = redis_server::RedisServer;
    fn deref(&self) -> &redis_server::RedisServer {
        &self.0
    }
}

impl Redis {
    fn start() -> Redis {
        Redis(redis_server::RedisServer::start("dynpagectl-test"))
    }

    fn ctl(&self, args: &[&str]) -> Output {
        ctl_at(&self.url(), args)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write file");
        p.to_string_lossy().into_owned()
    }
}

/// Runs dynpagectl against the Redis at `url`.
fn ctl_at(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dynpagectl"))
        .env("DYNPAGE_REDIS", url)
        .args(args)
        .output()
        .expect("dynpagectl runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn publish_schedule_history_rollback_render() {
    let r = Redis::start();
    let tpl = r.file("item.html", "<p>{{ title }}</p>{% include \"foot\" %}");
    let foot = r.file("foot.html", "<footer>{{ page.key }}</footer>");
    let data = r.file("data.json", r#"{"title": "<Phone>"}"#);

    // A page naming a template whose include is missing is refused, and nothing is written.
    let o = r.ctl(&["template", "put", "item", &tpl]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = r.ctl(&["page", "put", "/p", "--data", &data, "--template", "item"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("\"foot\" does not exist"),
        "{}",
        stderr(&o)
    );
    assert_eq!(r.cli(&["EXISTS", "dynpage:page:/p"]).trim(), "0");

    assert_eq!(
        r.ctl(&["template", "put", "foot", &foot]).status.code(),
        Some(0)
    );
    let o = r.ctl(&["page", "put", "/p", "--data", &data, "--template", "item"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v1: u64 = stdout(&o).trim().parse().expect("prints the version");
    let o = r.ctl(&[
        "page",
        "put",
        "/p",
        "--data",
        &data,
        "--template",
        "item",
        "--at",
        "+1h",
    ]);
    let v2: u64 = stdout(&o).trim().parse().expect("prints the version");
    assert!(v2 >= v1 + 3_590_000, "{v1} {v2}");

    let h = stdout(&r.ctl(&["history", "/p"]));
    let lines: Vec<&str> = h.lines().collect();
    assert!(
        lines[0].starts_with(&v1.to_string()) && lines[0].ends_with("live"),
        "{h}"
    );
    assert!(
        lines[1].starts_with(&v2.to_string()) && lines[1].ends_with("scheduled"),
        "{h}"
    );

    // Rollback needs an earlier version; --to pins an exact one; clear unpins.
    let o = r.ctl(&[
        "page",
        "put",
        "/p",
        "--data",
        &data,
        "--template-file",
        &foot,
    ]);
    let v3: u64 = stdout(&o).trim().parse().expect("version");
    let o = r.ctl(&["rollback", "/p"]);
    assert_eq!(stdout(&o).trim(), v1.to_string(), "{}", stderr(&o));
    assert_eq!(
        r.cli(&["HGET", "dynpage:rollback", "page:/p"]).trim(),
        v1.to_string()
    );
    assert!(stdout(&r.ctl(&["history", "/p"])).contains("live pinned"));
    assert_eq!(
        r.ctl(&["rollback", "/p", "--to", "12345"]).status.code(),
        Some(1)
    );
    assert_eq!(r.ctl(&["rollback", "clear", "/p"]).status.code(), Some(0));
    assert_eq!(
        r.cli(&["HEXISTS", "dynpage:rollback", "page:/p"]).trim(),
        "0"
    );
    assert!(v3 > v1);

    // Render previews through the store, escaping by default.
    let o = r.ctl(&["render", "--template", "item", "--data", &data]);
    assert_eq!(
        stdout(&o),
        "<p>&lt;Phone&gt;</p><footer>(preview)</footer>",
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let r = Redis::start();
    let bad = r.file("bad.html", "line one\n{{ x ");
    let o = r.ctl(&["template", "put", "t", &bad]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("line 2, column"), "{}", stderr(&o));
    assert_eq!(r.cli(&["EXISTS", "dynpage:tpl:t"]).trim(), "0");

    let o = r.ctl(&[
        "render",
        "--template-file",
        &bad,
        "--data",
        &r.file("d.json", "{}"),
    ]);
    assert_eq!(o.status.code(), Some(1));

    let not_object = r.file("arr.json", "[1, 2]");
    let ok_tpl = r.file("ok.html", "ok");
    let o = r.ctl(&[
        "page",
        "put",
        "/x",
        "--data",
        &not_object,
        "--template-file",
        &ok_tpl,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a JSON object"));
    let o = r.ctl(&["data", "put", "shop:1", &r.file("broken.json", "{")]);
    assert_eq!(o.status.code(), Some(1));

    assert_eq!(r.ctl(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(r.ctl(&["page", "put", "/x"]).status.code(), Some(2));
    assert_eq!(
        r.ctl(&["template", "put", "t", &ok_tpl, "--at", "tomorrow"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        r.ctl(&["template", "put", "t", &ok_tpl, "--predeploy", "--gray"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(r.ctl(&["--help"]).status.code(), Some(0));
    assert_eq!(r.ctl(&["rollback", "--help"]).status.code(), Some(0));
    let o = ctl_at("redis://127.0.0.1:1/", &["template", "put", "t", &ok_tpl]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot connect"), "{}", stderr(&o));
}

#[test]
fn data_put_stores_and_announces() {
    let r = Redis::start();
    let o = r.ctl(&[
        "data",
        "put",
        "shop:9",
        &r.file("shop.json", r#"{"name":"Acme"}"#),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(r.cli(&["GET", "shop:9"]).trim(), r#"{"name":"Acme"}"#);
    // Any JSON value is a dimension: a string of HTML, a list.
    let html = r.file("desc.json", r#""<p>Made of <b>steel</b></p>""#);
    assert_eq!(
        r.ctl(&["data", "put", "item:1:desc", &html]).status.code(),
        Some(0)
    );
    assert_eq!(
        r.cli(&["GET", "item:1:desc"]).trim(),
        r#""<p>Made of <b>steel</b></p>""#
    );
    // Too large: refused, nothing written.
    let big = format!("\"{}\"", "x".repeat(dynpage_core::store::MAX_DATA_BYTES));
    let o = r.ctl(&["data", "put", "big", &r.file("big.json", &big)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("byte limit"), "{}", stderr(&o));
    assert_eq!(r.cli(&["EXISTS", "big"]).trim(), "0");
    // An empty key is bad usage.
    assert_eq!(r.ctl(&["data", "put", "", &html]).status.code(), Some(2));
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    stdout(o)
}

#[test]
fn predeploy_gray_promote_and_prune() {
    let r = Redis::start();
    let data = r.file("d.json", r#"{"t": "x"}"#);
    let v1 = r.file("v1.html", "one {{ t }}");
    let v2 = r.file("v2.html", "two {{ t }}");
    let v3 = r.file("v3.html", "three {{ t }}");
    let put = |tpl: &str, extra: &[&str]| {
        let mut a = vec!["page", "put", "/p", "--data", &data, "--template-file", tpl];
        a.extend_from_slice(extra);
        ok(&r.ctl(&a)).trim().to_string()
    };
    let first = put(&v1, &[]);
    assert_eq!(put(&v2, &["--predeploy"]), "predeploy");
    let h = ok(&r.ctl(&["history", "/p"]));
    assert!(h.contains("predeploy"), "{h}");

    // Gray needs an abVersion; shares outside 0-100 are bad usage.
    let o = r.ctl(&["gray", "set", "/p", "10"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no abVersion"), "{}", stderr(&o));
    assert_eq!(put(&v3, &["--gray"]), "abVersion");
    for bad in ["101", "-1", "ten", "+5", "1.5"] {
        assert_eq!(
            r.ctl(&["gray", "set", "/p", bad]).status.code(),
            Some(2),
            "{bad}"
        );
    }
    assert_eq!(ok(&r.ctl(&["gray", "set", "/p", "10"])).trim(), "10");
    assert_eq!(r.cli(&["HGET", "dynpage:gray", "page:/p"]).trim(), "10");
    assert!(ok(&r.ctl(&["history", "/p"])).contains("abVersion  gray 10%"));

    // promote takes predeploy first; --gray takes abVersion and ends the gray share.
    let promoted = ok(&r.ctl(&["promote", "/p"])).trim().to_string();
    assert!(promoted > first, "{first} {promoted}");
    assert_eq!(
        r.cli(&["HEXISTS", "dynpage:page:/p", "predeploy"]).trim(),
        "0"
    );
    assert!(r
        .cli(&["HGET", "dynpage:page:/p", &promoted])
        .contains("two"));
    let promoted2 = ok(&r.ctl(&["promote", "/p", "--gray"])).trim().to_string();
    assert!(r
        .cli(&["HGET", "dynpage:page:/p", &promoted2])
        .contains("three"));
    assert_eq!(r.cli(&["HEXISTS", "dynpage:gray", "page:/p"]).trim(), "0");
    assert_eq!(r.ctl(&["promote", "/p"]).status.code(), Some(1));

    // prune keeps the newest, the live and the pinned, and never a scheduled version.
    ok(&r.ctl(&["rollback", "/p", "--to", &first]));
    put(&v1, &[]);
    let scheduled = put(&v1, &["--at", "+1h"]);
    let out = ok(&r.ctl(&["prune", "/p", "--keep", "1"]));
    assert!(out.contains("2 version(s) deleted"), "{out}");
    let left = r.cli(&["HKEYS", "dynpage:page:/p"]);
    assert!(left.contains(&first), "pinned kept: {left}");
    assert!(left.contains(&scheduled), "scheduled kept: {left}");
    assert!(!left.contains(&promoted), "{left}");
    assert_eq!(
        r.ctl(&["prune", "/p", "--keep", "0"]).status.code(),
        Some(2)
    );
    assert_eq!(r.ctl(&["gray", "off", "/p"]).status.code(), Some(0));
    assert_eq!(r.ctl(&["promote", "--help"]).status.code(), Some(0));
}

#[test]
fn template_releases_and_republish() {
    let r = Redis::start();
    let data = r.file("d.json", r#"{"t": "x"}"#);
    let a = r.file("a.html", "A {{ t }}");
    let b = r.file("b.html", "B {{ t }}");
    let broken = r.file("broken.html", "C {{ t.missing.deep }}");
    let v1 = ok(&r.ctl(&["template", "put", "item", &a]))
        .trim()
        .to_string();
    let pinned = format!("item@{v1}");
    ok(&r.ctl(&[
        "page",
        "put",
        "/exact",
        "--data",
        &data,
        "--template",
        &pinned,
    ]));
    ok(&r.ctl(&[
        "page",
        "put",
        "/follow",
        "--data",
        &data,
        "--template",
        "item",
    ]));

    // A template predeploy version, then its promotion, like a page's.
    ok(&r.ctl(&["template", "put", "item", &b, "--predeploy"]));
    let out = ok(&r.ctl(&["republish", "--template", "item", "--predeploy"]));
    assert!(out.contains("/exact predeploy"), "{out}");
    assert!(out.contains("/follow follows"), "{out}");
    assert!(r
        .cli(&["HGET", "dynpage:page:/exact", "predeploy"])
        .contains(r#""name":"item""#));
    let v2 = ok(&r.ctl(&["promote", "--template", "item"]))
        .trim()
        .to_string();
    assert!(v2 > v1);
    let out = ok(&r.ctl(&["republish", "--template", "item"]));
    assert!(out.contains("1 page(s) republished"), "{out}");
    let h = ok(&r.ctl(&["history", "/exact"]));
    let live = h
        .lines()
        .find(|l| l.ends_with("live"))
        .expect("a live line");
    let live_version = live.split_whitespace().next().expect("version");
    assert!(r
        .cli(&["HGET", "dynpage:page:/exact", live_version])
        .contains(&format!(r#""version":{v2}"#)));

    // A template version that does not fit a pinned page's data: republish refuses that page.
    ok(&r.ctl(&["template", "put", "item", &broken]));
    let o = r.ctl(&["republish", "--template", "item"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("/exact: not republished"),
        "{}",
        stderr(&o)
    );
    // Gray and rollback work on templates too.
    assert_eq!(
        r.ctl(&["gray", "set", "--template", "item", "5"])
            .status
            .code(),
        Some(1)
    );
    ok(&r.ctl(&["template", "put", "item", &a, "--gray"]));
    ok(&r.ctl(&["gray", "set", "--template", "item", "5"]));
    assert_eq!(r.cli(&["HGET", "dynpage:gray", "tpl:item"]).trim(), "5");
    ok(&r.ctl(&["rollback", "--template", "item"]));
    assert_eq!(r.cli(&["HGET", "dynpage:rollback", "tpl:item"]).trim(), v2);
}

#[test]
fn prune_and_republish_protect_what_pages_use() {
    let r = Redis::start();
    let data = r.file("d.json", r#"{"t": "x"}"#);
    let a = r.file("a.html", "A {{ t }}");
    let v1 = ok(&r.ctl(&["template", "put", "item", &a]))
        .trim()
        .to_string();
    ok(&r.ctl(&[
        "page",
        "put",
        "/exact",
        "--data",
        &data,
        "--template",
        &format!("item@{v1}"),
    ]));
    ok(&r.ctl(&["template", "put", "item", &a]));
    ok(&r.ctl(&["template", "put", "item", &a]));
    let out = ok(&r.ctl(&["prune", "--template", "item", "--keep", "1"]));
    assert!(out.contains("1 version(s) deleted"), "{out}");
    assert!(r.cli(&["HKEYS", "dynpage:tpl:item"]).contains(&v1));

    // A pinned page, or one with its own predeploy, is not republished over.
    ok(&r.ctl(&[
        "page",
        "put",
        "/exact",
        "--data",
        &data,
        "--template",
        &format!("item@{v1}"),
    ]));
    ok(&r.ctl(&["rollback", "/exact"]));
    let o = r.ctl(&["republish", "--template", "item"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("pinned"), "{}", stderr(&o));
    ok(&r.ctl(&["rollback", "clear", "/exact"]));
    let b = r.file("b.html", "B {{ t }}");
    ok(&r.ctl(&["template", "put", "item", &b, "--predeploy"]));
    ok(&r.ctl(&[
        "page",
        "put",
        "/exact",
        "--data",
        &data,
        "--template-file",
        &b,
        "--predeploy",
    ]));
    let before = r.cli(&["HGET", "dynpage:page:/exact", "predeploy"]);
    let o = r.ctl(&["republish", "--template", "item", "--predeploy"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(r.cli(&["HGET", "dynpage:page:/exact", "predeploy"]), before);
}

#[test]
fn impossible_dates_are_refused() {
    let r = Redis::start();
    let data = r.file("d.json", r#"{"t": "x"}"#);
    let tpl = r.file("t.html", "T {{ t }}");
    ok(&r.ctl(&["template", "put", "item", &tpl]));
    let usage_error = |args: &[&str], why: &str| {
        let o = r.ctl(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(why), "{args:?}: {}", stderr(&o));
    };

    // Impossible dates (D11: 2026-02-30 was stored as 2026-03-02): exit 2, nothing written.
    for (at, why) in [
        ("2026-02-30T00:00:00Z", "February 2026 has 28 days"),
        ("2026-04-31T00:00:00Z", "April 2026 has 30 days"),
        ("2027-02-29T10:00:00+08:00", "February 2027 has 28 days"),
        ("2100-02-29T00:00:00Z", "February 2100 has 28 days"),
        ("2026-11-00T00:00:00Z", "there is no day 0"),
        ("2026-11-21T24:00:00Z", "there is no hour 24"),
        ("2026-11-21T10:60:00Z", "there is no minute 60"),
        ("2026-11-21T10:00:60Z", "there is no second 60"),
        ("2026-11-21T10:00:00+24:00", "there is no offset"),
        (
            "9999-12-31T23:59:59-01:00",
            "after 9999-12-31T23:59:59.999Z",
        ),
        ("+9999999999d", "after 9999-12-31T23:59:59.999Z"),
    ] {
        let page = ["page", "put", "/at", "--data", &data, "--template", "item"];
        usage_error(&[&page[..], &["--at", at]].concat(), why);
        usage_error(&["template", "put", "late", &tpl, "--at", at], why);
    }
    assert_eq!(r.cli(&["EXISTS", "dynpage:page:/at"]).trim(), "0");
    assert_eq!(r.cli(&["EXISTS", "dynpage:tpl:late"]).trim(), "0");
    // A real leap day is a date like any other.
    let leap = ok(&r.ctl(&[
        "template",
        "put",
        "late",
        &tpl,
        "--at",
        "2028-02-29T00:00:00Z",
    ]));
    assert_eq!(leap.trim(), "1835395200000");
}

#[test]
fn non_canonical_versions_and_shares_are_refused() {
    let r = Redis::start();
    let data = r.file("d.json", r#"{"t": "x"}"#);
    let tpl = r.file("t.html", "T {{ t }}");
    let v1 = ok(&r.ctl(&["template", "put", "item", &tpl]))
        .trim()
        .to_string();
    let usage_error = |args: &[&str], why: &str| {
        let o = r.ctl(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(why), "{args:?}: {}", stderr(&o));
    };

    // Versions and shares are canonical decimal, as the module reads them.
    let page = ["page", "put", "/p", "--data", &data, "--template"];
    for (spec, why) in [
        (format!("item@0{v1}"), "has a leading zero"),
        (format!("item@+{v1}"), "has a sign"),
        (format!("item@{v1}.0"), "is not a whole number"),
        ("item@253402300800000".to_string(), "greatest version"),
        ("item@latest".to_string(), "is not a version"),
    ] {
        usage_error(&[&page[..], &[spec.as_str()]].concat(), why);
    }
    assert_eq!(r.cli(&["EXISTS", "dynpage:page:/p"]).trim(), "0");
    ok(&r.ctl(&[&page[..], &[format!("item@{v1}").as_str()]].concat()));
    ok(&r.ctl(&["template", "put", "item", &tpl]));
    for (to, why) in [
        (format!("0{v1}"), "has a leading zero"),
        (format!(" {v1}"), "has spaces"),
        (format!("+{v1}"), "has a sign"),
        ("253402300800000".to_string(), "greatest version"),
    ] {
        usage_error(&["rollback", "--template", "item", "--to", &to], why);
    }
    assert_eq!(
        r.cli(&["HEXISTS", "dynpage:rollback", "tpl:item"]).trim(),
        "0"
    );
    ok(&r.ctl(&["rollback", "--template", "item", "--to", &v1]));

    ok(&r.ctl(&["template", "put", "item", &tpl, "--gray"]));
    for (share, why) in [
        ("050", "has a leading zero"),
        ("00", "has a leading zero"),
        ("+5", "has a sign"),
        (" 5", "has spaces"),
        ("5.0", "is not a whole number"),
        ("101", "is over 100"),
    ] {
        usage_error(&["gray", "set", "--template", "item", share], why);
    }
    assert_eq!(r.cli(&["HEXISTS", "dynpage:gray", "tpl:item"]).trim(), "0");
    assert_eq!(
        ok(&r.ctl(&["gray", "set", "--template", "item", "0"])).trim(),
        "0"
    );
    assert_eq!(
        ok(&r.ctl(&["gray", "set", "--template", "item", "100"])).trim(),
        "100"
    );
}

#[test]
fn prune_keeps_the_only_live_version() {
    let r = Redis::start();
    let snap = r#"{"template":"ok","data":{}}"#;

    // D6: "02000" is not version 2000. The only live version is 1000, and prune keeps it.
    r.cli(&["HSET", "dynpage:page:/d", "1000", snap]);
    r.cli(&["HSET", "dynpage:page:/d", "02000", snap]);
    let o = r.ctl(&["prune", "/d", "--keep", "1"]);
    assert!(ok(&o).contains("0 version(s) deleted"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("\"02000\" (not canonical: it has a leading zero)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(r.cli(&["HEXISTS", "dynpage:page:/d", "1000"]).trim(), "1");
    assert_eq!(r.cli(&["HEXISTS", "dynpage:page:/d", "02000"]).trim(), "1");
    let h = ok(&r.ctl(&["history", "/d"]));
    assert!(
        h.lines()
            .any(|l| l.starts_with("1000 ") && l.ends_with("live")),
        "{h}"
    );
    assert!(!h.contains("2000 "), "{h}");
    assert!(
        h.contains("# 1 field(s) that are not versions ignored"),
        "{h}"
    );

    // One live version and scheduled ones: nothing to delete.
    r.cli(&["HSET", "dynpage:page:/one", "1000", snap]);
    r.cli(&["HSET", "dynpage:page:/one", "253402300799999", snap]);
    assert!(ok(&r.ctl(&["prune", "/one", "--keep", "1"])).contains("0 version(s) deleted"));
    assert_eq!(r.cli(&["HLEN", "dynpage:page:/one"]).trim(), "2");

    // Pinned to the oldest: the pin and the newest live version stay, the middle one goes.
    for v in ["1000", "2000", "3000"] {
        r.cli(&["HSET", "dynpage:page:/pin", v, snap]);
    }
    r.cli(&["HSET", "dynpage:rollback", "page:/pin", "1000"]);
    let out = ok(&r.ctl(&["prune", "/pin", "--keep", "1"]));
    assert!(
        out.contains("deleted 2000") && out.contains("1 version(s) deleted"),
        "{out}"
    );
    let mut left: Vec<String> = r
        .cli(&["HKEYS", "dynpage:page:/pin"])
        .lines()
        .map(str::to_string)
        .collect();
    left.sort();
    assert_eq!(left, ["1000", "3000"]);
}

#[test]
fn prune_protects_template_versions_named_as_strings() {
    // A template version a page names exactly, as a JSON string ("version": "123", which the
    // module accepts), is protected like one named as a number.
    let r = Redis::start();
    let tpl = r.file("t.html", "T");
    let put = || {
        ok(&r.ctl(&["template", "put", "item", &tpl]))
            .trim()
            .to_string()
    };
    let (as_string, as_number) = (put(), put());
    r.cli(&[
        "HSET",
        "dynpage:page:/s",
        "1000",
        &format!(r#"{{"template":{{"name":"item","version":"{as_string}"}},"data":{{}}}}"#),
    ]);
    r.cli(&[
        "HSET",
        "dynpage:page:/n",
        "1000",
        &format!(r#"{{"template":{{"name":"item","version":{as_number}}},"data":{{}}}}"#),
    ]);
    let unnamed = put();
    let newest = put();
    let out = ok(&r.ctl(&["prune", "--template", "item", "--keep", "1"]));
    assert!(out.contains(&format!("deleted {unnamed}")), "{out}");
    assert!(out.contains("1 version(s) deleted"), "{out}");
    let left = r.cli(&["HKEYS", "dynpage:tpl:item"]);
    for v in [&as_string, &as_number, &newest] {
        assert!(left.contains(v.as_str()), "{v} kept: {left}");
    }
}

/// Runs dynpagectl against `r` with `DYNPAGE_RENDER_MAX_SIZE` set.
fn ctl_with_max_size(r: &Redis, size: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dynpagectl"))
        .env("DYNPAGE_REDIS", format!("redis://127.0.0.1:{}", r.port))
        .env("DYNPAGE_RENDER_MAX_SIZE", size)
        .args(args)
        .output()
        .expect("dynpagectl runs")
}

#[test]
fn templates_nested_too_deep_are_refused_with_line_and_column() {
    let r = Redis::start();
    let data = r.file("d.json", "{}");
    let parens = |n: usize| format!("{{{{ {}x{} }}}}", "(".repeat(n), ")".repeat(n));
    let ifs = |n: usize| format!("{}x{}", "{% if a %}\n".repeat(n), "{% endif %}".repeat(n));
    // Issue 12 D1: 1,500 nested parentheses (3 KB) and 3,000 nested ifs were accepted and then
    // crashed nginx; 10,000 levels crashed dynpagectl itself.
    let cases = [
        (
            "parens",
            parens(1500),
            "expression",
            "at line 1, column 104",
        ),
        ("ifs", ifs(3000), "blocks", "at line 101, column 1"),
        (
            "parens10k",
            parens(10_000),
            "expression",
            "at line 1, column 104",
        ),
        ("ifs10k", ifs(10_000), "blocks", "at line 101, column 1"),
    ];
    for (name, src, what, at) in cases {
        let f = r.file(&format!("{name}.html"), &src);
        let o = r.ctl(&["template", "put", name, &f]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains("nested too deep") && err.contains(what),
            "{err}"
        );
        assert!(err.trim_end().ends_with(at), "{name}: {err}");
        assert_eq!(
            r.cli(&["EXISTS", &format!("dynpage:tpl:{name}")]).trim(),
            "0"
        );
        let o = r.ctl(&["page", "put", "/d", "--data", &data, "--template-file", &f]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(at), "{}", stderr(&o));
        let o = r.ctl(&["render", "--template-file", &f, "--data", &data]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
    }
    assert_eq!(r.cli(&["EXISTS", "dynpage:page:/d"]).trim(), "0");
    // At the limits: accepted and rendered.
    let ok = r.file("ok.html", &format!("{}{}", ifs(100), parens(100)));
    let o = r.ctl(&["template", "put", "ok", &ok]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = r.ctl(&[
        "page",
        "put",
        "/ok",
        "--data",
        &r.file("a.json", r#"{"a": 1, "x": "y"}"#),
        "--template",
        "ok",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn pages_over_the_render_budget_are_refused() {
    let r = Redis::start();
    let empty = r.file("empty.json", "{}");
    // Issue 12 D2: ten templates each including the next eight times. Each compiles (a template
    // alone says nothing of how it is used); a page that renders them is refused.
    for i in (0..10).rev() {
        let src = if i == 9 {
            "x".to_string()
        } else {
            format!("{{% include \"t{}\" %}}", i + 1).repeat(8)
        };
        let f = r.file(&format!("t{i}.html"), &src);
        let o = r.ctl(&["template", "put", &format!("t{i}"), &f]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let started = Instant::now();
    let o = r.ctl(&["page", "put", "/fan", "--data", &empty, "--template", "t0"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("over 10000 includes"), "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(r.cli(&["EXISTS", "dynpage:page:/fan"]).trim(), "0");
    let o = r.ctl(&["render", "--template", "t6", "--data", &empty]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "8^3 expansions are fine: {}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "x".repeat(512));

    // An output over dynpage_render_max_size (4m unless DYNPAGE_RENDER_MAX_SIZE says otherwise).
    let big = r.file(
        "big.html",
        "{% for a in xs %}{% for b in xs %}{{ s }}{% endfor %}{% endfor %}",
    );
    let s = "0123456789".repeat(10);
    let huge = r.file(
        "huge.json",
        &format!(r#"{{"xs": {:?}, "s": "{s}"}}"#, vec![0; 1000]),
    );
    let mb = r.file(
        "mb.json",
        &format!(r#"{{"xs": {:?}, "s": "{s}"}}"#, vec![0; 100]),
    );
    let o = r.ctl(&[
        "page",
        "put",
        "/big",
        "--data",
        &huge,
        "--template-file",
        &big,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("over 4194304 bytes"), "{}", stderr(&o));
    let o = r.ctl(&["render", "--template-file", &big, "--data", &huge]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = r.ctl(&[
        "page",
        "put",
        "/big",
        "--data",
        &mb,
        "--template-file",
        &big,
    ]);
    assert_eq!(o.status.code(), Some(0), "1 MB is fine: {}", stderr(&o));
    let args = [
        "page",
        "put",
        "/big",
        "--data",
        &mb,
        "--template-file",
        &big,
    ];
    let o = ctl_with_max_size(&r, "512k", &args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("over 524288 bytes"), "{}", stderr(&o));
    assert_eq!(ctl_with_max_size(&r, "2m", &args).status.code(), Some(0));
    assert_eq!(ctl_with_max_size(&r, "lots", &args).status.code(), Some(2));

    // Loops that write nothing are bounded too.
    let silent = r.file(
        "silent.html",
        "{% for a in xs %}{% for b in xs %}{% for c in xs %}{% endfor %}{% endfor %}{% endfor %}",
    );
    let o = r.ctl(&[
        "page",
        "put",
        "/silent",
        "--data",
        &huge,
        "--template-file",
        &silent,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("steps"), "{}", stderr(&o));
}

/// `dynpagectl check --json`: its exit status and the problems it lists.
fn check_json(r: &Redis, args: &[&str]) -> (Option<i32>, Vec<serde_json::Value>) {
    let o = r.ctl(&[&["check", "--json"], args].concat());
    let list: serde_json::Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("--json is not JSON ({e}): {}", stdout(&o)));
    let serde_json::Value::Array(list) = list else {
        panic!("--json is not an array: {list}");
    };
    (o.status.code(), list)
}

#[test]
fn check_passes_a_layout_written_by_dynpagectl() {
    let r = Redis::start();
    let o = r.ctl(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("no problems"), "{}", stderr(&o));
    assert_eq!(check_json(&r, &[]), (Some(0), Vec::new()));

    // Every kind of release, as dynpagectl writes it.
    let item = r.file("item.html", "<p>{{ t }}</p>{% include \"foot\" %}");
    let foot = r.file("foot.html", "<footer>{{ page.key }}</footer>");
    let inline = r.file("inline.html", "<b>{{ t }}</b>");
    let data = r.file("d.json", r#"{"t": "x"}"#);
    ok(&r.ctl(&["template", "put", "foot", &foot]));
    let v1 = ok(&r.ctl(&["template", "put", "item", &item]))
        .trim()
        .to_string();
    ok(&r.ctl(&["template", "put", "item", &item, "--predeploy"]));
    ok(&r.ctl(&["template", "put", "item", &item, "--gray"]));
    ok(&r.ctl(&["gray", "set", "--template", "item", "10"]));
    let page = ["page", "put", "/p", "--data", &data, "--template", "item"];
    let p1 = ok(&r.ctl(&page)).trim().to_string();
    ok(&r.ctl(&[&page[..], &["--at", "+1h"]].concat()));
    ok(&r.ctl(&[&page[..], &["--predeploy"]].concat()));
    ok(&r.ctl(&[&page[..], &["--gray"]].concat()));
    ok(&r.ctl(&["gray", "set", "/p", "20"]));
    ok(&r.ctl(&["rollback", "/p", "--to", &p1]));
    let exact = format!("item@{v1}");
    ok(&r.ctl(&["page", "put", "/q", "--data", &data, "--template", &exact]));
    ok(&r.ctl(&[
        "page",
        "put",
        "/r",
        "--data",
        &data,
        "--template-file",
        &inline,
    ]));
    ok(&r.ctl(&["data", "put", "shop:1", &data]));
    // A page scheduled behind its live version, a gray share of 0, other keys: all fine.
    r.cli(&["HSET", "dynpage:gray", "tpl:foot", "0"]);
    r.cli(&["SET", "dynpage:unrelated", "x"]);

    let o = r.ctl(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains("3 page(s), 2 template(s) checked"),
        "{}",
        stderr(&o)
    );
    assert_eq!(check_json(&r, &[]), (Some(0), Vec::new()));

    // Bad usage.
    assert_eq!(r.ctl(&["check", "extra"]).status.code(), Some(2));
    assert_eq!(r.ctl(&["check", "--keep", "1"]).status.code(), Some(2));
    let o = r.ctl(&["check", "--help"]);
    assert!(ok(&o).contains("--json"), "{}", stdout(&o));
    assert!(ok(&r.ctl(&["--help"])).contains("check [--json]"));
}

#[test]
fn check_reports_each_kind_of_problem() {
    let r = Redis::start();
    let hset = |key: &str, field: &str, value: &str| {
        assert_eq!(
            r.cli(&["HSET", key, field, value]).trim(),
            "1",
            "{key} {field}"
        );
    };
    let eval = |script: &str, key: &str| {
        r.cli(&["EVAL", script, "1", key]);
    };
    let good = r#"{"template":{"name":"item"},"data":{}}"#;
    hset("dynpage:tpl:item", "1000", "<p>{{ title }}</p>");
    hset("dynpage:page:/ok", "1000", good);
    hset("dynpage:page:/ok2", "1000", good);

    // One of each problem.
    hset("dynpage:page:/later", "9999999999999", good);
    hset("dynpage:page:/pre", "predeploy", good);
    hset("dynpage:page:/ok", "02000", good);
    hset("dynpage:page:/bad", "1000", "{not json");
    hset("dynpage:page:/bad", "1001", r#"{"template":5}"#);
    hset(
        "dynpage:page:/bad",
        "1002",
        r#"{"template":{"name":"item","version":"01000"}}"#,
    );
    hset(
        "dynpage:page:/bad",
        "1003",
        r#"{"template":"{% include \"nope\" %}"}"#,
    );
    hset("dynpage:page:/bad", "predeploy", "[1]");
    hset(
        "dynpage:page:/bad",
        "abVersion",
        r#"{"template":"{% if %}"}"#,
    );
    hset("dynpage:tpl:broken", "1000", "{{ x ");
    hset("dynpage:tpl:withinc", "1000", "{% include \"nosuch\" %}");
    hset(
        "dynpage:page:/ghost",
        "1000",
        r#"{"template":{"name":"ghost"}}"#,
    );
    hset(
        "dynpage:page:/exact",
        "1000",
        r#"{"template":{"name":"item","version":777}}"#,
    );
    hset("dynpage:rollback", "page:/gone", "1000");
    hset("dynpage:rollback", "page:/ok", "999");
    hset("dynpage:rollback", "tpl:item", "01000");
    hset("dynpage:rollback", "junk", "1");
    hset("dynpage:gray", "page:/nope", "5");
    hset("dynpage:gray", "page:/ok", "30");
    hset("dynpage:gray", "tpl:item", "050");
    r.cli(&["SET", "dynpage:page:/str", "x"]);
    eval(
        "redis.call('HSET', KEYS[1], '1000', string.char(255, 254))",
        "dynpage:tpl:binary",
    );
    eval(
        "redis.call('HSET', KEYS[1], '1000', string.rep('x', 8388609))",
        "dynpage:page:/big",
    );
    eval(
        "for i = 1, 10001 do redis.call('HSET', KEYS[1], tostring(i), 'x') end",
        "dynpage:tpl:many",
    );
    eval(
        "redis.call('HSET', KEYS[1], 'page:/ok2', string.rep('1', 70000))",
        "dynpage:rollback",
    );
    let long = format!("dynpage:page:/{}", "a".repeat(1024));
    hset(&long, "1000", good);
    // Not under the prefix: not checked.
    hset("other:page:/x", "1000", "{not json");

    // (line start, what it says, key, field, problem code)
    let expected: &[(&str, &str, &str, Option<&str>, &str)] = &[
        (
            "dynpage:page:/later: ",
            "every version is in the future: requests get 404 until the first, 9999999999999, \
             goes live at 2286-11-20T17:46:39.999Z",
            "dynpage:page:/later",
            None,
            "only_future_versions",
        ),
        (
            "dynpage:page:/pre: ",
            "has no production version (only predeploy)",
            "dynpage:page:/pre",
            None,
            "no_production_version",
        ),
        (
            "dynpage:page:/ok field 02000: ",
            "\"02000\" is not a canonical version: it has a leading zero; the module ignores",
            "dynpage:page:/ok",
            Some("02000"),
            "not_a_version",
        ),
        (
            "dynpage:page:/bad field 1000: ",
            "snapshot is not valid JSON: key must be a string at line 1 column 2",
            "dynpage:page:/bad",
            Some("1000"),
            "snapshot_not_json",
        ),
        (
            "dynpage:page:/bad field 1001: ",
            "snapshot \"template\" is neither a string nor",
            "dynpage:page:/bad",
            Some("1001"),
            "snapshot_invalid",
        ),
        (
            "dynpage:page:/bad field 1002: ",
            "snapshot \"template\" version \"01000\" is not a canonical version",
            "dynpage:page:/bad",
            Some("1002"),
            "snapshot_invalid",
        ),
        (
            "dynpage:page:/bad field 1003: ",
            "inline template includes template \"nope\", which does not exist: the render fails",
            "dynpage:page:/bad",
            Some("1003"),
            "include_missing",
        ),
        (
            "dynpage:page:/bad field predeploy: ",
            "snapshot is not a JSON object",
            "dynpage:page:/bad",
            Some("predeploy"),
            "snapshot_invalid",
        ),
        (
            "dynpage:page:/bad field abVersion: ",
            "inline template does not compile: ",
            "dynpage:page:/bad",
            Some("abVersion"),
            "template_does_not_compile",
        ),
        (
            "dynpage:tpl:broken field 1000: ",
            "template does not compile: ",
            "dynpage:tpl:broken",
            Some("1000"),
            "template_does_not_compile",
        ),
        (
            "dynpage:tpl:withinc field 1000: ",
            "template includes template \"nosuch\", which does not exist",
            "dynpage:tpl:withinc",
            Some("1000"),
            "include_missing",
        ),
        (
            "dynpage:page:/ghost field 1000: ",
            "names template \"ghost\", which does not exist",
            "dynpage:page:/ghost",
            Some("1000"),
            "template_missing",
        ),
        (
            "dynpage:page:/exact field 1000: ",
            "names template \"item\" version 777, which does not exist",
            "dynpage:page:/exact",
            Some("1000"),
            "template_version_missing",
        ),
        (
            "dynpage:rollback field page:/gone: ",
            "pins a version of page \"/gone\", which does not exist",
            "dynpage:rollback",
            Some("page:/gone"),
            "pin_document_missing",
        ),
        (
            "dynpage:rollback field page:/ok: ",
            "pins version 999, which page \"/ok\" does not have",
            "dynpage:rollback",
            Some("page:/ok"),
            "pin_version_missing",
        ),
        (
            "dynpage:rollback field tpl:item: ",
            "pin \"01000\" is not a canonical version: it has a leading zero",
            "dynpage:rollback",
            Some("tpl:item"),
            "pin_not_a_version",
        ),
        (
            "dynpage:rollback field junk: ",
            "names no document",
            "dynpage:rollback",
            Some("junk"),
            "entry_not_a_document",
        ),
        (
            "dynpage:rollback field page:/ok2: ",
            "the value is 70000 bytes, over the 65536 byte limit",
            "dynpage:rollback",
            Some("page:/ok2"),
            "entry_too_large",
        ),
        (
            "dynpage:gray field page:/nope: ",
            "gray share for page \"/nope\", which does not exist",
            "dynpage:gray",
            Some("page:/nope"),
            "gray_document_missing",
        ),
        (
            "dynpage:gray field page:/ok: ",
            "gray share 30% but page \"/ok\" has no abVersion field",
            "dynpage:gray",
            Some("page:/ok"),
            "gray_without_ab_version",
        ),
        (
            "dynpage:gray field tpl:item: ",
            "gray share \"050\" is not a whole percent 0-100 written plainly: it has a leading zero",
            "dynpage:gray",
            Some("tpl:item"),
            "gray_not_a_share",
        ),
        (
            "dynpage:page:/str: ",
            "is not a hash",
            "dynpage:page:/str",
            None,
            "not_a_hash",
        ),
        (
            "dynpage:tpl:binary field 1000: ",
            "template is not UTF-8",
            "dynpage:tpl:binary",
            Some("1000"),
            "not_utf8",
        ),
        (
            "dynpage:page:/big field 1000: ",
            "the value is 8388609 bytes, over the 8388608 byte limit",
            "dynpage:page:/big",
            Some("1000"),
            "value_too_large",
        ),
        (
            "dynpage:tpl:many: ",
            "has 10001 fields, over the 10000 field limit",
            "dynpage:tpl:many",
            None,
            "too_many_fields",
        ),
        (
            &long,
            ": the name is 1025 bytes, over the 1024 byte limit",
            &long,
            None,
            "name_too_long",
        ),
    ];

    let o = r.ctl(&["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    for (start, says, ..) in expected {
        assert!(
            out.lines()
                .any(|l| l.starts_with(start) && l.contains(says)),
            "no line {start}... {says}\n{out}"
        );
    }
    assert_eq!(out.lines().count(), expected.len(), "{out}");
    assert!(
        stderr(&o).contains(&format!("{} problem(s)", expected.len())),
        "{}",
        stderr(&o)
    );
    for clean in [
        "dynpage:page:/ok:",
        "dynpage:page:/ok field 1000",
        "dynpage:tpl:item",
    ] {
        assert!(!out.contains(clean), "{clean}\n{out}");
    }
    assert!(!out.contains("other:"), "{out}");

    // The same problems for machines.
    let (code, list) = check_json(&r, &[]);
    assert_eq!(code, Some(1));
    assert_eq!(list.len(), expected.len(), "{list:?}");
    for (_, says, key, field, problem) in expected {
        assert!(
            list.iter().any(|p| p["key"] == *key
                && p["field"] == serde_json::json!(field)
                && p["problem"] == *problem
                && p["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(says.trim_start_matches(": ")))),
            "no {key} {field:?} {problem} in {list:#?}"
        );
    }
    for p in &list {
        let keys: Vec<&String> = p.as_object().expect("an object").keys().collect();
        assert_eq!(keys, ["field", "key", "message", "problem"], "{p}");
    }
}

#[test]
fn check_reads_only_its_prefix_and_large_stores_whole() {
    let r = Redis::start();
    let good = r#"{"template":"ok","data":{}}"#;
    // More pages and pins than one SCAN / HSCAN reply holds; one of each is wrong.
    r.cli(&[
        "EVAL",
        "for i = 1, 1500 do \
           redis.call('HSET', 'x[1]:page:/p/' .. i, '1000', ARGV[1]) \
           redis.call('HSET', 'x[1]:rollback', 'page:/p/' .. i, '1000') \
         end",
        "0",
        good,
    ]);
    r.cli(&["HSET", "x[1]:page:/p/700", "1001", "{not json"]);
    r.cli(&["HSET", "x[1]:rollback", "page:/p/9999", "1000"]);
    // `x[1]:*` as a glob would match `x1:`: the prefix is matched as it is written.
    r.cli(&["HSET", "x1:page:/y", "1000", "{not json"]);
    r.cli(&["SET", "x[1]:gray", "not a hash"]);

    let o = r.ctl(&["--prefix", "x[1]:", "check"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        out.contains("x[1]:page:/p/700 field 1001: snapshot is not valid JSON"),
        "{out}"
    );
    assert!(
        out.contains("x[1]:rollback field page:/p/9999: pins a version of page \"/p/9999\""),
        "{out}"
    );
    assert!(
        out.contains("x[1]:gray: is not a hash: the module cannot read gray shares from it"),
        "{out}"
    );
    assert!(
        stderr(&o).contains("1500 page(s), 0 template(s) checked"),
        "{}",
        stderr(&o)
    );
    // Under the default prefix there is nothing at all.
    assert_eq!(r.ctl(&["check"]).status.code(), Some(0));
}
