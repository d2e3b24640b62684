//! A throwaway PostgreSQL cluster on a loopback port it could bind (see
//! [`crate::daemon_port`]): `initdb` into a temporary
//! directory, password (SCRAM) authentication over TCP, no durability (fsync off). Run
//! as the `postgres` user when the tests run as root (PostgreSQL refuses root).
//! The server binaries come from Debian's `postgresql` package, which
//! scripts/install-test-deps.sh installs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Why a server did not start.
#[derive(Debug)]
enum Start {
    /// Its TCP port is another process's.
    PortInUse,
    /// Anything else, with the server's log.
    Failed(String),
}

/// A running (or stopped) throwaway cluster; removed on drop.
#[derive(Debug)]
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    password: String,
    owner: Option<(u32, u32)>,
    child: Option<Child>,
    tls: bool,
}

fn bin_dir() -> PathBuf {
    let mut versions: Vec<u32> = fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_unstable();
    match versions.last() {
        Some(v) => PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")),
        None => panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql: run scripts/install-test-deps.sh"
        ),
    }
}

/// uid and gid of the `postgres` account, when running as root.
fn owner() -> Option<(u32, u32)> {
    let me = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return None;
    }
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

impl Postgres {
    /// Creates and starts a cluster.
    pub fn start() -> Self {
        Self::create(None)
    }

    /// A cluster that accepts TCP connections only over TLS (`hostssl` alone in
    /// pg_hba.conf), with this certificate and key (PEM).
    pub fn start_with_tls(cert_pem: &str, key_pem: &str) -> Self {
        Self::create(Some((cert_pem, key_pem)))
    }

    fn create(tls: Option<(&str, &str)>) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ferry-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut pw = [0u8; 12];
        aws_lc_rs::rand::fill(&mut pw).unwrap();
        let password: String = pw.iter().map(|b| format!("{b:02x}")).collect();
        fs::write(dir.join("pwfile"), &password).unwrap();
        let mut pg = Self {
            bin: bin_dir(),
            port: crate::daemon_port(),
            password,
            owner: owner(),
            child: None,
            dir,
            tls: tls.is_some(),
        };
        pg.chown(&pg.dir.clone());
        pg.chown(&pg.dir.join("pwfile"));
        let data = pg.dir.join("data");
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pg.dir.join("pwfile").display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some((cert, key)) = tls {
            for (name, pem) in [("server.crt", cert), ("server.key", key)] {
                let path = pg.dir.join(name);
                fs::write(&path, pem).unwrap();
                fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .unwrap();
                pg.chown(&path);
            }
            fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
            )
            .unwrap();
            pg.chown(&data.join("pg_hba.conf"));
        }
        // PostgreSQL cannot listen on port 0 and say where: another port when the one
        // tried is taken.
        for _ in 0..20 {
            match pg.try_start() {
                Ok(()) => return pg,
                Err(Start::PortInUse) => pg.port = crate::daemon_port(),
                Err(Start::Failed(log)) => panic!("PostgreSQL did not start: {log}"),
            }
        }
        panic!("PostgreSQL found no free port in 20 tries")
    }

    fn chown(&self, path: &Path) {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
        }
    }

    /// A command for a PostgreSQL binary, run as `postgres` when we are root.
    fn command(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        match self.owner {
            Some(_) => {
                let mut c = Command::new("setpriv");
                c.args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--init-groups",
                    "--",
                ])
                .arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    /// Starts the (stopped) server again on the same port and data.
    pub fn start_again(&mut self) {
        if let Err(e) = self.try_start() {
            panic!("PostgreSQL did not start again: {e:?}");
        }
    }

    fn try_start(&mut self) -> Result<(), Start> {
        assert!(self.child.is_none(), "already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=16MB",
                "-c",
                "max_connections=40",
            ])
            .args(if self.tls {
                vec![
                    "-c".to_owned(),
                    "ssl=on".to_owned(),
                    "-c".to_owned(),
                    format!("ssl_cert_file={}", self.dir.join("server.crt").display()),
                    "-c".to_owned(),
                    format!("ssl_key_file={}", self.dir.join("server.key").display()),
                ]
            } else {
                Vec::new()
            })
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let log = || fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        loop {
            // Asked on its own Unix socket (in its own directory): a server of another
            // test on the same TCP port cannot answer for it.
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-t", "1", "-h"])
                .arg(&self.dir)
                .arg("-p")
                .arg(self.port.to_string())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                self.child = None;
                let log = log();
                return Err(if log.contains("already in use") {
                    Start::PortInUse
                } else {
                    Start::Failed(log)
                });
            }
            if Instant::now() > deadline {
                return Err(Start::Failed(log()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (fast shutdown: sessions are cut, as in a restart).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL with the superuser's password.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            self.password, self.port
        )
    }

    /// The password (to show that it never reaches a log).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// Runs `sql` with psql; returns its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
            ])
            .arg("postgres")
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-c")
            .arg(sql)
            .arg("postgres")
            .env("PGPASSWORD", &self.password)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: nothing here needs to survive.
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
