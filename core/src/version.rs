//! Which version of a document a request gets (SPEC §1, rules 1–3).

use crate::layout::{parse_version, FIELD_AB, FIELD_PREDEPLOY};

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
        let mut unknown = 0usize;
        for f in fields {
            match Field::parse(f) {
                Some(Field::Version(v)) => meta.versions.push(v),
                Some(Field::Predeploy) => meta.has_predeploy = true,
                Some(Field::Ab) => meta.has_ab = true,
                None => unknown += 1,
            }
        }
        meta.versions.sort_unstable();
        meta.versions.dedup();
        if unknown > 0 {
            meta.warnings
                .push(format!("{unknown} field(s) that are not versions ignored"));
        }
        if let Some(raw) = pin {
            match parse_version(raw.trim()) {
                Some(v) if meta.versions.binary_search(&v).is_ok() => meta.pin = Some(v),
                Some(v) => meta
                    .warnings
                    .push(format!("rollback pin to missing version {v} ignored")),
                None => meta.warnings.push(format!(
                    "rollback pin \"{}\" is not a version, ignored",
                    raw.escape_debug()
                )),
            }
        }
        if let Some(raw) = gray {
            match raw.trim().parse::<u8>() {
                Ok(p) if p <= 100 => meta.gray = p,
                _ => meta.warnings.push(format!(
                    "gray share \"{}\" is not 0-100, ignored",
                    raw.escape_debug()
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

    /// The next scheduled activation after `now_ms`, if any.
    pub fn next_activation(&self, now_ms: u64) -> Option<u64> {
        let i = self.versions.partition_point(|&v| v <= now_ms);
        self.versions.get(i).copied()
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
        assert_eq!(m.next_activation(499), Some(500));
        assert_eq!(m.production(500), Some(500));
        assert_eq!(m.next_activation(500), None);
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
