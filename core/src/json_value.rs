//! JSON text straight into upon values, in one pass: no `serde_json::Value` in between, no string
//! copied twice. The fetch threads parse snapshots and dimensions with it. Numbers, duplicate
//! keys (the last wins) and the nesting limit read exactly as through `serde_json::Value` and
//! [`crate::render::json_to_value`] (`tests` checks both ways agree).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use upon::Value;

use crate::snapshot::{SnapshotError, TemplateSpec, MAX_SNAPSHOT_BYTES};

/// An upon value read from JSON.
pub struct UponValue(pub Value);

impl<'de> Deserialize<'de> for UponValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<UponValue, D::Error> {
        d.deserialize_any(ValueVisitor).map(UponValue)
    }
}

/// Parses `bytes` (any JSON value) into an upon value.
pub fn parse_value(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<UponValue>(bytes).map(|v| v.0)
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Integer(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        // As `json_to_value`: an integer while it fits an i64, else the nearest float.
        Ok(i64::try_from(n).map_or(Value::Float(n as f64), Value::Integer))
    }

    fn visit_f64<E>(self, x: f64) -> Result<Value, E> {
        Ok(Value::Float(x))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(UponValue(v)) = seq.next_element()? {
            list.push(v);
        }
        Ok(Value::List(list))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        read_map(&mut map).map(Value::Map)
    }
}

/// An object's members, the map built in bulk from them (`collect`: full nodes, as
/// `json_to_value` builds it and as `weight` counts it; the last of equal keys wins, as with
/// `insert`).
fn read_map<'de, A: MapAccess<'de>>(map: &mut A) -> Result<BTreeMap<String, Value>, A::Error> {
    let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1024));
    while let Some((k, UponValue(v))) = map.next_entry::<String, UponValue>()? {
        members.push((k, v));
    }
    Ok(members.into_iter().collect())
}

/// A snapshot's `data` member as it was found.
enum Data {
    Absent,
    Map(BTreeMap<String, Value>),
    NotObject,
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Data, D::Error> {
        d.deserialize_any(Other::<DataVisitor>::default())
    }
}

#[derive(Default)]
struct DataVisitor;

impl Shape for DataVisitor {
    type Out = Data;
    const EXPECTING: &'static str = "a snapshot's data";

    fn other() -> Data {
        Data::NotObject
    }

    fn null() -> Data {
        Data::Absent
    }

    fn map<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Data, A::Error> {
        read_map(map).map(Data::Map)
    }
}

/// A whole snapshot: its template reference (small, as JSON) and its data; or not an object.
struct Parts(Option<(Option<serde_json::Value>, Data)>);

impl<'de> Deserialize<'de> for Parts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Parts, D::Error> {
        d.deserialize_any(Other::<PartsVisitor>::default())
    }
}

#[derive(Default)]
struct PartsVisitor;

impl Shape for PartsVisitor {
    type Out = Parts;
    const EXPECTING: &'static str = "a snapshot";

    fn other() -> Parts {
        Parts(None)
    }

    fn null() -> Parts {
        Parts(None)
    }

    fn map<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Parts, A::Error> {
        let (mut template, mut data) = (None, Data::Absent);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "template" => template = Some(map.next_value::<serde_json::Value>()?),
                "data" => data = map.next_value::<Data>()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Parts(Some((template, data))))
    }
}

/// A JSON value read for its shape: an object is read by `map`; `null` and anything else
/// (skipped) give `null()` and `other()`.
trait Shape: Default {
    type Out;
    const EXPECTING: &'static str;
    fn other() -> Self::Out;
    fn null() -> Self::Out;
    fn map<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Self::Out, A::Error>;
}

#[derive(Default)]
struct Other<S>(std::marker::PhantomData<S>);

impl<'de, S: Shape> Visitor<'de> for Other<S> {
    type Value = S::Out;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(S::EXPECTING)
    }

    fn visit_bool<E>(self, _: bool) -> Result<S::Out, E> {
        Ok(S::other())
    }

    fn visit_i64<E>(self, _: i64) -> Result<S::Out, E> {
        Ok(S::other())
    }

    fn visit_u64<E>(self, _: u64) -> Result<S::Out, E> {
        Ok(S::other())
    }

    fn visit_f64<E>(self, _: f64) -> Result<S::Out, E> {
        Ok(S::other())
    }

    fn visit_str<E>(self, _: &str) -> Result<S::Out, E> {
        Ok(S::other())
    }

    fn visit_unit<E>(self) -> Result<S::Out, E> {
        Ok(S::null())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<S::Out, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(S::other())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<S::Out, A::Error> {
        S::map(&mut map)
    }
}

/// A stored snapshot read in one pass, for rendering: its template reference and its `data`
/// object's members as upon values. The same checks, in the same order, and the same errors as
/// [`crate::snapshot::Snapshot::parse`].
pub fn parse_snapshot(
    text: &str,
) -> Result<(TemplateSpec, BTreeMap<String, Value>), SnapshotError> {
    if text.len() > MAX_SNAPSHOT_BYTES {
        return Err(SnapshotError::TooLarge(text.len()));
    }
    let Parts(parts) =
        serde_json::from_str(text).map_err(|e| SnapshotError::NotJson(e.to_string()))?;
    let (template, data) = parts.ok_or(SnapshotError::NotObject)?;
    let template = TemplateSpec::from_value(template.ok_or(SnapshotError::NoTemplate)?)?;
    let data = match data {
        Data::Absent => BTreeMap::new(),
        Data::Map(m) => m,
        Data::NotObject => return Err(SnapshotError::DataNotObject),
    };
    Ok((template, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::json_to_value;
    use crate::snapshot::Snapshot;

    /// Both ways of reading `text` agree, in what they give or in the error.
    fn agree(text: &str) {
        let direct = parse_snapshot(text);
        let through = Snapshot::parse(text).map(|s| {
            let data: BTreeMap<String, Value> = s
                .data
                .iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect();
            (s.template, data)
        });
        assert_eq!(format!("{direct:?}"), format!("{through:?}"), "{text}");
    }

    #[test]
    fn reads_like_serde_json_values_do() {
        for text in [
            r#"{"template":"x","data":{"a":1,"b":-2,"c":1.5,"d":18446744073709551615,"e":1e400}}"#,
            r#"{"template":"x","data":{"s":"é\"\\u00e9","n":null,"t":true,"l":[1,[2,{"x":[]}]]}}"#,
            r#"{"data":{"a":1,"a":2},"template":{"name":"item","version":1000},"x":[{}]}"#,
            r#"{"template":"x","data":null}"#,
            r#"{"template":"x"}"#,
            r#"{"template":"x","data":[1]}"#,
            r#"{"template":"x","data":"s"}"#,
            r#"{"template":1,"data":{}}"#,
            r#"{"template":{"name":""}}"#,
            r#"{"data":{}}"#,
            r#"[1,2]"#,
            r#""x""#,
            r#"null"#,
            r#"{"template":"x","data":{"a":1}} trailing"#,
            r#"{"template":"x","data":{"a":1},"template":"y"}"#,
            r#"{"template":"x""#,
            "",
            "{\"template\":\"x\",\"data\":{\"deep\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}",
        ] {
            agree(text);
        }
    }

    #[test]
    fn a_value_reads_like_json_to_value() {
        for text in [
            "1",
            "-0",
            "0.1",
            "[1,\"a\",null,{\"k\":{}}]",
            "{\"a\":1,\"a\":2}",
            "18446744073709551615",
        ] {
            let through =
                serde_json::from_str::<serde_json::Value>(text).map(|v| json_to_value(&v));
            let direct = parse_value(text.as_bytes());
            assert_eq!(format!("{direct:?}"), format!("{through:?}"), "{text}");
        }
        assert!(parse_value(b"{").is_err() && parse_value(b"[1] x").is_err());
    }
}
