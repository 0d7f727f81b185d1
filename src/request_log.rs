//! One debug line per transition of the request path, naming the page (formatted only when
//! debug is on), and the transition counted for `dynpage_status`.

use dynpage_core::resolve::Page;
use dynpage_core::serve::{describe_inputs, Transition};

use std::sync::atomic::Ordering::Relaxed;

use dynpage_core::metrics::{Counters, Tally};
use dynpage_core::version::Variant;

use crate::log::Log;

/// What to hand `serve::decide` as its trace: counts each transition and writes it to `log`
/// at debug. `keeps_outputs`: the location keeps outputs (a render is then an output miss).
pub fn trace_to<'a>(
    log: Log<'a>,
    key: &'a str,
    keeps_outputs: bool,
) -> impl FnMut(Transition, Option<&Page>) + 'a {
    let on = log.enabled(ngx::ffi::NGX_LOG_DEBUG);
    let counters = crate::metrics::counters().zip(crate::metrics::tally());
    move |t, page| {
        if let Some((c, tally)) = counters {
            count(c, tally, t, page, keeps_outputs);
        }
        if !on {
            return;
        }
        let inputs = page.map(|p| describe_inputs(p.page_field(), p.template_field.as_ref()));
        let key = key.escape_debug();
        if let (Transition::Kept | Transition::Rendered { .. } | Transition::NotModified, Some(p)) =
            (t, page)
        {
            debug!(log, "chose for \"{key}\" {}", rule_of(p.variant));
        }
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

/// Which rule of the contract chose a variant.
fn rule_of(variant: Variant) -> &'static str {
    match variant {
        Variant::Predeploy => {
            "predeploy: predeploy=true from an address dynpage_predeploy_allow allows"
        }
        Variant::Gray => "abVersion: the user's gray bucket is below the document's share",
        Variant::Production => "production: the pinned version, else the newest not in the future",
    }
}

fn count(c: &Counters, tally: &Tally, t: Transition, page: Option<&Page>, keeps_outputs: bool) {
    tally.transition(t);
    match t {
        Transition::Kept => tally.output_lookup(true),
        Transition::Rendered {
            passes,
            known_failed,
        } => {
            if keeps_outputs {
                tally.output_lookup(false);
            }
            let left_out = passes.saturating_sub(1) + known_failed;
            if left_out > 0 {
                c.modules_left_out.fetch_add(left_out as u64, Relaxed);
            }
            if let Some(p) = page {
                let missing = p.missing_dimensions();
                if missing > 0 {
                    c.dimensions_missing.fetch_add(missing as u64, Relaxed);
                }
                if !p.bad_dimensions.is_empty() {
                    c.dimensions_broken
                        .fetch_add(p.bad_dimensions.len() as u64, Relaxed);
                }
            }
        }
        _ => {}
    }
}
