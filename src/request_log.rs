//! One debug line per transition of the request path, naming the page (formatted only when
//! debug is on).

use dynpage_core::resolve::Page;
use dynpage_core::serve::{describe_inputs, Transition};

use crate::log::Log;

/// What to hand `serve::decide` as its trace: writes each transition to `log` at debug.
pub fn trace_to<'a>(log: Log<'a>, key: &'a str) -> impl FnMut(Transition, Option<&Page>) + 'a {
    let on = log.enabled(ngx::ffi::NGX_LOG_DEBUG);
    move |t, page| {
        if !on {
            return;
        }
        let inputs = page.map(|p| describe_inputs(p.page_field(), p.template_field.as_ref()));
        let key = key.escape_debug();
        match (t, inputs) {
            (Transition::Rendered { .. }, Some(inputs)) => {
                let how = t.to_string();
                let how = how.strip_prefix("rendered ").unwrap_or(&how);
                debug!(log, "rendered \"{key}\" {inputs} {how}");
            }
            (Transition::Compressed(_), Some(inputs)) => {
                let how = t.to_string();
                let how = how.strip_prefix("compressed ").unwrap_or(&how);
                debug!(log, "compressed \"{key}\" {inputs}: {how}");
            }
            (_, Some(inputs)) => debug!(log, "decided for \"{key}\" ({inputs}): {t}"),
            (_, None) => debug!(log, "decided for \"{key}\": {t}"),
        }
    }
}
