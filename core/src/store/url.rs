//! Source URLs: checking one, showing it in logs without its password, opening a blocking
//! connection to it.

use redis::RedisResult;

/// Checks a source URL (`redis://[user:pass@]host:port/db`, `redis+unix:///path?db=N`,
/// `redis+cluster://host:port,host:port/`, `redis+sentinel://host:port,.../<master>[/db]`).
pub fn check_url(url: &str) -> Result<(), String> {
    use crate::topology::{SourceUrl, CLUSTER_SCHEME, SENTINEL_SCHEME};
    let lower = url.to_ascii_lowercase();
    if lower.starts_with(CLUSTER_SCHEME) || lower.starts_with(SENTINEL_SCHEME) {
        return SourceUrl::parse(url).map(|_| ());
    }
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| e.to_string().replace('\n', " "))
}

/// `url` as it may appear in logs: a password is replaced by `***`, in the user info
/// (`redis://user:pass@...`) and in the query (`redis+unix:///path?pass=...`, which the client
/// reads as the password of a unix socket URL).
pub fn redact_url(url: &str) -> String {
    // The URL parser drops tabs and line breaks wherever they are ("redis:/\n/u:pw@h").
    let url: String = url
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    // The query first: the user info is cut generously (up to the last `@` before a `/`), and
    // may take a `?` with it.
    redact_user_info(&redact_query(&url))
}

/// Every `pass=` pair after the first `?` (which may also be in a malformed user info), the
/// fragment included: more than the client reads, never less. A value runs to the next `&` or
/// `#`, as the client reads it.
fn redact_query(url: &str) -> String {
    let Some(q) = url.find('?') else {
        return url.to_string();
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..=q]);
    let mut rest = &url[q + 1..];
    loop {
        let key_end = rest.find(['=', '&', '?', '#']).unwrap_or(rest.len());
        if rest[key_end..].starts_with('=') && form_decoded(&rest[..key_end]) == "pass" {
            out.push_str(&rest[..=key_end]);
            out.push_str("***");
            let value = &rest[key_end + 1..];
            rest = &value[value.find(['&', '#']).unwrap_or(value.len())..];
        } else {
            let cut = rest.find(['&', '?', '#']).unwrap_or(rest.len());
            out.push_str(&rest[..cut]);
            rest = &rest[cut..];
        }
        let Some(delim) = rest.chars().next() else {
            break;
        };
        out.push(delim);
        rest = &rest[1..];
    }
    out
}

fn redact_user_info(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let user = match rest[..at].split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{}{user}{}", &url[..scheme_end], &rest[at..])
}

/// A query key as the URL parser reads it (`%70ass` and `p+ss` are keys too).
fn form_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (c, _) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens a blocking connection whose connect (handshake included), read and write each end
/// within `timeout`.
pub fn connect(url: &str, timeout: std::time::Duration) -> RedisResult<redis::Connection> {
    use redis::IntoConnectionInfo;
    let info = url.into_connection_info()?;
    // No CLIENT SETINFO: one round trip less, and the client ignores its failure, timeout
    // included, so a frozen server would cost a second timeout.
    let settings = info.redis_settings().clone().set_skip_set_lib_name();
    // The client gives each handshake reply (AUTH, SELECT) the whole remaining timeout: split
    // the budget so that the handshake as a whole stays within it.
    let replies = u32::from(settings.password().is_some()) + u32::from(settings.db() != 0);
    let info = info.set_redis_settings(settings);
    let client = redis::Client::open(info)?;
    let con = client.get_connection_with_timeout(timeout / replies.max(1))?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    Ok(con)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            redact_url("redis://app:s3cret@10.0.0.1:6379/2"),
            "redis://app:***@10.0.0.1:6379/2"
        );
        assert_eq!(redact_url("redis://:pw@h/0"), "redis://:***@h/0");
        assert_eq!(redact_url("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(
            redact_url("redis+cluster://app:pw@h1:7000,h2:7001/?read_from=replicas"),
            "redis+cluster://app:***@h1:7000,h2:7001/?read_from=replicas"
        );
        assert_eq!(
            redact_url("redis+sentinel://:pw@s1:26379,s2/mymaster/2"),
            "redis+sentinel://:***@s1:26379,s2/mymaster/2"
        );
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?db=1"),
            "redis+unix:///run/redis.sock?db=1"
        );
    }
}
