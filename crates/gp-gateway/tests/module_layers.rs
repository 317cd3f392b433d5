//! The modules of every crate in the workspace import one way: no two modules use each
//! other, directly or around a circle. Read from the source: every `crate::<module>`
//! path outside test code (`#[cfg(test)]` items) is an edge from the file's module to
//! that top-level module. A circle is reported with the lines that close it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module → (module it uses → first `file:line` where it does).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// The top-level module a source file belongs to (`audit/sqlite.rs` → `audit`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's lines outside `#[cfg(test)]` items (an item's extent found by braces).
fn non_test_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut skipping = false;
    let mut depth: i64 = 0;
    let mut opened = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if !skipping && trimmed.starts_with("#[cfg(test)]") {
            skipping = true;
            depth = 0;
            opened = false;
            continue;
        }
        if skipping {
            for c in line.chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            // A braceless item (`mod x;`, a `use`) ends at its semicolon.
            if (opened && depth <= 0) || (!opened && trimmed.ends_with(';')) {
                skipping = false;
            }
            continue;
        }
        out.push((i + 1, line));
    }
    out
}

/// Every top-level module named by a `crate::x` path, or inside `use crate::{x, …}`.
fn used_modules(line: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for part in inner.split(',') {
                let name = part.trim().split("::").next().unwrap_or("").trim();
                if modules.contains(name) {
                    found.insert(name.to_owned());
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&name) {
                found.insert(name);
            }
        }
        rest = after;
    }
    found
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(src, f)).collect();
    let mut g = Graph::new();
    for file in &files {
        let Some(from) = module_of(src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in non_test_lines(&text) {
            for to in used_modules(line, &modules) {
                if to != from {
                    g.entry(from.clone())
                        .or_default()
                        .entry(to)
                        .or_insert_with(|| {
                            format!("{}:{n}", file.strip_prefix(workspace()).unwrap().display())
                        });
                }
            }
        }
    }
    g
}

/// The circles of `g`: each strongly connected set of two or more modules.
fn circles(g: &Graph) -> Vec<Vec<String>> {
    fn reach(g: &Graph, from: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(m) = todo.pop() {
            for next in g.get(&m).into_iter().flat_map(|e| e.keys()) {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    }
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for m in g.keys() {
        if done.contains(m) {
            continue;
        }
        let ahead = reach(g, m);
        let set: Vec<String> = ahead
            .iter()
            .filter(|o| *o == m || reach(g, o).contains(m))
            .cloned()
            .collect();
        if set.len() >= 2 {
            done.extend(set.iter().cloned());
            out.push(set);
        }
    }
    out
}

#[test]
fn no_module_uses_another_that_uses_it_back() {
    let root = workspace();
    let mut report = Vec::new();
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    crates.sort();
    assert!(
        crates.len() >= 8,
        "found the workspace's crates: {crates:?}"
    );
    for src in crates {
        let g = graph(&src);
        for circle in circles(&g) {
            let members: BTreeSet<&String> = circle.iter().collect();
            let mut edges = Vec::new();
            for from in &circle {
                for (to, at) in &g[from] {
                    if members.contains(to) {
                        edges.push(format!("    {from} -> {to} ({at})"));
                    }
                }
            }
            report.push(format!(
                "{}: {} use each other:\n{}",
                src.parent().unwrap().strip_prefix(&root).unwrap().display(),
                circle.join(", "),
                edges.join("\n")
            ));
        }
    }
    assert!(report.is_empty(), "module circles:\n{}", report.join("\n"));
}

#[test]
fn the_reader_sees_uses_and_skips_test_code() {
    let modules: BTreeSet<String> = ["audit", "config", "pipeline"].map(String::from).into();
    assert_eq!(
        used_modules("use crate::{audit::Job, config::X};", &modules),
        ["audit", "config"].map(String::from).into()
    );
    assert_eq!(
        used_modules(
            "let x = crate::pipeline::handle(); // crate::config",
            &modules
        ),
        ["pipeline"].map(String::from).into()
    );
    let text = "use crate::audit;\n#[cfg(test)]\nmod tests {\n    use crate::config;\n}\nfn f() { crate::pipeline::x(); }\n#[cfg(test)]\nuse crate::config;\n";
    let kept: Vec<usize> = non_test_lines(text).iter().map(|(n, _)| *n).collect();
    assert_eq!(kept, [1, 6]);
    let mut g = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.entry(a.into())
            .or_default()
            .insert(b.into(), String::new());
    }
    assert_eq!(circles(&g), [["a", "b", "c"].map(String::from).to_vec()]);
}
