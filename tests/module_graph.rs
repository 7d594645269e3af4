//! The shape of the tree, checked: the pure core imports nothing outside itself and nothing that does I/O, no
//! top-level module is part of an import cycle, and only the command line reaches the simulator.
//!
//! Imports are read from the source text (`crate::name` paths), which is what a reader of the code sees too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// Crates and std modules that do I/O, keep time or log: none of them belongs in `core`.
const NOT_IN_CORE: &[&str] = &[
    "tokio",
    "tracing",
    "zbus",
    "udev",
    "nix",
    "std::fs",
    "std::net",
    "std::process",
    "std::time::Instant::now",
    "SystemTime::now",
    "std::env",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/edge/kexec.rs` → `edge`, `src/real_host.rs` → `real_host`).
fn module_of(path: &Path) -> Option<String> {
    let relative = path.strip_prefix(SRC).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_owned())
}

/// The code of a file without its comments (doc comments name other modules in prose).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `crate::X` paths in `code`, as the top-level names X.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let tail = &rest[at + "crate::".len()..];
        let name: String = tail
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !name.is_empty() && !preceded_by_ident {
            found.insert(name);
        }
        rest = tail;
    }
    found
}

struct Tree {
    /// Top-level module → the top-level modules it imports, with one file that does, for the message.
    edges: BTreeMap<String, BTreeMap<String, PathBuf>>,
    files: Vec<(PathBuf, String, String)>,
}

fn tree() -> Tree {
    let mut paths = Vec::new();
    rust_files(Path::new(SRC), &mut paths);
    paths.sort();
    let mut edges: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    let mut files = Vec::new();
    for path in paths {
        let Some(module) = module_of(&path) else {
            continue;
        };
        let code = code_of(&std::fs::read_to_string(&path).expect("source is readable"));
        let targets = edges.entry(module.clone()).or_default();
        for import in crate_imports(&code) {
            if import != module {
                targets.entry(import).or_insert_with(|| path.clone());
            }
        }
        files.push((path, module, code));
    }
    Tree { edges, files }
}

#[test]
fn the_tree_has_the_documented_top_level_modules() {
    let tree = tree();
    let modules: Vec<&str> = tree.edges.keys().map(String::as_str).collect();
    assert_eq!(
        modules,
        [
            "cli",
            "config",
            "core",
            "daemon",
            "dbus",
            "edge",
            "host",
            "messages",
            "real_host",
            "sim"
        ]
    );
}

#[test]
fn the_core_imports_only_itself_and_does_no_io() {
    let tree = tree();
    let outside: Vec<_> = tree.edges["core"].iter().collect();
    assert!(
        outside.is_empty(),
        "core imports other modules: {outside:?}"
    );
    for (path, module, code) in &tree.files {
        if module != "core" {
            continue;
        }
        for banned in NOT_IN_CORE {
            let used = code.lines().any(|line| {
                line.contains(&format!("{banned}::"))
                    || line.contains(&format!("use {banned}"))
                    || line.contains(&format!("{banned}("))
                    || line.contains(&format!("{banned};"))
            });
            assert!(!used, "{} uses {banned}", path.display());
        }
    }
}

#[test]
fn no_top_level_module_is_part_of_an_import_cycle() {
    let tree = tree();
    // Depth-first search from each module; a path back to where it started is a cycle.
    for start in tree.edges.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for (next, file) in tree.edges.get(&at).into_iter().flatten() {
                if next == start {
                    panic!(
                        "import cycle {} -> {start} (in {})",
                        path.join(" -> "),
                        file.display()
                    );
                }
                if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
}

#[test]
fn only_the_command_line_reaches_the_simulator() {
    let tree = tree();
    for (module, targets) in &tree.edges {
        if let Some(file) = targets.get("sim") {
            assert_eq!(
                module,
                "cli",
                "{module} imports the simulator ({})",
                file.display()
            );
        }
    }
}

#[test]
fn the_checker_sees_imports_and_ignores_comments() {
    let code = code_of("use crate::core::model;\n// crate::sim is only named here\nlet x = crate::edge::kexec::f();");
    let found: Vec<String> = crate_imports(&code).into_iter().collect();
    assert_eq!(found, ["core", "edge"]);
    assert!(crate_imports("subcrate::x").is_empty());
}
