//! Finding and running the installed PostgreSQL server binaries, shared by the
//! real-server tests (`tests/real/cluster.rs`), the benchmark harness
//! (`benches/support/cluster.rs`) and `tests/sqlstate.rs`, which include this
//! file by path.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether we run as root (the server then runs as `postgres`).
pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The server's bin directory: `PG_BINDIR`, else the version named by
/// `PGT_SERVER_VERSION` as `scripts/pg-servers.sh` installs it, else `initdb` on
/// `PATH`, else the newest `/usr/lib/postgresql/<version>/bin`.
pub(crate) fn find_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        return Ok(dir.into());
    }
    if let Ok(version) = std::env::var("PGT_SERVER_VERSION") {
        return installed_version(&version);
    }
    let from_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("initdb"))
        .find(|p| p.exists())
        .and_then(|p| p.canonicalize().ok())
        .and_then(|p| p.parent().map(Path::to_path_buf));
    if let Some(dir) = from_path {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| {
            "no initdb on PATH and no /usr/lib/postgresql: install the postgresql package"
                .to_owned()
        })?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no PostgreSQL server binaries found".to_owned())
}

/// Where `scripts/pg-servers.sh` installs the servers other than Debian's:
/// `$PGT_SERVER_CACHE`, else the user's cache and then root's.
pub(crate) fn server_caches() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os("PGT_SERVER_CACHE") {
        return vec![PathBuf::from(dir)];
    }
    let user_cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")));
    let mut caches: Vec<PathBuf> = user_cache
        .map(|c| c.join("pg-transport/servers"))
        .into_iter()
        .collect();
    caches.push(PathBuf::from("/var/cache/pg-transport/servers"));
    caches
}

/// Where `scripts/pg-servers.sh` put PostgreSQL `version`: Debian's package for
/// 15; else `$PGT_SERVER_CACHE`, or the user's cache and then root's (a normal
/// user may run the tests against servers root installed).
fn installed_version(version: &str) -> Result<PathBuf, String> {
    let caches = server_caches();
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{version}/bin"));
    std::iter::once(debian)
        .chain(caches.iter().map(|c| c.join(version).join("bin")))
        .find(|bin| bin.join("initdb").exists())
        .ok_or_else(|| {
            format!(
                "PGT_SERVER_VERSION={version}, but PostgreSQL {version} is not installed: \
                 run scripts/pg-servers.sh {version} (it installs 14 to 18)"
            )
        })
}

/// A TCP port free on 127.0.0.1 right now.
pub(crate) fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// A command running `program` from `bin` as the server user.
pub(crate) fn as_server_user(bin: &Path, program: &str) -> Command {
    let path = bin.join(program);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

/// As root, hands `dir` (recursively) to the server user.
pub(crate) fn give_to_server_user(dir: &Path) -> Result<(), String> {
    if is_root() {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir))?;
    }
    Ok(())
}

/// `initdb` of a trust-only UTF-8 cluster with the C locale into `data`.
pub(crate) fn initdb(bin: &Path, data: &Path) -> Result<(), String> {
    run(as_server_user(bin, "initdb")
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "-D",
        ])
        .arg(data))
}

/// Appends `text` to the file at `path`.
pub(crate) fn append(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    f.write_all(text.as_bytes()).map_err(|e| e.to_string())
}

/// Runs `cmd` to completion; its output in the error if it fails.
pub(crate) fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
