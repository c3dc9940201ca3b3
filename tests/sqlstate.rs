//! The generator of `src/protocol/sqlstate_codes.rs`, and its check.
//!
//! The file holds every SQLSTATE code of PostgreSQL 14 to 18 as a `SqlState` constant,
//! and the table behind `SqlState::name`. It is rendered here from the `errcodes.txt`
//! each server ships (Debian's in `/usr/share/postgresql/<version>/`, the others where
//! `scripts/pg-servers.sh` unpacks them) and compared with the checked-in file:
//!
//! - every version 14 to 18 installed: the rendering must equal the file, byte for byte;
//!   `PGT_REGENERATE=1 cargo test --test sqlstate` writes it instead;
//! - only some installed: every code of those versions must be in the file with its
//!   constant and its condition name (what the file says of the other versions is not
//!   checked, and a note says so);
//! - none installed: the test fails, naming `scripts/pg-servers.sh`.
//!
//! Only PostgreSQL's names (code, macro, condition, class title) are carried over; the
//! comments of `errcodes.txt` are not.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use pg_transport::SqlState;

#[path = "support/server_bin.rs"]
#[allow(dead_code, reason = "this test needs only where the servers are")]
mod server_bin;

/// The versions the generated file covers.
const VERSIONS: [u32; 5] = [14, 15, 16, 17, 18];

const GENERATED: &str = "src/protocol/sqlstate_codes.rs";

const REGENERATE: &str = "PGT_REGENERATE=1 cargo test --test sqlstate";

/// One line of `errcodes.txt`: `23505 E ERRCODE_UNIQUE_VIOLATION unique_violation`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Code {
    code: String,
    /// The macro name without `ERRCODE_`: the constant's name.
    constant: String,
    /// The condition name; `None` on a second macro name for a code.
    name: Option<String>,
}

/// One version's file: its codes, and the class titles of its `Section:` lines.
struct ErrCodes {
    codes: Vec<Code>,
    classes: BTreeMap<String, String>,
}

/// A code of the union, with the versions that define it.
struct Entry {
    code: Code,
    versions: BTreeSet<u32>,
}

/// The `errcodes.txt` of each version 14 to 18 that is installed.
fn sources() -> BTreeMap<u32, PathBuf> {
    let caches = server_bin::server_caches();
    let mut found = BTreeMap::new();
    for version in VERSIONS {
        let debian = PathBuf::from(format!("/usr/share/postgresql/{version}/errcodes.txt"));
        let cached = caches.iter().map(|c| {
            c.join(version.to_string())
                .join("share/postgresql/errcodes.txt")
        });
        if let Some(path) = std::iter::once(debian).chain(cached).find(|p| p.is_file()) {
            found.insert(version, path);
        }
    }
    found
}

fn parse(path: &Path) -> ErrCodes {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut out = ErrCodes {
        codes: Vec::new(),
        classes: BTreeMap::new(),
    };
    for (number, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), number + 1);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix("Section: Class ") {
            let (class, title) = section
                .split_once(" - ")
                .unwrap_or_else(|| panic!("{}: a Section line without a title", at()));
            // "No Data (this is also a warning class …)": the title without the remark.
            let title = title.split(" (").next().unwrap_or(title).trim();
            out.classes.insert(class.to_owned(), title.to_owned());
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (code, kind, macro_name, name) = match words[..] {
            [code, kind, macro_name] => (code, kind, macro_name, None),
            [code, kind, macro_name, name] => (code, kind, macro_name, Some(name)),
            _ => panic!("{}: not `code kind macro [name]`: {line:?}", at()),
        };
        let valid_code = code.len() == 5
            && code
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
        assert!(valid_code, "{}: bad SQLSTATE {code:?}", at());
        assert!(
            matches!(kind, "E" | "W" | "S"),
            "{}: bad kind {kind:?}",
            at()
        );
        let constant = macro_name
            .strip_prefix("ERRCODE_")
            .unwrap_or_else(|| panic!("{}: macro {macro_name:?} without ERRCODE_", at()));
        out.codes.push(Code {
            code: code.to_owned(),
            constant: constant.to_owned(),
            name: name.map(str::to_owned),
        });
    }
    assert!(!out.codes.is_empty(), "{}: no codes in it", path.display());
    out
}

/// The union over `versions`, sorted by code (a code's named entry first), and the
/// class titles (a later version's title wins).
fn merge(versions: &BTreeMap<u32, ErrCodes>) -> (Vec<Entry>, BTreeMap<String, String>) {
    let mut by_code: BTreeMap<Code, BTreeSet<u32>> = BTreeMap::new();
    let mut classes = BTreeMap::new();
    for (&version, file) in versions {
        for code in &file.codes {
            by_code.entry(code.clone()).or_default().insert(version);
        }
        classes.extend(file.classes.clone());
    }
    let mut entries: Vec<Entry> = by_code
        .into_iter()
        .map(|(code, versions)| Entry { code, versions })
        .collect();
    entries.sort_by(|a, b| {
        (&a.code.code, a.code.name.is_none(), &a.code.constant).cmp(&(
            &b.code.code,
            b.code.name.is_none(),
            &b.code.constant,
        ))
    });
    // One constant per macro name, one condition name per code, across every version.
    let mut constants = BTreeMap::new();
    let mut names = BTreeMap::new();
    for e in &entries {
        if let Some(code) = constants.insert(&e.code.constant, &e.code.code) {
            panic!(
                "{} is {code} in one version and {} in another",
                e.code.constant, e.code.code
            );
        }
        if let Some(name) = &e.code.name {
            if let Some(other) = names.insert(&e.code.code, name) {
                panic!("{} is both {other} and {name}", e.code.code);
            }
        }
    }
    (entries, classes)
}

/// Which of 14 to 18 define a code, in words; `None` for all of them.
fn availability(versions: &BTreeSet<u32>) -> Option<String> {
    let all: BTreeSet<u32> = VERSIONS.into_iter().collect();
    if *versions == all {
        return None;
    }
    let (first, last) = (*versions.first()?, *versions.last()?);
    let contiguous = all.range(first..=last).all(|v| versions.contains(v));
    let newest = VERSIONS[VERSIONS.len() - 1];
    Some(if contiguous && last == newest {
        format!("PostgreSQL {first} and later.")
    } else if contiguous && first == VERSIONS[0] {
        format!("Up to PostgreSQL {last}; removed in {}.", last + 1)
    } else {
        let list: Vec<String> = versions.iter().map(u32::to_string).collect();
        format!("Only in PostgreSQL {}.", list.join(", "))
    })
}

fn render(entries: &[Entry], classes: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    out.push_str(
        "// @generated by tests/sqlstate.rs from the errcodes.txt of PostgreSQL 14 to 18; do not edit.\n\
         // To update: `PGT_REGENERATE=1 cargo test --test sqlstate` (needs every version installed:\n\
         // `scripts/pg-servers.sh 14 16 17 18`, and Debian's `postgresql` for 15).\n\
         //! Every SQLSTATE code of PostgreSQL 14 to 18 as a [`SqlState`] constant, and the\n\
         //! condition names [`SqlState::name`] looks up.\n\
         \n\
         use super::fields::SqlState;\n\
         \n\
         impl SqlState {\n",
    );
    let mut named: BTreeMap<&str, &Code> = BTreeMap::new();
    for e in entries {
        if e.code.name.is_some() {
            named.insert(&e.code.code, &e.code);
        }
    }
    let mut class = "";
    for e in entries {
        let Code {
            code,
            constant,
            name,
        } = &e.code;
        let this_class = &code[..2];
        let title = classes
            .get(this_class)
            .unwrap_or_else(|| panic!("no Section line for class {this_class} (of {code})"));
        if this_class != class {
            if !class.is_empty() {
                out.push('\n');
            }
            class = this_class;
        }
        match (name, named.get(code.as_str())) {
            (Some(name), _) => {
                writeln!(out, "    /// `{code} {name}` (class {class}, {title}).").unwrap();
            }
            (None, Some(twin)) => {
                let twin_name = twin.name.as_deref().unwrap_or_default();
                writeln!(
                    out,
                    "    /// `{code}`, a second name for [`{0}`](Self::{0})\n    \
                     /// (`{twin_name}`; class {class}, {title}).",
                    twin.constant
                )
                .unwrap();
            }
            (None, None) => panic!("{constant} ({code}) has no condition name in any version"),
        }
        if let Some(note) = availability(&e.versions) {
            writeln!(out, "    ///\n    /// {note}").unwrap();
        }
        writeln!(out, "    pub const {constant}: Self = Self(*b\"{code}\");").unwrap();
    }
    out.push_str(
        "}\n\
         \n\
         /// Each code with its condition name, sorted by code for [`SqlState::name`]'s binary\n\
         /// search.\n\
         pub(super) static NAMES: &[(SqlState, &str)] = &[\n",
    );
    for code in named.values() {
        let name = code.name.as_deref().unwrap_or_default();
        writeln!(out, "    (SqlState(*b\"{}\"), \"{name}\"),", code.code).unwrap();
    }
    out.push_str("];\n");
    out
}

fn installed() -> BTreeMap<u32, ErrCodes> {
    let found = sources();
    assert!(
        !found.is_empty(),
        "no errcodes.txt of PostgreSQL 14 to 18 found (Debian's /usr/share/postgresql/15/, \
         or the cache of scripts/pg-servers.sh): install them with `scripts/pg-servers.sh all`"
    );
    found
        .into_iter()
        .map(|(version, path)| (version, parse(&path)))
        .collect()
}

#[test]
fn the_generated_file_matches_errcodes_txt() {
    let versions = installed();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(GENERATED);
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    let missing: Vec<u32> = VERSIONS
        .into_iter()
        .filter(|v| !versions.contains_key(v))
        .collect();
    let regenerate = std::env::var_os("PGT_REGENERATE").is_some_and(|v| v == "1");
    if missing.is_empty() {
        let (entries, classes) = merge(&versions);
        let rendered = render(&entries, &classes);
        if regenerate {
            std::fs::write(&path, &rendered)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        } else {
            let first_difference = rendered
                .lines()
                .zip(checked_in.lines().chain(std::iter::repeat("")))
                .position(|(a, b)| a != b)
                .map_or_else(|| rendered.lines().count() + 1, |i| i + 1);
            assert!(
                rendered == checked_in,
                "{GENERATED} is not what errcodes.txt of PostgreSQL 14 to 18 give (first \
                 difference at line {first_difference}): run `{REGENERATE}` to update it"
            );
        }
        return;
    }
    assert!(
        !regenerate,
        "regenerating needs every version, but PostgreSQL {missing:?} are not installed: \
         run `scripts/pg-servers.sh 14 16 17 18`"
    );
    eprintln!(
        "note: PostgreSQL {missing:?} not installed: only the codes of {:?} are checked \
         (scripts/pg-servers.sh installs the rest)",
        versions.keys().collect::<Vec<_>>()
    );
    for (version, file) in &versions {
        for c in &file.codes {
            let line = format!(
                "    pub const {}: Self = Self(*b\"{}\");",
                c.constant, c.code
            );
            assert!(
                checked_in.lines().any(|l| l == line),
                "{GENERATED} lacks {} ({}) of PostgreSQL {version}: run `{REGENERATE}` \
                 with every version installed",
                c.constant,
                c.code
            );
        }
    }
}

/// `SqlState::name` finds every condition name of every installed version, and a
/// second macro name's code finds its twin's; an unknown code has none.
#[test]
fn every_condition_name_is_found() {
    for (version, file) in installed() {
        let names: BTreeMap<&str, &str> = file
            .codes
            .iter()
            .filter_map(|c| Some((c.code.as_str(), c.name.as_deref()?)))
            .collect();
        for c in &file.codes {
            let state = SqlState::from_code(c.code.as_bytes()).expect("five bytes");
            assert_eq!(
                state.name(),
                names.get(c.code.as_str()).copied(),
                "{} ({}) of PostgreSQL {version}",
                c.constant,
                c.code
            );
            assert!(state.name().is_some(), "{} has a name", c.code);
        }
    }
    for unknown in [b"ZZZZZ", b"00001", b"23506", b"\0\0\0\0\0"] {
        let state = SqlState::from_code(unknown).expect("five bytes");
        assert_eq!(state.name(), None, "{state:?}");
    }
}

/// The constants the crate used before they were generated keep their names and codes.
#[test]
fn the_older_constants_keep_their_codes() {
    let cases = [
        (
            SqlState::SUCCESSFUL_COMPLETION,
            "00000",
            "successful_completion",
        ),
        (
            SqlState::CONNECTION_EXCEPTION,
            "08000",
            "connection_exception",
        ),
        (SqlState::CONNECTION_FAILURE, "08006", "connection_failure"),
        (SqlState::PROTOCOL_VIOLATION, "08P01", "protocol_violation"),
        (
            SqlState::BAD_COPY_FILE_FORMAT,
            "22P04",
            "bad_copy_file_format",
        ),
        (SqlState::NOT_NULL_VIOLATION, "23502", "not_null_violation"),
        (SqlState::UNIQUE_VIOLATION, "23505", "unique_violation"),
        (
            SqlState::IN_FAILED_SQL_TRANSACTION,
            "25P02",
            "in_failed_sql_transaction",
        ),
        (
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            "28000",
            "invalid_authorization_specification",
        ),
        (SqlState::INVALID_PASSWORD, "28P01", "invalid_password"),
        (SqlState::SYNTAX_ERROR, "42601", "syntax_error"),
        (SqlState::UNDEFINED_TABLE, "42P01", "undefined_table"),
        (SqlState::QUERY_CANCELED, "57014", "query_canceled"),
        (SqlState::ADMIN_SHUTDOWN, "57P01", "admin_shutdown"),
    ];
    for (state, code, name) in cases {
        assert_eq!((state.code(), state.name()), (code, Some(name)));
    }
}
