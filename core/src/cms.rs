//! The CMS source: a plain HTTP/1.0 `GET <url>?key=<urlencoded page key>` that answers the page's
//! snapshot JSON (200) or 404. It is the last resort of the source chain, asked only when no
//! Redis answered, from a fetch thread (blocking, with a deadline for the whole exchange).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::snapshot::MAX_SNAPSHOT_BYTES;

/// Room for the status line and headers on top of the body limit.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// A parsed `dynpage_cms` URL: `http://host[:port][/path][?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmsUrl {
    /// `host:port`, as connected to and sent in `Host`.
    authority: String,
    host_header: String,
    /// Path and query, without the `key` argument.
    target: String,
}

impl CmsUrl {
    pub fn parse(url: &str) -> Result<CmsUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("only http:// URLs are supported")?;
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err("needs a host (and no user info)".into());
        }
        if target.contains('#') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("has a fragment, a space or a control character".into());
        }
        let has_port = match authority.rfind(':') {
            Some(i) if !authority.ends_with(']') => {
                let port = &authority[i + 1..];
                if port.parse::<u16>().map_or(true, |p| p == 0) {
                    return Err(format!("has an invalid port \"{port}\""));
                }
                true
            }
            _ => false,
        };
        let target = if target.starts_with('?') {
            format!("/{target}")
        } else {
            target.to_string()
        };
        Ok(CmsUrl {
            authority: if has_port {
                authority.to_string()
            } else {
                format!("{authority}:80")
            },
            host_header: authority.to_string(),
            target,
        })
    }

    /// The request target for `key`.
    pub fn target_for(&self, key: &str) -> String {
        let sep = if self.target.contains('?') { '&' } else { '?' };
        let mut t = String::with_capacity(self.target.len() + key.len() * 3 + 5);
        t.push_str(&self.target);
        t.push(sep);
        t.push_str("key=");
        urlencode_into(&mut t, key);
        t
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn urlencode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
}

/// Asks the CMS for page `key`: `Ok(Some(body))` on 200, `Ok(None)` on 404, else why not.
/// The whole exchange (connect, send, receive) must end within `timeout`.
pub fn fetch_page(url: &CmsUrl, key: &str, timeout: Duration) -> Result<Option<Vec<u8>>, String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| "timed out".to_string())
    };
    let addr = url
        .authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", url.authority))?
        .next()
        .ok_or_else(|| format!("{} has no address", url.authority))?;
    let mut stream = TcpStream::connect_timeout(&addr, left()?).map_err(|e| io_cause(&e))?;
    stream.set_nodelay(true).ok();
    stream.set_write_timeout(Some(left()?)).ok();
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: dynpage\r\n\r\n",
        url.target_for(key),
        url.host_header
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| io_cause(&e))?;
    let limit = MAX_SNAPSHOT_BYTES + MAX_HEAD_BYTES;
    let mut response = Vec::with_capacity(8 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        stream.set_read_timeout(Some(left()?)).ok();
        let n = stream.read(&mut chunk).map_err(|e| io_cause(&e))?;
        if n == 0 {
            break;
        }
        if response.len() + n > limit {
            return Err(format!(
                "answer is over the {MAX_SNAPSHOT_BYTES} byte snapshot limit"
            ));
        }
        response.extend_from_slice(&chunk[..n]);
    }
    parse_response(&response)
}

fn io_cause(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "timed out".into(),
        _ => e.to_string(),
    }
}

/// Splits a complete HTTP/1.x response: 200 → body, 404 → None, anything else → Err.
pub fn parse_response(response: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("answer is not HTTP (no end of headers)")?;
    let head = std::str::from_utf8(&response[..head_end]).map_err(|_| "answer is not HTTP")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(proto), Some(code)) = (parts.next(), parts.next()) else {
        return Err("answer is not HTTP".into());
    };
    if !proto.starts_with("HTTP/1.") {
        return Err("answer is not HTTP".into());
    }
    let body = &response[head_end + 4..];
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| "answer has a bad Content-Length")?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            return Err(format!("answer uses Transfer-Encoding \"{value}\""));
        }
    }
    match code {
        "200" => {}
        "404" => return Ok(None),
        other => return Err(format!("answered status {}", other.escape_debug())),
    }
    match content_length {
        Some(n) if n != body.len() => {
            Err(format!("answer is cut short ({} of {n} bytes)", body.len()))
        }
        _ => Ok(Some(body.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls_and_targets() {
        let u = CmsUrl::parse("http://127.0.0.1:8081/snap").unwrap();
        assert_eq!(
            u.target_for("/item/1?x=é"),
            "/snap?key=%2Fitem%2F1%3Fx%3D%C3%A9"
        );
        let u = CmsUrl::parse("http://cms.local?site=3").unwrap();
        assert_eq!(u.authority, "cms.local:80");
        assert_eq!(u.target_for("a b"), "/?site=3&key=a%20b");
        assert!(CmsUrl::parse("https://x/").is_err());
        assert!(CmsUrl::parse("http://u:p@x/").is_err());
        assert!(CmsUrl::parse("http://x:0/").is_err());
        assert!(CmsUrl::parse("http:///p").is_err());
        assert!(CmsUrl::parse("http://x/a b").is_err());
    }

    #[test]
    fn responses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_response(ok).unwrap(), Some(b"{}".to_vec()));
        assert_eq!(
            parse_response(b"HTTP/1.0 404 Not Found\r\n\r\nno").unwrap(),
            None
        );
        assert!(parse_response(b"HTTP/1.0 500 Oops\r\n\r\n")
            .unwrap_err()
            .contains("500"));
        assert!(parse_response(b"garbage").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}")
                .unwrap_err()
                .contains("cut short")
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    }

    fn serve_once(
        answer: &'static [u8],
        delay: Duration,
    ) -> (CmsUrl, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = CmsUrl::parse(&format!("http://{}/cms", l.local_addr().unwrap())).unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap();
            std::thread::sleep(delay);
            let _ = s.write_all(answer);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (url, t)
    }

    #[test]
    fn fetches_over_tcp() {
        let (url, t) = serve_once(b"HTTP/1.0 200 OK\r\n\r\n{\"data\":{}}", Duration::ZERO);
        let body = fetch_page(&url, "/p", Duration::from_secs(2)).unwrap();
        assert_eq!(body.as_deref(), Some(&b"{\"data\":{}}"[..]));
        let req = t.join().unwrap();
        assert!(req.starts_with("GET /cms?key=%2Fp HTTP/1.0\r\n"), "{req}");
    }

    #[test]
    fn a_hanging_cms_times_out() {
        let (url, t) = serve_once(b"HTTP/1.0 200 OK\r\n\r\n{}", Duration::from_millis(500));
        let started = Instant::now();
        let e = fetch_page(&url, "/p", Duration::from_millis(100)).unwrap_err();
        assert_eq!(e, "timed out");
        assert!(started.elapsed() < Duration::from_millis(400));
        let _ = t.join();
    }
}
