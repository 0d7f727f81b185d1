//! dynpagectl end to end, against a private redis-server on a free loopback port.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir().join(format!("dynpagectl-test-{port}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (make deps)");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port, dir }
    }

    fn ctl(&self, args: &[&str]) -> Output {
        ctl_at(&format!("redis://127.0.0.1:{}", self.port), args)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, text).expect("write file");
        p.to_string_lossy().into_owned()
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
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
