//! The one upon engine every template compiles and renders with: HTML-escaping default
//! formatter, `raw`, the formatter that counts loop turns, and the include depth.

use std::sync::OnceLock;

use upon::Value;

use super::escape::escape_html_into;
use super::steps::charge_steps;
use crate::limits;

/// Deepest `{% include %}` nesting; deeper (or recursive) includes fail the render.
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// The shared engine: escaping default formatter, `raw` formatter.
pub fn engine() -> &'static upon::Engine<'static> {
    static ENGINE: OnceLock<upon::Engine<'static>> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut engine = upon::Engine::new();
        engine.set_default_formatter(&format_escaped);
        engine.add_formatter("raw", format_raw);
        engine.add_formatter(limits::TURN_FORMATTER, format_turn);
        engine.set_max_include_depth(MAX_INCLUDE_DEPTH);
        engine
    })
}

/// The formatter put before every `{% endfor %}` of upon's source: writes nothing, takes one
/// turn's steps (its value) from the budget.
fn format_turn(_: &mut upon::fmt::Formatter<'_>, value: &Value) -> upon::fmt::Result {
    let steps = match value {
        Value::Integer(n) => u64::try_from(*n).unwrap_or(1).max(1),
        _ => 1,
    };
    if charge_steps(steps) {
        Ok(())
    } else {
        Err("the render is over its budget of steps".into())
    }
}

fn format_escaped(f: &mut upon::fmt::Formatter<'_>, value: &Value) -> upon::fmt::Result {
    match value {
        Value::String(s) => escape_html_into(f, s),
        Value::None => Ok(()),
        other => upon::fmt::default(f, other),
    }
}

fn format_raw(f: &mut upon::fmt::Formatter<'_>, value: &Value) -> upon::fmt::Result {
    match value {
        Value::String(s) => {
            std::fmt::Write::write_str(f, s)?;
            Ok(())
        }
        Value::None => Ok(()),
        other => upon::fmt::default(f, other),
    }
}
