//! The CMS source: `parse_response` on generated HTTP answers against a model (200 with a body
//! of the announced length, 404, anything else refused; chunked refused), `CmsUrl::parse` and
//! `target_for` (the key percent-encoded, decoding back to itself), `urlencode_into`.

use dynpage_core::cms::{parse_response, urlencode_into, CmsUrl};

use crate::driver::{Case, Check};
use crate::ensure;
use crate::gen;
use crate::rng::Rng;

pub fn run(c: &mut Case) -> Check {
    if c.rng.chance(60) {
        responses(c)
    } else {
        urls(c)
    }
}

fn responses(c: &mut Case) -> Check {
    let rng = &mut c.rng;
    let status = rng.pick(&["200", "404", "500", "301", "20", "2000", "", "200 "]);
    let proto = rng.pick(&["HTTP/1.0", "HTTP/1.1", "HTTP/2", "http/1.1", "ICY"]);
    let reason = rng.pick(&[" OK", "", " Not Found", " x y"]);
    let body = {
        let n = rng.size(64);
        if rng.chance(50) {
            gen::string(rng, n / 4).into_bytes()
        } else {
            rng.bytes(n)
        }
    };
    let mut headers: Vec<String> = Vec::new();
    let mut length: Option<Option<usize>> = None; // Some(None): unparsable
    let mut chunked = false;
    for _ in 0..rng.size(4) {
        match rng.below(6) {
            0 | 1 => {
                let (v, parsed) = match rng.below(5) {
                    0 => (body.len().to_string(), Some(body.len())),
                    1 => {
                        let n = rng.below(100);
                        (n.to_string(), Some(n))
                    }
                    2 => (format!(" {} ", body.len()), Some(body.len())),
                    3 => ("x".into(), None),
                    _ => ("99999999999999999999999".into(), None),
                };
                let name = rng.pick(&["Content-Length", "content-length", "CONTENT-LENGTH"]);
                headers.push(format!("{name}:{v}"));
                // A later header wins; an unparsable one fails the answer.
                length = Some(match length {
                    Some(None) => None,
                    _ => parsed,
                });
            }
            2 => {
                let v = rng.pick(&["chunked", "identity", "gzip", " Identity "]);
                if !v.trim().eq_ignore_ascii_case("identity") {
                    chunked = true;
                }
                headers.push(format!("Transfer-Encoding: {v}"));
            }
            3 => headers.push("Content-Type: application/json".into()),
            4 => headers.push("no colon here".into()),
            _ => headers.push(format!(
                "X-{}: {}",
                rng.below(10),
                gen::string(rng, 2).replace(['\r', '\n'], "")
            )),
        }
    }
    let mut answer = format!("{proto} {status}{reason}\r\n");
    for h in &headers {
        answer.push_str(h);
        answer.push_str("\r\n");
    }
    answer.push_str("\r\n");
    let mut bytes = answer.into_bytes();
    bytes.extend_from_slice(&body);
    let mutated = rng.chance(20);
    if mutated {
        gen::mutate(
            rng,
            &mut bytes,
            &["\r\n", "\r\n\r\n", ":", " ", "HTTP/1.1 ", "200", "\u{ff}"],
        );
    }
    c.show("answer", &String::from_utf8_lossy(&bytes));
    let got = parse_response(&bytes);
    if mutated {
        c.count("mutated");
        if let Ok(Some(b)) = &got {
            ensure!(
                bytes.ends_with(b),
                "the body {b:?} is not the end of the answer"
            );
        }
        return Ok(());
    }
    let head_has_utf8 = true;
    let http = proto.starts_with("HTTP/1.") && head_has_utf8;
    // The model, in the order the function checks: HTTP, headers, status, length.
    let body_starts = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .ok_or("no head end")?;
    let body = &bytes[body_starts..];
    let first_line_ok = !status.is_empty() || !reason.is_empty();
    let want: Option<Option<&[u8]>> =
        if !http || !first_line_ok || matches!(length, Some(None)) || chunked {
            None
        } else {
            let code = status.split(' ').next().unwrap_or("");
            let code = if status.is_empty() {
                reason.trim_start().split(' ').next().unwrap_or("")
            } else {
                code
            };
            match code {
                "200" => match length {
                    Some(Some(n)) if n != body.len() => None,
                    _ => Some(Some(body)),
                },
                "404" => Some(None),
                _ => None,
            }
        };
    match (&got, want) {
        (Ok(g), Some(w)) if g.as_deref() == w => c.count("answered"),
        (Err(_), None) => c.count("refused"),
        (g, w) => return Err(format!("parse_response = {g:?}, the model says {w:?}")),
    }
    Ok(())
}

/// Percent-decodes `s` (the model's inverse of `urlencode_into`).
fn decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn url(rng: &mut Rng) -> String {
    let mut u = String::from(rng.pick(&["http://", "http://", "https://", "HTTP://", ""]));
    u.push_str(rng.pick(&["cms", "127.0.0.1", "[::1]", "", "u@h", "h"]));
    u.push_str(rng.pick(&["", ":8080", ":0", ":65536", ":x", ":"]));
    u.push_str(rng.pick(&[
        "", "/", "/pages", "/p?x=1", "?a=b", "/a b", "/#f", "/\u{7f}", "/é",
    ]));
    if rng.chance(20) {
        let mut b = u.into_bytes();
        gen::mutate(rng, &mut b, &["/", "?", "#", "@", ":", " ", "%"]);
        return gen::text(b);
    }
    u
}

fn urls(c: &mut Case) -> Check {
    let u = url(&mut c.rng);
    let key = gen::string(&mut c.rng, 5);
    c.show("url", &u);
    c.show("key", &key);
    let mut enc = String::new();
    urlencode_into(&mut enc, &key);
    ensure!(
        enc.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
        "urlencode({key:?}) = {enc:?} has reserved characters"
    );
    ensure!(
        decode(&enc).as_deref() == Some(key.as_bytes()),
        "urlencode({key:?}) = {enc:?} does not decode back"
    );
    let Ok(cms) = CmsUrl::parse(&u) else {
        c.count("url refused");
        return Ok(());
    };
    c.count("url accepted");
    ensure!(u.starts_with("http://"), "{u:?} accepted");
    let target = cms.target_for(&key);
    ensure!(
        target.starts_with('/') && !target.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#'),
        "target {target:?} of {u:?}"
    );
    let (_, query) = target.split_once('?').ok_or("no query")?;
    let last = query.rsplit('&').next().ok_or("no argument")?;
    ensure!(
        last.strip_prefix("key=").and_then(decode).as_deref() == Some(key.as_bytes()),
        "target {target:?} does not end with the key {key:?}"
    );
    Ok(())
}
