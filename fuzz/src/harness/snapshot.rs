//! Snapshots: `Snapshot::parse` on JSON-ish text and raw bytes, structured snapshots through
//! `to_json` and back, `TemplateSpec::from_value` against a model of its rules, and `prepare`
//! (what the fetch threads make of a stored snapshot or dimension) against `parse` + `compile`.

use dynpage_core::layout::{DocRef, MAX_VERSION};
use dynpage_core::prepare::{prepare, variant_of, Prepared, PreparedTemplate};
use dynpage_core::render::{compile, json_to_value, page_value, PageInfo, Value as UValue};
use dynpage_core::snapshot::{Snapshot, SnapshotError, TemplateSpec, MAX_SNAPSHOT_BYTES};
use dynpage_core::store::{Fetch, Raw, MAX_DATA_BYTES};
use dynpage_core::version::{Field, Fnv};
use serde_json::{Map, Value};

use crate::driver::{Case, Check};
use crate::ensure;
use crate::gen;
use crate::harness::template::random_template;
use crate::rng::Rng;

pub fn run(c: &mut Case) -> Check {
    match c.rng.weighted(&[3, 3, 2, 2]) {
        0 => structured(c),
        1 => text(c),
        2 => template_values(c),
        _ => bytes(c),
    }
}

/// A canonical decimal number from 0 to `max`: the model of `layout::parse_canonical`'s `Ok`.
pub fn canonical(s: &str, max: u64) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    s.parse::<u64>().ok().filter(|&n| n <= max)
}

/// A version given as a string: mostly near-canonical.
pub fn version_string(rng: &mut Rng) -> String {
    let n = match rng.below(4) {
        0 => rng.below(10) as u64,
        1 => rng.next_u64() % (MAX_VERSION + 1),
        2 => MAX_VERSION + rng.below(3) as u64 - 1,
        _ => rng.next_u64(),
    };
    let mut s = n.to_string();
    match rng.below(12) {
        0 => s.insert(0, '0'),
        1 => s.insert(0, rng.pick(&['+', '-'])),
        2 => s.push_str(rng.pick(&[" ", "\t", "\n", ".0", "e3", "_", ",0", "x"])),
        3 => s.insert_str(0, rng.pick(&[" ", "\u{a0}", "\u{0660}", "v"])),
        4 => s = gen::string(rng, 3),
        5 => s.push_str("000000000000000000000"),
        6 => {
            s = rng
                .pick(&["", "0", "00", "-0", "predeploy", "abVersion", "１２"])
                .into()
        }
        _ => {}
    }
    s
}

/// A `"template"` value: a string, a `{name, version}` object, or something else.
fn template_value(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0..=2 => Value::String(random_template(rng)),
        3..=8 => {
            let mut t = Map::new();
            if rng.chance(95) {
                let name = match rng.below(5) {
                    0 => Value::String(String::new()),
                    1 => gen::number(rng),
                    2 => Value::Null,
                    _ => Value::String(gen::string(rng, 4)),
                };
                t.insert("name".into(), name);
            }
            if rng.chance(80) {
                let version = match rng.below(9) {
                    0 => Value::Null,
                    1 | 2 => Value::from(rng.next_u64() % (MAX_VERSION + 1)),
                    3 => gen::number(rng),
                    4 | 5 => Value::String(version_string(rng)),
                    6 => Value::Bool(true),
                    7 => Value::Array(vec![Value::from(1)]),
                    _ => Value::from(MAX_VERSION + rng.below(3) as u64 - 1),
                };
                t.insert("version".into(), version);
            }
            if rng.chance(10) {
                t.insert(gen::string(rng, 2), Value::from(1));
            }
            Value::Object(t)
        }
        _ => {
            let mut budget = 8;
            gen::value(rng, 2, &mut budget)
        }
    }
}

/// The model of `TemplateSpec::from_value`: what it must answer (errors by kind).
fn model_template(v: &Value) -> Result<TemplateSpec, SnapshotError> {
    let t = match v {
        Value::String(s) => return Ok(TemplateSpec::Inline(s.clone())),
        Value::Object(t) => t,
        _ => return Err(SnapshotError::BadTemplate),
    };
    let name = match t.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        _ => return Err(SnapshotError::BadTemplate),
    };
    let bad_version = || SnapshotError::BadTemplateVersion(String::new());
    let version = match t.get("version") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .filter(|&v| v <= MAX_VERSION)
                .ok_or_else(bad_version)?,
        ),
        Some(Value::String(s)) => Some(canonical(s, MAX_VERSION).ok_or_else(bad_version)?),
        Some(_) => return Err(SnapshotError::BadTemplate),
    };
    Ok(TemplateSpec::Named { name, version })
}

/// The model of `Snapshot::from_value`.
fn model_snapshot(v: &Value) -> Result<Snapshot, SnapshotError> {
    let Value::Object(o) = v else {
        return Err(SnapshotError::NotObject);
    };
    let template = model_template(o.get("template").ok_or(SnapshotError::NoTemplate)?)?;
    let data = match o.get("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(d)) => d.clone(),
        Some(_) => return Err(SnapshotError::DataNotObject),
    };
    Ok(Snapshot { template, data })
}

/// Errors compared by kind (messages aside).
fn same_result(a: &Result<Snapshot, SnapshotError>, b: &Result<Snapshot, SnapshotError>) -> bool {
    use SnapshotError::*;
    match (a, b) {
        (Ok(x), Ok(y)) => x == y,
        (Err(x), Err(y)) => matches!(
            (x, y),
            (TooLarge(_), TooLarge(_))
                | (NotJson(_), NotJson(_))
                | (NotObject, NotObject)
                | (NoTemplate, NoTemplate)
                | (BadTemplate, BadTemplate)
                | (BadTemplateVersion(_), BadTemplateVersion(_))
                | (DataNotObject, DataNotObject)
        ),
        _ => false,
    }
}

fn snapshot_value(rng: &mut Rng) -> Value {
    let mut o = Map::new();
    if rng.chance(95) {
        o.insert("template".into(), template_value(rng));
    }
    if rng.chance(90) {
        let mut budget = rng.range(1, 60);
        let data = if rng.chance(90) {
            Value::Object(gen::object(rng, 4, &mut budget))
        } else {
            gen::value(rng, 3, &mut budget)
        };
        o.insert("data".into(), data);
    }
    if rng.chance(10) {
        o.insert("extra".into(), Value::from(1));
    }
    if rng.chance(3) {
        let mut budget = 4;
        return gen::value(rng, 1, &mut budget);
    }
    Value::Object(o)
}

/// A structured snapshot: `to_json` and back is the same snapshot.
fn structured(c: &mut Case) -> Check {
    let v = snapshot_value(&mut c.rng);
    c.show("value", &v);
    let Ok(snap) = model_snapshot(&v) else {
        c.count("structured: not a snapshot");
        return check_text(c, v.to_string().into_bytes());
    };
    let got = Snapshot::from_value(v.clone());
    ensure!(
        same_result(&got, &Ok(snap.clone())),
        "Snapshot::from_value({v}) = {got:?}, the model says {snap:?}"
    );
    let json = snap.to_json();
    let back = Snapshot::parse(&json);
    ensure!(
        back.as_ref() == Ok(&snap),
        "to_json does not round-trip: {snap:?} -> {json:?} -> {back:?}"
    );
    c.count("structured: round trip");
    check_text(c, json.into_bytes())
}

/// Snapshot text with random formatting, sometimes mutated.
fn text(c: &mut Case) -> Check {
    let v = snapshot_value(&mut c.rng);
    let mut s = String::new();
    gen::to_text(&mut c.rng, &v, &mut s);
    let mut bytes = s.into_bytes();
    if c.rng.chance(50) {
        gen::mutate(&mut c.rng, &mut bytes, gen::JSON_TOKENS);
        c.count("text: mutated");
    } else {
        // Untouched text must read as the value it was written from.
        let text = std::str::from_utf8(&bytes).map_err(|e| e.to_string())?;
        let parsed: Result<Value, _> = serde_json::from_str(text);
        ensure!(
            parsed.as_ref().ok() == Some(&v),
            "generated text {text:?} does not read back as {v}: {parsed:?}"
        );
    }
    check_text(c, bytes)
}

/// `TemplateSpec::from_value` against its model.
fn template_values(c: &mut Case) -> Check {
    let v = template_value(&mut c.rng);
    c.show("template", &v);
    let got = TemplateSpec::from_value(v.clone());
    let want = model_template(&v);
    let same = match (&got, &want) {
        (Ok(a), Ok(b)) => a == b,
        (Err(SnapshotError::BadTemplate), Err(SnapshotError::BadTemplate)) => true,
        (
            Err(SnapshotError::BadTemplateVersion(why)),
            Err(SnapshotError::BadTemplateVersion(_)),
        ) => {
            // The reason quotes the value.
            !why.is_empty()
        }
        _ => false,
    };
    ensure!(
        same,
        "TemplateSpec::from_value({v}) = {got:?}, the model says {want:?}"
    );
    c.count(if got.is_ok() {
        "template value: accepted"
    } else {
        "template value: refused"
    });
    // A version written as a number and as a string names the same version.
    if let (
        Ok(TemplateSpec::Named {
            name,
            version: Some(n),
        }),
        Value::Object(o),
    ) = (&got, &v)
    {
        let mut o = o.clone();
        let other = match o.get("version") {
            Some(Value::String(_)) => Value::from(*n),
            _ => Value::String(n.to_string()),
        };
        o.insert("version".into(), other);
        let again = TemplateSpec::from_value(Value::Object(o));
        ensure!(
            again
                == Ok(TemplateSpec::Named {
                    name: name.clone(),
                    version: Some(*n)
                }),
            "version {n} as a number and as a string differ: {again:?}"
        );
    }
    Ok(())
}

/// Bytes: random, deep nesting, or a snapshot with invalid UTF-8.
fn bytes(c: &mut Case) -> Check {
    let rng = &mut c.rng;
    let bytes = match rng.below(5) {
        0 => {
            let n = rng.size(64);
            rng.bytes(n)
        }
        1 => {
            // Nesting around serde_json's recursion limit (128).
            let depth = rng.range(100, 200);
            let (open, close) = rng.pick(&[("[", "]"), ("{\"a\":", "}")]);
            let inner = if rng.chance(50) { "1" } else { "" };
            let mut s = String::from("{\"template\":\"x\",\"data\":{\"d\":");
            s.push_str(&open.repeat(depth));
            s.push_str(inner);
            s.push_str(&close.repeat(depth));
            s.push_str("}}");
            s.into_bytes()
        }
        2 => {
            let mut b = snapshot_value(rng).to_string().into_bytes();
            let at = rng.below(b.len() + 1);
            b.insert(at, rng.pick(&[0xff, 0xc3, 0xed, 0x80]));
            b
        }
        _ => {
            let mut b = snapshot_value(rng).to_string().into_bytes();
            gen::mutate(rng, &mut b, gen::JSON_TOKENS);
            b
        }
    };
    check_text(c, bytes)
}

/// Every property of a stored snapshot's bytes.
fn check_text(c: &mut Case, bytes: Vec<u8>) -> Check {
    c.show("bytes", &String::from_utf8_lossy(&bytes));
    check_data(c, &bytes)?;
    let key = "/k";
    let field = match c.rng.below(3) {
        0 => Field::Predeploy,
        1 => Field::Ab,
        _ => Field::Version(c.rng.next_u64() % (MAX_VERSION + 1)),
    };
    let fetch = Fetch::Field(DocRef::Page(key.into()), field);
    let prepared = prepare(&fetch, Raw::Field(Some(bytes.clone())));
    let Prepared::Snapshot(Some(prepared)) = prepared else {
        return Err(format!(
            "prepare of a page field gave {prepared:?}, not a present snapshot"
        ));
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        c.count("bytes: not UTF-8");
        ensure!(
            prepared.as_ref().is_err_and(|e| e.contains("UTF-8")),
            "a snapshot that is not UTF-8 was prepared: {prepared:?}"
        );
        return Ok(());
    };
    let parsed = Snapshot::parse(text);
    let want = if text.len() > MAX_SNAPSHOT_BYTES {
        Err(SnapshotError::TooLarge(text.len()))
    } else {
        match serde_json::from_str::<Value>(text) {
            Err(e) => Err(SnapshotError::NotJson(e.to_string())),
            Ok(v) => {
                let model = model_snapshot(&v);
                let direct = Snapshot::from_value(v);
                ensure!(
                    same_result(&direct, &model),
                    "Snapshot::from_value = {direct:?}, the model says {model:?}"
                );
                direct
            }
        }
    };
    ensure!(
        same_result(&parsed, &want),
        "Snapshot::parse = {parsed:?}, expected {want:?}"
    );
    let template_ref = Snapshot::template_ref(text);
    ensure!(
        match (&template_ref, &parsed) {
            (Ok(t), Ok(s)) => *t == s.template,
            (Err(a), Err(b)) => a == b,
            _ => false,
        },
        "template_ref = {template_ref:?} but parse = {parsed:?}"
    );
    let snap = match parsed {
        Ok(s) => s,
        Err(e) => {
            c.count("bytes: not a snapshot");
            ensure!(
                prepared.as_ref().is_err_and(|p| **p == *e.to_string()),
                "parse failed with {e} but prepare gave {prepared:?}"
            );
            return Ok(());
        }
    };
    c.count("bytes: snapshot");
    let json = snap.to_json();
    let back = Snapshot::parse(&json);
    ensure!(
        back.as_ref() == Ok(&snap),
        "to_json does not round-trip: {snap:?} -> {json:?} -> {back:?}"
    );
    // prepare: the template compiled (inline) or named, the context built from the data.
    let compiled = match &snap.template {
        TemplateSpec::Inline(src) => Some(compile(src.clone()).map_err(|e| e.to_string())),
        TemplateSpec::Named { .. } => None,
    };
    match (&compiled, &prepared) {
        (Some(Err(e)), Err(p)) => {
            ensure!(**p == **e, "prepare says {p:?}, compile says {e:?}");
            return Ok(());
        }
        (Some(Err(e)), Ok(_)) => return Err(format!("compile failed ({e}) but prepare did not")),
        (_, Err(p)) => return Err(format!("a usable snapshot was not prepared: {p}")),
        _ => {}
    }
    let Ok(prepared) = prepared else {
        unreachable!()
    };
    match (&snap.template, &prepared.template) {
        (TemplateSpec::Inline(_), PreparedTemplate::Inline(_)) => {}
        (
            TemplateSpec::Named { name, version },
            PreparedTemplate::Named {
                name: n2,
                version: v2,
            },
        ) => ensure!(
            name == n2 && version == v2,
            "prepared template {n2:?}@{v2:?}, snapshot says {name:?}@{version:?}"
        ),
        (t, p) => return Err(format!("prepared template {p:?} for {t:?}")),
    }
    let UValue::Map(ctx) = prepared.data.to_value() else {
        return Err(format!("data is not a map: {:?}", prepared.data));
    };
    let version = field.to_string();
    let page = page_value(PageInfo {
        key,
        version: &version,
        variant: variant_of(field).as_str(),
    });
    ensure!(
        prepared.page == page,
        "prepared page is {:?}",
        prepared.page
    );
    for (k, v) in &snap.data {
        ensure!(
            ctx.get(k) == Some(&model_value(v)),
            "data {k:?} is {:?}, the snapshot holds {v}",
            ctx.get(k)
        );
    }
    let extra = ctx.keys().filter(|k| !snap.data.contains_key(*k)).count();
    ensure!(
        extra == 0,
        "the document has keys the data does not: {ctx:?}"
    );
    Ok(())
}

/// The model of `json_to_value`.
fn model_value(v: &Value) -> UValue {
    match v {
        Value::Null => UValue::None,
        Value::Bool(b) => UValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                UValue::Integer(i)
            } else {
                UValue::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => UValue::String(s.clone()),
        Value::Array(a) => UValue::List(a.iter().map(model_value).collect()),
        Value::Object(o) => {
            UValue::Map(o.iter().map(|(k, v)| (k.clone(), model_value(v))).collect())
        }
    }
}

/// The same bytes as a dimension's value (dimension mode): any JSON within the limit.
fn check_data(c: &mut Case, bytes: &[u8]) -> Check {
    let prepared = prepare(
        &Fetch::Data("d:1".into()),
        Raw::Data(Ok(Some(bytes.to_vec()))),
    );
    let Prepared::Data(Some(got)) = prepared else {
        return Err(format!("prepare of data gave {prepared:?}"));
    };
    let want = if bytes.len() > MAX_DATA_BYTES {
        None
    } else {
        serde_json::from_slice::<Value>(bytes).ok()
    };
    match (got, want) {
        (Ok(d), Some(v)) => {
            c.count("data: JSON");
            ensure!(
                d.value == json_to_value(&v) && d.value == model_value(&v),
                "data value {:?} is not {v}",
                d.value
            );
            let mut h = Fnv::default();
            h.write(bytes);
            ensure!(d.hash == h.finish(), "data hash is not the bytes' hash");
        }
        (Err(_), None) => c.count("data: refused"),
        (got, want) => return Err(format!("prepare of data gave {got:?}, JSON says {want:?}")),
    }
    Ok(())
}
