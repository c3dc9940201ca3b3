//! Enforces the dependency table of docs/architecture.md by scanning `src/`:
//! the sans-IO layers never reach for I/O, clocks or randomness, and the
//! transport layer knows nothing of PostgreSQL.

use std::fs;
use std::path::{Path, PathBuf};

/// (path under src/, forbidden substrings in code lines)
const RULES: &[(&str, &[&str])] = &[
    (
        "protocol",
        &[
            "tokio",
            "futures",
            "std::net",
            "std::io",
            "socket2",
            "rustls",
            "tracing",
            "Instant::now",
            "SystemTime::now",
            "rand::",
            "crate::",
        ],
    ),
    (
        "buffer",
        &[
            "tokio", "futures", "std::net", "std::io", "crate::", "tracing",
        ],
    ),
    (
        "session",
        &[
            "tokio",
            "futures",
            "std::net",
            "crate::transport",
            "crate::connect",
            "crate::conn",
            "Instant::now",
            "SystemTime::now",
            "rand::",
        ],
    ),
    (
        "error.rs",
        &[
            "crate::session",
            "crate::transport",
            "crate::connect",
            "crate::buffer",
        ],
    ),
    (
        "transport",
        &[
            "crate::protocol",
            "crate::session",
            "crate::buffer",
            "crate::connect",
        ],
    ),
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

#[test]
fn layers_respect_the_dependency_table() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    let mut scanned = 0;
    for (layer, forbidden) in RULES {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        for file in files {
            scanned += 1;
            let text = fs::read_to_string(&file).unwrap();
            // Unit tests inside a file may use anything.
            let code = text.split("#[cfg(test)]").next().unwrap();
            for (n, line) in code.lines().enumerate() {
                let line = line.trim_start();
                if line.starts_with("//") {
                    continue;
                }
                // The planted-bug switch is a leaf every layer may use.
                let line = line.replace("crate::mutant::", "");
                for f in *forbidden {
                    if line.contains(f) {
                        violations.push(format!(
                            "{}:{}: `{f}` in {layer}: {line}",
                            file.display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(
        scanned >= 10,
        "scanned only {scanned} files: is the layout as documented?"
    );
    assert!(
        violations.is_empty(),
        "dependency rule broken:\n{}",
        violations.join("\n")
    );
}
