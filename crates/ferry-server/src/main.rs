//! The `ferry` command: `serve` and `check`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use ferry_core::{Clock, SystemClock};

use ferry_server::listener::Server;
use ferry_server::listener::activation::{Activation, bind_or_inherit};
use ferry_server::load::{ConfigSource, build_state, read_config};
use ferry_server::metrics_listener::MetricsSocket;
use ferry_server::tls::acceptor_asking;
use ferry_server::{AppState, cli, startup};
use ferry_verify::time::SystemMono;

#[derive(Parser, Debug)]
#[command(
    name = "ferry",
    version,
    about = "Ferry: a federation token-exchange server (RFC 8693)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum SaCommand {
    /// Generate a key pair locally; writes the private key (0600) and prints the public
    /// JWK to register under `service_accounts`.
    Create {
        /// The service account's id.
        name: String,
        /// Where to write the key file.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// ES256, EdDSA or RS256.
        #[arg(long, default_value = "ES256")]
        alg: String,
    },
    /// Sign an assertion with a key file and exchange it at Ferry; prints the access token.
    Token {
        /// The key file from `ferry sa create`.
        #[arg(long)]
        key: PathBuf,
        /// Ferry's base URL.
        #[arg(long, env = "FERRY_URL")]
        url: String,
        /// The audience to request.
        #[arg(long)]
        audience: String,
        /// Scopes, space-delimited.
        #[arg(long)]
        scope: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ClientsCommand {
    /// Print a new client secret and the SHA-256 to register as `secret_sha256`.
    NewSecret,
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// List the keys with their state and ages.
    List {
        #[arg(long, env = "FERRY_CONFIG")]
        config: PathBuf,
    },
    /// Rotate now: the standby key (published for jwks_max_age + leeway) starts signing.
    Rotate {
        #[arg(long, env = "FERRY_CONFIG")]
        config: PathBuf,
    },
    /// Emergency: remove a key from /jwks at once; if it signs, the standby takes over.
    Revoke {
        #[arg(long, env = "FERRY_CONFIG")]
        config: PathBuf,
        /// The key id (a thumbprint may begin with '-').
        #[arg(allow_hyphen_values = true)]
        kid: String,
        /// Revoke the active key even without a standby relying services have cached:
        /// breaks them until they refetch /jwks.
        #[arg(long)]
        force: bool,
    },
    /// Print the public JWKS.
    ExportPublic {
        #[arg(long, env = "FERRY_CONFIG")]
        config: PathBuf,
    },
    /// Re-seal every key with the first key-encryption key. Refused while a live
    /// replica sharing the key store does not hold that key (it could no longer sign).
    Rewrap {
        #[arg(long, env = "FERRY_CONFIG")]
        config: PathBuf,
        /// Re-seal even though live replicas lack the first key-encryption key: they
        /// keep the active key they hold in memory, but cannot take a new one (503,
        /// /readyz fails) or restart until they are given it.
        #[arg(long)]
        force: bool,
    },
    /// Print a new random key-encryption key (base64), e.g. for FERRY_KEK.
    NewKek,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the server.
    Serve {
        /// Configuration file (YAML).
        #[arg(long, env = "FERRY_CONFIG")]
        config: PathBuf,
        /// Listen address; overrides `listen` in the file.
        #[arg(long, env = "FERRY_LISTEN")]
        listen: Option<String>,
        /// Admin listen address (`off` to disable); overrides `admin.listen`.
        #[arg(long, env = "FERRY_ADMIN_LISTEN")]
        admin_listen: Option<String>,
        /// Log level or filter (`info`, `ferry=debug`); overrides `log_level`. RUST_LOG wins over both.
        #[arg(long, env = "FERRY_LOG_LEVEL")]
        log_level: Option<String>,
        /// Log format on standard error. Audit events always go to standard output as JSON lines.
        #[arg(long, env = "FERRY_LOG_FORMAT", value_enum, default_value = "human")]
        log_format: LogFormat,
    },
    /// Validate a configuration and report every problem at once; exits non-zero on any.
    Check {
        /// Configuration file (YAML).
        #[arg(long, env = "FERRY_CONFIG")]
        config: PathBuf,
    },
    /// Explain the decision for a token (or bare claims) and a request, step by step.
    /// Exits 0 when allowed, 1 when denied.
    Explain {
        /// Configuration file (YAML).
        #[arg(long, env = "FERRY_CONFIG")]
        config: PathBuf,
        /// A subject token file: verified exactly as /token would (keys are fetched).
        #[arg(long, conflicts_with = "claims", required_unless_present = "claims")]
        token: Option<PathBuf>,
        /// A JSON file of claims: the signature and claim checks are skipped.
        #[arg(long)]
        claims: Option<PathBuf>,
        /// The requested audience (repeatable).
        #[arg(long, required = true)]
        audience: Vec<String>,
        /// Requested scopes, space-delimited.
        #[arg(long)]
        scope: Option<String>,
        /// The client id.
        #[arg(long)]
        client_id: Option<String>,
        /// The client's address, as rules see it (`request.source_ip`).
        #[arg(long)]
        source_ip: Option<std::net::IpAddr>,
        /// The token would be bound to a key (`request.sender_constrained`).
        #[arg(long)]
        sender_constrained: bool,
        /// The client authenticated (`request.client_authenticated`).
        #[arg(long)]
        client_authenticated: bool,
    },
    /// Service accounts: create a key pair, get a token with it.
    Sa {
        #[command(subcommand)]
        command: SaCommand,
    },
    /// Registered clients.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Operate the signing key ring.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Write the credential file Google's client libraries read (gcloud's create-cred-config).
    CredConfig(Box<cli::cred_config::Args>),
    /// Run table-driven policy tests; exits non-zero at the first mismatch.
    Test {
        /// Configuration file (YAML).
        #[arg(long, env = "FERRY_CONFIG")]
        config: PathBuf,
        /// The cases file (YAML).
        cases: PathBuf,
    },
}

async fn serve(
    path: &Path,
    activation: Activation,
    listen: Option<String>,
    admin_listen: Option<String>,
    log_level: Option<String>,
    format: LogFormat,
) -> anyhow::Result<()> {
    let source = ConfigSource::new(path.to_owned(), listen, admin_listen);
    let config = source
        .read()
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let _telemetry = ferry_server::telemetry::init(
        log_level.as_deref().unwrap_or(&config.log_level),
        matches!(format, LogFormat::Json),
    );
    for w in config
        .warnings
        .iter()
        .map(String::as_str)
        .chain(activation.ignored())
    {
        tracing::warn!("{w}");
    }
    let inherited = activation.take()?;
    let providers = startup::load_trusted(&config)?;
    let keys = startup::open_signing_keys(&config)?;
    let audit = startup::open_audit(&config.audit)?;
    let (admin, tls, limits) = (
        config.admin.clone(),
        config.tls.clone(),
        config.limits.clone(),
    );
    let tcp = bind_or_inherit(&config.listen, inherited.public)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    // Bound now: its authentication is decided from the address really bound, for good.
    let admin_socket = ferry_server::admin::AdminSocket::bind(&admin, inherited.admin)
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    let metrics_socket = MetricsSocket::bind(&config.metrics).await?;
    let accounts = ferry_server::accounts::load_accounts(&config, Arc::new(SystemMono::default()))
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let state = build_state(
        config,
        providers,
        accounts,
        Arc::new(keys),
        Arc::new(SystemClock),
        Arc::new(audit),
    );
    startup::start_revocations(&state).await?;
    let replay_saver = ferry_server::replay::persist::start(
        state.replay_local.clone(),
        &state.loaded().config.data_dir,
        SystemClock.now(),
    )
    .map_err(|e| anyhow::anyhow!("replay state: {e}"))?;
    ferry_server::tasks::spawn_background(&state, Some(source));

    if let Some(socket) = admin_socket {
        socket
            .serve(state.clone())
            .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    }

    if let Some(socket) = metrics_socket {
        socket.serve(state.clone());
    }
    serve_public(state, tcp, tls.as_ref(), &limits).await?;
    if let Some(saver) = replay_saver {
        saver.save(SystemClock.now());
    }
    Ok(())
}

/// The public listener, until a shutdown. On SIGTERM: readiness fails at once; the
/// listener keeps serving (Connection: close) for limits.shutdown_delay, so requests a
/// load balancer still routes here are served; then it stops accepting and in-flight
/// requests finish within limits.shutdown_timeout.
async fn serve_public(
    state: AppState,
    tcp: tokio::net::TcpListener,
    tls: Option<&ferry_core::config::Tls>,
    limits: &ferry_core::config::Limits,
) -> anyhow::Result<()> {
    let addr = tcp.local_addr()?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let lifecycle = state.lifecycle.clone();
    let tls = match tls {
        Some(t) => Some(
            acceptor_asking(&t.cert_file, &t.key_file, t.client_auth)
                .map_err(|e| anyhow::anyhow!("TLS: {e}"))?,
        ),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let (proxies, proxy_protocol) = {
        let c = &state.loaded().config;
        (c.trusted_proxies.clone(), c.listen_proxy_protocol)
    };
    let public = Server::new(tcp, tls, limits, state.metrics.clone())
        .behind(proxies, proxy_protocol, limits.max_connections_per_source)
        .closing_when_draining(lifecycle.clone());
    tracing::info!("ferry listening on {scheme}://{addr}");
    let server = tokio::spawn(public.run(ferry_server::router(state), async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    ferry_server::lifecycle::shutdown_signal().await;
    lifecycle
        .shut_down(
            limits.shutdown_delay,
            limits.shutdown_timeout,
            &stop,
            server,
        )
        .await;
    Ok(())
}

async fn explain(
    config: &Path,
    token: Option<PathBuf>,
    claims: Option<PathBuf>,
    audiences: Vec<String>,
    scope: Option<String>,
    client_id: Option<String>,
    context: &cli::explain::ExplainContext,
) -> anyhow::Result<ExitCode> {
    let config = read_config(config).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let subject = cli::explain::read_subject(token.as_deref(), claims.as_deref())?;
    let report = cli::explain::explain(
        &config,
        &SystemClock,
        subject,
        &audiences,
        scope.as_deref(),
        client_id.as_deref(),
        context,
    )
    .await?;
    print!("{}", report.text);
    Ok(if report.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn keys_command(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now();
    let load =
        |p: &Path| read_config(p).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"));
    let out = match cmd {
        KeysCommand::NewKek => ferry_keys::Kek::generate_text().map_err(|e| e.to_string()),
        KeysCommand::List { config } => cli::keys::list(&load(&config)?, now),
        KeysCommand::Rotate { config } => cli::keys::rotate(&load(&config)?, now),
        KeysCommand::Revoke { config, kid, force } => {
            cli::keys::revoke(&load(&config)?, now, &kid, force)
        }
        KeysCommand::ExportPublic { config } => cli::keys::export_public(&load(&config)?, now),
        KeysCommand::Rewrap { config, force } => cli::keys::rewrap(&load(&config)?, now, force),
    };
    match out {
        Ok(text) => {
            println!("{}", text.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("ferry keys: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn sa_command(cmd: SaCommand) -> anyhow::Result<ExitCode> {
    let out = match cmd {
        SaCommand::Create { name, dir, alg } => cli::sa::create(&name, &dir, &alg),
        SaCommand::Token {
            key,
            url,
            audience,
            scope,
        } => cli::sa::token(&key, &url, &audience, scope.as_deref(), SystemClock.now()).await,
    };
    match out {
        Ok(text) => {
            println!("{}", text.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("ferry sa: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("ferry: {e:#}");
        ExitCode::from(2)
    })
}

/// mimalloc instead of glibc's malloc: an exchange allocates and frees a few hundred
/// small objects, and glibc's allocator (with its periodic consolidation) was 12 % of the
/// server's time under load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before the runtime's threads exist: taking inherited sockets edits the environment.
    let activation = Activation::from_env();
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run(cli, activation)),
        Err(e) => report(Err(anyhow::Error::new(e).context("starting the runtime"))),
    }
}

async fn run(cli: Cli, activation: Activation) -> ExitCode {
    match cli.command {
        Command::Check { config } => cli::check::check(&config),
        Command::Explain {
            config,
            token,
            claims,
            audience,
            scope,
            client_id,
            source_ip,
            sender_constrained,
            client_authenticated,
        } => {
            let context = cli::explain::ExplainContext {
                source_ip,
                sender_constrained,
                client_authenticated,
            };
            report(explain(&config, token, claims, audience, scope, client_id, &context).await)
        }
        Command::Test { config, cases } => report(cli::policy_test::command(&config, &cases)),
        Command::Keys { command } => report(keys_command(command)),
        Command::Sa { command } => report(sa_command(command).await),
        Command::CredConfig(args) => cli::cred_config::command(&args),
        Command::Clients {
            command: ClientsCommand::NewSecret,
        } => {
            let (secret, hash) = ferry_server::client_auth::new_secret();
            println!(
                "client secret (give it to the client; Ferry keeps only the hash):\n{secret}\nsecret_sha256: {hash}"
            );
            ExitCode::SUCCESS
        }
        Command::Serve {
            config,
            listen,
            admin_listen,
            log_level,
            log_format,
        } => match serve(
            &config,
            activation,
            listen,
            admin_listen,
            log_level,
            log_format,
        )
        .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ferry: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

#[cfg(test)]
#[path = "main_tests.rs"]
mod tests;
