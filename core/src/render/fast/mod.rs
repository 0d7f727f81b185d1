//! A fast renderer for a strict subset of upon 0.11's template syntax.
//!
//! upon stays the authority: `render::compile` always compiles with upon first and only then asks
//! [`compile`](fn@compile) for a [`Program`]; anything outside the subset gets `None` and is
//! rendered by upon. The subset is:
//!
//! - raw text, comments, and the trim markers `{{-` `-}}` `{%-` `-%}` `{#-` `-#}`;
//! - `{{ path }}` and `{{ path | raw }}`;
//! - `{% if [not] path %}`, `{% else if [not] path %}`, `{% else %}`, `{% endif %}`;
//! - `{% for x in path %}`, `{% for k, v in path %}`, `{% endfor %}`;
//! - `{% with path as name %}`, `{% endwith %}`;
//! - `{% include "name" %}`, `{% include "name" with path %}`;
//!
//! where a path is an ASCII identifier followed by `.ident` / `.digits` members, with no
//! whitespace inside and no optional (`?.`) access.
//!
//! For every template both accept, a successful fast render writes exactly what upon writes.
//! The fast renderer does not reproduce upon's errors: on any error it returns
//! [`ToUpon`](stop::ToUpon) and the caller renders again with upon, so error messages stay
//! upon's own.
//!
//! One job a file: [`lexer`] (a tag's tokens), [`parser`] (its expression or block),
//! [`compile`](mod@compile) (the node tree), [`program`] (what is compiled), [`value`] (what a
//! render looks at), [`exec`] (the render), [`stop`] (why it stops short).

mod compile;
mod exec;
mod lexer;
mod parser;
mod program;
mod stop;
#[cfg(test)]
mod tests;
mod value;

pub(crate) use compile::compile;
pub(crate) use exec::render;
pub(crate) use program::Program;
pub(crate) use stop::Stop;
