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
                bail!(
                    "process exited ({status}) before printing {needle:?}; stderr:\n{}",
                    self.stderr.lock().expect("lines").join("\n")
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
    /// test key-encryption key.
    pub fn start(config: &Path) -> anyhow::Result<Self> {
        Self::start_with(config, &[("FERRY_KEK", TEST_KEK)])
    }

    /// Starts `ferry serve` with extra environment variables.
    pub fn start_with(config: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin("ferry"));
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .env("FERRY_LISTEN", "127.0.0.1:0")
            .env("FERRY_ADMIN_LISTEN", "127.0.0.1:0")
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
