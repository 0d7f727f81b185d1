//! upon's errors as one line: the message, the template it names and its position (which the
//! caller may move to the author's source).

/// Where upon's alternate form says an error is: `<name>:<line>:<column>`.
fn error_position(e: &upon::Error) -> Option<String> {
    format!("{e:#}")
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> ").map(|p| p.trim().to_string()))
}

/// The included template an error happened in (upon names the main template `<anonymous>`).
pub(super) fn error_template(e: &upon::Error) -> Option<String> {
    let pos = error_position(e)?;
    let mut parts = pos.rsplitn(3, ':');
    let (_, _, name) = (parts.next()?, parts.next()?, parts.next()?);
    (name != "<anonymous>").then(|| name.to_string())
}

/// An upon error as one line, with its line and column when upon gives them.
pub fn one_line(e: &upon::Error) -> String {
    one_line_mapped(e, |_, _, _| None)
}

/// [`one_line`], with upon's position moved by `map` (given the template's name, `None` for
/// the main one, and the line and column; `None`: keep it).
pub(super) fn one_line_mapped(
    e: &upon::Error,
    map: impl Fn(Option<&str>, usize, usize) -> Option<(usize, usize)>,
) -> String {
    let pos = error_position(e);
    let msg = e.to_string().replace('\n', " ");
    // The position reads "<name>:<line>:<column>".
    let mut parts = pos.as_deref().unwrap_or("").rsplitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(col), Some(line), name) if !col.is_empty() && !line.is_empty() => {
            let name = name.filter(|n| *n != "<anonymous>");
            match (line.parse(), col.parse()) {
                (Ok(l), Ok(c)) => {
                    let (l, c) = map(name, l, c).unwrap_or((l, c));
                    format!("{msg} at line {l}, column {c}")
                }
                _ => format!("{msg} at line {line}, column {col}"),
            }
        }
        _ => msg,
    }
}
