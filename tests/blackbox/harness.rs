//! Starting the real binaries: `ferry` and `ferry-dev-idp`, built by `cargo build --bins`
//! into the same target directory as this test binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The path of a workspace binary next to this test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/blackbox-HASH → target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: the test command builds it first (`cargo build --bins`)",
        path.display()
    );
    path
}

/// A running child process whose output lines are collected.
pub struct Proc {
    child: Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(line);
        }
    });
    lines
}

impl Proc {
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning")?;
        let stdout = collect(child.stdout.take().context("stdout")?);
        let stderr = collect(child.stderr.take().context("stderr")?);
        Ok(Self {
            child,
            stdout,
            stderr,
        })
    }

    /// Waits until a line of stdout or stderr contains `needle`; returns that line.
    pub fn wait_for(&mut self, needle: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for lines in [&self.stdout, &self.stderr] {
                if let Some(l) = lines
                    .lock()
                    .expect("lines")
                    .iter()
                    .find(|l| l.contains(needle))
                {
                    return Ok(l.clone());
                }
            }
            if let Some(status) = self.child.try_wait()? {
                // Let the reader threads take the last lines the process wrote.
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "process exited ({status}) before printing {needle:?}; output:\n{}",
                    self.output()
                );
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {needle:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// All output so far, both streams.
    pub fn output(&self) -> String {
        let mut s = self.stdout.lock().expect("lines").join("\n");
        s.push('\n');
        s.push_str(&self.stderr.lock().expect("lines").join("\n"));
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit, up to `secs`.
    pub fn wait_exit(&mut self, secs: u64) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("process did not exit within {secs}s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running development issuer.
pub struct DevIdp {
    _proc: Proc,
    pub issuer: String,
    pub data_dir: PathBuf,
}

impl DevIdp {
    pub fn start(data_dir: &Path) -> anyhow::Result<Self> {
        let mut proc = Proc::spawn(
            Command::new(bin("ferry-dev-idp"))
                .arg("serve")
                .arg("--data-dir")
                .arg(data_dir)
                .arg("--listen")
                .arg("127.0.0.1:0"),
        )?;
        let line = proc.wait_for("listening on ")?;
        let issuer = line.rsplit(' ').next().context("issuer")?.to_owned();
        Ok(Self {
            _proc: proc,
            issuer,
            data_dir: data_dir.to_owned(),
        })
    }

    /// Mints a token through the CLI.
    pub fn mint(&self, sub: &str, aud: &str, claims: &[&str]) -> anyhow::Result<String> {
        let mut cmd = Command::new(bin("ferry-dev-idp"));
        cmd.arg("mint")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--sub", sub, "--aud", aud]);
        for c in claims {
            cmd.args(["--claim", c]);
        }
        let out = cmd.output()?;
        if !out.status.success() {
            bail!("mint failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }
}

/// A running Ferry (or a handle to one another test task started).
pub struct Ferry {
    pub proc: Option<Proc>,
    pub url: String,
    /// The admin listener's URL.
    pub admin: Option<String>,
}

/// The URL in a "listening on URL" line.
fn after_scheme(line: &str) -> Option<String> {
    let start = line.find("http")?;
    line[start..].split_whitespace().next().map(str::to_owned)
}

impl Ferry {
    /// A handle to an already running Ferry, for use from another task.
    pub fn attach(url: String) -> Self {
        Self {
            proc: None,
            url,
            admin: None,
        }
    }

    /// The running process.
    pub fn proc(&self) -> &Proc {
        self.proc.as_ref().expect("a started Ferry")
    }

    /// The running process, mutably.
    pub fn proc_mut(&mut self) -> &mut Proc {
        self.proc.as_mut().expect("a started Ferry")
    }

    /// Starts `ferry serve` on `127.0.0.1:0` with this configuration file and the
    /// test key-encryption key. For a configuration that names Ferry's own URL, use
    /// [`Setup`] (or [`Ferry::start_on`]) instead.
    pub fn start(config: &Path) -> anyhow::Result<Self> {
        Self::start_with(config, &[("FERRY_KEK", TEST_KEK)])
    }

    /// Starts `ferry serve` with extra environment variables.
    pub fn start_with(config: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin("ferry"));
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .env("FERRY_LISTEN", "127.0.0.1:0");
        Self::launch(cmd, env)
    }

    /// Starts `ferry serve` on `socket`, which Ferry inherits as systemd passes a
    /// socket-activated service its sockets: file descriptor 3, `LISTEN_FDS=1`,
    /// `LISTEN_PID` its own pid (set by `sh` just before it execs Ferry). The test keeps
    /// its copy, so a restarted Ferry gets the same address and nothing else can take
    /// it meanwhile.
    pub fn start_on(socket: &Socket, config: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut cmd = activated(&[socket], None, "LISTEN_PID=$$", config)?;
        cmd.env_remove("FERRY_LISTEN");
        let ferry = Self::launch(cmd, env)?;
        // http:// or, with `tls:`, https://
        if ferry.url.split_once("://").map(|(_, a)| a) != Some(socket.addr()) {
            bail!(
                "Ferry listens on {}, not on the socket it was given ({})",
                ferry.url,
                socket.url
            );
        }
        Ok(ferry)
    }

    /// Spawns `cmd` (a `ferry serve`) and waits until it listens.
    pub fn launch(mut cmd: Command, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        cmd.env("FERRY_ADMIN_LISTEN", "127.0.0.1:0")
            .env_remove("RUST_LOG")
            .env_remove("FERRY_KEK");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut proc = Proc::spawn(&mut cmd)?;
        let line = proc.wait_for("ferry listening on http")?;
        let url = after_scheme(&line).context("url")?;
        let admin = proc
            .wait_for("ferry admin listening on http")
            .ok()
            .and_then(|l| after_scheme(&l));
        Ok(Self {
            proc: Some(proc),
            url,
            admin,
        })
    }
}

/// A listening socket for a Ferry that has not started yet, bound by the test on
/// `127.0.0.1:0` and kept open for the test's life. Its URL can go into Ferry's
/// configuration (`issuer`, the audience providers' tokens carry, the DPoP `htu`)
/// before Ferry runs, and Ferry inherits the socket itself, so no other process can
/// take the port in between (as it could one picked by binding and releasing a socket).
pub struct Socket {
    listener: std::net::TcpListener,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Socket {
    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    pub fn bind() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        Self { listener, url }
    }
}

/// A `sh -c '<pid> exec ferry serve --config CONFIG'` command handing Ferry `sockets` as
/// file descriptors 3, 4, … with `LISTEN_FDS` and `LISTEN_FDNAMES` (`names`, or unset
/// when `None`), as systemd does; `pid` is the `LISTEN_PID=…` assignment
/// (`LISTEN_PID=$$` names the process that then execs Ferry: Ferry's own pid).
pub fn activated(
    sockets: &[&Socket],
    names: Option<&str>,
    pid: &str,
    config: &Path,
) -> anyhow::Result<Command> {
    use command_fds::{CommandFdExt, FdMapping};
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(r#"{pid} exec "$0" "$@""#))
        .arg(bin("ferry"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("LISTEN_FDS", sockets.len().to_string())
        .env_remove("LISTEN_FDNAMES");
    if let Some(names) = names {
        cmd.env("LISTEN_FDNAMES", names);
    }
    let mut mappings = Vec::new();
    for (fd, socket) in (3..).zip(sockets) {
        mappings.push(FdMapping {
            parent_fd: socket.listener.try_clone()?.into(),
            child_fd: fd,
        });
    }
    cmd.fd_mappings(mappings)?;
    Ok(cmd)
}

/// The setup every black-box test of a running Ferry shares: a temporary directory for
/// its configuration and data, and its [`Socket`], so that the configuration can name
/// Ferry's URL. Write the files the configuration refers to, then [`Setup::start`].
pub struct Setup {
    pub tmp: TempDir,
    url: String,
    /// `None` once handed over for good ([`Setup::run_alone`]).
    socket: Option<Socket>,
    env: Vec<(String, String)>,
}

impl Setup {
    pub fn new(tag: &str) -> Self {
        let socket = Socket::bind();
        Self {
            tmp: TempDir::new(tag),
            url: socket.url.clone(),
            socket: Some(socket),
            env: vec![("FERRY_KEK".into(), TEST_KEK.into())],
        }
    }

    /// Ferry's URL, known before it starts: its `issuer`, the audience of the tokens
    /// it accepts from providers.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Ferry's socket, kept by the test so that Ferry can be started on it again.
    pub fn socket(&self) -> &Socket {
        self.socket
            .as_ref()
            .expect("the socket was handed over with run_alone")
    }

    /// The test key-encryption key and the variables [`Setup::env`] added.
    pub fn env_vars(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Writes `name` in the directory; returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }

    /// The issuer most tests trust, [`IDP`] with the EC key `i1`, its keys written to
    /// `idp.json` (as [`idp_providers`] names them).
    pub fn idp(&self) -> ferry_testkit::Issuer {
        let idp = ferry_testkit::Issuer::new(IDP, ferry_testkit::TestKey::ec("i1"));
        self.jwks("idp.json", &[&idp.key]);
        idp
    }

    /// Writes `name` holding the public JWK set of `keys`.
    pub fn jwks(&self, name: &str, keys: &[&ferry_testkit::TestKey]) -> PathBuf {
        self.write(name, ferry_testkit::keys::jwks(keys).to_string())
    }

    /// An environment variable for Ferry (beside the test key-encryption key).
    #[must_use]
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Writes `config` as `ferry.yaml`; returns its path.
    pub fn config(&self, config: &str) -> PathBuf {
        self.write("ferry.yaml", config)
    }

    /// Writes `config` as `ferry.yaml` and starts Ferry on the socket.
    pub fn start(&self, config: &str) -> Ferry {
        self.write("ferry.yaml", config);
        self.run()
    }

    /// Starts Ferry on the socket with the `ferry.yaml` already written: first, or
    /// again after the previous one stopped (same address, same data directory).
    pub fn run(&self) -> Ferry {
        Ferry::start_on(
            self.socket(),
            &self.path().join("ferry.yaml"),
            &self.env_vars(),
        )
        .expect("Ferry starts on its socket")
    }

    /// Starts Ferry on the socket and gives it the only copy, for tests of what a
    /// client sees once Ferry stops listening (connections refused, as after a real
    /// shutdown); Ferry cannot be started on this address again.
    pub fn run_alone(&mut self) -> Ferry {
        let ferry = self.run();
        self.socket = None;
        ferry
    }
}

/// The issuer of [`Setup::idp`].
pub const IDP: &str = "https://idp.example.com";

/// A `providers:` section with one static provider, `idp`, trusting [`Setup::idp`]'s keys
/// (`idp.json`) for tokens addressed to Ferry at `ferry_url`.
pub fn idp_providers(ferry_url: &str) -> String {
    format!(
        "providers:\n  - id: idp\n    issuer: {IDP}\n    audiences: [{ferry_url}]\n    jwks: {{ file: idp.json }}\n"
    )
}

/// The trust section the multi-replica tests share: the service account `builder`
/// (keys in `builder.json`), mapped to the subject `sa:<sub>`, may get `deploy` for
/// `audience`.
pub fn builder_trust(audience: &str) -> String {
    format!(
        "service_accounts:\n  - id: builder\n    jwks: {{ file: builder.json }}\nproviders:\n  - id: sa\n    kind: service_account\n    mapping: {{ subject: \"'sa:' + assertion.sub\" }}\naudiences:\n  - audience: {audience}\n    rules:\n      - allow: provider == 'service-account' && subject == 'builder'\n        scopes: [deploy]\n"
    )
}

/// One replica's directory, `dir/name`, holding a copy of `dir/builder.json`.
pub fn replica_dir(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).expect("replica dir");
    std::fs::copy(dir.join("builder.json"), d.join("builder.json")).expect("builder.json");
    d
}

/// The key-encryption key the black-box tests run Ferry with (32 bytes, base64).
pub const TEST_KEK: &str = "dGVzdC1rZXktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM=";

/// A `ferry` command with the test key-encryption key set.
pub fn ferry_cmd() -> Command {
    let mut c = Command::new(bin("ferry"));
    c.env("FERRY_KEK", TEST_KEK);
    c
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let mut rnd = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut rnd);
        let name: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("ferry-test-{tag}-{name}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
