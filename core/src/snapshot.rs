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
            SnapshotError::DataNotObject => f.write_str("snapshot \"data\" is not a JSON object"),
        }
    }
}

impl std::error::Error for SnapshotError {}

impl Snapshot {
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
            Some(Value::String(src)) => TemplateSpec::Inline(src),
            Some(Value::Object(t)) => {
                let name = match t.get("name") {
                    Some(Value::String(n)) if !n.is_empty() => n.clone(),
                    _ => return Err(SnapshotError::BadTemplate),
                };
                let version = match t.get("version") {
                    None | Some(Value::Null) => None,
                    Some(Value::Number(n)) => Some(n.as_u64().ok_or(SnapshotError::BadTemplate)?),
                    Some(Value::String(s)) => {
                        Some(crate::layout::parse_version(s).ok_or(SnapshotError::BadTemplate)?)
                    }
                    Some(_) => return Err(SnapshotError::BadTemplate),
                };
                TemplateSpec::Named { name, version }
            }
            Some(_) => return Err(SnapshotError::BadTemplate),
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
        assert_eq!(
            Snapshot::parse(r#"{"template":{"name":"a","version":-1}}"#),
            Err(SnapshotError::BadTemplate)
        );
        assert_eq!(
            Snapshot::parse(r#"{"template":"x","data":[1]}"#),
            Err(SnapshotError::DataNotObject)
        );
        let msg = Snapshot::parse("{\"template\": ").unwrap_err().to_string();
        assert!(msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn round_trips_through_json() {
        let s =
            Snapshot::parse(r#"{"template":{"name":"a","version":5},"data":{"k":"v"}}"#).unwrap();
        assert_eq!(Snapshot::parse(&s.to_json()).unwrap(), s);
    }
}
