//! The `pixelgate` binary: parse the settings, then build the app and run it until SIGTERM/SIGINT
//! (as the Lambda runtime when `AWS_LAMBDA_RUNTIME_API` is set), or run a `tokens`, `accounts`, `keys`,
//! `pixels` or `audit` command (no server, no metrics listener).

use std::process::ExitCode;

use pixelgate::App;
use pixelgate::config::{Cli, Command};
use pixelgate::error::ConfigError;
use pixelgate::runtime::lambda::is_lambda;

/// mimalloc: a hit makes a dozen small allocations that die together on another thread;
/// under glibc malloc they were ~12% of the pixel's CPU profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse_or_exit();
    if let Err(err) = pixelgate::telemetry::init(cli.global.log_format, &cli.global.log_level) {
        eprintln!("{err}");
        return ExitCode::from(2);
    }
    let runtime = match runtime_for(std::thread::available_parallelism().map_or(1, |n| n.get())).enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("pixelgate: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            None | Some(Command::Serve) => {
                // The handlers are installed now, before start-up: a SIGTERM that comes while the
                // app starts (or right after the Lambda runtime's first `next`) is a shutdown,
                // not a kill.
                let shutdown = shutdown_signal()?;
                let settings = cli.settings()?;
                if is_lambda() { pixelgate::app::lambda::run(settings, shutdown).await } else { App::build(settings).await?.run_until_stopped(shutdown).await }
            }
            Some(Command::Tokens(command)) => pixelgate::tokens::cli::run(&cli.store_settings(), command).await,
            Some(other) => pixelgate::api::cli::run(&cli.store_settings(), cli.webhook_policy(), other.registry().expect("every other command is a registry command")).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let config_error = err.downcast_ref::<ConfigError>().is_some();
            eprintln!("{}", if config_error { format!("{err}") } else { format!("pixelgate: {err:#}") });
            ExitCode::from(if config_error { 2 } else { 1 })
        }
    }
}

/// One core (a pinned process, a small container, a 1-vCPU Lambda) gets the single-threaded
/// scheduler, which skips the work-stealing machinery a lone worker cannot use; more cores get
/// a worker per core.
fn runtime_for(cores: usize) -> tokio::runtime::Builder {
    if cores <= 1 { tokio::runtime::Builder::new_current_thread() } else { tokio::runtime::Builder::new_multi_thread() }
}

/// A future that resolves on the first SIGTERM or SIGINT, its handlers installed at once.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
