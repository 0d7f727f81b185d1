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

    /// "page" or "template", for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            DocRef::Page(_) => "page",
            DocRef::Template(_) => "template",
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

    pub fn prefix(&self) -> &str {
        &self.prefix
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

/// A production version field: a decimal integer (milliseconds since the Unix epoch).
pub fn parse_version(field: &str) -> Option<u64> {
    if field.is_empty() || field.len() > 19 || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
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
    fn versions_are_plain_decimal() {
        assert_eq!(parse_version("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_version("0"), Some(0));
        for bad in [
            "",
            "+1",
            "-1",
            "1.5",
            "predeploy",
            "abVersion",
            " 1",
            "99999999999999999999",
        ] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
    }
}
