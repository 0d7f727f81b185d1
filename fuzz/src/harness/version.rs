//! Version fields and the names around them: `parse_canonical` / `check_version` /
//! `check_gray_share` against a model of canonical decimals, `Field` parse and name round trips,
//! `DocMeta::from_fields` and its choices (production, previous, next activation, choose)
//! against a model, bounded warnings, and the key names (`Layout`, `DocRef`, cache keys) read
//! back as what they were made from.

use dynpage_core::layout::{
    check_gray_share, check_version, parse_canonical, parse_version, quote, DocRef, Layout,
    NumberError, MAX_GRAY_SHARE, MAX_VERSION,
};
use dynpage_core::store::{CacheKey, CacheKeyKind, Fetch};
use dynpage_core::version::{gray_bucket, Ask, Choice, DocMeta, Field, Variant};

use crate::driver::{Case, Check};
use crate::ensure;
use crate::gen;
use crate::harness::snapshot::{canonical, version_string};
use crate::rng::Rng;

pub fn run(c: &mut Case) -> Check {
    match c.rng.weighted(&[4, 3, 2]) {
        0 => numbers(c),
        1 => metas(c),
        _ => names(c),
    }
}

fn number_text(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => gen::string(rng, 4),
        1 => rng.below(150).to_string(),
        _ => version_string(rng),
    }
}

/// What a refusal implies about the text.
fn check_error(s: &str, e: NumberError) -> Check {
    let b = s.as_bytes();
    let all_digits = !b.is_empty() && b.iter().all(u8::is_ascii_digit);
    let ok = match e {
        NumberError::LeadingZero => all_digits && b.len() > 1 && b[0] == b'0',
        NumberError::OutOfRange => all_digits && (b.len() == 1 || b[0] != b'0'),
        NumberError::Sign => !all_digits && (s.contains('+') || s.contains('-')),
        NumberError::Spaces => !all_digits && s.chars().any(char::is_whitespace),
        NumberError::NotWhole => !all_digits,
        NumberError::NotNumber => !all_digits,
    };
    ensure!(ok, "{s:?} refused as {e:?}");
    ensure!(
        e.looks_numeric() == (e != NumberError::NotNumber),
        "looks_numeric of {e:?}"
    );
    ensure!(!e.reason(MAX_VERSION).is_empty(), "no reason for {e:?}");
    Ok(())
}

fn numbers(c: &mut Case) -> Check {
    let s = number_text(&mut c.rng);
    c.show("text", &s);
    let max = match c.rng.below(4) {
        0 => u64::from(MAX_GRAY_SHARE),
        1 => MAX_VERSION,
        2 => u64::MAX,
        _ => c.rng.next_u64() % 1_000_000,
    };
    let got = parse_canonical(&s, max);
    let want = canonical(&s, max);
    match (got, want) {
        (Ok(n), Some(m)) if n == m => {
            c.count("canonical");
            ensure!(n.to_string() == s, "{s:?} read as {n}");
        }
        (Err(e), None) => {
            c.count("refused");
            check_error(&s, e)?;
        }
        (got, want) => {
            return Err(format!(
                "parse_canonical({s:?}, {max}) = {got:?}, the model says {want:?}"
            ))
        }
    }
    // Every number up to max reads back from its decimal form.
    let n = c.rng.next_u64() % max.saturating_add(1).max(1);
    ensure!(
        parse_canonical(&n.to_string(), max) == Ok(n),
        "{n} does not read back under {max}"
    );
    ensure!(
        check_version(&s) == parse_canonical(&s, MAX_VERSION),
        "check_version({s:?}) is not parse_canonical under MAX_VERSION"
    );
    ensure!(
        parse_version(&s) == check_version(&s).ok(),
        "parse_version({s:?})"
    );
    let share = check_gray_share(&s);
    ensure!(
        share.map(u64::from) == parse_canonical(&s, u64::from(MAX_GRAY_SHARE)),
        "check_gray_share({s:?}) = {share:?}"
    );
    // Fields: the names of predeploy / abVersion, or a canonical version.
    let field = Field::parse(&s);
    let want = match s.as_str() {
        "predeploy" => Some(Field::Predeploy),
        "abVersion" => Some(Field::Ab),
        _ => canonical(&s, MAX_VERSION).map(Field::Version),
    };
    ensure!(
        field == want,
        "Field::parse({s:?}) = {field:?}, expected {want:?}"
    );
    if let Some(f) = field {
        ensure!(
            f.name() == s && f.to_string() == s,
            "{f:?} is named {:?}",
            f.name()
        );
        ensure!(
            f.is_immutable() == matches!(f, Field::Version(_)),
            "is_immutable of {f:?}"
        );
    }
    let q = quote(&s);
    ensure!(
        q.starts_with('"') && q.ends_with('"') && q.chars().count() <= 64 * 10 + 5,
        "quote({s:?}) = {q:?}"
    );
    Ok(())
}

/// The model of a document's versions, pin and gray share.
struct Model {
    versions: Vec<u64>,
    has_predeploy: bool,
    has_ab: bool,
    pin: Option<u64>,
    gray: u8,
}

fn model(fields: &[String], pin: Option<&str>, gray: Option<&str>) -> Model {
    let mut versions: Vec<u64> = fields
        .iter()
        .filter_map(|f| canonical(f, MAX_VERSION))
        .collect();
    versions.sort_unstable();
    versions.dedup();
    let pin = pin
        .and_then(|p| canonical(p, MAX_VERSION))
        .filter(|v| versions.contains(v));
    let gray = gray
        .and_then(|g| canonical(g, u64::from(MAX_GRAY_SHARE)))
        .map_or(0, |g| g as u8);
    Model {
        versions,
        has_predeploy: fields.iter().any(|f| f == "predeploy"),
        has_ab: fields.iter().any(|f| f == "abVersion"),
        pin,
        gray,
    }
}

fn metas(c: &mut Case) -> Check {
    let rng = &mut c.rng;
    let base = rng.next_u64() % (MAX_VERSION + 1);
    let near = |rng: &mut Rng| -> String {
        match rng.below(6) {
            0 => "predeploy".into(),
            1 => "abVersion".into(),
            2 => version_string(rng),
            _ => base
                .saturating_add(rng.below(5) as u64)
                .saturating_sub(2)
                .to_string(),
        }
    };
    let n = rng.size(12);
    let mut fields: Vec<String> = (0..n).map(|_| near(rng)).collect();
    if rng.chance(5) {
        // Many bad fields, some long: the warning stays one bounded line.
        for _ in 0..rng.range(5, 200) {
            fields.push("x".repeat(rng.size(3000)));
        }
    }
    let pin = rng.chance(30).then(|| near(rng));
    let gray = rng.chance(30).then(|| number_text(rng));
    let now = match rng.below(3) {
        0 => base,
        1 => rng.next_u64() % (MAX_VERSION + 1),
        _ => rng.next_u64(),
    };
    let user = rng.chance(60).then(|| gen::string(rng, 3));
    let predeploy = rng.chance(30);
    let name = gen::string(rng, 3);
    c.show("fields", &fields);
    c.show("pin", &pin);
    c.show("gray", &gray);
    c.show("now", &now);

    let meta = DocMeta::from_fields(
        fields.iter().map(String::as_str),
        pin.as_deref(),
        gray.as_deref(),
    );
    let m = model(&fields, pin.as_deref(), gray.as_deref());
    ensure!(
        meta.versions == m.versions,
        "versions {:?}, expected {:?}",
        meta.versions,
        m.versions
    );
    ensure!(
        meta.has_predeploy == m.has_predeploy && meta.has_ab == m.has_ab,
        "predeploy/ab: {meta:?}"
    );
    ensure!(
        meta.pin == m.pin,
        "pin {:?}, expected {:?}",
        meta.pin,
        m.pin
    );
    ensure!(
        meta.gray == m.gray,
        "gray {}, expected {}",
        meta.gray,
        m.gray
    );
    let warned: usize = meta.warnings.iter().map(String::len).sum();
    ensure!(
        meta.warnings.len() <= 5 && warned <= 4096,
        "{} warnings of {warned} bytes",
        meta.warnings.len()
    );
    let ignored = fields
        .iter()
        .any(|f| f != "predeploy" && f != "abVersion" && canonical(f, MAX_VERSION).is_none());
    if ignored {
        c.count("meta with ignored fields");
        ensure!(
            !meta.warnings.is_empty(),
            "fields were ignored without a warning"
        );
    }

    let production = m
        .pin
        .or_else(|| m.versions.iter().rev().find(|&&v| v <= now).copied());
    ensure!(meta.production(now) == production, "production({now})");
    let probe = c.rng.pick(&[now, base, 0, MAX_VERSION, u64::MAX]);
    let previous = m.versions.iter().rev().find(|&&v| v < probe).copied();
    ensure!(meta.previous(probe) == previous, "previous({probe})");

    let ask = Ask {
        predeploy,
        gray_user: user.as_deref().map(str::as_bytes),
        before_page: None,
        before_template: None,
    };
    let want = if predeploy && m.has_predeploy {
        Some(Choice {
            field: Field::Predeploy,
            variant: Variant::Predeploy,
        })
    } else if m.gray > 0
        && m.has_ab
        && user
            .as_deref()
            .is_some_and(|u| gray_bucket(u.as_bytes(), name.as_bytes()) < m.gray)
    {
        Some(Choice {
            field: Field::Ab,
            variant: Variant::Gray,
        })
    } else {
        production.map(|v| Choice {
            field: Field::Version(v),
            variant: Variant::Production,
        })
    };
    let got = meta.choose(&name, now, &ask);
    ensure!(got == want, "choose = {got:?}, expected {want:?}");
    if let Some(u) = &user {
        let b = gray_bucket(u.as_bytes(), name.as_bytes());
        ensure!(b < 100, "gray bucket {b}");
        ensure!(
            b == gray_bucket(u.as_bytes(), name.as_bytes()),
            "gray bucket not stable"
        );
    }
    c.count("metas");
    Ok(())
}

fn names(c: &mut Case) -> Check {
    let rng = &mut c.rng;
    let name = if rng.chance(10) {
        "\u{1}".repeat(rng.range(1, 3)) + &gen::string(rng, 3)
    } else {
        gen::string(rng, 5)
    };
    let doc = if rng.chance(50) {
        DocRef::Page(name.clone())
    } else {
        DocRef::Template(name.clone())
    };
    let prefix = rng.pick(&["dynpage:", "", "p", "a:b:", "page:", "tpl:"]);
    let layout = Layout::new(prefix);
    if c.verbose {
        eprintln!("  doc: {doc:?}\n  prefix: {prefix:?}");
    }
    let key = layout.doc_key(&doc);
    ensure!(
        layout.parse_doc_key(&key) == Some(doc.clone()),
        "{key:?} reads back as {:?}",
        layout.parse_doc_key(&key)
    );
    ensure!(
        DocRef::parse_field_name(&doc.field_name()) == Some(doc.clone()),
        "field name {:?}",
        doc.field_name()
    );
    ensure!(doc.name() == name, "name of {doc:?}");
    for k in [
        layout.rollback_key(),
        layout.gray_key(),
        layout.events_channel(),
    ] {
        ensure!(k.starts_with(prefix), "{k:?} outside the prefix {prefix:?}");
    }
    // Cache keys read back as what they were made from.
    let field = match rng.below(3) {
        0 => Field::Predeploy,
        1 => Field::Ab,
        _ => Field::Version(rng.next_u64() % (MAX_VERSION + 1)),
    };
    for fetch in [
        Fetch::Meta(doc.clone()),
        Fetch::Field(doc.clone(), field),
        Fetch::Data(name.clone()),
    ] {
        let key = fetch.cache_key();
        let parsed = CacheKey::parse(&key);
        let (kind, want_doc) = match &fetch {
            Fetch::Meta(d) => (CacheKeyKind::Meta, Some(d.clone())),
            Fetch::Field(d, f) => (CacheKeyKind::Field(*f), Some(d.clone())),
            Fetch::Data(_) => (CacheKeyKind::Data, None),
        };
        let want = CacheKey {
            kind,
            doc: want_doc,
            name: &name,
        };
        ensure!(
            parsed.as_ref() == Some(&want),
            "cache key {key:?} of {fetch:?} reads back as {parsed:?}"
        );
        let mutable = !matches!(kind, CacheKeyKind::Field(f) if f.is_immutable());
        ensure!(
            parsed.is_some_and(|p| p.is_mutable() == mutable),
            "is_mutable of {key:?}"
        );
    }
    // Arbitrary text never panics as a cache key or a doc key.
    let junk = gen::string(rng, 6);
    let _ = CacheKey::parse(&junk);
    let _ = layout.parse_doc_key(&junk);
    c.count("names");
    Ok(())
}
