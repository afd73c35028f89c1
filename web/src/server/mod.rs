//! The `ignis server` subcommand: flags ([`flags`]), logging ([`logging`]), the storage seam
//! ([`storage`]), shared state ([`state`]), own metrics ([`metrics`]) and routes ([`router`]).
//! [`run`] opens the storage, builds the router and serves until SIGINT/SIGTERM or `/-/quit`;
//! SIGHUP reloads the configuration.

pub mod flags;
pub mod logging;
pub mod metrics;
pub mod router;
pub mod state;
pub mod storage;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use anyhow::Context as _;
pub use flags::ServerArgs;
use state::{AppState, SharedState};
use storage::SharedStorage;

use crate::api::engine::{BasicEngine, QueryEngine};

/// Opens the storage the flags point at.
pub fn open_storage(args: &ServerArgs) -> anyhow::Result<SharedStorage> {
    std::fs::create_dir_all(&args.storage_path)
        .with_context(|| format!("create storage directory {}", args.storage_path.display()))?;
    tracing::warn!("on-disk storage is not wired in yet; serving an in-memory store");
    Ok(Arc::new(storage::MemStorage::new()))
}

/// The query engine for the flags.
pub fn make_engine(args: &ServerArgs) -> Arc<dyn QueryEngine> {
    Arc::new(BasicEngine {
        lookback_delta: args.query_lookback_delta.as_millis() as i64,
        max_samples: args.query_max_samples,
    })
}

/// Runs the server until it is told to stop.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    logging::init(&args.log_level, &args.log_format);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "Starting ignis");
    let storage = open_storage(&args)?;
    let engine = make_engine(&args);
    let state = AppState::new(storage, engine, args);
    serve(state).await
}

/// Serves `state` on its listen address until shutdown.
pub async fn serve(state: SharedState) -> anyhow::Result<()> {
    let addr = state.args.listen_address.clone();
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("listen on {addr}"))?;
    tracing::info!(address = %listener.local_addr().map(|a| a.to_string()).unwrap_or(addr), "Listening on");
    let app = router::build(state.clone());
    spawn_signal_handlers(state.clone());
    let mut rx = state.shutdown.subscribe();
    tracing::info!("Server is ready to receive web requests.");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = rx.wait_for(|stop| *stop).await;
            tracing::warn!("Received termination request, exiting gracefully...");
        })
        .await
        .context("serve HTTP")?;
    tracing::info!("See you next time!");
    Ok(())
}

fn spawn_signal_handlers(state: SharedState) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let st = state.clone();
        tokio::spawn(async move {
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            st.request_shutdown();
        });
        tokio::spawn(async move {
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                let _ = state.reload_config();
            }
        });
    }
    #[cfg(not(unix))]
    {
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            state.request_shutdown();
        });
    }
}

/// Entry point for the `server` subcommand: runs [`run`] on a multi-threaded tokio runtime and
/// returns the process exit code.
pub fn main_entry(args: ServerArgs) -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ignis: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(err = format!("{e:#}"), "Error running server");
            eprintln!("ignis: {e:#}");
            1
        }
    }
}
