//! Turns what Redis returned into what the worker cache holds: parsed, compiled, ready to render.
//! Runs on the fetch threads, so the event loop never parses JSON or compiles a template.

use std::sync::Arc;

use crate::doc::Doc;
use crate::json_value::{parse_snapshot, parse_value};
use crate::layout::DocRef;
use crate::render::{compile, page_value, CompiledTemplate, PageInfo};
use crate::snapshot::TemplateSpec;
use crate::store::{Fetch, Raw};
use crate::version::{DocMeta, Field, Variant};

/// Where a prepared snapshot's template comes from.
#[derive(Clone, Debug)]
pub enum PreparedTemplate {
    Inline(Arc<CompiledTemplate>),
    Named { name: String, version: Option<u64> },
}

impl PreparedTemplate {
    /// Heap bytes held: the compiled template, or the name.
    fn weight(&self) -> usize {
        match self {
            PreparedTemplate::Inline(t) => t.weight(),
            PreparedTemplate::Named { name, .. } => crate::weight::bytes(name.capacity()),
        }
    }
}

/// A snapshot ready to render: its template, its data as a document and what the template
/// sees as `page`.
#[derive(Debug)]
pub struct PreparedSnapshot {
    pub template: PreparedTemplate,
    /// The snapshot's `data` (an empty map if it has none).
    pub data: Doc,
    /// `page`: the page key, version and variant.
    pub page: upon::Value,
    /// Approximate bytes held, for the cache bound.
    pub weight: usize,
    /// A hash of the stored bytes: what a page's identity takes from a field that can change
    /// without a new version (`predeploy`, `abVersion`); 0 for a version's (never read).
    pub hash: u64,
    /// Kept without its data (`data` is empty, `page` none): its output is kept, and only that
    /// is served from it. A render needs the snapshot fetched again (see
    /// [`PreparedSnapshot::hollowed`]).
    pub hollow: bool,
}

impl PreparedSnapshot {
    /// This snapshot without its data: what the worker cache keeps of a snapshot once its
    /// output is kept, so that the cache holds many more pages than it could parsed (the
    /// benchmark's product page: 21 KB parsed, a few hundred bytes hollow). Resolving the page
    /// (its versions, template, identity) needs no data; rendering it does.
    pub fn hollowed(&self) -> PreparedSnapshot {
        let weight = crate::weight::arc_of::<PreparedSnapshot>() + self.template.weight();
        PreparedSnapshot {
            template: self.template.clone(),
            data: Doc::empty_map(),
            page: upon::Value::None,
            weight,
            hash: self.hash,
            hollow: true,
        }
    }
}

/// One dimension's value (dimension mode), ready to be put in a context.
#[derive(Debug)]
pub struct PreparedData {
    pub value: upon::Value,
    /// A hash of the stored bytes: the value's identity in the ETag.
    pub hash: u64,
    /// Approximate bytes held, for the cache bound.
    pub weight: usize,
}

/// A failure kept in the cache so that it is not re-fetched and re-logged on every request.
pub type Failure = Arc<str>;

/// The cache value of one fetch.
#[derive(Debug, Clone)]
pub enum Prepared {
    Meta(Option<Arc<DocMeta>>),
    Snapshot(Option<Result<Arc<PreparedSnapshot>, Failure>>),
    Template(Option<Result<Arc<CompiledTemplate>, Failure>>),
    Data(Option<Result<Arc<PreparedData>, Failure>>),
}

impl Prepared {
    /// Approximate bytes held: the value's own block (its `Arc` and struct) and what hangs
    /// from it. What the entry costs the cache itself (its node, key and index buckets) is
    /// the worker cache's to add (`Lru::counting_own_cost`).
    pub fn weight(&self) -> usize {
        const ENTRY: usize = 128;
        ENTRY
            + match self {
                Prepared::Meta(Some(m)) => m.versions.len() * 8,
                Prepared::Snapshot(Some(Ok(s))) => s.weight,
                Prepared::Template(Some(Ok(t))) => t.weight(),
                Prepared::Data(Some(Ok(d))) => d.weight,
                Prepared::Snapshot(Some(Err(e)))
                | Prepared::Template(Some(Err(e)))
                | Prepared::Data(Some(Err(e))) => e.len(),
                _ => 0,
            }
    }

    /// Whether dropping it frees a few blocks only (the event loop may): a meta, a snapshot
    /// whose data is a document (two blocks) and whose template is a name, a failure. A
    /// compiled template or a dimension's values are trees of many blocks, better freed off
    /// the event loop.
    pub fn cheap_to_drop(&self) -> bool {
        match self {
            Prepared::Meta(_)
            | Prepared::Snapshot(None | Some(Err(_)))
            | Prepared::Template(None | Some(Err(_)))
            | Prepared::Data(None | Some(Err(_))) => true,
            Prepared::Snapshot(Some(Ok(s))) => {
                matches!(s.template, PreparedTemplate::Named { .. })
            }
            Prepared::Template(Some(Ok(_))) | Prepared::Data(Some(Ok(_))) => false,
        }
    }

    /// Whether Redis had the thing (a failure to parse it still counts as present).
    pub fn is_present(&self) -> bool {
        match self {
            Prepared::Meta(m) => m.is_some(),
            Prepared::Snapshot(s) => s.is_some(),
            Prepared::Template(t) => t.is_some(),
            Prepared::Data(d) => d.is_some(),
        }
    }
}

pub fn variant_of(field: Field) -> Variant {
    match field {
        Field::Version(_) => Variant::Production,
        Field::Predeploy => Variant::Predeploy,
        Field::Ab => Variant::Gray,
    }
}

/// Prepares what `fetch` returned.
pub fn prepare(fetch: &Fetch, raw: Raw) -> Prepared {
    match (fetch, raw) {
        (Fetch::Meta(_), Raw::Meta(m)) => Prepared::Meta(m.map(|m| {
            Arc::new(DocMeta::from_fields(
                m.fields.iter().map(String::as_str),
                m.pin.as_deref(),
                m.gray.as_deref(),
            ))
        })),
        (Fetch::Field(DocRef::Page(key), field), Raw::Field(v)) => {
            Prepared::Snapshot(v.map(|bytes| prepare_snapshot(key, *field, &bytes)))
        }
        (Fetch::Field(DocRef::Template(_), _), Raw::Field(v)) => {
            Prepared::Template(v.map(prepare_template))
        }
        (Fetch::Data(_), Raw::Data(d)) => Prepared::Data(match d {
            Ok(None) => None,
            Ok(Some(bytes)) => Some(prepare_data(&bytes)),
            Err(e) => Some(Err(Failure::from(e))),
        }),
        // A reply of the wrong kind: as if nothing were there.
        (Fetch::Meta(_), _) => Prepared::Meta(None),
        (Fetch::Field(DocRef::Page(_), _), _) => Prepared::Snapshot(None),
        (Fetch::Field(DocRef::Template(_), _), _) => Prepared::Template(None),
        (Fetch::Data(_), _) => Prepared::Data(None),
    }
}

/// A dimension's value: any JSON value (an object, a list, a string of HTML...).
fn prepare_data(bytes: &[u8]) -> Result<Arc<PreparedData>, Failure> {
    if bytes.len() > crate::store::MAX_DATA_BYTES {
        return Err(Failure::from(format!(
            "the value is {} bytes, over the {} byte limit",
            bytes.len(),
            crate::store::MAX_DATA_BYTES
        )));
    }
    let value = parse_value(bytes).map_err(|e| Failure::from(format!("not JSON: {e}")))?;
    let mut hash = crate::version::Fnv::default();
    hash.write(bytes);
    let weight = crate::weight::arc_of::<PreparedData>() + crate::weight::heap_bytes(&value);
    Ok(Arc::new(PreparedData {
        value,
        hash: hash.finish(),
        weight,
    }))
}

fn prepare_snapshot(
    key: &str,
    field: Field,
    bytes: &[u8],
) -> Result<Arc<PreparedSnapshot>, Failure> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Failure::from(format!("snapshot is not UTF-8: {e}")))?;
    let (template, data) = parse_snapshot(text).map_err(|e| Failure::from(e.to_string()))?;
    let template = match template {
        TemplateSpec::Inline(src) => PreparedTemplate::Inline(Arc::new(
            compile(src).map_err(|e| Failure::from(e.to_string()))?,
        )),
        TemplateSpec::Named { name, version } => PreparedTemplate::Named { name, version },
    };
    let version = field.to_string();
    let page = page_value(PageInfo {
        key,
        version: &version,
        variant: variant_of(field).as_str(),
    });
    let weight = crate::weight::arc_of::<PreparedSnapshot>()
        + data.heap_bytes()
        + crate::weight::heap_bytes(&page)
        + template.weight();
    Ok(Arc::new(PreparedSnapshot {
        template,
        data,
        page,
        weight,
        // Only a field that can change without a new version puts its content in the page's
        // identity (see `resolve::identity`); hashing the bytes one by one costs about what
        // reading them does, so a versioned snapshot is not hashed.
        hash: if field.is_immutable() {
            0
        } else {
            crate::version::Fnv::default().write(bytes).finish()
        },
        hollow: false,
    }))
}

fn prepare_template(bytes: Vec<u8>) -> Result<Arc<CompiledTemplate>, Failure> {
    let src = String::from_utf8(bytes)
        .map_err(|e| Failure::from(format!("template is not UTF-8: {e}")))?;
    compile(src)
        .map(Arc::new)
        .map_err(|e| Failure::from(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RawMeta;

    impl Prepared {
        /// The failure this value carries, if any.
        fn failure(&self) -> Option<&str> {
            match self {
                Prepared::Snapshot(Some(Err(e)))
                | Prepared::Template(Some(Err(e)))
                | Prepared::Data(Some(Err(e))) => Some(e),
                _ => None,
            }
        }
    }

    #[test]
    fn documents_and_metas_are_cheap_to_drop_compiled_templates_and_values_are_not() {
        let field = |json: &str| {
            let f = Fetch::Field(DocRef::Page("/a".into()), Field::Version(1));
            prepare(&f, Raw::Field(Some(json.as_bytes().to_vec())))
        };
        let named = field(r#"{"template":{"name":"item"},"data":{"x":[1,2,3]}}"#);
        assert!(matches!(named, Prepared::Snapshot(Some(Ok(_)))));
        assert!(named.cheap_to_drop());
        let inline = field(r#"{"template":"{{ x }}","data":{"x":1}}"#);
        assert!(matches!(inline, Prepared::Snapshot(Some(Ok(_)))));
        assert!(!inline.cheap_to_drop());
        let data = prepare(
            &Fetch::Data("shop:1".into()),
            Raw::Data(Ok(Some(br#"{"name":"corner"}"#.to_vec()))),
        );
        assert!(matches!(data, Prepared::Data(Some(Ok(_)))));
        assert!(!data.cheap_to_drop());
        assert!(prepare(&Fetch::Meta(DocRef::Page("/a".into())), Raw::Meta(None)).cheap_to_drop());
    }

    #[test]
    fn meta_is_parsed() {
        let f = Fetch::Meta(DocRef::Page("/a".into()));
        let raw = Raw::Meta(Some(RawMeta {
            fields: vec!["10".into(), "predeploy".into()],
            pin: None,
            gray: Some("5".into()),
        }));
        let Prepared::Meta(Some(m)) = prepare(&f, raw) else {
            panic!("meta expected")
        };
        assert_eq!(m.versions, vec![10]);
        assert_eq!(m.gray, 5);
        assert!(matches!(prepare(&f, Raw::Meta(None)), Prepared::Meta(None)));
    }

    #[test]
    fn snapshots_compile_inline_templates_once() {
        let f = Fetch::Field(DocRef::Page("/a".into()), Field::Version(3));
        let raw = Raw::Field(Some(
            br#"{"template":"<p>{{ t }}</p>","data":{"t":"x"}}"#.to_vec(),
        ));
        let Prepared::Snapshot(Some(Ok(s))) = prepare(&f, raw) else {
            panic!("snapshot expected")
        };
        assert!(matches!(s.template, PreparedTemplate::Inline(_)));
        let raw = Raw::Field(Some(b"{not json".to_vec()));
        let p = prepare(&f, raw);
        assert!(p.failure().unwrap().contains("not valid JSON"));
        let raw = Raw::Field(Some(br#"{"template":"{{ x "}"#.to_vec()));
        assert!(prepare(&f, raw)
            .failure()
            .unwrap()
            .contains("does not compile"));
        assert!(matches!(
            prepare(&f, Raw::Field(None)),
            Prepared::Snapshot(None)
        ));
    }

    #[test]
    fn templates_compile() {
        let f = Fetch::Field(DocRef::Template("t".into()), Field::Version(3));
        assert!(matches!(
            prepare(&f, Raw::Field(Some(b"ok {{ x }}".to_vec()))),
            Prepared::Template(Some(Ok(_)))
        ));
        assert!(prepare(&f, Raw::Field(Some(vec![0xff, 0xfe])))
            .failure()
            .unwrap()
            .contains("UTF-8"));
    }

    #[test]
    fn dimensions_are_any_json_and_bad_ones_are_failures() {
        let f = Fetch::Data("shop:1".into());
        let data = |bytes: &[u8]| prepare(&f, Raw::Data(Ok(Some(bytes.to_vec()))));
        let Prepared::Data(Some(Ok(shop))) = data(br#"{"name":"S","rating":4.5}"#) else {
            panic!("an object is a dimension");
        };
        assert!(matches!(&shop.value, upon::Value::Map(m) if m.len() == 2));
        assert!(matches!(
            data(b"\"<p>html</p>\""),
            Prepared::Data(Some(Ok(_)))
        ));
        assert!(matches!(data(b"[1,2]"), Prepared::Data(Some(Ok(_)))));
        assert!(data(b"{not json")
            .failure()
            .unwrap()
            .starts_with("not JSON"));
        assert!(data(&vec![b' '; crate::store::MAX_DATA_BYTES + 1])
            .failure()
            .unwrap()
            .contains("byte limit"));
        let same = |a: &[u8], b: &[u8]| match (data(a), data(b)) {
            (Prepared::Data(Some(Ok(x))), Prepared::Data(Some(Ok(y)))) => x.hash == y.hash,
            _ => panic!("both are dimensions"),
        };
        assert!(same(b"{}", b"{}") && !same(b"{}", b"{ }"));
        assert!(matches!(
            prepare(&f, Raw::Data(Ok(None))),
            Prepared::Data(None)
        ));
        assert_eq!(
            prepare(&f, Raw::Data(Err("the key does not hold a string".into()))).failure(),
            Some("the key does not hold a string")
        );
    }
}
