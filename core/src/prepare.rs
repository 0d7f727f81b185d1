//! Turns what Redis returned into what the worker cache holds: parsed, compiled, ready to render.
//! Runs on the fetch threads, so the event loop never parses JSON or compiles a template.

use std::sync::Arc;

use crate::layout::DocRef;
use crate::render::{build_context, compile, CompiledTemplate, PageInfo};
use crate::snapshot::{Snapshot, TemplateSpec};
use crate::store::{Fetch, Raw};
use crate::version::{DocMeta, Field, Variant};

/// Where a prepared snapshot's template comes from.
#[derive(Debug)]
pub enum PreparedTemplate {
    Inline(Arc<CompiledTemplate>),
    Named { name: String, version: Option<u64> },
}

/// A snapshot ready to render: its template and its context as upon values.
#[derive(Debug)]
pub struct PreparedSnapshot {
    pub template: PreparedTemplate,
    pub context: upon::Value,
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
}

impl Prepared {
    /// Approximate bytes held.
    pub fn weight(&self) -> usize {
        const ENTRY: usize = 128;
        ENTRY
            + match self {
                Prepared::Meta(Some(m)) => m.versions.len() * 8,
                Prepared::Snapshot(Some(Ok(s))) => s.weight,
                Prepared::Template(Some(Ok(t))) => t.source_len() * 4,
                Prepared::Snapshot(Some(Err(e))) | Prepared::Template(Some(Err(e))) => e.len(),
                _ => 0,
            }
    }

    /// Whether Redis had the thing (a failure to parse it still counts as present).
    pub fn is_present(&self) -> bool {
        match self {
            Prepared::Meta(m) => m.is_some(),
            Prepared::Snapshot(s) => s.is_some(),
            Prepared::Template(t) => t.is_some(),
        }
    }

    /// The failure this value carries, if any (for the one log line when it is loaded).
    pub fn failure(&self) -> Option<&str> {
        match self {
            Prepared::Snapshot(Some(Err(e))) | Prepared::Template(Some(Err(e))) => Some(e),
            _ => None,
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
        (Fetch::Meta(_), Raw::Field(_)) => Prepared::Meta(None),
        (Fetch::Field(DocRef::Page(_), _), Raw::Meta(_)) => Prepared::Snapshot(None),
        (Fetch::Field(DocRef::Template(_), _), Raw::Meta(_)) => Prepared::Template(None),
    }
}

fn prepare_snapshot(
    key: &str,
    field: Field,
    bytes: &[u8],
) -> Result<Arc<PreparedSnapshot>, Failure> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Failure::from(format!("snapshot is not UTF-8: {e}")))?;
    let snap = Snapshot::parse(text).map_err(|e| Failure::from(e.to_string()))?;
    let template = match snap.template {
        TemplateSpec::Inline(src) => PreparedTemplate::Inline(Arc::new(
            compile(src).map_err(|e| Failure::from(e.to_string()))?,
        )),
        TemplateSpec::Named { name, version } => PreparedTemplate::Named { name, version },
    };
    let version = field.to_string();
    let context = build_context(
        &snap.data,
        PageInfo {
            key,
            version: &version,
            variant: variant_of(field).as_str(),
        },
        &[],
    );
    Ok(Arc::new(PreparedSnapshot {
        template,
        context,
        weight: bytes.len() * 3,
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
}
