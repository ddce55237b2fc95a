//! The agent's modules depend on each other in one direction: no module uses one that uses it,
//! directly or through others. Read from the source, so that a helper put in the wrong module
//! fails here rather than in a reviewer's head.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules by name, each with the sibling modules its files name (`crate::x` at the top level,
/// `super::x` within a folder module).
type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The source without its `#[cfg(test)]` part (tests may use anything) and its comments (a
/// doc link is not a dependency).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read a source file");
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text,
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module names that follow `prefix` in `text` (`crate::vault::Vault` gives `vault`), and
/// those in a braced list after it (`crate::{clock, disk}`).
fn named_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        let preceded = text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if preceded {
            continue;
        }
        let rest = &text[at + prefix.len()..];
        if let Some(list) = rest.strip_prefix('{') {
            let list = &list[..list.find('}').unwrap_or(list.len())];
            names.extend(list.split(',').map(|item| ident(item.trim())));
        } else {
            names.insert(ident(rest));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// The module a file is, within the folder `root` (`worker/report.rs` is `report` in `worker`).
fn module_of(root: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(root).expect("a file under its folder");
    let first = relative
        .components()
        .next()
        .expect("a path")
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The graph of the modules directly in `folder`, as named with `prefix`.
fn graph(folder: &Path, prefix: &str) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(folder) {
        let module = module_of(folder, &file);
        if module == "lib" || module == "mod" || module == "main" {
            continue;
        }
        let edges = graph.entry(module.clone()).or_default();
        edges.extend(
            named_after(&code(&file), prefix)
                .into_iter()
                .filter(|name| *name != module),
        );
    }
    let known: BTreeSet<String> = graph.keys().cloned().collect();
    for edges in graph.values_mut() {
        edges.retain(|name| known.contains(name));
    }
    graph
}

/// A cycle in `graph`, if there is one, as the modules along it.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        module: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut found = path[at..].to_vec();
            found.push(module.to_owned());
            return Some(found);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(found) = visit(graph, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(graph, module, &mut Vec::new(), &mut done))
}

fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_agents_modules_use_each_other_in_one_direction() {
    let graph = graph(&source(), "crate::");
    assert!(graph.contains_key("worker") && graph["worker"].contains("vault"));
    assert_eq!(cycle(&graph), None, "{graph:#?}");
}

#[test]
fn the_parts_of_each_folder_module_use_each_other_in_one_direction() {
    for folder in ["worker", "control", "vault", "client", "probe"] {
        let graph = graph(&source().join(folder), "super::");
        assert!(graph.len() >= 3, "{folder}: {graph:?}");
        assert_eq!(cycle(&graph), None, "{folder}: {graph:#?}");
    }
}

#[test]
fn a_cycle_is_found_where_there_is_one() {
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_owned(), BTreeSet::from([to.to_owned()])))
        .collect();
    assert_eq!(
        cycle(&graph).map(|c| c.join(" -> ")),
        Some("a -> b -> c -> a".to_owned())
    );
    let text = "use crate::{clock::now_ms, disk};\nlet x = crate::vault::Vault::open();";
    assert_eq!(
        named_after(text, "crate::"),
        BTreeSet::from(["clock".to_owned(), "disk".to_owned(), "vault".to_owned()])
    );
}
