//! A real PostgreSQL for the sequencer's tests and for agents of a cluster (`--metadata`): Debian's `postgresql` package (`initdb` and
//! `postgres` from `/usr/lib/postgresql/<version>/bin`, or `SLUICE_POSTGRES_BIN_DIR`), a fresh
//! cluster in a temporary directory, listening on a free loopback port, stopped on drop.
//!
//! PostgreSQL refuses to run as root. As root (CI on Debian 12) the server runs as the `postgres`
//! user the package creates: the child switches uid/gid itself (`Command::uid`), so the process we
//! hold is the postmaster (no `runuser`/`su` in between that could outlive a kill), and it gets
//! `PR_SET_PDEATHSIG` after the switch, so a crashed test leaves no server behind.
//!
//! Missing binaries skip the test loudly, or fail it under `CI=true`
//! (`crate::tools::skip_or_fail`): `scripts/install-test-deps.sh` installs the package.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to accept connections.
const START_TIMEOUT_MS: u64 = 60_000;

#[derive(Debug)]
pub struct TestPostgres {
    child: Option<Child>,
    port: u16,
    directory: tempfile::TempDir,
    /// The TLS certificate and key, when the server has them.
    certificates: Option<tempfile::TempDir>,
    /// What [`TestPostgres::start_again`] starts the server with.
    bin_dir: PathBuf,
    settings: Vec<String>,
}

/// A uid/gid to run the server as when we are root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

impl TestPostgres {
    /// Starts a server for `test`, or returns `None` after `skip_or_fail` when PostgreSQL is not
    /// installed. A server that is installed but does not start panics with its log.
    pub fn start_or_skip(test: &str) -> Option<TestPostgres> {
        Self::start_with_or_skip(test, &[])
    }

    /// [`Self::start_or_skip`] with extra `-c name=value` settings.
    pub fn start_with_or_skip(test: &str, settings: &[&str]) -> Option<TestPostgres> {
        let Some(bin_dir) = bin_dir() else {
            crate::tools::skip_or_fail(&format!(
                "{test}: PostgreSQL is not installed (no initdb and postgres under \
                 /usr/lib/postgresql/*/bin or SLUICE_POSTGRES_BIN_DIR); run \
                 `bash scripts/install-test-deps.sh` (apt-get install postgresql)"
            ));
            return None;
        };
        Some(Self::start(&bin_dir, settings).unwrap_or_else(|error| panic!("{test}: {error}")))
    }

    /// A server that also accepts TLS, with a fresh self-signed certificate for `127.0.0.1`
    /// (made with the `openssl` command line). Returns the server and the certificate (PEM) a
    /// client must trust.
    pub fn start_tls_or_skip(test: &str) -> Option<(TestPostgres, Vec<u8>)> {
        let Some(bin_dir) = bin_dir() else {
            crate::tools::skip_or_fail(&format!(
                "{test}: PostgreSQL is not installed; run `bash scripts/install-test-deps.sh`"
            ));
            return None;
        };
        let certificates = tempfile::tempdir().expect("temporary directory");
        let (cert, key) = match make_certificate(certificates.path()) {
            Ok(files) => files,
            Err(CertificateError::NoOpenssl(reason)) => {
                crate::tools::skip_or_fail(&format!("{test}: {reason}"));
                return None;
            }
            Err(CertificateError::Failed(reason)) => panic!("{test}: {reason}"),
        };
        let pem = std::fs::read(&cert).expect("read the certificate");
        let postgres =
            Self::start_with_certificate(test, &bin_dir, certificates, &cert, &key, Vec::new());
        Some((postgres, pem))
    }

    /// A server that also accepts TLS with the given certificate chain and key (PEM), e.g. a
    /// server certificate signed by a test's own certificate authority.
    pub fn start_tls_with_or_skip(
        test: &str,
        certificate_pem: &str,
        key_pem: &str,
    ) -> Option<TestPostgres> {
        Self::start_tls_with_client_ca_or_skip(test, certificate_pem, key_pem, None)
    }

    /// [`Self::start_tls_with_or_skip`]; with `client_ca_pem`, TLS connections must present a
    /// client certificate signed by it whose common name is the user (`hostssl … trust
    /// clientcert=verify-full`), while plain connections (the test's own, [`Self::admin`]) are
    /// trusted as before.
    pub fn start_tls_with_client_ca_or_skip(
        test: &str,
        certificate_pem: &str,
        key_pem: &str,
        client_ca_pem: Option<&str>,
    ) -> Option<TestPostgres> {
        let Some(bin_dir) = bin_dir() else {
            crate::tools::skip_or_fail(&format!(
                "{test}: PostgreSQL is not installed; run `bash scripts/install-test-deps.sh`"
            ));
            return None;
        };
        let certificates = tempfile::tempdir().expect("temporary directory");
        let cert = certificates.path().join("server.crt");
        let key = certificates.path().join("server.key");
        std::fs::write(&cert, certificate_pem).expect("write the certificate");
        std::fs::write(&key, key_pem).expect("write the key");
        // PostgreSQL refuses a key that others can read.
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod the key");
        let mut settings = Vec::new();
        if let Some(client_ca_pem) = client_ca_pem {
            let client_ca = certificates.path().join("client-ca.pem");
            let hba = certificates.path().join("pg_hba.conf");
            std::fs::write(&client_ca, client_ca_pem).expect("write the client CA");
            std::fs::write(
                &hba,
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 trust clientcert=verify-full\n\
                 hostnossl all all 127.0.0.1/32 trust\n",
            )
            .expect("write pg_hba.conf");
            settings.push(format!("ssl_ca_file={}", client_ca.display()));
            settings.push(format!("hba_file={}", hba.display()));
        }
        Some(Self::start_with_certificate(
            test,
            &bin_dir,
            certificates,
            &cert,
            &key,
            settings,
        ))
    }

    fn start_with_certificate(
        test: &str,
        bin_dir: &Path,
        certificates: tempfile::TempDir,
        cert: &Path,
        key: &Path,
        extra_settings: Vec<String>,
    ) -> TestPostgres {
        let mut settings = vec![
            "ssl=on".to_string(),
            format!("ssl_cert_file={}", cert.display()),
            format!("ssl_key_file={}", key.display()),
        ];
        settings.extend(extra_settings);
        let run_as = run_as().unwrap_or_else(|error| panic!("{test}: {error}"));
        if let Some(run_as) = run_as {
            // The server reads them as its own user; the key must not be readable by others.
            let files = std::fs::read_dir(certificates.path())
                .expect("list the certificates")
                .map(|entry| entry.expect("a certificate file").path());
            for path in std::iter::once(certificates.path().to_path_buf()).chain(files) {
                std::os::unix::fs::chown(&path, Some(run_as.uid), Some(run_as.gid))
                    .expect("chown the certificate");
            }
        }
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        let mut postgres =
            Self::start(bin_dir, &settings).unwrap_or_else(|error| panic!("{test}: {error}"));
        postgres.certificates = Some(certificates);
        postgres
    }

    fn start(bin_dir: &Path, settings: &[&str]) -> Result<TestPostgres, String> {
        let run_as = run_as()?;
        let directory = tempfile::Builder::new()
            .prefix("sluice-pg-")
            .tempdir()
            .map_err(|error| format!("temporary directory: {error}"))?;
        if let Some(run_as) = run_as {
            std::os::unix::fs::chown(directory.path(), Some(run_as.uid), Some(run_as.gid))
                .map_err(|error| format!("chown the temporary directory: {error}"))?;
        }
        let data = directory.path().join("data");
        let initdb_log = directory.path().join("initdb.log");
        let output = command(bin_dir.join("initdb"), run_as, directory.path())
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .map_err(|error| format!("run initdb: {error}"))?;
        if !output.status.success() {
            let _ = std::fs::write(&initdb_log, &output.stderr);
            return Err(format!(
                "initdb failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let port = free_port()?;
        let log_path = directory.path().join("postgres.log");
        std::fs::File::create(&log_path)
            .map_err(|error| format!("create the server log: {error}"))?;
        if let Some(run_as) = run_as {
            std::os::unix::fs::chown(&log_path, Some(run_as.uid), None)
                .map_err(|error| format!("chown the server log: {error}"))?;
        }
        let settings: Vec<String> = settings
            .iter()
            .map(|setting| (*setting).to_owned())
            .collect();
        let child = spawn_server(bin_dir, run_as, directory.path(), port, &settings)?;
        let mut postgres = TestPostgres {
            child: Some(child),
            port,
            directory,
            certificates: None,
            bin_dir: bin_dir.to_path_buf(),
            settings,
        };
        postgres.wait_ready(bin_dir)?;
        Ok(postgres)
    }

    /// A URL for the superuser, with `application_name` set when given (tests find a
    /// sequencer's backends by it).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn url_named(&self, application_name: &str) -> String {
        format!("{}?application_name={application_name}", self.url())
    }

    /// Stops the server as `pg_ctl stop -m fast` does (SIGINT to the postmaster: open transactions
    /// roll back, connections are closed, a shutdown checkpoint is written) and waits until it
    /// has exited. The data directory and port stay, for [`TestPostgres::start_again`].
    pub fn stop(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = i32::try_from(child.id()).map_err(|error| format!("postmaster pid: {error}"))?;
        // SAFETY: a signal to our own child, which we have not reaped yet.
        if unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
            return Err(format!(
                "SIGINT to the postmaster: {}",
                std::io::Error::last_os_error()
            ));
        }
        let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "postgres did not stop within {START_TIMEOUT_MS} ms:\n{}",
                        self.log()
                    ));
                }
                Err(error) => return Err(format!("wait for the postmaster: {error}")),
            }
        }
    }

    /// Starts the server again after [`TestPostgres::stop`], on the same data directory, port and
    /// settings, and waits until it accepts connections.
    pub fn start_again(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = spawn_server(
            &self.bin_dir,
            run_as()?,
            self.directory.path(),
            self.port,
            &self.settings,
        )?;
        self.child = Some(child);
        let bin_dir = self.bin_dir.clone();
        self.wait_ready(&bin_dir)
    }

    /// A plain client for the test's own statements (its connection runs on a spawned task).
    pub async fn admin(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("admin connection");
        tokio::spawn(connection);
        client
    }

    /// Runs `sql` with `psql` and parses its one value as an integer (a NULL is 0); panics on
    /// anything else, with the server's log.
    pub fn query_i64(&self, sql: &str) -> i64 {
        let bin_dir = bin_dir().expect("the PostgreSQL binaries this server was started from");
        let output = Command::new(bin_dir.join("psql"))
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-p",
            ])
            .arg(self.port.to_string())
            .args(["-d", "postgres", "-c", sql])
            .output()
            .expect("run psql");
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            output.status.success(),
            "psql {sql:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        if text.is_empty() {
            return 0;
        }
        text.parse()
            .unwrap_or_else(|_| panic!("psql {sql:?} answered {text:?}, not an integer"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.path().join("postgres.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self, bin_dir: &Path) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
        loop {
            let ready = Command::new(bin_dir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("postgres exited ({status}):\n{}", self.log()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "postgres did not accept connections within {START_TIMEOUT_MS} ms:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGQUIT: immediate shutdown, the postmaster takes its backends down with it.
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: a signal to our own child, which we have not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGQUIT);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Starts `postgres` on `directory`/data and `port`, its output appended to
/// `directory`/postgres.log, killed if the test process dies.
fn spawn_server(
    bin_dir: &Path,
    run_as: Option<RunAs>,
    directory: &Path,
    port: u16,
    settings: &[String],
) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(directory.join("postgres.log"))
        .map_err(|error| format!("open the server log: {error}"))?;
    let log_err = log
        .try_clone()
        .map_err(|error| format!("server log: {error}"))?;
    let mut server = command(bin_dir.join("postgres"), run_as, directory);
    server
        .arg("-D")
        .arg(directory.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .arg("-k")
        .arg(directory)
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "max_connections=200"])
        .args(["-c", "shared_buffers=32MB"]);
    for setting in settings {
        server.args(["-c", setting]);
    }
    server.stdout(log).stderr(log_err);
    // SAFETY: prctl only, which is async-signal-safe, between fork and exec; it runs after
    // the uid switch (which would clear it).
    unsafe {
        server.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    server
        .spawn()
        .map_err(|error| format!("start postgres: {error}"))
}

#[derive(Debug)]
enum CertificateError {
    NoOpenssl(String),
    Failed(String),
}

/// A self-signed certificate for `127.0.0.1` and its key, in `directory`, made with the `openssl`
/// command line.
fn make_certificate(directory: &Path) -> Result<(PathBuf, PathBuf), CertificateError> {
    let cert = directory.join("server.crt");
    let key = directory.join("server.key");
    let output = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // An end-entity certificate: webpki refuses a CA certificate as the server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .map_err(|error| {
            CertificateError::NoOpenssl(format!(
                "the openssl command is missing ({error}); apt-get install openssl"
            ))
        })?;
    if !output.status.success() {
        return Err(CertificateError::Failed(format!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok((cert, key))
}

/// The PEM of a fresh self-signed certificate no server uses (for "untrusted" cases).
pub fn unrelated_certificate_pem() -> Vec<u8> {
    let directory = tempfile::tempdir().expect("temporary directory");
    let (cert, _) = make_certificate(directory.path()).expect("make a certificate");
    std::fs::read(cert).expect("read the certificate")
}

/// `SLUICE_POSTGRES_BIN_DIR`, else the newest `/usr/lib/postgresql/<version>/bin` that has both
/// `initdb` and `postgres`.
fn bin_dir() -> Option<PathBuf> {
    let complete = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("SLUICE_POSTGRES_BIN_DIR") {
        let dir = PathBuf::from(dir);
        return complete(&dir).then_some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let dir = entry.path().join("bin");
            complete(&dir).then_some((version, dir))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// As root: the `postgres` user's uid and gid. Otherwise nothing to switch.
fn run_as() -> Result<Option<RunAs>, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|error| format!("read /etc/passwd: {error}"))?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&"postgres")
            && let (Some(uid), Some(gid)) = (fields.get(2), fields.get(3))
        {
            let uid = uid.parse().map_err(|_| format!("bad uid in {line:?}"))?;
            let gid = gid.parse().map_err(|_| format!("bad gid in {line:?}"))?;
            return Ok(Some(RunAs { uid, gid }));
        }
    }
    Err(
        "running as root and there is no `postgres` user to run PostgreSQL as \
         (the postgresql package creates it)"
            .into(),
    )
}

fn command(program: PathBuf, run_as: Option<RunAs>, directory: &Path) -> Command {
    let mut command = Command::new(program);
    command.current_dir(directory).stdin(Stdio::null());
    if let Some(run_as) = run_as {
        // std drops root's supplementary groups when it switches the uid.
        command
            .uid(run_as.uid)
            .gid(run_as.gid)
            .env("HOME", directory);
    }
    command
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|error| format!("bind 127.0.0.1:0: {error}"))?;
    Ok(listener
        .local_addr()
        .map_err(|error| format!("local_addr: {error}"))?
        .port())
}
