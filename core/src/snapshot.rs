//! Snapshots: `{"template": T, "data": {...}}` (SPEC §1).

use serde_json::{Map, Value};

/// Largest snapshot accepted, in bytes; a larger one is refused before it is parsed.
pub const MAX_SNAPSHOT_BYTES: usize = 8 * 1024 * 1024;

/// Where a snapshot's template comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateSpec {
    /// Template source inside the snapshot.
    Inline(String),
    /// A template document; `version` names an exact version known to fit the data.
    Named { name: String, version: Option<u64> },
}

/// A parsed snapshot. Fields other than `template` and `data` are ignored.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub template: TemplateSpec,
    pub data: Map<String, Value>,
}

/// Why a snapshot cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum SnapshotError {
    TooLarge(usize),
    NotJson(String),
    NotObject,
    NoTemplate,
    BadTemplate,
    /// The template's `version` is not a canonical version (why, with the value quoted).
    BadTemplateVersion(String),
    DataNotObject,
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::TooLarge(n) => write!(
                f,
                "snapshot is {n} bytes, over the {MAX_SNAPSHOT_BYTES} byte limit"
            ),
            SnapshotError::NotJson(e) => write!(f, "snapshot is not valid JSON: {e}"),
            SnapshotError::NotObject => f.write_str("snapshot is not a JSON object"),
            SnapshotError::NoTemplate => f.write_str("snapshot has no \"template\""),
            SnapshotError::BadTemplate => f.write_str(
                "snapshot \"template\" is neither a string nor {\"name\": ..., \"version\": ...}",
            ),
            SnapshotError::BadTemplateVersion(why) => {
                write!(f, "snapshot \"template\" version {why}")
            }
            SnapshotError::DataNotObject => f.write_str("snapshot \"data\" is not a JSON object"),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl TemplateSpec {
    /// Reads a snapshot's `"template"` value: the one reader of template references, used by
    /// the module (through [`Snapshot::parse`]) and by dynpagectl (`prune`, `republish`).
    ///
    /// An exact version is a JSON integer or a string holding a canonical version
    /// ([`crate::layout::check_version`]): `1700000000000` and `"1700000000000"` name the same
    /// version; `"01700000000000"`, `-1`, `1.5`, `1e3` or a version past 9999 make the snapshot
    /// unusable (its page falls back to its previous version), since ignoring the version would
    /// pair the data with a template it was not checked against.
    pub fn from_value(template: Value) -> Result<TemplateSpec, SnapshotError> {
        use crate::layout::{check_version, version_error, NumberError, MAX_VERSION};
        let t = match template {
            Value::String(src) => return Ok(TemplateSpec::Inline(src)),
            Value::Object(t) => t,
            _ => return Err(SnapshotError::BadTemplate),
        };
        let name = match t.get("name") {
            Some(Value::String(n)) if !n.is_empty() => n.clone(),
            _ => return Err(SnapshotError::BadTemplate),
        };
        let version = match t.get("version") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v <= MAX_VERSION => Some(v),
                Some(_) => {
                    let why = version_error(&n.to_string(), NumberError::OutOfRange);
                    return Err(SnapshotError::BadTemplateVersion(why));
                }
                None => {
                    let text = n.to_string();
                    let e = match (n.as_i64(), n.as_f64()) {
                        (Some(_), _) => NumberError::Sign,
                        (None, Some(f)) if f > MAX_VERSION as f64 => NumberError::OutOfRange,
                        _ => NumberError::NotWhole,
                    };
                    return Err(SnapshotError::BadTemplateVersion(version_error(&text, e)));
                }
            },
            Some(Value::String(s)) => Some(
                check_version(s)
                    .map_err(|e| SnapshotError::BadTemplateVersion(version_error(s, e)))?,
            ),
            Some(_) => return Err(SnapshotError::BadTemplate),
        };
        Ok(TemplateSpec::Named { name, version })
    }
}

impl Snapshot {
    /// The template reference of a stored snapshot, read exactly as the module reads it (the
    /// whole snapshot must be usable): what `dynpagectl prune` protects.
    pub fn template_ref(text: &str) -> Result<TemplateSpec, SnapshotError> {
        Snapshot::parse(text).map(|s| s.template)
    }

    pub fn parse(text: &str) -> Result<Snapshot, SnapshotError> {
        if text.len() > MAX_SNAPSHOT_BYTES {
            return Err(SnapshotError::TooLarge(text.len()));
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| SnapshotError::NotJson(e.to_string()))?;
        Snapshot::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Snapshot, SnapshotError> {
        let Value::Object(mut obj) = value else {
            return Err(SnapshotError::NotObject);
        };
        let template = match obj.remove("template") {
            None => return Err(SnapshotError::NoTemplate),
            Some(t) => TemplateSpec::from_value(t)?,
        };
        let data = match obj.remove("data") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(d)) => d,
            Some(_) => return Err(SnapshotError::DataNotObject),
        };
        Ok(Snapshot { template, data })
    }

    /// The snapshot as JSON, the form stored in Redis.
    pub fn to_json(&self) -> String {
        let template = match &self.template {
            TemplateSpec::Inline(src) => Value::String(src.clone()),
            TemplateSpec::Named { name, version } => {
                let mut t = Map::new();
                t.insert("name".into(), Value::String(name.clone()));
                if let Some(v) = version {
                    t.insert("version".into(), Value::from(*v));
                }
                Value::Object(t)
            }
        };
        let mut obj = Map::new();
        obj.insert("template".into(), template);
        obj.insert("data".into(), Value::Object(self.data.clone()));
        Value::Object(obj).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_and_named_templates() {
        let s = Snapshot::parse(r#"{"template":"<b>{{ x }}</b>","data":{"x":1},"extra":true}"#)
            .unwrap();
        assert_eq!(s.template, TemplateSpec::Inline("<b>{{ x }}</b>".into()));
        assert_eq!(s.data["x"], 1);
        let s = Snapshot::parse(r#"{"template":{"name":"item"},"data":{}}"#).unwrap();
        assert_eq!(
            s.template,
            TemplateSpec::Named {
                name: "item".into(),
                version: None
            }
        );
        let s = Snapshot::parse(r#"{"template":{"name":"item","version":1700000000000}}"#).unwrap();
        assert_eq!(
            s.template,
            TemplateSpec::Named {
                name: "item".into(),
                version: Some(1_700_000_000_000)
            }
        );
        assert!(s.data.is_empty());
    }

    #[test]
    fn bad_snapshots_say_why() {
        assert!(matches!(
            Snapshot::parse("{"),
            Err(SnapshotError::NotJson(_))
        ));
        assert_eq!(Snapshot::parse("[1]"), Err(SnapshotError::NotObject));
        assert_eq!(
            Snapshot::parse(r#"{"data":{}}"#),
            Err(SnapshotError::NoTemplate)
        );
        assert_eq!(
            Snapshot::parse(r#"{"template":5}"#),
            Err(SnapshotError::BadTemplate)
        );
        assert_eq!(
            Snapshot::parse(r#"{"template":{"name":""}}"#),
            Err(SnapshotError::BadTemplate)
        );
        assert!(matches!(
            Snapshot::parse(r#"{"template":{"name":"a","version":-1}}"#),
            Err(SnapshotError::BadTemplateVersion(_))
        ));
        assert_eq!(
            Snapshot::parse(r#"{"template":"x","data":[1]}"#),
            Err(SnapshotError::DataNotObject)
        );
        let msg = Snapshot::parse("{\"template\": ").unwrap_err().to_string();
        assert!(msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn exact_template_versions_are_canonical_however_written() {
        let named = |v: u64| TemplateSpec::Named {
            name: "t".into(),
            version: Some(v),
        };
        let t = |json: &str| Snapshot::template_ref(&format!(r#"{{"template":{json}}}"#));
        assert_eq!(t(r#"{"name":"t","version":123}"#), Ok(named(123)));
        assert_eq!(t(r#"{"name":"t","version":"123"}"#), Ok(named(123)));
        assert_eq!(t(r#"{"name":"t","version":0}"#), Ok(named(0)));
        assert_eq!(
            t(r#"{"name":"t","version":253402300799999}"#),
            Ok(named(crate::layout::MAX_VERSION))
        );
        assert_eq!(
            t(r#"{"name":"t","version":null}"#),
            Ok(TemplateSpec::Named {
                name: "t".into(),
                version: None
            })
        );
        for (bad, why) in [
            (
                r#""0123""#,
                "\"0123\" is not a canonical version: it has a leading zero",
            ),
            (r#"" 123""#, "it has spaces"),
            (r#""+123""#, "it has a sign"),
            ("-1", "\"-1\" is not a canonical version: it has a sign"),
            ("1.5", "it is not a whole number"),
            ("1e3", "it is not a whole number"),
            ("123.0", "it is not a whole number"),
            ("253402300800000", "is over the greatest version"),
            (r#""253402300800000""#, "is over the greatest version"),
            ("18446744073709551616", "is over the greatest version"),
            (r#""v1""#, "\"v1\" is not a version"),
        ] {
            let e = t(&format!(r#"{{"name":"t","version":{bad}}}"#)).unwrap_err();
            assert!(
                matches!(e, SnapshotError::BadTemplateVersion(_)),
                "{bad}: {e:?}"
            );
            let msg = e.to_string();
            assert!(msg.starts_with("snapshot \"template\" version "), "{msg}");
            assert!(msg.contains(why), "{bad}: {msg}");
        }
        for bad in ["true", "[1]", r#"{"v":1}"#] {
            assert_eq!(
                t(&format!(r#"{{"name":"t","version":{bad}}}"#)),
                Err(SnapshotError::BadTemplate),
                "{bad}"
            );
        }
        // What the module cannot use names nothing.
        assert!(
            Snapshot::template_ref(r#"{"template":{"name":"t","version":1},"data":[]}"#).is_err()
        );
    }

    #[test]
    fn round_trips_through_json() {
        let s =
            Snapshot::parse(r#"{"template":{"name":"a","version":5},"data":{"k":"v"}}"#).unwrap();
        assert_eq!(Snapshot::parse(&s.to_json()).unwrap(), s);
    }
}
