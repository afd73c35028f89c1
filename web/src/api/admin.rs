//! The admin API behind `--web.enable-admin-api`: `snapshot` (`skip_head`), `delete_series`
//! (`match[]`, `start`, `end`; answers 204) and `clean_tombstones` (204). When disabled each
//! answers `unavailable` with "admin APIs disabled".

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorType};
use super::params::{Params, MAX_TIME, MIN_TIME};
use super::{blocking, success};
use crate::server::state::SharedState;

fn check_enabled(st: &SharedState) -> Result<(), ApiError> {
    if st.args.enable_admin_api {
        Ok(())
    } else {
        Err(ApiError::new(ErrorType::Unavailable, "admin APIs disabled"))
    }
}

fn parse_bool(name: &str, v: Option<&str>) -> Result<bool, ApiError> {
    match v {
        None => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(s) => Err(ApiError::bad_data(format!("unable to parse boolean '{name}' argument: strconv.ParseBool: parsing {s:?}: invalid syntax"))),
    }
}

/// `POST|PUT /api/v1/admin/tsdb/snapshot`
pub async fn snapshot(State(st): State<SharedState>, p: Params) -> Result<Response, ApiError> {
    check_enabled(&st)?;
    let skip_head = parse_bool("skip_head", p.get("skip_head"))?;
    let name = format!(
        "{}-{:016x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand_u64()
    );
    let dir = st.snapshot_dir().join(&name);
    let n2 = name.clone();
    blocking(move || {
        let parent = st.snapshot_dir();
        std::fs::create_dir_all(&parent)
            .map_err(|e| ApiError::internal(format!("create snapshot directory: {e}")))?;
        st.storage
            .snapshot(&dir, skip_head)
            .map_err(|e| ApiError::internal(format!("create snapshot: {e}")))?;
        tracing::info!(name = %n2, "Snapshot created");
        Ok(())
    })
    .await?;
    let mut data = String::from("{\"name\":");
    super::json::write_str(&mut data, &name);
    data.push('}');
    Ok(success(&data))
}

/// A random 64-bit number for snapshot names (no RNG dependency needed).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// `POST|PUT /api/v1/admin/tsdb/delete_series`
pub async fn delete_series(State(st): State<SharedState>, p: Params) -> Result<Response, ApiError> {
    check_enabled(&st)?;
    if p.get_all("match[]").is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let sets = p.matcher_sets()?;
    let start = p.time_or("start", MIN_TIME)?;
    let end = p.time_or("end", MAX_TIME)?;
    blocking(move || {
        for set in &sets {
            st.storage
                .delete(start, end, set)
                .map_err(|e| ApiError::internal(e.to_string()))?;
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST|PUT /api/v1/admin/tsdb/clean_tombstones`
pub async fn clean_tombstones(State(st): State<SharedState>) -> Result<Response, ApiError> {
    check_enabled(&st)?;
    blocking(move || {
        st.storage
            .clean_tombstones()
            .map_err(|e| ApiError::internal(e.to_string()))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
