//! The password file (`~/.pgpass`, `PGPASSFILE`, `passfile`): libpq's format
//! and matching rules.

use std::path::{Path, PathBuf};

/// Looks up the password for one connection attempt. `host` is the host name,
/// or `"localhost"` for a Unix socket in the default directory, as libpq does.
pub(crate) fn lookup(
    file: &Path,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                file = %file.display(),
                "password file has group or world access; permissions should be u=rw (0600) or less: ignoring it"
            );
            return None;
        }
    }
    let text = std::fs::read_to_string(file).ok()?;
    let port = port.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let fields = split_fields(l);
            (fields.len() == 5).then_some(fields)
        })
        .find(|f| {
            matches(&f[0], host)
                && matches(&f[1], &port)
                && matches(&f[2], dbname)
                && matches(&f[3], user)
        })
        .map(|f| f[4].clone())
}

/// The password file to read: the configured one, else `~/.pgpass`.
pub(crate) fn default_file(configured: Option<&Path>) -> Option<PathBuf> {
    configured
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")))
}

fn matches(pattern: &str, value: &str) -> bool {
    pattern == "*" || pattern == value
}

/// Splits on `:`, honouring `\:` and `\\` escapes.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(last)) = (chars.next(), fields.last_mut()) {
                    last.push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => {
                if let Some(last) = fields.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_escapes() {
        assert_eq!(
            split_fields(r"h\:1:5432:db:u:p\\w"),
            ["h:1", "5432", "db", "u", r"p\w"]
        );
    }
}
