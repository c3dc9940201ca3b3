//! The connection service file (`pg_service.conf`): named groups of settings,
//! chosen with `service` or `PGSERVICE`, in libpq's format and lookup order.

use std::path::{Path, PathBuf};

use super::config::Config;
use crate::error::Error;

/// Where libpq looks for the system-wide service file when `PGSYSCONFDIR` is
/// unset: Debian's libpq is built with this directory.
const DEFAULT_SYSCONFDIR: &str = "/etc/postgresql-common";

/// Fills the settings `config` left unset from its service's section: the
/// first file that has the section wins, the user's file (`servicefile`,
/// `PGSERVICEFILE`, or `~/.pg_service.conf`) before the system's
/// (`$PGSYSCONFDIR/pg_service.conf`). Does nothing when no service is named.
///
/// # Errors
/// Kind `Config`: the service is in no file, a file cannot be read, a line is
/// not `key=value`, a key is unknown or its value invalid, or the section
/// names another service.
pub(super) fn apply(
    config: &mut Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Error> {
    let Some(name) = config.service.clone() else {
        return Ok(());
    };
    let user_file = config
        .service_file
        .clone()
        .or_else(|| env("PGSERVICEFILE").map(PathBuf::from))
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".pg_service.conf")));
    let system_file =
        Path::new(&env("PGSYSCONFDIR").unwrap_or_else(|| DEFAULT_SYSCONFDIR.to_owned()))
            .join("pg_service.conf");
    for file in user_file.iter().chain([&system_file]) {
        // libpq: a user file named explicitly must exist; a default one may not.
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && !named_explicitly(config, file, env) =>
            {
                continue;
            }
            Err(e) => {
                return Err(Error::config(format!(
                    "service file {} cannot be read: {e}",
                    file.display()
                )));
            }
        };
        if let Some(settings) = section(&text, &name, file)? {
            let fresh = Config::default();
            let mut seen = std::collections::HashSet::new();
            for (key, value) in settings {
                if !super::KEYWORDS.contains(&key.as_str()) {
                    // Unknown, or refused: the same error as in a string.
                    let mut scratch = Config::default();
                    scratch.set(&key, &value).map_err(|e| {
                        Error::config(format!(
                            "service file {}, service {name:?}: {e}",
                            file.display()
                        ))
                    })?;
                }
                // The first occurrence of a key in the section wins.
                if seen.insert(key.clone()) && config.is_unset(&key, &fresh) {
                    config.set(&key, &value).map_err(|e| {
                        Error::config(format!(
                            "service file {}, service {name:?}: {e}",
                            file.display()
                        ))
                    })?;
                }
            }
            return Ok(());
        }
    }
    Err(Error::config(format!(
        "definition of service {name:?} not found (looked in {}{})",
        user_file
            .as_ref()
            .map_or_else(String::new, |f| format!("{} and ", f.display())),
        system_file.display()
    )))
}

fn named_explicitly(config: &Config, file: &Path, env: &dyn Fn(&str) -> Option<String>) -> bool {
    config.service_file.as_deref() == Some(file)
        || env("PGSERVICEFILE").is_some_and(|f| Path::new(&f) == file)
}

/// The `key=value` lines of section `[name]`, or `None` if the file has no
/// such section.
fn section(text: &str, name: &str, file: &Path) -> Result<Option<Vec<(String, String)>>, Error> {
    let mut found: Option<Vec<(String, String)>> = None;
    let mut inside = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            if found.is_some() {
                // The section ended; libpq stops reading here.
                break;
            }
            // libpq: `[name]`, anything after the `]` ignored.
            inside = header
                .strip_prefix(name)
                .is_some_and(|r| r.starts_with(']'));
            if inside {
                found = Some(Vec::new());
            }
            continue;
        }
        let Some(settings) = found.as_mut().filter(|_| inside) else {
            continue;
        };
        let (key, value) = line.split_once('=').ok_or_else(|| {
            Error::config(format!(
                "syntax error in service file {}, line {}: expected key=value",
                file.display(),
                n + 1
            ))
        })?;
        // As libpq, nothing around the `=` is trimmed: `host = x` names a
        // key "host " that does not exist, and is refused.
        if key == "service" {
            return Err(Error::config(format!(
                "nested service specifications not supported in service file {}, line {}",
                file.display(),
                n + 1
            )));
        }
        settings.push((key.to_owned(), value.to_owned()));
    }
    Ok(found)
}
