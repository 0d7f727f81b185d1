//! A response's Content-Type, split the way nginx's own handlers and filters expect it.
//!
//! nginx keeps the whole header value in `headers_out.content_type`, the length of the MIME type
//! alone in `content_type_len`, and a `charset=` parameter in `headers_out.charset`
//! (`ngx_http_upstream` splits a proxied `Content-Type` the same way). Filters that match types
//! (`gzip_types`, `charset_types`, `ssi_types`, `sub_filter_types`) compare the first
//! `content_type_len` bytes only, so a length covering the parameters never matches.

use std::borrow::Cow;

/// A Content-Type value with the positions nginx needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    value: Cow<'static, str>,
    mime_len: usize,
    charset: Option<(usize, usize)>,
}

/// `text/html; charset=utf-8`, dynpage's default (a test checks it against `parse`).
pub static HTML_UTF8: ContentType = ContentType {
    value: Cow::Borrowed("text/html; charset=utf-8"),
    mime_len: 9,
    charset: Some((19, 24)),
};

impl ContentType {
    /// Splits `value` (for example `text/html; charset=utf-8`). `None` for a value with a
    /// control character or nothing before its first `;`.
    pub fn parse(value: &str) -> Option<ContentType> {
        if value.is_empty() || value.bytes().any(|b| b.is_ascii_control()) {
            return None;
        }
        let mime_end = value.find(';').unwrap_or(value.len());
        let mime = value[..mime_end].trim_end();
        if mime.is_empty() {
            return None;
        }
        let mut charset = None;
        let mut pos = mime_end;
        while pos < value.len() {
            // `pos` is at a ';': the parameter runs to the next one.
            let start = pos + 1;
            let end = value[start..].find(';').map_or(value.len(), |i| start + i);
            let param = &value[start..end];
            let lead = param.len() - param.trim_start().len();
            let param = param.trim();
            if param.len() > 8 && param.as_bytes()[..8].eq_ignore_ascii_case(b"charset=") {
                let mut from = start + lead + 8;
                let mut to = start + lead + param.len();
                if value.as_bytes()[from] == b'"'
                    && to - from >= 2
                    && value.as_bytes()[to - 1] == b'"'
                {
                    from += 1;
                    to -= 1;
                }
                if to > from {
                    charset = Some((from, to));
                }
            }
            pos = end;
        }
        Some(ContentType {
            value: Cow::Owned(value.to_string()),
            mime_len: mime.len(),
            charset,
        })
    }

    /// The whole header value, as sent.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The length of the MIME type alone: what nginx's `content_type_len` holds.
    pub fn mime_len(&self) -> usize {
        self.mime_len
    }

    /// The `charset=` parameter's value, without quotes.
    pub fn charset(&self) -> Option<&str> {
        self.charset.map(|(from, to)| &self.value[from..to])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_type_splits_into_mime_and_charset() {
        let t = ContentType::parse("text/html; charset=utf-8").unwrap();
        assert_eq!(t.value(), "text/html; charset=utf-8");
        assert_eq!(&t.value()[..t.mime_len()], "text/html");
        assert_eq!(t.charset(), Some("utf-8"));
    }

    #[test]
    fn the_default_constant_is_what_parse_gives() {
        assert_eq!(
            ContentType::parse("text/html; charset=utf-8"),
            Some(HTML_UTF8.clone())
        );
    }

    #[test]
    fn type_without_parameters() {
        let t = ContentType::parse("text/x-page").unwrap();
        assert_eq!(t.mime_len(), "text/x-page".len());
        assert_eq!(t.charset(), None);
    }

    #[test]
    fn charset_among_other_parameters_quoted_any_case() {
        let t = ContentType::parse("text/html ;level=1; Charset=\"koi8-r\"").unwrap();
        assert_eq!(&t.value()[..t.mime_len()], "text/html");
        assert_eq!(t.charset(), Some("koi8-r"));
        let t = ContentType::parse("application/json; q=1").unwrap();
        assert_eq!(t.charset(), None);
        assert_eq!(t.mime_len(), "application/json".len());
    }

    #[test]
    fn empty_charset_is_none() {
        assert_eq!(
            ContentType::parse("text/html; charset=").unwrap().charset(),
            None
        );
        assert_eq!(
            ContentType::parse("text/html; charset=\"\"")
                .unwrap()
                .charset(),
            None
        );
    }

    #[test]
    fn refuses_what_is_not_a_type() {
        for bad in ["", " ", "; charset=utf-8", "text/html\r\nX: y"] {
            assert_eq!(ContentType::parse(bad), None, "{bad:?}");
        }
        // Non-ASCII never splits a character (a panic) however the bytes fall.
        for odd in [
            "text/html; charseté",
            "text/html; é=utf-8",
            "tëxt/html; charset=ü",
        ] {
            let _ = ContentType::parse(odd);
        }
        assert_eq!(
            ContentType::parse("text/html; charset=ü").and_then(|t| t.charset().map(String::from)),
            Some("ü".to_string())
        );
    }
}
