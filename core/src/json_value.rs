//! JSON text read in one pass, with no `serde_json::Value` in between: a dimension straight into
//! upon values, a snapshot's data into a [`Doc`]. The fetch threads parse with it. Numbers,
//! duplicate keys (the last wins) and the nesting limit read exactly as through
//! `serde_json::Value` and [`crate::render::json_to_value`] (`tests` checks all ways agree).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use upon::Value;

use crate::doc::{Doc, DocSeed, Slot};
use crate::json_reader::SnapshotParts;
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

/// A whole snapshot: its template reference (small, as JSON) and its data (`None` if absent or
/// null); `None` if the snapshot is not an object.
type Parts = Option<SnapshotParts>;

/// Reads a snapshot's members, its data straight into a [`Doc`].
struct PartsSeed;

impl<'de> DeserializeSeed<'de> for PartsSeed {
    type Value = Parts;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Parts, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PartsSeed {
    type Value = Parts;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a snapshot")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Parts, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Parts, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Parts, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Parts, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Parts, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Parts, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parts, A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parts, A::Error> {
        let (mut template, mut data) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "template" => template = Some(map.next_value::<serde_json::Value>()?),
                "data" => data = Some(map.next_value_seed(DocSeed)?),
                _ => {
                    map.next_value::<Skipped>()?;
                }
            }
        }
        Ok(Some((template, data)))
    }
}

/// A JSON value read and dropped, held to the same rules as a value that is kept (serde's
/// `IgnoredAny` lets a number out of range through, which `serde_json::Value`, and so
/// dynpagectl, refuses): a snapshot the module takes is one dynpagectl takes.
struct Skipped;

impl<'de> Deserialize<'de> for Skipped {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skipped, D::Error> {
        d.deserialize_any(Skipped)
    }
}

impl<'de> Visitor<'de> for Skipped {
    type Value = Skipped;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_unit<E>(self) -> Result<Skipped, E> {
        Ok(Skipped)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skipped, A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        Ok(Skipped)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skipped, A::Error> {
        while map.next_entry::<Skipped, Skipped>()?.is_some() {}
        Ok(Skipped)
    }
}

/// A snapshot's `template` value and `data` document (each the last of its key), read with
/// serde; an error if it is not JSON or not an object.
fn read_parts_with_serde(text: &str) -> Result<SnapshotParts, SnapshotError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parts = PartsSeed
        .deserialize(&mut de)
        .and_then(|parts| de.end().map(|()| parts))
        .map_err(|e| SnapshotError::NotJson(e.to_string()))?;
    parts.ok_or(SnapshotError::NotObject)
}

/// A stored snapshot read in one pass, for rendering: its template reference and its `data`
/// object as a [`Doc`] (an empty map if it has none or it is null). The same checks, in the
/// same order, and the same errors as [`crate::snapshot::Snapshot::parse`].
pub fn parse_snapshot(text: &str) -> Result<(TemplateSpec, Doc), SnapshotError> {
    if text.len() > MAX_SNAPSHOT_BYTES {
        return Err(SnapshotError::TooLarge(text.len()));
    }
    // The common case without serde; anything it does not take is read (and judged) by serde.
    let (template, data) = match crate::json_reader::read_snapshot(text) {
        Some(parts) => parts,
        None => read_parts_with_serde(text)?,
    };
    let template = TemplateSpec::from_value(template.ok_or(SnapshotError::NoTemplate)?)?;
    let data = match data {
        None => Doc::empty_map(),
        Some(doc) if doc.root().slot() == &Slot::Null => Doc::empty_map(),
        Some(doc) if doc.is_map() => doc,
        Some(_) => return Err(SnapshotError::DataNotObject),
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
        let direct = parse_snapshot(text).map(|(t, d)| match d.to_value() {
            Value::Map(m) => (t, m),
            other => panic!("data is a map, not {other:?}"),
        });
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
            r#"{"x":[1,157e+308],"template":"t","data":{}}"#,
            r#"{"x":{"k":"\u00zz"},"template":"t","data":{}}"#,
            r#"[1,157e+308]"#,
            r#"{"Bata":{"page":[true,157e+308]},"template":{"name":"n","ve\u00'2sion":[1]}}"#,
            r#"{"template":"x""#,
            "",
            "{\"template\":\"x\",\"data\":{\"deep\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}",
        ] {
            agree(text);
        }
    }

    /// The reader without serde gives, for `text`, what serde gives (slot for slot), or leaves
    /// it to serde. Whether it took it.
    fn reader_agrees(text: &str) -> bool {
        let Some(fast) = crate::json_reader::read_snapshot(text) else {
            return false;
        };
        let serde = read_parts_with_serde(text);
        let fast = Ok::<_, SnapshotError>(fast);
        assert_eq!(format!("{fast:?}"), format!("{serde:?}"), "{text}");
        true
    }

    #[test]
    fn the_reader_without_serde_reads_as_serde_does() {
        let product = include_str!("../tests/fixtures/product.json");
        let snapshot = format!("{{\"template\":{{\"name\":\"item\"}},\"data\":{product}}}");
        assert!(
            reader_agrees(&snapshot),
            "the benchmark's snapshot is read without serde"
        );
        let deep = |n: usize| {
            format!(
                "{{\"template\":\"t\",\"data\":{{\"d\":{}{}}}}}",
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        let texts = [
            r#" {"template" : "x" , "data" : { "a" : [ 1 , 2 ] } } "#.to_string(),
            "\t{\r\n\"template\":\"x\"\n}\n".into(),
            r#"{"template":{"name":"n","version":12},"data":{},"other":[1,{"x":null}]}"#.into(),
            r#"{"data":{"a":1,"a":2,"b":{"z":1,"y":2}},"data":{"c":3},"template":"x"}"#.into(),
            r#"{}"#.into(),
            r#"{"template":"x","data":null}"#.into(),
            r#"{"template":"x","data":[1,"a"]}"#.into(),
            r#"{"template":"x","data":{"s":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00 é 😀"}}"#.into(),
            r#"{"template":"x","data":{"s":"\u0000\u001f","\u00e9":"key"}}"#.into(),
            r#"{"template":"x","data":{"lone":"\ud800"}}"#.into(),
            r#"{"template":"x","data":{"lone":"\udc00x"}}"#.into(),
            r#"{"template":"x","data":{"pair":"\ud800\u0041"}}"#.into(),
            r#"{"template":"x","data":{"bad":"\x"}}"#.into(),
            r#"{"template":"x","data":{"short":"\u00"}}"#.into(),
            "{\"template\":\"x\",\"data\":{\"ctl\":\"a\u{1}b\"}}".into(),
            "{\"template\":\"x\",\"data\":{\"a\u{1f}\":1}}".into(),
            r#"{"t\u0065mplate":"x","data":{}}"#.into(),
            r#"{"template":"x","data":{"a":1},}"#.into(),
            r#"{"template":"x","data":{"a":[1,]}}"#.into(),
            r#"{"template":"x","data":{"a" 1}}"#.into(),
            r#"{"template":"x","data":{"a":1}} x"#.into(),
            r#"{"template":"x","data":{"a":1}"#.into(),
            r#"{"template":"x","data":{"a":tru}}"#.into(),
            r#"{"template":"x","data":{"a":nulls}}"#.into(),
            r#"[{"template":"x"}]"#.into(),
            deep(99),
            deep(100),
            deep(130),
        ];
        let mut taken = 0;
        for text in &texts {
            taken += usize::from(reader_agrees(text));
        }
        let numbers = [
            "0",
            "-0",
            "1",
            "-1",
            "007",
            "1.",
            ".5",
            "-",
            "+1",
            "1e",
            "1e+",
            "0.1",
            "1.5",
            "-0.0",
            "1e3",
            "1E+3",
            "1e-3",
            "2.5e-310",
            "1e400",
            "-1e400",
            "1e-400",
            "123456789012345678",
            "-123456789012345678",
            "1234567890123456789",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
            "3.141592653589793238462643383279",
            "0.30000000000000004",
            "1.7976931348623157e308",
        ];
        for n in numbers {
            let in_data = format!(r#"{{"template":"x","data":{{"n":{n},"l":[{n}]}}}}"#);
            taken += usize::from(reader_agrees(&in_data));
            taken += usize::from(reader_agrees(&format!(r#"{{"template":{n},"data":{{}}}}"#)));
            agree(&in_data);
        }
        assert!(taken > 50, "the reader took {taken} texts");
        for text in texts {
            agree(&text);
        }
    }

    /// Random snapshots built from pieces that are valid, invalid or awkward JSON: the reader
    /// without serde agrees with serde on each it takes, and takes most of the valid ones.
    #[test]
    fn the_reader_without_serde_agrees_on_random_snapshots() {
        const PIECES: [&str; 24] = [
            "0",
            "-0",
            "17",
            "-3",
            "1.25",
            "1e2",
            "-2.5E-3",
            "9223372036854775808",
            "1e400",
            "01",
            "true",
            "null",
            "fals",
            r#""a\"b""#,
            r#""\u00e9\n""#,
            r#""\ud83d\ude00""#,
            r#""\ud800""#,
            "\"é😀\"",
            "\"\u{1}\"",
            r#""""#,
            r#""k\/""#,
            "[",
            "{",
            " ",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        fn value(depth: usize, next: &mut dyn FnMut(usize) -> usize, out: &mut String) {
            match next(if depth > 4 { 2 } else { 5 }) {
                0 | 1 => out.push_str(PIECES[next(PIECES.len())]),
                2 => {
                    out.push('[');
                    for i in 0..next(4) {
                        if i > 0 {
                            out.push(',');
                        }
                        value(depth + 1, next, out);
                    }
                    out.push(']');
                }
                _ => {
                    out.push('{');
                    for i in 0..next(4) {
                        if i > 0 {
                            out.push(',');
                        }
                        let keys = ["\"a\"", "\"b\"", "\"a\"", "\"\\u0061\"", "\"é\""];
                        out.push_str(keys[next(keys.len())]);
                        out.push(':');
                        value(depth + 1, next, out);
                    }
                    out.push('}');
                }
            }
        }
        let (mut valid, mut taken) = (0, 0);
        for _ in 0..4000 {
            let mut data = String::new();
            value(0, &mut next, &mut data);
            let text = format!(r#"{{"template":"t","data":{data},"x":{data}}}"#);
            valid += usize::from(read_parts_with_serde(&text).is_ok());
            taken += usize::from(reader_agrees(&text));
        }
        assert!(
            valid > 1000 && taken * 10 > valid * 9,
            "{taken} of {valid} valid texts"
        );
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

    /// The document reads `text` as upon's values do (or fails as they do).
    fn agrees(text: &str) {
        let doc = Doc::parse(text.as_bytes()).map(|d| d.to_value());
        let upon = parse_value(text.as_bytes());
        assert_eq!(format!("{doc:?}"), format!("{upon:?}"), "{text}");
    }

    #[test]
    fn reads_json_as_upon_values_do() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let ok_deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        for text in [
            "1",
            "-0",
            "0.1",
            "1e400",
            "18446744073709551615",
            "-9223372036854775808",
            "\"é\\\"\\\\\\u00e9\"",
            "null",
            "true",
            "[1,\"a\",null,{\"k\":{}}]",
            r#"{"b":1,"a":2,"b":3,"c":{"z":[],"y":{"x":null}},"a":4}"#,
            r#"{"ab":1,"a":2,"b":3,"":4,"é":5,"Z":6}"#,
            r#"{"a":1} x"#,
            r#"{"a":"#,
            "",
            &deep,
            &ok_deep,
        ] {
            agrees(text);
        }
    }

    #[test]
    fn truthiness_is_upons() {
        for (text, truthy) in [
            ("null", false),
            ("0", false),
            ("0.0", false),
            ("\"\"", false),
            ("[]", false),
            ("{}", false),
            ("false", false),
            ("1", true),
            ("-0.5", true),
            ("\"x\"", true),
            ("[0]", true),
            ("{\"a\":0}", true),
            ("true", true),
        ] {
            let doc = Doc::parse(text.as_bytes()).expect("JSON");
            let upon = parse_value(text.as_bytes()).expect("JSON");
            let upon_truthy = match &upon {
                Value::None => false,
                Value::Bool(b) => *b,
                Value::Integer(n) => *n != 0,
                Value::Float(x) => *x != 0.0,
                Value::String(s) => !s.is_empty(),
                Value::List(l) => !l.is_empty(),
                Value::Map(m) => !m.is_empty(),
            };
            assert_eq!(doc.root().truthy(), truthy, "{text}");
            assert_eq!(upon_truthy, truthy, "{text}");
        }
    }
}
