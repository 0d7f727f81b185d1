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
}
