//! A throwaway PostgreSQL cluster for this test binary: started on first use
//! from the installed server binaries, stopped and deleted when the binary exits
//! (a guardian process watches our pid), never left running.
//!
//! It has: trust, cleartext, md5 and scram users; TLS with a certificate from a
//! test CA made here with rcgen; a TCP port on 127.0.0.1 and a Unix socket.
//! As root, the server runs as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "../support/server_bin.rs"]
mod server_bin;
use server_bin::{append, as_server_user, find_bin, give_to_server_user, initdb, is_root};
pub(crate) use server_bin::{free_port, run};
use std::sync::OnceLock;

/// Users and their passwords.
pub const TRUST_USER: &str = "trust_user";
pub const PASSWORD_USER: &str = "pw_user";
pub const PASSWORD_PASS: &str = "cleartext pass";
pub const MD5_USER: &str = "md5_user";
pub const MD5_PASS: &str = "md5 pass";
pub const SCRAM_USER: &str = "scram_user";
/// Not ASCII, so SASLprep matters.
pub const SCRAM_PASS: &str = "scrâm pass Ⅸ";
pub const SSL_ONLY_USER: &str = "ssl_only_user";
pub const NOSSL_ONLY_USER: &str = "nossl_only_user";
/// Authenticated by a client certificate (`cert` in pg_hba.conf).
pub const CERT_USER: &str = "cert_user";
/// The serial number of the server's certificate (revoked by `revoked.crl`).
pub const SERVER_CERT_SERIAL: u64 = 0x5e12;

pub struct Cluster {
    pub port: u16,
    pub socket_dir: PathBuf,
    pub base: PathBuf,
    pub ca_file: PathBuf,
    /// `server_version_num`, e.g. 170010: tests of what only some versions can do
    /// compare against it.
    pub version: u32,
    bin: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

static REPLICA: OnceLock<Replica> = OnceLock::new();

/// A streaming replica of [`cluster`], started on first use and stopped with it,
/// with TLS off (so a server that answers SSLRequest with `N` is at hand too).
/// It starts from a copy of the primary's data directory taken while the primary
/// was stopped (right after its bootstrap), since the self-contained server builds
/// we test 14/16/17/18 with have no `pg_basebackup`.
pub struct Replica {
    pub port: u16,
}

/// A cluster of its own, for a test that restarts or stops the server. It is
/// stopped and removed when this binary exits, like the shared one.
pub fn start_dedicated() -> Cluster {
    Cluster::start().unwrap_or_else(|e| panic!("could not start a dedicated cluster: {e}"))
}

/// The replica, started on first use.
pub fn replica() -> &'static Replica {
    REPLICA.get_or_init(|| {
        cluster()
            .start_replica()
            .unwrap_or_else(|e| panic!("could not start the replica: {e}"))
    })
}

/// The cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let cluster = Cluster::start()
            .and_then(|c| c.seed_replica().map(|()| c))
            .unwrap_or_else(|e| panic!("could not start the test cluster: {e}"));
        eprintln!(
            "real-server tests against PostgreSQL {} ({})",
            cluster.version,
            cluster.bin.display()
        );
        cluster
    })
}

impl Cluster {
    fn start() -> Result<Self, String> {
        let bin = find_bin()?;
        let base = std::env::temp_dir().join(format!(
            "pg-transport-test-{}-{}",
            std::process::id(),
            free_port()?
        ));
        let data = base.join("data");
        let socket_dir = base.join("sock");
        std::fs::create_dir_all(&socket_dir).map_err(|e| e.to_string())?;
        let port = free_port()?;
        let mut cluster = Self {
            port,
            socket_dir,
            ca_file: base.join("ca.crt"),
            base: base.clone(),
            version: 0,
            bin,
        };
        give_to_server_user(&base)?;
        cluster.guard();
        initdb(&cluster.bin, &data)?;
        cluster.write_tls_files(&data)?;
        cluster.configure(&data)?;
        cluster.pg_ctl(&["start"])?;
        cluster.bootstrap()?;
        cluster.version = cluster
            .psql("SHOW server_version_num")?
            .parse()
            .map_err(|e| format!("server_version_num: {e}"))?;
        Ok(cluster)
    }

    /// `pg_ctl` on the primary's data directory, waiting up to a minute.
    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        run(self
            .as_server_user("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(self.base.join("data"))
            .arg("-l")
            .arg(self.base.join("server.log"))
            .args(args))
    }

    /// Stops the primary, copies its data directory for the replica, starts it again.
    fn seed_replica(&self) -> Result<(), String> {
        self.pg_ctl(&["-m", "fast", "stop"])?;
        run(Command::new("cp")
            .arg("-a")
            .arg(self.base.join("data"))
            .arg(self.base.join("replica")))?;
        self.pg_ctl(&["start"])
    }

    /// A command running `program` (a full path) as the server's user, and
    /// the files in `dir` handed to that user first.
    pub fn as_server_user_in(&self, dir: &Path, program: &Path) -> Result<Command, String> {
        give_to_server_user(dir)?;
        let parent = program.parent().unwrap_or_else(|| Path::new("/"));
        let name = program.file_name().and_then(|n| n.to_str()).unwrap_or("");
        Ok(as_server_user(parent, name))
    }

    fn as_server_user(&self, program: &str) -> Command {
        as_server_user(&self.bin, program)
    }

    /// `pg_ctl restart -m immediate`: every backend dies at once, as in a crash.
    pub fn restart_immediate(&self) {
        self.pg_ctl(&["-m", "immediate", "restart"]).unwrap();
    }

    fn start_replica(&self) -> Result<Replica, String> {
        let dir = self.base.join("replica");
        let port = free_port()?;
        append(
            &dir.join("postgresql.auto.conf"),
            &format!(
                "\nport = {port}\nhot_standby = on\nssl = off\nprimary_conninfo = 'host={sock} port={primary} user=postgres'\n",
                sock = self.socket_dir.display(),
                primary = self.port
            ),
        )?;
        std::fs::write(dir.join("standby.signal"), "").map_err(|e| e.to_string())?;
        give_to_server_user(&dir)?;
        run(self
            .as_server_user("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&dir)
            .arg("-l")
            .arg(self.base.join("replica.log"))
            .arg("start"))?;
        Ok(Replica { port })
    }

    /// A background process that stops the servers and deletes everything once
    /// this test binary has exited, however it exits.
    fn guard(&self) {
        let pg_ctl = format!(
            "{} {}/pg_ctl",
            if is_root() {
                "runuser -u postgres --"
            } else {
                ""
            },
            self.bin.display()
        );
        let stop = format!(
            "for p in {base}/pgbouncer-*.pid; do kill -TERM $(cat $p); done 2>/dev/null; \
             {pg_ctl} -D {base}/replica stop -m immediate >/dev/null 2>&1; {pg_ctl} -D {base}/data stop -m immediate",
            base = self.base.display()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; {stop} >/dev/null 2>&1; rm -rf {base}",
            pid = std::process::id(),
            base = self.base.display()
        );
        // Deliberately not waited for: it must outlive this process.
        #[expect(
            clippy::zombie_processes,
            reason = "the guardian outlives the test binary by design"
        )]
        let _guardian = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the cluster guardian");
    }

    fn write_tls_files(&self, data: &Path) -> Result<(), String> {
        let ca_key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "pg-transport test CA");
        let ca = ca_params.self_signed(&ca_key).map_err(|e| e.to_string())?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(|e| e.to_string())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.serial_number = Some(SERVER_CERT_SERIAL.into());
        let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
        self.write_crls(&issuer)?;
        std::fs::write(&self.ca_file, ca.pem()).map_err(|e| e.to_string())?;
        std::fs::write(data.join("server.crt"), cert.pem()).map_err(|e| e.to_string())?;
        std::fs::write(data.join("server.key"), key.serialize_pem()).map_err(|e| e.to_string())?;
        std::fs::write(data.join("root.crt"), ca.pem()).map_err(|e| e.to_string())?;
        // A client certificate for CERT_USER (cert authentication), for the tests.
        let client_key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut client_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, CERT_USER);
        let client_cert = client_params
            .signed_by(&client_key, &issuer)
            .map_err(|e| e.to_string())?;
        std::fs::write(self.base.join("client.crt"), client_cert.pem())
            .map_err(|e| e.to_string())?;
        std::fs::write(self.base.join("client.key"), client_key.serialize_pem())
            .map_err(|e| e.to_string())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .map_err(|e| e.to_string())?;
        if is_root() {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(data))?;
        }
        Ok(())
    }

    /// Revocation lists for `sslcrl`/`sslcrldir` tests, beside the CA file:
    /// `revoked.crl` revokes the server's certificate, `clean.crl` another
    /// serial, `crls/` holds the revoking one, and `other-ca.crl` comes from a
    /// CA that did not issue the server's certificate (`other-ca.crt`).
    fn write_crls(&self, issuer: &rcgen::Issuer<'_, rcgen::KeyPair>) -> Result<(), String> {
        let crl = |serial: u64, issuer: &rcgen::Issuer<'_, rcgen::KeyPair>| {
            rcgen::CertificateRevocationListParams {
                this_update: rcgen::date_time_ymd(2020, 1, 1),
                next_update: rcgen::date_time_ymd(2099, 1, 1),
                crl_number: 1u64.into(),
                issuing_distribution_point: None,
                revoked_certs: vec![rcgen::RevokedCertParams {
                    serial_number: serial.into(),
                    revocation_time: rcgen::date_time_ymd(2021, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                }],
                key_identifier_method: rcgen::KeyIdMethod::Sha256,
            }
            .signed_by(issuer)
            .map(|c| c.pem().expect("CRL PEM"))
            .map_err(|e| e.to_string())
        };
        let write = |name: &str, text: String| {
            std::fs::write(self.base.join(name), text).map_err(|e| e.to_string())
        };
        write("revoked.crl", crl(SERVER_CERT_SERIAL, issuer)?)?;
        write("clean.crl", crl(SERVER_CERT_SERIAL + 1, issuer)?)?;
        std::fs::create_dir_all(self.base.join("crls")).map_err(|e| e.to_string())?;
        write("crls/revoked.r0", crl(SERVER_CERT_SERIAL, issuer)?)?;
        write("crls/README", "not a CRL\n".to_owned())?;
        let other_key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut other =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        other.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        other
            .distinguished_name
            .push(rcgen::DnType::CommonName, "some other CA");
        let other_cert = other.self_signed(&other_key).map_err(|e| e.to_string())?;
        write("other-ca.crt", other_cert.pem())?;
        let other = rcgen::Issuer::new(other, other_key);
        write("other-ca.crl", crl(SERVER_CERT_SERIAL, &other)?)
    }

    fn configure(&self, data: &Path) -> Result<(), String> {
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{sock}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\n\
             password_encryption = 'scram-sha-256'\nfsync = off\nmax_connections = 60\n",
            port = self.port,
            sock = self.socket_dir.display()
        );
        append(&data.join("postgresql.conf"), &conf)?;
        let hba = format!(
            "local all all trust\n\
             local replication all trust\n\
             host all {TRUST_USER} 127.0.0.1/32 trust\n\
             host all {PASSWORD_USER} 127.0.0.1/32 password\n\
             host all {MD5_USER} 127.0.0.1/32 md5\n\
             host all {SCRAM_USER} 127.0.0.1/32 scram-sha-256\n\
             hostssl all {SSL_ONLY_USER} 127.0.0.1/32 trust\n\
             hostnossl all {NOSSL_ONLY_USER} 127.0.0.1/32 trust\n\
             hostssl all {CERT_USER} 127.0.0.1/32 cert\n\
             host all postgres 127.0.0.1/32 trust\n"
        );
        std::fs::write(data.join("pg_hba.conf"), hba).map_err(|e| e.to_string())
    }

    fn bootstrap(&self) -> Result<(), String> {
        let sql = format!(
            "CREATE ROLE {TRUST_USER} LOGIN SUPERUSER;\n\
             CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD_PASS}';\n\
             SET password_encryption = 'md5';\n\
             CREATE ROLE {MD5_USER} LOGIN PASSWORD '{MD5_PASS}';\n\
             SET password_encryption = 'scram-sha-256';\n\
             CREATE ROLE {SCRAM_USER} LOGIN PASSWORD '{SCRAM_PASS}';\n\
             CREATE ROLE {SSL_ONLY_USER} LOGIN;\n\
             CREATE ROLE {NOSSL_ONLY_USER} LOGIN;\n\
             CREATE ROLE {CERT_USER} LOGIN;\n\
             GRANT pg_signal_backend TO {SCRAM_USER};\n"
        );
        self.psql(&sql).map(drop)
    }

    /// Runs SQL as the superuser over the Unix socket with the system's psql.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let psql = [self.bin.join("psql"), PathBuf::from("/usr/bin/psql")]
            .into_iter()
            .find(|p| p.exists())
            .ok_or("psql not found")?;
        let out = Command::new(psql)
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-h",
            ])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-c", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "psql failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// A URL for `user` over TCP with extra `key=value&…` parameters.
    pub fn url(&self, user: &str, password: Option<&str>, params: &str) -> String {
        url_for(self.port, user, password, params)
    }

    /// A keyword string for the Unix socket.
    pub fn socket_conninfo(&self, user: &str, extra: &str) -> String {
        format!(
            "host={} port={} user={user} dbname=postgres {extra}",
            self.socket_dir.display(),
            self.port
        )
    }
}

/// A URL for `user` at 127.0.0.1:`port` with extra `key=value&…` parameters.
pub fn url_for(port: u16, user: &str, password: Option<&str>, params: &str) -> String {
    let auth = match password {
        Some(p) => format!("{user}:{}", urlencode(p)),
        None => user.to_owned(),
    };
    format!("postgres://{auth}@127.0.0.1:{port}/postgres?{params}")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
