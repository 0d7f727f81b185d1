//! What a template sees: its context (page data, `page`, `request`) as upon values, held in
//! layers ([`Scope`]) so that a request's values are not copied into the page's map.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value as Json;
use upon::Value;

use crate::doc::Doc;

/// Converts JSON to upon's value type (once per snapshot, not per request).
pub fn json_to_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::List(a.iter().map(json_to_value).collect()),
        Json::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        ),
    }
}

/// The template context in layers, so that a request's values, a page's data and its
/// dimensions are looked up where they are held rather than copied into one map per request.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// Top-level names, searched first; the first match wins.
    pub named: &'a [(&'a str, &'a Value)],
    /// A map whose members are top-level names, searched next (page mode: the snapshot's data).
    pub doc: Option<&'a Doc>,
    /// A map whose members are the other top-level names.
    pub base: Option<&'a Value>,
}

/// An empty map: `request` in a location that declares no `dynpage_var`.
pub static EMPTY_MAP: Value = Value::Map(BTreeMap::new());

impl<'a> Scope<'a> {
    /// A context that is one value.
    pub fn of(ctx: &'a Value) -> Scope<'a> {
        Scope {
            named: &[],
            doc: None,
            base: Some(ctx),
        }
    }

    /// The context as one value, for upon: borrowed when there is nothing to add, else a copy
    /// (the document's members as upon values too).
    pub fn to_value(&self) -> Cow<'a, Value> {
        match (self.named, self.doc, self.base) {
            ([], None, Some(base)) => Cow::Borrowed(base),
            (named, doc, base) => {
                let mut map = match base {
                    Some(Value::Map(m)) => m.clone(),
                    _ => BTreeMap::new(),
                };
                if let Some(doc) = doc {
                    for (k, v) in doc.root().entries() {
                        map.insert(k.to_owned(), v.to_value());
                    }
                }
                for (name, v) in named.iter().rev() {
                    map.insert((*name).to_string(), (*v).clone());
                }
                Cow::Owned(Value::Map(map))
            }
        }
    }
}

/// What the template sees as `page`.
#[derive(Debug, Clone, Copy)]
pub struct PageInfo<'a> {
    pub key: &'a str,
    /// The version number, or the field name (`predeploy`, `abVersion`).
    pub version: &'a str,
    pub variant: &'a str,
}

/// `page` as the template sees it.
pub fn page_value(page: PageInfo<'_>) -> Value {
    let mut p = BTreeMap::new();
    p.insert("key".to_string(), Value::String(page.key.to_string()));
    p.insert(
        "version".to_string(),
        Value::String(page.version.to_string()),
    );
    p.insert(
        "variant".to_string(),
        Value::String(page.variant.to_string()),
    );
    Value::Map(p)
}

/// `request` as the template sees it: the `dynpage_var` values, by name.
pub fn request_value(request: impl IntoIterator<Item = (String, String)>) -> Value {
    Value::Map(
        request
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

/// The template context: `data`'s fields at top level, plus `page` and `request`.
pub fn build_context(
    data: &serde_json::Map<String, Json>,
    page: PageInfo<'_>,
    request: &[(String, String)],
) -> Value {
    let mut ctx: BTreeMap<String, Value> = data
        .iter()
        .map(|(k, v)| (k.clone(), json_to_value(v)))
        .collect();
    ctx.insert("page".to_string(), page_value(page));
    ctx.insert(
        "request".to_string(),
        request_value(request.iter().cloned()),
    );
    Value::Map(ctx)
}
