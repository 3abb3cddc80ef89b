//! The layers, kept: every import points down. It reads `src/` (each `crate::`, `super::` and,
//! in `main.rs`, `chat_notifier::` path, inline paths too) and fails, naming the file and line,
//! on an import that points up, or sideways between the modules of one layer.
//!
//! From the bottom: the vocabulary (`domain`) and the progress bars, which import nothing of the
//! crate; the config; the connection to PostgreSQL (`pgconn`, which the sources and the state
//! share); the sources, the state, mail and the destinations beside it, side by side, none importing another; the
//! pipeline and the report, side by side; the command line; the commands; the crate's root; `main.rs`.

use std::path::{Path, PathBuf};

const LAYERS: &[&[&str]] = &[
    &["domain", "progress"],
    &["config"],
    &["pgconn"],
    &["source", "state", "mail", "destination"],
    &["pipeline", "report"],
    &["cli"],
    &["commands"],
    &["lib"],
    &["main"],
];

fn layer(module: &str) -> usize {
    LAYERS.iter().position(|l| l.contains(&module)).unwrap_or(LAYERS.len())
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path a file is: `src/pipeline/decide.rs` is `pipeline::decide`, `src/lib.rs` `lib`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") && parts.len() > 1 {
        parts.pop();
    }
    parts
}

/// The top-level modules a line's paths name (`here` is the line's module).
fn named(line: &str, here: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let code = line.split("//").next().unwrap_or_default();
    for (prefix, from_root) in [("crate::", true), ("chat_notifier::", true), ("super::", false)] {
        let mut from = 0;
        while let Some(at) = code[from..].find(prefix).map(|at| from + at) {
            let before = code[..at].chars().last();
            from = at + prefix.len();
            let rest = &code[from..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue; // part of a longer path: `super::super::`, `foo::crate::`
            }
            // `super` is the parent of the line's module; each further `super` one more up.
            let mut path: Vec<String> = if from_root { Vec::new() } else { here[..here.len() - 1].to_vec() };
            let mut tail = rest;
            while !from_root && let Some(next) = tail.strip_prefix("super::") {
                path.pop();
                tail = next;
            }
            if path.is_empty() {
                let ident: String = tail.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if ident.is_empty() {
                    continue;
                }
                // An item of the crate's root (`crate::run`, `chat_notifier::exit`) is `lib`'s.
                let is_module = LAYERS.iter().any(|l| l.contains(&ident.as_str()));
                path.push(if is_module { ident } else { "lib".to_owned() });
            }
            out.push(path.swap_remove(0));
        }
    }
    out
}

#[test]
fn every_import_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    all.sort();
    let mut wrong = Vec::new();
    for file in &all {
        let mut here = module_of(&src, file);
        let top = here[0].clone();
        let top = top.as_str();
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            // A file's tests sit in `mod tests` at its end: `super` there is the file's module.
            if line.trim_start().starts_with("mod tests {") {
                here.push("tests".to_owned());
            }
            for target in named(line, &here) {
                if target == top || target == "self" {
                    continue;
                }
                if layer(&target) >= layer(top) {
                    wrong.push(format!(
                        "{}:{}: {top} imports {target} ({}): {}",
                        file.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().display(),
                        n + 1,
                        if layer(&target) == layer(top) { "sideways" } else { "up" },
                        line.trim()
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports that do not point down:\n{}", wrong.join("\n"));
}

#[test]
fn the_layer_test_sees_an_upward_import() {
    let here = vec!["domain".to_owned(), "chat".to_owned()];
    assert_eq!(named("use crate::pipeline::classify::X;", &here), ["pipeline"]);
    assert_eq!(named("    let x = crate::state::f(); // crate::mail", &here), ["state"]);
    let decide = vec!["pipeline".to_owned(), "decide".to_owned()];
    assert_eq!(named("use super::super::cli::RunArgs;", &decide), ["cli"]);
    assert_eq!(named("use super::rules::Verdict;", &decide), ["pipeline"]);
    assert!(named("use std::io::Read; // no crate path", &decide).is_empty());
    let top = vec!["pipeline".to_owned()];
    assert_eq!(named("use super::cli::RunArgs;", &top), ["cli"]);
}
