//! Reading what a command is given: files, JSON data, `name[@version]` template specs.

use serde_json::Value;

use dynpage_core::layout::{check_version, version_error};
use dynpage_core::snapshot::TemplateSpec;

use crate::context::{fail, usage, Result};

pub(crate) fn read_file(path: &str) -> Result<String> {
    std::fs::read_to_string(path).or_else(|e| fail(format!("cannot read {path}: {e}")))
}

pub(crate) fn read_data(path: &str) -> Result<serde_json::Map<String, Value>> {
    let text = read_file(path)?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => fail(format!("{path}: data is not a JSON object")),
        Err(e) => fail(format!("{path}: data is not valid JSON: {e}")),
    }
}

/// `name` or `name@version`.
pub(crate) fn template_spec(spec: &str) -> Result<TemplateSpec> {
    let (name, version) = match spec.rsplit_once('@') {
        Some((n, v)) => match check_version(v) {
            Ok(v) => (n, Some(v)),
            Err(e) => {
                return usage(format!(
                    "bad template version in \"{spec}\": {}",
                    version_error(v, e)
                ))
            }
        },
        None => (spec, None),
    };
    if name.is_empty() {
        return usage("empty template name");
    }
    Ok(TemplateSpec::Named {
        name: name.to_string(),
        version,
    })
}
