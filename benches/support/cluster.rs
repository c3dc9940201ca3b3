//! A throwaway PostgreSQL cluster for the COPY benchmark and the early-abort
//! example, started the same way as `tests/real/cluster.rs` does it: `initdb`
//! and `pg_ctl` from the installed server binaries (`PG_BINDIR`, `PATH`, or the
//! newest `/usr/lib/postgresql/*/bin`), run as the `postgres` user through
//! `runuser` when we are root; TCP on 127.0.0.1 and a Unix socket directory.
//!
//! [`Cluster::stop`] (also run on drop) stops the server with `pg_ctl stop`
//! and deletes the directory. A guardian process does the same if this
//! process dies without dropping the cluster (a panic that aborts, a kill), so
//! no server is ever left running.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "../../tests/support/server_bin.rs"]
mod server_bin;
use server_bin::{
    append, as_server_user, find_bin, free_port, give_to_server_user, initdb, is_root, run,
};

/// A running throwaway cluster.
pub(crate) struct Cluster {
    /// The port, for TCP (127.0.0.1) and for the socket file name.
    pub(crate) port: u16,
    /// The Unix socket directory.
    pub(crate) socket_dir: PathBuf,
    /// The cluster's base directory (owned by the server user): data, log,
    /// socket, and files the server must read (COPY FROM '<file>').
    pub(crate) base: PathBuf,
    bin: PathBuf,
    stopped: bool,
}

impl Cluster {
    /// Creates and starts a cluster; `settings` are appended to postgresql.conf.
    pub(crate) fn start(settings: &str) -> Result<Self, String> {
        let bin = find_bin()?;
        let port = free_port()?;
        let base = std::env::temp_dir().join(format!("pgt-bench-{}-{port}", std::process::id()));
        let data = base.join("data");
        let socket_dir = base.join("sock");
        std::fs::create_dir_all(&socket_dir).map_err(|e| e.to_string())?;
        let cluster = Self {
            port,
            socket_dir,
            base: base.clone(),
            bin,
            stopped: false,
        };
        give_to_server_user(&base)?;
        cluster.guard();
        initdb(&cluster.bin, &data)?;
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{sock}'\n{settings}\n",
            sock = cluster.socket_dir.display()
        );
        append(&data.join("postgresql.conf"), &conf)?;
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        )
        .map_err(|e| e.to_string())?;
        run(cluster
            .as_server_user("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .arg("-l")
            .arg(base.join("server.log"))
            .arg("start"))?;
        Ok(cluster)
    }

    /// A command running `program` from the server's bin directory as the
    /// server user.
    fn as_server_user(&self, program: &str) -> Command {
        as_server_user(&self.bin, program)
    }

    /// A background process that stops the server and deletes everything once
    /// this process has exited, however it exits.
    fn guard(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
             if [ -d {base}/data ]; then {su} {bin}/pg_ctl -D {base}/data stop -m immediate; fi; \
             rm -rf {base}",
            pid = std::process::id(),
            base = self.base.display(),
            su = if is_root() {
                "runuser -u postgres --"
            } else {
                ""
            },
            bin = self.bin.display(),
        );
        // Deliberately not waited for: it must outlive this process.
        let spawned = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            eprintln!("warning: no cluster guardian ({e}); the cluster is still stopped on drop");
        }
    }

    /// The server version string (`SHOW server_version`).
    pub(crate) fn version(&self) -> String {
        self.psql("SHOW server_version").unwrap_or_default()
    }

    /// The `psql` binary of the server's installation (or the system's).
    pub(crate) fn psql_bin(&self) -> PathBuf {
        [self.bin.join("psql"), PathBuf::from("/usr/bin/psql")]
            .into_iter()
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("psql"))
    }

    /// Runs SQL as the superuser over the Unix socket with psql; the output
    /// (unaligned, tuples only), trimmed.
    pub(crate) fn psql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(self.psql_bin())
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-U", "postgres", "-d", "postgres", "-h"])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "psql failed on {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Makes `path` (inside [`Cluster::base`]) belong to the server user, so
    /// the server can read it with `COPY … FROM '<file>'`.
    pub(crate) fn give_to_server(&self, path: &Path) -> Result<(), String> {
        if is_root() {
            run(Command::new("chown").arg("postgres:postgres").arg(path))?;
        }
        Ok(())
    }

    /// Stops the server (`pg_ctl stop -m fast`) and deletes the cluster. Idempotent.
    pub(crate) fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let stopped = run(self
            .as_server_user("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(self.base.join("data"))
            .args(["stop", "-m", "fast"]));
        if let Err(e) = stopped {
            eprintln!("warning: pg_ctl stop failed: {e}");
            return;
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
