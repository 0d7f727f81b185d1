//! Source URLs: `check_url` and `redact_url`. A password (as the Redis client reads it: the
//! user info of a TCP URL, `pass=` of a unix socket URL) never appears in the redacted form;
//! the redacted form reads back with no password or `***`; redacting twice changes nothing;
//! a URL without credentials is left as it is. Cluster and Sentinel URLs (`redis+cluster://`,
//! `redis+sentinel://`, read by the module itself) are held to the same.

use dynpage_core::store::{check_url, redact_url};
use redis::IntoConnectionInfo;

use crate::driver::{Case, Check};
use crate::ensure;
use crate::gen;
use crate::rng::Rng;

/// The password the Redis client reads from `url`, if it reads the URL at all (the module's
/// own reading for a cluster or Sentinel URL).
fn password(url: &str) -> Option<Option<String>> {
    use dynpage_core::topology::SourceUrl;
    match SourceUrl::parse(url) {
        Ok(SourceUrl::Cluster(c)) => return Some(c.password),
        Ok(SourceUrl::Sentinel(s)) => return Some(s.password),
        _ => {}
    }
    let info = url.into_connection_info().ok()?;
    Some(info.redis_settings().password().map(str::to_string))
}

fn token(rng: &mut Rng) -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut t = String::from("Pw");
    for _ in 0..10 {
        t.push(ALNUM[rng.below(ALNUM.len())] as char);
    }
    t
}

/// A URL, with the secret token it hides in a password position (if any).
fn url(rng: &mut Rng) -> (String, Option<String>) {
    let secret = token(rng);
    // Where the client reads no password (a TCP URL's query), another token.
    let other = token(rng);
    let mut placed = false;
    let unix = rng.chance(30);
    let scheme = if unix {
        rng.pick(&["redis+unix", "valkey+unix", "unix", "REDIS+UNIX"])
    } else {
        rng.pick(&[
            "redis",
            "rediss",
            "valkey",
            "valkeys",
            "Redis",
            "http",
            "redis:",
            "redis+cluster",
            "redis+sentinel",
        ])
    };
    let several = scheme.contains('+') && !unix;
    let mut u = format!("{scheme}://");
    if unix {
        if rng.chance(20) {
            u.push_str(rng.pick(&["localhost", "u:x@localhost", "h"]));
        }
        u.push_str(rng.pick(&["/run/redis.sock", "/tmp/r", "/", "", "/a b", "/%2F"]));
    } else {
        match rng.below(6) {
            0 => {}
            1 => u.push_str("user@"),
            _ => {
                let user = rng.pick(&["", "app", "a:b", "é", "%41"]);
                let mut pass = secret.clone();
                match rng.below(6) {
                    0 => pass.push_str("%40x"),
                    1 => pass.push_str("@x"),
                    2 => pass.push_str(":x"),
                    3 => pass.insert_str(0, "%2F"),
                    4 => pass.push('é'),
                    _ => {}
                }
                u.push_str(&format!("{user}:{pass}@"));
                placed = true;
            }
        }
        u.push_str(rng.pick(&[
            "127.0.0.1",
            "localhost",
            "[::1]",
            "redis.example",
            "",
            "0.0.0.0",
            "h",
        ]));
        u.push_str(rng.pick(&["", "", ":6379", ":0", ":65536", ":x", ":"]));
        if several {
            // A host list: more nodes, and a sentinel's master name.
            for _ in 0..rng.size(3) {
                u.push_str(rng.pick(&[",h2:7001", ",[::1]:7002", ",h3", ",", ",@x:1"]));
            }
            u.push_str(rng.pick(&["", "/", "/mymaster", "/mymaster/2", "/m/x", "/0"]));
        } else {
            u.push_str(rng.pick(&["", "", "/0", "/15", "/x", "/", "/0/1"]));
        }
    }
    let mut query = Vec::new();
    for _ in 0..rng.size(3) {
        let pair = match rng.below(6) {
            0 => "db=1".to_string(),
            1 => "protocol=resp3".to_string(),
            2 => "user=u".to_string(),
            3 if unix => {
                placed = true;
                format!("pass={secret}")
            }
            3 => format!("pass={other}"),
            4 => format!("password={other}"),
            5 if several => rng
                .pick(&["read_from=replicas", "role=replica", "read_from=x"])
                .to_string(),
            _ => format!("{}={}", gen::string(rng, 2), gen::string(rng, 2)),
        };
        query.push(pair);
    }
    if !query.is_empty() {
        u.push('?');
        u.push_str(&query.join("&"));
    }
    if rng.chance(10) {
        u.push_str(rng.pick(&["#insecure", "#x", "#"]));
    }
    if rng.chance(15) {
        let mut b = u.into_bytes();
        gen::mutate(
            rng,
            &mut b,
            &[
                "@", ":", "/", "?", "#", "%", "//", "://", "pass=", "&", "[", "]",
            ],
        );
        return (gen::text(b), None);
    }
    (u, placed.then_some(secret))
}

pub fn run(c: &mut Case) -> Check {
    let (u, secret) = if c.rng.chance(10) {
        (gen::string(&mut c.rng, 8), None)
    } else {
        url(&mut c.rng)
    };
    c.show("url", &u);
    let checked = check_url(&u);
    let redacted = redact_url(&u);
    c.show("redacted", &redacted);
    c.count(if checked.is_ok() {
        "accepted"
    } else {
        "refused"
    });
    if let Some(Some(_)) = password(&u) {
        c.count("accepted with a password");
    }
    // A secret written where a password goes never shows, valid URL or not.
    if let Some(s) = &secret {
        ensure!(
            !redacted.contains(s.as_str()),
            "the secret of {u:?} shows in {redacted:?}"
        );
    }
    // Read back, the redacted form has no password but *** (or an empty one: `?pass`).
    if let Some(Some(p)) = password(&redacted) {
        ensure!(
            p == "***" || p.is_empty(),
            "{redacted:?} (redacted from {u:?}) still has the password {p:?}"
        );
    }
    ensure!(
        redact_url(&redacted) == redacted,
        "redacting {redacted:?} again gives {:?}",
        redact_url(&redacted)
    );
    // (Tabs and line breaks go: the URL parser ignores them.)
    let plain: String = u
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    if !plain.contains('@') && !plain.contains("pass") && !plain.contains('%') {
        ensure!(
            redacted == plain,
            "{u:?} has no credentials but became {redacted:?}"
        );
    }
    Ok(())
}
