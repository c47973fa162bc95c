//! The core's modules form a layered graph: no module reaches, through `crate::` paths, a
//! module that reaches back to it. Test-only code (unit-test modules, the in-memory harness,
//! the fuzz bodies) is left out: it may use anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every library source file of the core, by top-level module name.
fn sources() -> BTreeMap<String, Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("core/src is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&root).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a UTF-8 name")
            .trim_end_matches(".rs")
            .to_owned();
        let test_only =
            matches!(top.as_str(), "lib" | "testing") || file.file_name().is_some_and(|n| n == "tests.rs");
        if !test_only {
            modules.entry(top).or_default().push(file);
        }
    }
    modules
}

/// The library part of a source file: up to its `#[cfg(test)]` unit-test module, without
/// comments.
fn library_code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("#[cfg(test)]") {
            break;
        }
        if !trimmed.starts_with("//") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The top-level modules `code` names through `crate::` paths (`crate::a::…`, `crate::{a, b::…}`).
fn references(code: &str, modules: &BTreeMap<String, Vec<PathBuf>>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end].split(',').collect()
        } else {
            vec![rest]
        };
        for name in names {
            let name: String = name
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if modules.contains_key(&name) {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn the_core_module_graph_has_no_cycle() {
    let modules = sources();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, files) in &modules {
        let targets = edges.entry(module.clone()).or_default();
        for file in files {
            let text = fs::read_to_string(file).expect("source is readable");
            targets.extend(references(&library_code(&text), &modules));
        }
        targets.remove(module);
    }
    assert!(edges["endpoint"].contains("connection"), "the scan sees imports");

    // Depth-first search; a grey node met again closes a cycle.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(2) => return None,
            Some(1) => {
                let start = path
                    .iter()
                    .position(|n| n == node)
                    .expect("grey nodes are on the path");
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in &edges[node] {
            if let Some(cycle) = visit(next, edges, state, path) {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for module in edges.keys() {
        let cycle = visit(module, &edges, &mut state, &mut Vec::new());
        assert!(
            cycle.is_none(),
            "import cycle among core modules: {}",
            cycle.unwrap_or_default().join(" → ")
        );
    }
}
