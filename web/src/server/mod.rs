//! The `ignis server` subcommand: flags ([`flags`]), logging ([`logging`]), the storage seam
//! ([`storage`]), shared state ([`state`]), own metrics ([`metrics`]) and routes ([`router`]).
//! [`run`] opens the storage, builds the router and serves until SIGINT/SIGTERM or `/-/quit`;
//! SIGHUP reloads the configuration. It also starts the scrape manager on the loaded
//! configuration, re-applies it on every successful reload and stops it on shutdown.

pub mod db_storage;
pub mod flags;
pub mod listener;
pub mod logging;
#[cfg(test)]
pub mod mem_storage;
pub mod metrics;
pub mod router;
pub mod rules;
pub mod state;
pub mod storage;
#[cfg(test)]
mod tests;
pub mod webconfig;

use std::sync::Arc;

use anyhow::Context as _;
pub use flags::ServerArgs;
use state::{AppState, SharedState};
use storage::SharedStorage;

use crate::api::engine::{PromqlEngine, QueryEngine};
use db_storage::DbStorage;

/// Database options from the flags.
pub fn db_options(args: &ServerArgs) -> tsdb::db::Options {
    let mut o = tsdb::db::Options::default();
    if !args.retention_time.is_zero() {
        o.retention = args.retention_time;
    }
    o.max_bytes = args.retention_size;
    o
}

/// The query engine for the flags.
pub fn make_engine(args: &ServerArgs) -> Arc<dyn QueryEngine> {
    Arc::new(PromqlEngine::new(query::EngineOptions {
        lookback_delta: args.query_lookback_delta.as_millis() as i64,
        max_samples: args.query_max_samples,
        timeout: args.query_timeout,
        ..Default::default()
    }))
}

/// Runs the server until it is told to stop. The database opens in the background: the
/// server answers at once and reports ready when the WAL has been replayed.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    logging::init(&args.log_level, &args.log_format);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "Starting ignis");
    std::fs::create_dir_all(&args.storage_path)
        .with_context(|| format!("create storage directory {}", args.storage_path.display()))?;
    let db = DbStorage::pending();
    let engine = make_engine(&args);
    let (dir, opts) = (args.storage_path.clone(), db_options(&args));
    let storage: SharedStorage = db.clone();
    let auth = if args.web_config_file.is_empty() {
        webconfig::BasicAuth::default()
    } else {
        let path = std::path::Path::new(&args.web_config_file);
        let cfg = webconfig::WebConfig::load(path).map_err(anyhow::Error::msg)?;
        webconfig::BasicAuth::from_file(path, cfg.basic_auth_users)
    };
    let state = AppState::with_auth(storage, engine, args, auth);
    let failed = Arc::new(parking_lot::Mutex::new(None::<String>));
    let (st, f2) = (state.clone(), failed.clone());
    db.open_in_background(dir, opts, move |e| {
        *f2.lock() = Some(e);
        st.request_shutdown();
    });
    let manager = crate::scrape::ScrapeManager::new(state.storage.clone());
    state.start_scraping(manager.clone());
    state.start_rules();
    let res = serve(state.clone()).await;
    manager.stop().await;
    state.rules.stop();
    if let Err(e) = state.storage.close() {
        tracing::error!(err = %e, "Closing storage failed");
    }
    if let Some(e) = failed.lock().take() {
        anyhow::bail!(e);
    }
    res
}

/// Serves `state` on its listen address until shutdown.
pub async fn serve(state: SharedState) -> anyhow::Result<()> {
    let addr = state.args.listen_address.clone();
    let web_config = match state.args.web_config_file.as_str() {
        "" => None,
        path => Some((
            std::path::PathBuf::from(path),
            webconfig::WebConfig::load(std::path::Path::new(path)).map_err(anyhow::Error::msg)?,
        )),
    };
    let listener = listener::ServerListener::bind(
        &addr,
        state.args.max_connections,
        web_config.as_ref().map(|(p, c)| (p.clone(), c)),
    )
    .await
    .with_context(|| format!("listen on {addr}"))?;
    tracing::info!(address = %axum::serve::Listener::local_addr(&listener).map(|a| a.to_string()).unwrap_or(addr), "Listening on");
    let mut app = router::build(state.clone());
    if let Some((_, cfg)) = &web_config {
        let headers = webconfig::header_pairs(cfg);
        if !headers.is_empty() {
            app = app.layer(axum::middleware::from_fn_with_state(
                Arc::new(headers),
                webconfig::add_headers,
            ));
        }
    }
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
