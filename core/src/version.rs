//! Which version of a document a request gets (SPEC §1, rules 1–3).

use crate::layout::{
    check_gray_share, check_version, parse_version, quote, version_error, NumberError, FIELD_AB,
    FIELD_PREDEPLOY, MAX_GRAY_SHARE, MAX_VERSION,
};

/// Which release channel a response comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    Production,
    Predeploy,
    Gray,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Production => "production",
            Variant::Predeploy => "predeploy",
            Variant::Gray => "gray",
        }
    }
}

/// One field of a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    Version(u64),
    Predeploy,
    Ab,
}

impl Field {
    pub fn parse(s: &str) -> Option<Field> {
        match s {
            FIELD_PREDEPLOY => Some(Field::Predeploy),
            FIELD_AB => Some(Field::Ab),
            _ => parse_version(s).map(Field::Version),
        }
    }

    /// The Redis hash field name.
    pub fn name(self) -> String {
        match self {
            Field::Version(v) => v.to_string(),
            Field::Predeploy => FIELD_PREDEPLOY.to_string(),
            Field::Ab => FIELD_AB.to_string(),
        }
    }

    /// Production versions never change once written; predeploy and abVersion are overwritten.
    pub fn is_immutable(self) -> bool {
        matches!(self, Field::Version(_))
    }

    pub fn version(self) -> Option<u64> {
        match self {
            Field::Version(v) => Some(v),
            _ => None,
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Version(v) => write!(f, "{v}"),
            Field::Predeploy => f.write_str(FIELD_PREDEPLOY),
            Field::Ab => f.write_str(FIELD_AB),
        }
    }
}

/// What a document holds, without its (possibly large) values: enough to choose a version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocMeta {
    /// Production versions, ascending, including scheduled (future) ones.
    pub versions: Vec<u64>,
    pub has_predeploy: bool,
    pub has_ab: bool,
    /// A rollback pin that names an existing version.
    pub pin: Option<u64>,
    /// Gray share in percent, 0–100.
    pub gray: u8,
    /// Things in the document or its pin/gray entries that are ignored, for one log line.
    pub warnings: Vec<String>,
}

/// How many ignored fields one warning names.
const MAX_NAMED_FIELDS: usize = 5;

/// An ignored field for the warning line: `"02000" (not canonical: it has a leading zero)`.
fn field_note(field: &str, e: NumberError) -> String {
    match e {
        NumberError::NotNumber => quote(field),
        NumberError::OutOfRange => {
            format!("{} (over the greatest version {MAX_VERSION})", quote(field))
        }
        e => format!(
            "{} (not canonical: it {})",
            quote(field),
            e.reason(MAX_VERSION)
        ),
    }
}

/// What the request asks for, beyond production.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ask<'a> {
    /// `predeploy=true` was asked by a client that `dynpage_predeploy_allow` allows.
    pub predeploy: bool,
    /// The `dynpage_gray_by` value; `None` keeps the request on production.
    pub gray_user: Option<&'a [u8]>,
    /// Falling back after a failed render: the page's production version live before this one.
    pub before_page: Option<u64>,
    /// Likewise for the page's main template (named, not an exact version).
    pub before_template: Option<u64>,
}

/// The chosen field and the channel it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    pub field: Field,
    pub variant: Variant,
}

impl DocMeta {
    /// Builds the meta from the document's field names and its raw `rollback` / `gray` entries.
    pub fn from_fields<'a>(
        fields: impl IntoIterator<Item = &'a str>,
        pin: Option<&str>,
        gray: Option<&str>,
    ) -> DocMeta {
        let mut meta = DocMeta::default();
        // Fields that are neither a canonical version nor predeploy/abVersion: ignored, and
        // named (the first few) in one warning line.
        let mut ignored = 0usize;
        let mut named = Vec::new();
        for f in fields {
            match f {
                FIELD_PREDEPLOY => meta.has_predeploy = true,
                FIELD_AB => meta.has_ab = true,
                _ => match check_version(f) {
                    Ok(v) => meta.versions.push(v),
                    Err(e) => {
                        ignored += 1;
                        if named.len() < MAX_NAMED_FIELDS {
                            named.push(field_note(f, e));
                        }
                    }
                },
            }
        }
        meta.versions.sort_unstable();
        meta.versions.dedup();
        if ignored > 0 {
            let more = ignored - named.len();
            let more = if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            };
            meta.warnings.push(format!(
                "{ignored} field(s) that are not versions ignored: {}{more}",
                named.join(", ")
            ));
        }
        if let Some(raw) = pin {
            match check_version(raw) {
                Ok(v) if meta.versions.binary_search(&v).is_ok() => meta.pin = Some(v),
                Ok(v) => meta
                    .warnings
                    .push(format!("rollback pin to missing version {v} ignored")),
                Err(e) => meta
                    .warnings
                    .push(format!("rollback pin {}, ignored", version_error(raw, e))),
            }
        }
        if let Some(raw) = gray {
            match check_gray_share(raw) {
                Ok(p) => meta.gray = p,
                Err(NumberError::NotNumber | NumberError::OutOfRange | NumberError::NotWhole) => {
                    meta.warnings
                        .push(format!("gray share {} is not 0-100, ignored", quote(raw)))
                }
                Err(e) => meta.warnings.push(format!(
                    "gray share {} is not canonical: it {}, ignored",
                    quote(raw),
                    e.reason(u64::from(MAX_GRAY_SHARE))
                )),
            }
        }
        if meta.has_ab && meta.gray == 0 && gray.is_none() {
            meta.warnings
                .push("abVersion has no gray share, so nobody is served it".into());
        }
        if meta.gray > 0 && !meta.has_ab {
            meta.warnings.push(format!(
                "gray share {}% has no abVersion field, everyone gets production",
                meta.gray
            ));
        }
        meta
    }

    /// Rule 3: the pinned version, else the greatest version that is live at `now_ms`.
    pub fn production(&self, now_ms: u64) -> Option<u64> {
        if self.pin.is_some() {
            return self.pin;
        }
        let live = self.versions.partition_point(|&v| v <= now_ms);
        live.checked_sub(1).map(|i| self.versions[i])
    }

    /// The production version live before `version` (for fallbacks and `rollback`).
    pub fn previous(&self, version: u64) -> Option<u64> {
        let i = self.versions.partition_point(|&v| v < version);
        i.checked_sub(1).map(|i| self.versions[i])
    }

    /// Rules 1–3 for a document named `doc_name` (the page key or template name).
    pub fn choose(&self, doc_name: &str, now_ms: u64, ask: &Ask) -> Option<Choice> {
        if ask.predeploy && self.has_predeploy {
            return Some(Choice {
                field: Field::Predeploy,
                variant: Variant::Predeploy,
            });
        }
        if self.gray > 0 && self.has_ab {
            if let Some(user) = ask.gray_user {
                if gray_bucket(user, doc_name.as_bytes()) < self.gray {
                    return Some(Choice {
                        field: Field::Ab,
                        variant: Variant::Gray,
                    });
                }
            }
        }
        self.production(now_ms).map(|v| Choice {
            field: Field::Version(v),
            variant: Variant::Production,
        })
    }
}

/// 64-bit FNV-1a, the stable hash used for gray buckets and ETags.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        self
    }

    pub fn write_u64(&mut self, v: u64) -> &mut Self {
        self.write(&v.to_le_bytes())
    }

    pub fn finish(&self) -> u64 {
        // Final avalanche so that nearby inputs spread over every bucket.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

/// Gray bucket 0–99 of a user for one document: stable, so a user keeps their side.
pub fn gray_bucket(user: &[u8], doc_name: &[u8]) -> u8 {
    let mut h = Fnv::default();
    h.write(user).write(&[0]).write(doc_name);
    (h.finish() % 100) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(fields: &[&str], pin: Option<&str>, gray: Option<&str>) -> DocMeta {
        DocMeta::from_fields(fields.iter().copied(), pin, gray)
    }

    #[test]
    fn production_is_greatest_live_version() {
        let m = meta(&["100", "300", "200"], None, None);
        assert_eq!(m.versions, vec![100, 200, 300]);
        assert_eq!(m.production(99), None);
        assert_eq!(m.production(100), Some(100));
        assert_eq!(m.production(250), Some(200));
        assert_eq!(m.production(1_000), Some(300));
    }

    #[test]
    fn scheduled_version_goes_live_at_its_time() {
        let m = meta(&["100", "500"], None, None);
        assert_eq!(m.production(499), Some(100));
        assert_eq!(m.production(500), Some(500));
    }

    #[test]
    fn pin_wins_and_a_pin_to_a_missing_version_is_ignored() {
        let m = meta(&["100", "200"], Some("100"), None);
        assert_eq!(m.production(1_000), Some(100));
        let m = meta(&["100", "200"], Some("150"), None);
        assert_eq!(m.production(1_000), Some(200));
        assert!(m.warnings[0].contains("missing version 150"));
        let m = meta(&["100"], Some("abc"), None);
        assert_eq!(m.production(1_000), Some(100));
        assert_eq!(m.warnings.len(), 1);
    }

    #[test]
    fn odd_fields_are_ignored_with_a_warning() {
        let m = meta(&["x", "100", "predeploy", "abVersion"], None, Some("250"));
        assert_eq!(m.versions, vec![100]);
        assert!(m.has_predeploy && m.has_ab);
        assert_eq!(m.gray, 0);
        assert_eq!(m.warnings.len(), 2);
    }

    #[test]
    fn a_non_canonical_version_field_is_ignored_in_one_warning() {
        // D6: "02000" beside "1000" is not version 2000 (whose field would be "2000").
        let m = meta(&["1000", "02000"], None, None);
        assert_eq!(m.versions, vec![1000]);
        assert_eq!(m.production(5000), Some(1000));
        assert_eq!(
            m.warnings,
            vec![
                "1 field(s) that are not versions ignored: \"02000\" (not canonical: it has a \
                 leading zero)"
                    .to_string()
            ]
        );
        let m = meta(
            &[
                "1000",
                "+3000",
                " 4000",
                "5e3",
                "-6000",
                "253402300800000",
                "draft",
                "0700",
            ],
            None,
            None,
        );
        assert_eq!(m.versions, vec![1000]);
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
        let w = &m.warnings[0];
        assert!(
            w.starts_with("7 field(s) that are not versions ignored: "),
            "{w}"
        );
        assert!(
            w.contains("\"+3000\" (not canonical: it has a sign)"),
            "{w}"
        );
        assert!(
            w.contains("\" 4000\" (not canonical: it has spaces)"),
            "{w}"
        );
        assert!(
            w.contains("\"5e3\" (not canonical: it is not a whole number)"),
            "{w}"
        );
        assert!(
            w.contains("(over the greatest version 253402300799999)"),
            "{w}"
        );
        assert!(w.ends_with(", and 2 more"), "{w}");
        // The greatest version is the last millisecond of 9999; "0" is canonical.
        let m = meta(&["0", "253402300799999"], None, None);
        assert_eq!(m.versions, vec![0, crate::layout::MAX_VERSION]);
        assert!(m.warnings.is_empty());
    }

    #[test]
    fn pins_and_gray_shares_must_be_canonical() {
        let m = meta(&["1000", "2000"], Some("01000"), None);
        assert_eq!(m.pin, None);
        assert_eq!(m.production(5000), Some(2000));
        assert_eq!(
            m.warnings,
            vec![
                "rollback pin \"01000\" is not a canonical version: it has a leading zero, ignored"
            ]
        );
        for raw in [" 1000", "1000 ", "+1000", "1000.0"] {
            let m = meta(&["1000", "2000"], Some(raw), None);
            assert_eq!(m.pin, None, "{raw:?}");
            assert_eq!(m.warnings.len(), 1, "{raw:?}");
        }
        let m = meta(&["1000", "abVersion"], None, Some("050"));
        assert_eq!(m.gray, 0);
        assert_eq!(
            m.warnings,
            vec!["gray share \"050\" is not canonical: it has a leading zero, ignored"]
        );
        for raw in [" 50", "+50", "50.0", "101", "lots", ""] {
            let m = meta(&["1000", "abVersion"], None, Some(raw));
            assert_eq!(m.gray, 0, "{raw:?}");
            assert_eq!(m.warnings.len(), 1, "{raw:?} {:?}", m.warnings);
        }
        assert_eq!(meta(&["1000", "abVersion"], None, Some("50")).gray, 50);
    }

    #[test]
    fn gray_without_its_other_half_is_a_warning() {
        let m = meta(&["100", "abVersion"], None, None);
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
        let user = Ask {
            predeploy: false,
            gray_user: Some(b"u"),
            ..Ask::default()
        };
        assert_eq!(
            m.choose("/a", 200, &user).unwrap().variant,
            Variant::Production
        );
        let m = meta(&["100"], None, Some("50"));
        assert_eq!(m.warnings.len(), 1, "{:?}", m.warnings);
        assert_eq!(
            m.choose("/a", 200, &user).unwrap().variant,
            Variant::Production
        );
        // gray off (share 0 written by `gray off`) is silent.
        assert!(meta(&["100", "abVersion"], None, Some("0"))
            .warnings
            .is_empty());
    }

    #[test]
    fn predeploy_only_when_asked_and_present() {
        let m = meta(&["100", "predeploy"], None, None);
        let asked = Ask {
            predeploy: true,
            gray_user: None,
            ..Ask::default()
        };
        assert_eq!(m.choose("/a", 200, &asked).unwrap().field, Field::Predeploy);
        assert_eq!(
            m.choose("/a", 200, &Ask::default()).unwrap().field,
            Field::Version(100)
        );
        let m = meta(&["100"], None, None);
        assert_eq!(
            m.choose("/a", 200, &asked).unwrap().field,
            Field::Version(100)
        );
    }

    #[test]
    fn no_live_version_is_none() {
        let m = meta(&["500"], None, None);
        assert_eq!(m.choose("/a", 100, &Ask::default()), None);
        assert_eq!(
            meta(&[], None, None).choose("/a", 100, &Ask::default()),
            None
        );
    }

    #[test]
    fn gray_share_is_close_and_monotonic() {
        let users: Vec<String> = (0..10_000)
            .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
            .collect();
        let mut prev_in: Vec<bool> = vec![false; users.len()];
        for share in [1u8, 10, 50, 90] {
            let m = meta(&["100", "abVersion"], None, Some(&share.to_string()));
            let mut count = 0;
            for (i, u) in users.iter().enumerate() {
                let ask = Ask {
                    predeploy: false,
                    gray_user: Some(u.as_bytes()),
                    ..Ask::default()
                };
                let gray = m.choose("/item/1.html", 200, &ask).unwrap().variant == Variant::Gray;
                assert!(
                    !prev_in[i] || gray,
                    "user {u} left gray when share rose to {share}"
                );
                prev_in[i] = gray;
                count += usize::from(gray);
            }
            let observed = count as f64 / users.len() as f64 * 100.0;
            assert!(
                (observed - f64::from(share)).abs() <= 2.0,
                "share {share}: {observed}"
            );
        }
    }

    #[test]
    fn fields_round_trip() {
        for f in [Field::Version(12), Field::Predeploy, Field::Ab] {
            assert_eq!(Field::parse(&f.name()), Some(f));
        }
        assert!(Field::Version(1).is_immutable());
        assert!(!Field::Predeploy.is_immutable());
    }
}
