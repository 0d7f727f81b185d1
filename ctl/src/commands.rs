//! The commands' help texts, and which command an argument list runs. Every write is checked
//! first (the template compiles, the data is a JSON object, the snapshot renders), so nothing
//! broken reaches Redis; then it is announced on `P events`.

use dynpage_core::layout::DocRef;

use crate::args::Args;
use crate::context::{usage, Ctx, Result};
use crate::{history, layout_check, preview, put, release};

pub fn help(positional: &[String]) -> &'static str {
    match positional.first().map(String::as_str) {
        Some("template") => "dynpagectl template put <name> <file> [--at <time>] [--predeploy | --gray]\n\
            Compiles the template, stores it as a new version of template document <name>\n\
            (activation time now, or --at; or as its predeploy / abVersion field) and prints it.",
        Some("page") => "dynpagectl page put <key> --data <file> (--template <name>[@<version>] | --template-file <file>)\n\
            [--at <time>] [--predeploy | --gray]\n\
            Builds the snapshot, renders it against the templates in Redis, and stores it as a new\n\
            version of page <key> (activation time now or --at: a future time schedules it).",
        Some("data") => "dynpagectl data put <redis key> <file>\n\
            Checks that <file> is JSON (any value: an object, a list, a string of HTML) within the\n\
            size limit, stores it at <redis key> (no prefix: the key is used as named by\n\
            dynpage_data) and announces the key on the events channel.",
        Some("history") => "dynpagectl history (<page key> | --template <name>)\n\
            Lists versions with activation times, marking live, pinned, scheduled, predeploy, gray.",
        Some("rollback") => "dynpagectl rollback (<page key> | --template <name>) [--to <version>]\n\
            Pins the version before the live one (or --to <version>) as production.\n\
            dynpagectl rollback clear (<page key> | --template <name>) removes the pin.",
        Some("promote") => "dynpagectl promote (<page key> | --template <name>) [--predeploy | --gray]\n\
            Makes the predeploy version (or, with --gray or when there is none, the abVersion) a new\n\
            production version live now, after checking it renders. The promoted field is removed;\n\
            promoting abVersion also ends the gray share; a rollback pin is cleared.",
        Some("gray") => "dynpagectl gray set (<page key> | --template <name>) <percent>\n\
            Serves the abVersion to <percent> (0-100) of users, by dynpage_gray_by bucket.\n\
            dynpagectl gray off (<page key> | --template <name>) ends the gray release.",
        Some("prune") => "dynpagectl prune (<page key> | --template <name>) --keep <n>\n\
            Deletes production versions older than the <n> newest live ones; never the live or\n\
            pinned version, never a scheduled one, and for a template never a version that a\n\
            page's snapshot names exactly (\"version\": 123 or \"version\": \"123\").",
        Some("republish") => "dynpagectl republish --template <name> [--predeploy]\n\
            For every page whose live snapshot names an exact version of <name>, stores a new page\n\
            version naming the template's production version (with --predeploy: the page's\n\
            predeploy field, naming the template's predeploy version), after checking it renders.\n\
            Pages that name the template without a version follow its releases already.",
        Some("render") => "dynpagectl render (--template-file <file> | --template <name>) --data <file>\n\
            Renders to stdout without writing anything; errors give line and column.",
        Some("check") => "dynpagectl check [--json]\n\
            Reads every document, rollback pin and gray share under the prefix (SCAN, never KEYS)\n\
            and reports what would fail at request time, one line per problem: `<key> field\n\
            <field>: <what>` (or `<key>: <what>`). Documents whose every version is in the future\n\
            or that have no production version; fields, pins and shares that are not canonical\n\
            numbers (the module ignores them); values over the module's limits, snapshots that are\n\
            not valid JSON or not usable, templates (stored or inline) that do not compile or\n\
            include a missing template; pages naming a missing template or template version; pins\n\
            and shares naming a missing document or version; gray shares without an abVersion.\n\
            --json writes one JSON array of {\"key\", \"field\" (or null), \"problem\" (a stable\n\
            code such as snapshot_not_json), \"message\"}. A summary goes to stderr.\n\
            Exit 0 when clean, 1 when a problem is found (or the check cannot finish).",
        _ => "unknown command; see dynpagectl --help",
    }
}

pub fn dispatch(args: &Args) -> Result<()> {
    let ctx = Ctx::new(args);
    let pos: Vec<&str> = args.positional.iter().map(String::as_str).collect();
    match pos.as_slice() {
        ["template", "put", name, file] => put::template_put(&ctx, args, name, file),
        ["page", "put", key] => put::page_put(&ctx, args, key),
        ["data", "put", key, file] => put::data_put(&ctx, args, key, file),
        ["history", rest @ ..] => history::history(&ctx, args, doc_target(args, rest)?),
        ["rollback", "clear", rest @ ..] => {
            history::rollback_clear(&ctx, args, doc_target(args, rest)?)
        }
        ["rollback", rest @ ..] => history::rollback(&ctx, args, doc_target(args, rest)?),
        ["render"] => preview::render(&ctx, args),
        ["promote", rest @ ..] => release::promote(&ctx, args, doc_target(args, rest)?),
        ["gray", "set", rest @ ..] => match rest.split_last() {
            Some((pct, target)) => release::gray_set(&ctx, args, doc_target(args, target)?, pct),
            None => usage("gray set needs a percent"),
        },
        ["gray", "off", rest @ ..] => release::gray_off(&ctx, args, doc_target(args, rest)?),
        ["prune", rest @ ..] => release::prune(&ctx, args, doc_target(args, rest)?),
        ["republish"] => release::republish(&ctx, args),
        ["check"] => layout_check::check(&ctx, args),
        [cmd, ..] if ["template", "page", "data", "gray", "check"].contains(cmd) => usage(format!(
            "wrong arguments for \"{cmd}\": {}",
            help(&args.positional)
        )),
        [cmd, ..] => usage(format!("unknown command \"{cmd}\"")),
        [] => usage("no command"),
    }
}

/// `<page key>` or `--template <name>`.
pub(crate) fn doc_target(args: &Args, rest: &[&str]) -> Result<DocRef> {
    match (rest, args.opt("template")) {
        ([key], None) => Ok(DocRef::Page(key.to_string())),
        ([], Some(name)) => Ok(DocRef::Template(name.to_string())),
        _ => usage("give a page key or --template <name>"),
    }
}
