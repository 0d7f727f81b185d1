//! Cases found by the fuzz harnesses (`make fuzz`, fuzz/), kept as regression tests.

use dynpage_core::store::redact_url;

/// The password the Redis client reads from `url`.
fn password(url: &str) -> Option<String> {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info().ok()?;
    info.redis_settings().password().map(str::to_string)
}

/// `redact_url` hid the user info only: a unix socket URL carries its password in the query
/// (`?pass=`), which the client reads however the key is encoded and wherever tabs or line
/// breaks (which the URL parser drops) are.
#[test]
fn redact_url_hides_every_password_the_client_reads() {
    for url in [
        "redis+unix:///run/redis.sock?db=1&pass=s3cret",
        "unix:///run/redis.sock?pass=s3cret&db=2",
        "valkey+unix:///run/redis.sock?p%61ss=s3cret",
        "redis+unix:///run/redis.sock?pass=s3cret#insecure",
        "REDIS+UNIX:///?pass=?s3cret",
        "redis+unix://?=}}@&db=1&pass=s3cret#x",
        "Redis:/\n/app:s3cret@127.0.0.1:6379/0",
        "redis://app:s3c\tret@127.0.0.1:6379/0",
        "redis://:s3cret@127.0.0.1:6379/0",
    ] {
        let shown = redact_url(url);
        assert!(!shown.contains("s3cret"), "{url:?} shows as {shown:?}");
        assert!(!shown.contains("s3c"), "{url:?} shows as {shown:?}");
        if let Some(p) = password(&shown) {
            assert_eq!(p, "***", "{shown:?}");
        }
        assert_eq!(redact_url(&shown), shown, "redacting {shown:?} again");
    }
    // A `?` inside a (malformed) user info does not hide a later `pass=`.
    let shown = redact_url("valkeys://:pw?x@127.0.0.1:65536/0?pass=s3cret");
    assert!(
        !shown.contains("s3cret") && !shown.contains("pw"),
        "{shown:?}"
    );
    assert_eq!(redact_url(&shown), shown);
    // Nothing to hide: unchanged.
    for url in [
        "redis://127.0.0.1:6379/0",
        "redis+unix:///run/redis.sock?db=1",
        "redis://h/0?password=x",
    ] {
        assert_eq!(redact_url(url), url);
    }
}

/// The include names a page fetches are read from the source: an escaped quote ended the name
/// early (`q\` for `"q\"x"`, so the template upon includes was never fetched and the page
/// failed), and an include inside a string literal was taken for a real one.
#[test]
fn include_names_are_read_as_upon_reads_them() {
    use dynpage_core::render::{compile, include_names};
    let cases: [(&str, &[&str], &[&str]); 7] = [
        (r#"{% include "q\"x" %}"#, &["q\"x"], &[]),
        (
            r#"{%- include "back\\slash" with m -%}"#,
            &["back\\slash"],
            &["back\\slash"],
        ),
        (
            r#"{% include "tab\t" %}{% include "x%}y" %}"#,
            &["tab\t", "x%}y"],
            &[],
        ),
        (
            r#"{{ "{% include \"zz\" %}" }}{% include "a" %}"#,
            &["a"],
            &[],
        ),
        (r#"{% include"a"with m %}{% include "a" %}"#, &["a"], &["a"]),
        (
            r#"{% if t %}{% include "b" with x %}{% endif %}"#,
            &["b"],
            &["b"],
        ),
        (r#"{% includes "a" %}{{ include }}"#, &[], &[]),
    ];
    for (src, names, modules) in cases {
        assert_eq!(include_names(src), names, "{src}");
        if let Ok(t) = compile(src.to_string()) {
            assert_eq!(t.includes(), names, "{src}");
            assert_eq!(t.modules(), modules, "{src}");
        }
    }
}

/// serde_json read some doubles one unit in the last place off (4.4696751615359943e-181 as
/// 4.469675161535995e-181): a page showed another number than its snapshot held, and
/// `to_json` (dynpagectl republishing) changed it. serde_json's `float_roundtrip` reads them
/// exactly.
#[test]
fn snapshot_numbers_read_exactly_and_round_trip() {
    use dynpage_core::snapshot::Snapshot;
    for text in [
        "4.4696751615359943e-181",
        "1.7976931348623157e308",
        "5e-324",
        "0.1",
    ] {
        let json = format!(r#"{{"template":"x","data":{{"f":{text}}}}}"#);
        let snap = Snapshot::parse(&json).unwrap();
        let f = snap.data["f"].as_f64().unwrap();
        assert_eq!(f, text.parse::<f64>().unwrap(), "{text}");
        assert_eq!(Snapshot::parse(&snap.to_json()).unwrap(), snap, "{text}");
    }
}

/// A connection answering a pipeline with prepared replies.
struct Canned(Vec<redis::Value>);

impl redis::ConnectionLike for Canned {
    fn req_packed_command(&mut self, _: &[u8]) -> redis::RedisResult<redis::Value> {
        unreachable!("only pipelines")
    }

    fn req_packed_commands(
        &mut self,
        _: &[u8],
        _: usize,
        _: usize,
    ) -> redis::RedisResult<Vec<redis::Value>> {
        Ok(std::mem::take(&mut self.0))
    }

    fn get_db(&self) -> i64 {
        0
    }

    fn check_connection(&mut self) -> bool {
        true
    }

    fn is_open(&self) -> bool {
        true
    }
}

/// A data key emptied between its `STRLEN` and its `GETRANGE` (a pipeline is not atomic) was
/// read as a present, empty value ("not JSON") instead of a missing one.
#[test]
fn a_data_key_emptied_between_its_two_reads_is_missing() {
    use dynpage_core::layout::Layout;
    use dynpage_core::store::{fetch_batch, Fetch, Raw};
    use redis::Value;
    let mut con = Canned(vec![Value::Int(5), Value::BulkString(Vec::new())]);
    let got = fetch_batch(&mut con, &Layout::default(), &[Fetch::Data("d".into())]).unwrap();
    assert_eq!(got, [Raw::Data(Ok(None))]);
    let mut con = Canned(vec![Value::Int(2), Value::BulkString(b"{}".to_vec())]);
    let got = fetch_batch(&mut con, &Layout::default(), &[Fetch::Data("d".into())]).unwrap();
    assert_eq!(got, [Raw::Data(Ok(Some(b"{}".to_vec())))]);
}

/// A plain include inside a `with` block rendered erratically: upon 0.11 compares the included
/// template's variable names with the `with` variable's name at the including template's
/// offsets in the included source, so the same `{{ x }}` read the page's data or the `with`
/// value depending on an unrelated character of the included template (and panicked when the
/// offset was past its end). Such a template is refused; behind a boundary (`with` a value) the
/// include is fine.
#[test]
fn a_plain_include_inside_a_with_block_is_refused() {
    use dynpage_core::render::{compile, TemplateError};
    for src in [
        r#"{% with s as x %}{% include "inc" %}{% endwith %}"#,
        r#"{% if t %}{%- with s as x -%}{% for i in xs %}{% include "inc" %}{% endfor %}{% endwith %}{% endif %}"#,
        "{% with s as x %}{% with t as y %}{% endwith %}\n  {% include \"inc\" %}{% endwith %}",
    ] {
        match compile(src.to_string()) {
            Err(TemplateError::Syntax(e)) => assert!(
                e.contains("an include without `with` inside a with block at line"),
                "{src}: {e}"
            ),
            other => panic!("{src}: {:?}", other.map(|_| ())),
        }
    }
    let e = compile(
        "{% with s as x %}{% with t as y %}{% endwith %}\n  {% include \"inc\" %}{% endwith %}"
            .into(),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("at line 2, column 3"), "{e}");
    for src in [
        r#"{% with s as x %}{% include "inc" with x %}{% endwith %}"#,
        r#"{% with s as x %}{% endwith %}{% include "inc" %}"#,
        r#"{% with s as x %}{{ "{% include \"inc\" %}" }}{% endwith %}"#,
        r#"{% include "inc" %}{% with s as x %}{{ x }}{% endwith %}"#,
    ] {
        assert!(compile(src.to_string()).is_ok(), "{src}");
    }
}

/// A peer on a local port that writes `bytes` to its first connection, then reads until the
/// client hangs up.
fn peer(bytes: &'static [u8]) -> dynpage_core::resp::Target {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.write_all(bytes);
            let mut buf = [0u8; 4096];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
    dynpage_core::resp::Target::parse(&format!("redis://127.0.0.1:{port}")).unwrap()
}

/// The bounded RESP reader refused the integer -9223372036854775808 (i64::MIN) as "a bad
/// integer": it negated the number after reading it positive, which overflows there.
#[test]
fn the_resp_reader_reads_the_smallest_integer() {
    use dynpage_core::resp::{Conn, Limits, Reply};
    let t =
        peer(b":-9223372036854775808\r\n:9223372036854775807\r\n:-0\r\n:-9223372036854775809\r\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut c = Conn::connect(&t, deadline).unwrap();
    assert_eq!(
        c.read_reply(&Limits::SMALL, deadline),
        Ok(Reply::Int(i64::MIN))
    );
    assert_eq!(
        c.read_reply(&Limits::SMALL, deadline),
        Ok(Reply::Int(i64::MAX))
    );
    assert_eq!(c.read_reply(&Limits::SMALL, deadline), Ok(Reply::Int(0)));
    assert!(c.read_reply(&Limits::SMALL, deadline).is_err());
}

/// The module's reader (`fetch_batch_within`): a data key emptied between its `STRLEN` and
/// its `GETRANGE` is missing, as with `fetch_batch`.
#[test]
fn the_bounded_reader_reads_a_data_key_emptied_between_its_two_reads_as_missing() {
    use dynpage_core::layout::Layout;
    use dynpage_core::resp::Conn;
    use dynpage_core::store::{fetch_batch_within, Fetch, Raw};
    let t = peer(b":5\r\n$0\r\n\r\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut c = Conn::connect(&t, deadline).unwrap();
    let reply = fetch_batch_within(
        &mut c,
        &Layout::default(),
        &[Fetch::Data("d".into())],
        deadline,
    );
    assert_eq!(reply.items, [Ok(Raw::Data(Ok(None)))], "{reply:?}");
    assert!(reply.failed.is_none() && reply.reusable, "{reply:?}");
}

/// upon hands a formatter given arguments (`{{ x | raw: 1 }}`) the last argument instead of
/// the value and panics on what is left on its stack (a render error, since panics are
/// caught, with nothing to tell why). Refused at compile, with its position; no filter takes
/// arguments here (`raw` is a formatter, and no functions are registered).
#[test]
fn a_filter_given_arguments_is_refused() {
    use dynpage_core::render::{compile, TemplateError};
    for (src, at) in [
        ("{{ x | raw: 1 }}", "line 1, column 6"),
        ("a\n  {{ x|raw :\"<b>\" }}", "line 2, column 7"),
        ("{{ x | nosuch: y, z }}", "line 1, column 6"),
    ] {
        match compile(src.to_string()) {
            Err(TemplateError::Syntax(e)) => assert!(
                e.contains(&format!("a filter given arguments at {at}")),
                "{src}: {e}"
            ),
            other => panic!("{src}: {:?}", other.map(|_| ())),
        }
    }
    for src in [
        "{{ x | raw }}",
        r#"{{ "a | b: c" }}"#,
        "{% if x | raw %}{% endif %}",
        "{# x | raw: 1 #}",
    ] {
        assert!(compile(src.to_string()).is_ok(), "{src}");
    }
}

/// upon reports an error past its (display-width-counted) last line when multi-byte characters
/// put the byte offset beyond it; in a template whose loops count their turns, that position
/// was left as it was in the counting source instead of being mapped to the author's.
#[test]
fn an_error_position_past_the_end_maps_to_the_authors_source() {
    use dynpage_core::render::{
        build_context, compile, engine, one_line, render_with_upon, PageInfo, Scope,
    };
    let data: serde_json::Value = serde_json::json!({"xs": [1], "x": 1.5});
    let ctx = build_context(
        data.as_object().unwrap(),
        PageInfo {
            key: "/k",
            version: "1",
            variant: "production",
        },
        &[],
    );
    for src in [
        format!(
            "{{% for v in xs %}}{{% endfor %}}{}{{{{ x.a }}}}",
            "é".repeat(20)
        ),
        format!(
            "{{% for v in xs %}}{{% endfor %}}\n{}\n{{{{ x.1 }}}}",
            "😀".repeat(9)
        ),
    ] {
        let t = compile(src.clone()).unwrap();
        let mut out = Vec::new();
        let ours = render_with_upon(&t, Scope::of(&ctx), &[], &mut out).unwrap_err();
        let plain = engine().compile(src.as_str()).unwrap();
        let e = plain.render_from(engine(), &ctx).to_string().unwrap_err();
        assert_eq!(ours.message, one_line(&e), "{src:?}");
    }
}

/// `make fuzz` (snapshot, seed 0xd27367be088d6a9e): a member the module does not read, holding a
/// number out of range (`157e+308`), was skipped by the module (serde's `IgnoredAny` does not
/// check numbers) and refused by dynpagectl (`serde_json::Value` does): the module took a
/// snapshot dynpagectl calls invalid. Both refuse it now, with the same error.
#[test]
fn a_member_the_module_skips_is_read_to_the_same_rules() {
    use dynpage_core::json_value::parse_snapshot;
    use dynpage_core::snapshot::Snapshot;
    for text in [
        r#"{"x":[1,157e+308],"template":"t","data":{}}"#,
        r#"{"Bata":{"page":[true,157e+308]},"template":"t"}"#,
    ] {
        let module = parse_snapshot(text).map(|_| ()).map_err(|e| e.to_string());
        let ctl = Snapshot::parse(text).map(|_| ()).map_err(|e| e.to_string());
        assert!(ctl.is_err(), "{text}");
        assert_eq!(module, ctl, "{text}");
    }
}
