//! The Redis layout of SPEC §1: which key holds what.

/// Prefix used when `dynpage_prefix` / `--prefix` is not given.
pub const DEFAULT_PREFIX: &str = "dynpage:";
/// Field of a document holding its pre-release version.
pub const FIELD_PREDEPLOY: &str = "predeploy";
/// Field of a document holding its gray (A/B) version.
pub const FIELD_AB: &str = "abVersion";

/// Longest page key or template name accepted (bytes); longer ones are refused, not fetched.
pub const MAX_NAME_LEN: usize = 1024;

/// One document: a page (by page key) or a template (by name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DocRef {
    Page(String),
    Template(String),
}

impl DocRef {
    /// The document's name inside the `rollback` and `gray` hashes: `page:<key>` or `tpl:<name>`.
    pub fn field_name(&self) -> String {
        match self {
            DocRef::Page(k) => format!("page:{k}"),
            DocRef::Template(n) => format!("tpl:{n}"),
        }
    }

    /// The page key or template name.
    pub fn name(&self) -> &str {
        match self {
            DocRef::Page(k) | DocRef::Template(k) => k,
        }
    }

    /// Parses `page:<key>` / `tpl:<name>` (the form used in hashes and events, without prefix).
    pub fn parse_field_name(s: &str) -> Option<DocRef> {
        if let Some(k) = s.strip_prefix("page:") {
            Some(DocRef::Page(k.to_string()))
        } else {
            s.strip_prefix("tpl:")
                .map(|n| DocRef::Template(n.to_string()))
        }
    }
}

impl std::fmt::Display for DocRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DocRef::Page(k) => write!(f, "page \"{}\"", k.escape_debug()),
            DocRef::Template(n) => write!(f, "template \"{}\"", n.escape_debug()),
        }
    }
}

/// Key names under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    prefix: String,
}

impl Default for Layout {
    fn default() -> Self {
        Layout::new(DEFAULT_PREFIX)
    }
}

impl Layout {
    pub fn new(prefix: &str) -> Layout {
        Layout {
            prefix: prefix.to_string(),
        }
    }

    /// `P page:<key>` or `P tpl:<name>`.
    pub fn doc_key(&self, doc: &DocRef) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 5 + doc.name().len());
        key.push_str(&self.prefix);
        key.push_str(match doc {
            DocRef::Page(_) => "page:",
            DocRef::Template(_) => "tpl:",
        });
        key.push_str(doc.name());
        key
    }

    /// `P rollback`: document field name → pinned production version.
    pub fn rollback_key(&self) -> String {
        format!("{}rollback", self.prefix)
    }

    /// `P gray`: document field name → gray share in percent.
    pub fn gray_key(&self) -> String {
        format!("{}gray", self.prefix)
    }

    /// `P events`: the pub/sub channel announcing changed keys.
    pub fn events_channel(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// The document a full key names, if it is one of this prefix's documents.
    pub fn parse_doc_key(&self, key: &str) -> Option<DocRef> {
        DocRef::parse_field_name(key.strip_prefix(self.prefix.as_str())?)
    }
}

/// The greatest production version: 9999-12-31T23:59:59.999Z in milliseconds since the epoch,
/// the last instant an RFC 3339 time can name. Versions run from 0 (1970-01-01T00:00:00Z) to it.
pub const MAX_VERSION: u64 = 253_402_300_799_999;

/// Greatest gray share, in percent.
pub const MAX_GRAY_SHARE: u8 = 100;

/// Why a string is not a canonical decimal number (a version, a gray share).
///
/// Canonical means: ASCII digits only, no sign, no spaces, no leading zero ("0" itself is
/// canonical), no point or exponent, within the field's range. Anything else is refused by
/// dynpagectl and ignored (with one warning) by the module, so both read every field alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberError {
    /// Does not look like a number at all (`predeploy`, `x`, empty).
    NotNumber,
    /// Digits with spaces around or inside (` 1000`).
    Spaces,
    /// A leading `+` or `-`.
    Sign,
    /// A point, an exponent or separators (`1.5`, `1e3`, `1_000`).
    NotWhole,
    /// `02000`: the same number as `2000` but another Redis field.
    LeadingZero,
    /// Digits beyond the field's greatest value.
    OutOfRange,
}

impl NumberError {
    /// Whether the string looks like a number (so it was probably meant as one).
    pub fn looks_numeric(self) -> bool {
        self != NumberError::NotNumber
    }

    /// Why, for messages: "has a leading zero".
    pub fn reason(self, max: u64) -> String {
        match self {
            NumberError::NotNumber => "is not a number".into(),
            NumberError::Spaces => "has spaces".into(),
            NumberError::Sign => "has a sign".into(),
            NumberError::NotWhole => "is not a whole number".into(),
            NumberError::LeadingZero => "has a leading zero".into(),
            NumberError::OutOfRange => format!("is over {max}"),
        }
    }
}

/// Reads a canonical decimal number from 0 to `max` (see [`NumberError`]).
pub fn parse_canonical(s: &str, max: u64) -> Result<u64, NumberError> {
    let b = s.as_bytes();
    if !b.is_empty() && b.iter().all(u8::is_ascii_digit) {
        if b.len() > 1 && b[0] == b'0' {
            return Err(NumberError::LeadingZero);
        }
        // More than 20 digits cannot be a u64; it is still a number, only too large.
        return match s.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(NumberError::OutOfRange),
        };
    }
    let trimmed = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let unsigned = trimmed.strip_prefix(['+', '-']).unwrap_or(trimmed);
    let numeric = unsigned.bytes().next().is_some_and(|c| c.is_ascii_digit())
        && unsigned
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'_' | b',' | b' '));
    if !numeric {
        return Err(NumberError::NotNumber);
    }
    if trimmed.len() != s.len() || unsigned.contains(' ') {
        Err(NumberError::Spaces)
    } else if unsigned.len() != trimmed.len() {
        Err(NumberError::Sign)
    } else {
        Err(NumberError::NotWhole)
    }
}

/// A production version field: canonical decimal milliseconds since the Unix epoch, 0 to
/// [`MAX_VERSION`].
pub fn check_version(field: &str) -> Result<u64, NumberError> {
    parse_canonical(field, MAX_VERSION)
}

/// [`check_version`] without the reason.
pub fn parse_version(field: &str) -> Option<u64> {
    check_version(field).ok()
}

/// A gray share: canonical decimal percent, 0 to 100.
pub fn check_gray_share(s: &str) -> Result<u8, NumberError> {
    parse_canonical(s, u64::from(MAX_GRAY_SHARE)).map(|n| n as u8)
}

/// `s` quoted and escaped for a log line or message, cut after 64 characters.
pub fn quote(s: &str) -> String {
    let mut chars = s.chars();
    let shown: String = chars.by_ref().take(64).collect();
    let more = if chars.next().is_some() { "..." } else { "" };
    format!("\"{}{more}\"", shown.escape_debug())
}

/// Why `s` is not a version, for messages: `"02000" is not a canonical version: it has a
/// leading zero`.
pub fn version_error(s: &str, e: NumberError) -> String {
    match e {
        NumberError::NotNumber => format!("{} is not a version", quote(s)),
        NumberError::OutOfRange => format!(
            "{} is over the greatest version {MAX_VERSION} (9999-12-31T23:59:59.999Z)",
            quote(s)
        ),
        e => format!(
            "{} is not a canonical version: it {}",
            quote(s),
            e.reason(MAX_VERSION)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_spec() {
        let l = Layout::default();
        assert_eq!(
            l.doc_key(&DocRef::Page("/item/1.html".into())),
            "dynpage:page:/item/1.html"
        );
        assert_eq!(
            l.doc_key(&DocRef::Template("base".into())),
            "dynpage:tpl:base"
        );
        assert_eq!(l.rollback_key(), "dynpage:rollback");
        assert_eq!(l.gray_key(), "dynpage:gray");
        assert_eq!(l.events_channel(), "dynpage:events");
        assert_eq!(DocRef::Page("/a".into()).field_name(), "page:/a");
        assert_eq!(DocRef::Template("t".into()).field_name(), "tpl:t");
    }

    #[test]
    fn doc_keys_parse_back() {
        let l = Layout::new("x:");
        assert_eq!(
            l.parse_doc_key("x:page:/a:b"),
            Some(DocRef::Page("/a:b".into()))
        );
        assert_eq!(
            l.parse_doc_key("x:tpl:t"),
            Some(DocRef::Template("t".into()))
        );
        assert_eq!(l.parse_doc_key("y:page:/a"), None);
        assert_eq!(l.parse_doc_key("x:other"), None);
    }

    #[test]
    fn versions_are_canonical_decimal() {
        assert_eq!(parse_version("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_version("0"), Some(0));
        assert_eq!(parse_version("253402300799999"), Some(MAX_VERSION));
        for (bad, why) in [
            ("", NumberError::NotNumber),
            ("predeploy", NumberError::NotNumber),
            ("abVersion", NumberError::NotNumber),
            ("v2", NumberError::NotNumber),
            ("02000", NumberError::LeadingZero),
            ("00", NumberError::LeadingZero),
            ("+1", NumberError::Sign),
            ("-1", NumberError::Sign),
            (" 1", NumberError::Spaces),
            ("1000 ", NumberError::Spaces),
            ("1 000", NumberError::Spaces),
            ("1.5", NumberError::NotWhole),
            ("1e3", NumberError::NotWhole),
            ("1_000", NumberError::NotWhole),
            ("253402300800000", NumberError::OutOfRange),
            ("99999999999999999999", NumberError::OutOfRange),
            ("999999999999999999999999", NumberError::OutOfRange),
        ] {
            assert_eq!(check_version(bad), Err(why), "{bad:?}");
            assert_eq!(parse_version(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn gray_shares_are_canonical_percent() {
        assert_eq!(check_gray_share("0"), Ok(0));
        assert_eq!(check_gray_share("100"), Ok(100));
        assert_eq!(check_gray_share("101"), Err(NumberError::OutOfRange));
        assert_eq!(check_gray_share("050"), Err(NumberError::LeadingZero));
        assert_eq!(check_gray_share("+5"), Err(NumberError::Sign));
        assert_eq!(check_gray_share(" 5"), Err(NumberError::Spaces));
        assert_eq!(check_gray_share("5.0"), Err(NumberError::NotWhole));
        assert_eq!(check_gray_share("lots"), Err(NumberError::NotNumber));
    }

    #[test]
    fn version_errors_say_why() {
        let e = |s: &str| version_error(s, check_version(s).unwrap_err());
        assert_eq!(
            e("02000"),
            "\"02000\" is not a canonical version: it has a leading zero"
        );
        assert!(e("x").ends_with("is not a version"));
        assert!(e("253402300800000").contains("greatest version"));
        assert!(e(&"9".repeat(100)).contains("...\""));
    }
}
