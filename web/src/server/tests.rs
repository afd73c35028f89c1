//! In-process tests of the whole router (API, remote write/read, federation, admin,
//! lifecycle) over an in-memory storage, driven with `tower::ServiceExt::oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use prost::Message;
use serde_json::Value;
use tower::ServiceExt;
use tsdb::labels::Labels;
use tsdb::querier::VecSeries;

use super::flags::ServerArgs;
use super::mem_storage::MemStorage;
use super::state::AppState;
use crate::api::engine::PromqlEngine;
use crate::remote::proto;

const T0: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

fn data() -> Vec<VecSeries> {
    let mut v = Vec::new();
    for job in ["api", "db"] {
        for inst in ["a", "b"] {
            v.push(VecSeries {
                labels: Labels::from_pairs(&[("__name__", "up"), ("job", job), ("instance", inst)]),
                samples: (0..40).map(|i| (T0 + i * 15_000, 1.0)).collect(),
            });
        }
    }
    v.push(VecSeries {
        labels: Labels::from_pairs(&[("__name__", "weird"), ("v", "say \"hi\"\n")]),
        samples: vec![
            (T0, f64::NAN),
            (T0 + 15_000, f64::INFINITY),
            (T0 + 30_000, -0.5),
        ],
    });
    v
}

fn app_with(args: ServerArgs, series: Vec<VecSeries>) -> (Router, super::state::SharedState) {
    let storage = Arc::new(MemStorage::with_series(series));
    let state = AppState::new(storage, Arc::new(PromqlEngine::default()), args);
    (super::router::build(state.clone()), state)
}

fn app() -> Router {
    let args = ServerArgs {
        enable_admin_api: true,
        enable_remote_write_receiver: true,
        enable_lifecycle: true,
        ..Default::default()
    };
    app_with(args, data()).0
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<(&str, Vec<u8>)>,
) -> (StatusCode, String, Vec<u8>) {
    let mut b = Request::builder().method(method).uri(uri);
    let body = match body {
        Some((ct, bytes)) => {
            b = b.header("content-type", ct);
            Body::from(bytes)
        }
        None => Body::empty(),
    };
    let resp = app.clone().oneshot(b.body(body).unwrap()).await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, ct, bytes.to_vec())
}

async fn get_json(app: &Router, uri: &str) -> (StatusCode, Value) {
    let (s, ct, b) = call(app, "GET", uri, None).await;
    assert_eq!(ct, "application/json", "{uri}");
    (
        s,
        serde_json::from_slice(&b)
            .unwrap_or_else(|e| panic!("{uri}: {e}: {}", String::from_utf8_lossy(&b))),
    )
}

#[tokio::test]
async fn instant_query_shapes() {
    let app = app();
    let (s, v) = get_json(&app, "/api/v1/query?query=1%2B1&time=1704067207").await;
    assert_eq!(s, 200);
    assert_eq!(
        v,
        serde_json::json!({"status":"success","data":{"resultType":"scalar","result":[1704067207,"2"]}})
    );
    let (_, v) = get_json(&app, "/api/v1/query?query=%22hello%22&time=1704067207.5").await;
    assert_eq!(
        v["data"],
        serde_json::json!({"resultType":"string","result":[1704067207.5,"hello"]})
    );
    let (_, v) = get_json(
        &app,
        "/api/v1/query?query=up%7Bjob%3D%22api%22%7D&time=2024-01-01T00:05:00Z",
    )
    .await;
    assert_eq!(v["data"]["resultType"], "vector");
    let r = v["data"]["result"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        r[0]["metric"],
        serde_json::json!({"__name__":"up","instance":"a","job":"api"})
    );
    assert_eq!(r[0]["value"], serde_json::json!([1704067500, "1"]));
    // Special values are strings; odd label values are escaped.
    let (_, v) = get_json(&app, "/api/v1/query?query=weird&time=1704067210").await;
    assert_eq!(v["data"]["result"][0]["value"][1], "NaN");
    assert_eq!(v["data"]["result"][0]["metric"]["v"], "say \"hi\"\n");
    let (_, v) = get_json(&app, "/api/v1/query?query=weird&time=1704067216&stats=all").await;
    assert_eq!(v["data"]["result"][0]["value"][1], "+Inf");
    assert!(v["data"]["stats"]["timings"]["evalTotalTime"].is_number());
}

#[tokio::test]
async fn query_errors_have_prometheus_types_and_codes() {
    let app = app();
    let (s, v) = get_json(&app, "/api/v1/query?query=sum(rate(x%5B5m%5D)&time=1").await;
    assert_eq!(s, 400);
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "bad_data");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\": "),
        "{v}"
    );
    let (s, v) = get_json(&app, "/api/v1/query?query=up&time=tomorrow").await;
    assert_eq!(
        (s.as_u16(), v["errorType"].as_str()),
        (400, Some("bad_data"))
    );
    assert_eq!(
        v["error"],
        "invalid parameter \"time\": cannot parse \"tomorrow\" to a valid timestamp"
    );
    let (s, v) = get_json(
        &app,
        "/api/v1/query_range?query=up&start=100&end=50&step=10",
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["errorType"].as_str()),
        (400, Some("bad_data"))
    );
    let (s, _) = get_json(&app, "/api/v1/query_range?query=up&start=0&end=50&step=0").await;
    assert_eq!(s, 400);
    let (s, v) = get_json(
        &app,
        "/api/v1/query_range?query=up&start=0&end=1000000&step=1",
    )
    .await;
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("11,000 points"));
    // Many-to-many matching fails while evaluating: an execution error, 422.
    let (s, v) = get_json(
        &app,
        "/api/v1/query?query=up%20%2B%20on(job)%20up&time=1704067300",
    )
    .await;
    assert_eq!(
        (s.as_u16(), v["errorType"].as_str()),
        (422, Some("execution"))
    );
    let (s, v) = get_json(&app, "/api/v1/series?match%5B%5D=%7Bjob%3D~%22.*%22%7D").await;
    assert_eq!(
        (s.as_u16(), v["errorType"].as_str()),
        (400, Some("bad_data"))
    );
    let (s, v) = get_json(&app, "/api/v1/series").await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "no match[] parameter provided");
    let (s, _, _) = call(&app, "DELETE", "/api/v1/query", None).await;
    assert_eq!(s, 405);
    let (s, _, _) = call(&app, "GET", "/api/v1/nonexistent", None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn range_query_by_get_and_post_form() {
    let app = app();
    let (s, v) = get_json(&app, "/api/v1/query_range?query=up%7Binstance%3D%22a%22%7D&start=1704067200&end=1704067260&step=30").await;
    assert_eq!(s, 200);
    let r = v["data"]["result"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["metric"]["job"], "api");
    assert_eq!(
        r[0]["values"],
        serde_json::json!([[1704067200, "1"], [1704067230, "1"], [1704067260, "1"]])
    );
    let form = b"query=weird&start=1704067200&end=1704067230&step=15s".to_vec();
    let (s, _, b) = call(
        &app,
        "POST",
        "/api/v1/query_range",
        Some(("application/x-www-form-urlencoded", form)),
    )
    .await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&b).unwrap();
    assert_eq!(
        v["data"]["result"][0]["values"],
        serde_json::json!([
            [1704067200, "NaN"],
            [1704067215, "+Inf"],
            [1704067230, "-0.5"]
        ])
    );
}

#[tokio::test]
async fn series_labels_and_values() {
    let app = app();
    let (_, v) = get_json(
        &app,
        "/api/v1/series?match%5B%5D=up%7Bjob%3D%22db%22%7D&match%5B%5D=weird",
    )
    .await;
    let d = v["data"].as_array().unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(
        d[0],
        serde_json::json!({"__name__":"up","instance":"a","job":"db"})
    );
    assert_eq!(d[2]["__name__"], "weird");
    let (_, v) = get_json(&app, "/api/v1/series?match%5B%5D=up&limit=2").await;
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        v["warnings"],
        serde_json::json!(["results truncated due to limit"])
    );
    let (_, v) = get_json(&app, "/api/v1/labels").await;
    assert_eq!(
        v["data"],
        serde_json::json!(["__name__", "instance", "job", "v"])
    );
    let (_, v) = get_json(&app, "/api/v1/labels?match%5B%5D=weird").await;
    assert_eq!(v["data"], serde_json::json!(["__name__", "v"]));
    let (_, v) = get_json(&app, "/api/v1/label/__name__/values").await;
    assert_eq!(v["data"], serde_json::json!(["up", "weird"]));
    let (_, v) = get_json(&app, "/api/v1/label/job/values?match%5B%5D=up%7Binstance%3D%22b%22%7D&start=1704067200&end=1704067300").await;
    assert_eq!(v["data"], serde_json::json!(["api", "db"]));
    let (_, v) = get_json(&app, "/api/v1/label/job/values?limit=1").await;
    assert_eq!(v["data"], serde_json::json!(["api"]));
    assert_eq!(v["warnings"][0], "results truncated due to limit");
    // Outside the data's time range nothing is found.
    let (_, v) = get_json(&app, "/api/v1/series?match%5B%5D=up&start=0&end=100").await;
    assert_eq!(v["data"], serde_json::json!([]));
}

#[tokio::test]
async fn status_and_empty_endpoints_are_shaped() {
    let app = app();
    for (uri, want) in [
        (
            "/api/v1/targets",
            // The default config's job, with no scrape manager running.
            serde_json::json!({"activeTargets":[],"droppedTargets":[],"droppedTargetCounts":{"prometheus":0}}),
        ),
        ("/api/v1/rules", serde_json::json!({"groups":[]})),
        ("/api/v1/alerts", serde_json::json!({"alerts":[]})),
        (
            "/api/v1/alertmanagers",
            serde_json::json!({"activeAlertmanagers":[],"droppedAlertmanagers":[]}),
        ),
        (
            "/api/v1/scrape_pools",
            serde_json::json!({"scrapePools":["prometheus"]}),
        ),
        ("/api/v1/metadata", serde_json::json!({})),
        ("/api/v1/query_exemplars?query=test", serde_json::json!([])),
        (
            "/api/v1/status/walreplay",
            serde_json::json!({"min":0,"max":1,"current":1}),
        ),
    ] {
        let (s, v) = get_json(&app, uri).await;
        assert_eq!(
            (s.as_u16(), &v["status"]),
            (200, &Value::from("success")),
            "{uri}"
        );
        assert_eq!(v["data"], want, "{uri}");
    }
    let (_, v) = get_json(&app, "/api/v1/status/buildinfo").await;
    for k in [
        "version",
        "revision",
        "branch",
        "buildUser",
        "buildDate",
        "goVersion",
    ] {
        assert!(v["data"][k].is_string(), "{k}");
    }
    assert!(
        v["data"].get("features").is_none(),
        "not to be taken for Mimir"
    );
    let (_, v) = get_json(&app, "/api/v1/status/flags").await;
    assert_eq!(v["data"]["web.listen-address"], "0.0.0.0:9090");
    assert_eq!(v["data"]["query.lookback-delta"], "5m");
    let (_, v) = get_json(&app, "/api/v1/status/config").await;
    assert!(v["data"]["yaml"]
        .as_str()
        .unwrap()
        .contains("scrape_configs"));
    let (_, v) = get_json(&app, "/api/v1/status/runtimeinfo").await;
    assert_eq!(v["data"]["storageRetention"], "2w1d");
    let (_, v) = get_json(&app, "/api/v1/status/tsdb").await;
    assert_eq!(v["data"]["headStats"]["numSeries"], 5);
    assert_eq!(
        v["data"]["seriesCountByMetricName"][0],
        serde_json::json!({"name":"up","value":4})
    );
    let (_, v) = get_json(&app, "/api/v1/format_query?query=sum(rate(x%5B5m%5D))by(a)").await;
    assert_eq!(v["data"], "sum by (a) (rate(x[5m]))");
    let (_, v) = get_json(&app, "/api/v1/parse_query?query=up%7Bjob%3D%22a%22%7D").await;
    assert_eq!(v["data"]["type"], "vectorSelector");
    assert_eq!(
        v["data"]["matchers"][1],
        serde_json::json!({"type":"=","name":"job","value":"a"})
    );
    let (s, _) = get_json(&app, "/api/v1/query_exemplars?query=sum(").await;
    assert_eq!(s, 400);
}

/// A test series: label pairs and samples.
type TestSeries<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, f64)>);

fn write_body(series: &[TestSeries<'_>]) -> Vec<u8> {
    let req = proto::WriteRequest {
        timeseries: series
            .iter()
            .map(|(ls, ss)| proto::TimeSeries {
                labels: ls
                    .iter()
                    .map(|(n, v)| proto::Label {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                samples: ss
                    .iter()
                    .map(|&(t, v)| proto::Sample {
                        timestamp: t,
                        value: v,
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        metadata: vec![],
    };
    crate::remote::snappy_encode(&req.encode_to_vec())
}

#[tokio::test]
async fn remote_write_is_all_or_nothing() {
    let app = app();
    let body = write_body(&[
        (
            vec![("__name__", "rw"), ("k", "1")],
            vec![(T0, 1.0), (T0 + 1000, 2.0)],
        ),
        (vec![("__name__", "rw"), ("k", "2")], vec![(T0, 3.0)]),
    ]);
    let (s, _, _) = call(
        &app,
        "POST",
        "/api/v1/write",
        Some(("application/x-protobuf", body)),
    )
    .await;
    assert_eq!(s, 204);
    let (_, v) = get_json(&app, "/api/v1/query?query=rw&time=1704067201").await;
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 2);
    // An out-of-order sample rejects the whole request, new series included.
    let body = write_body(&[
        (vec![("__name__", "rw_new")], vec![(T0, 1.0)]),
        (vec![("__name__", "rw"), ("k", "1")], vec![(T0 + 500, 9.0)]),
    ]);
    let (s, _, b) = call(
        &app,
        "POST",
        "/api/v1/write",
        Some(("application/x-protobuf", body)),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(String::from_utf8_lossy(&b), "out of order sample\n");
    let (_, v) = get_json(&app, "/api/v1/series?match%5B%5D=rw_new").await;
    assert_eq!(v["data"], serde_json::json!([]));
    // Bad snappy and bad protobuf are 400 with a message.
    let (s, _, b) = call(
        &app,
        "POST",
        "/api/v1/write",
        Some(("application/x-protobuf", b"not snappy".to_vec())),
    )
    .await;
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&b).contains("snappy"));
    let garbage = crate::remote::snappy_encode(&[0x0a, 0xff, 0xff, 0x01]);
    let (s, _, b) = call(
        &app,
        "POST",
        "/api/v1/write",
        Some(("application/x-protobuf", garbage)),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        String::from_utf8_lossy(&b).contains("protobuf"),
        "{}",
        String::from_utf8_lossy(&b)
    );
    let body = write_body(&[(vec![("a", "1"), ("a", "2")], vec![(T0, 1.0)])]);
    let (s, _, _) = call(
        &app,
        "POST",
        "/api/v1/write",
        Some(("application/x-protobuf", body)),
    )
    .await;
    assert_eq!(s, 400);
    let metrics = String::from_utf8(call(&app, "GET", "/metrics", None).await.2).unwrap();
    assert!(
        metrics.contains("prometheus_tsdb_out_of_order_samples_total{type=\"float\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics
        .contains("prometheus_http_requests_total{code=\"204\",handler=\"/api/v1/write\"} 1\n"));
}

#[tokio::test]
async fn remote_write_disabled_is_404() {
    let (app, _) = app_with(ServerArgs::default(), vec![]);
    let body = write_body(&[(vec![("__name__", "x")], vec![(1, 1.0)])]);
    let (s, _, b) = call(
        &app,
        "POST",
        "/api/v1/write",
        Some(("application/x-protobuf", body)),
    )
    .await;
    assert_eq!(s, 404);
    assert!(String::from_utf8_lossy(&b).contains("--web.enable-remote-write-receiver"));
}

fn read_body(types: Vec<i32>, matchers: Vec<(i32, &str, &str)>, start: i64, end: i64) -> Vec<u8> {
    let req = proto::ReadRequest {
        queries: vec![proto::Query {
            start_timestamp_ms: start,
            end_timestamp_ms: end,
            matchers: matchers
                .into_iter()
                .map(|(t, n, v)| proto::LabelMatcher {
                    r#type: t,
                    name: n.into(),
                    value: v.into(),
                })
                .collect(),
            hints: None,
        }],
        accepted_response_types: types,
    };
    crate::remote::snappy_encode(&req.encode_to_vec())
}

#[tokio::test]
async fn remote_read_samples_and_streamed_chunks() {
    let app = app();
    let body = read_body(
        vec![],
        vec![(0, "__name__", "up"), (2, "job", "d.*")],
        T0,
        T0 + 30_000,
    );
    let (s, ct, b) = call(
        &app,
        "POST",
        "/api/v1/read",
        Some(("application/x-protobuf", body)),
    )
    .await;
    assert_eq!((s.as_u16(), ct.as_str()), (200, "application/x-protobuf"));
    let resp =
        proto::ReadResponse::decode(crate::remote::snappy_decode(&b).unwrap().as_slice()).unwrap();
    assert_eq!(resp.results.len(), 1);
    let ts = &resp.results[0].timeseries;
    assert_eq!(ts.len(), 2);
    assert_eq!(ts[0].samples.len(), 3);
    assert!(ts[0]
        .labels
        .iter()
        .any(|l| l.name == "job" && l.value == "db"));

    let body = read_body(vec![1, 0], vec![(0, "__name__", "up")], T0, T0 + 3_600_000);
    let (s, ct, b) = call(
        &app,
        "POST",
        "/api/v1/read",
        Some(("application/x-protobuf", body)),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        ct,
        "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse"
    );
    let mut rest = &b[..];
    let mut series = 0;
    let mut samples = 0;
    while !rest.is_empty() {
        let len = prost::encoding::decode_varint(&mut rest).unwrap() as usize;
        let crc = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let data = &rest[4..4 + len];
        assert_eq!(crc32c::crc32c(data), crc);
        let msg = proto::ChunkedReadResponse::decode(data).unwrap();
        for cs in msg.chunked_series {
            series += 1;
            for c in cs.chunks {
                assert_eq!(c.r#type, proto::CHUNK_XOR);
                samples += tsdb::chunkenc::xor::XorChunk::from_bytes(c.data).num_samples();
            }
        }
        rest = &rest[4 + len..];
    }
    assert_eq!((series, samples), (4, 160));

    let (s, _, _) = call(
        &app,
        "POST",
        "/api/v1/read",
        Some(("application/x-protobuf", b"junk".to_vec())),
    )
    .await;
    assert_eq!(s, 400);
    let body = read_body(vec![7], vec![(0, "__name__", "up")], T0, T0);
    let (s, _, _) = call(
        &app,
        "POST",
        "/api/v1/read",
        Some(("application/x-protobuf", body)),
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn remote_read_sample_limit() {
    let args = ServerArgs {
        remote_read_sample_limit: 10,
        ..Default::default()
    };
    let (app, _) = app_with(args, data());
    let body = read_body(vec![0], vec![(0, "__name__", "up")], T0, T0 + 3_600_000);
    let (s, _, b) = call(
        &app,
        "POST",
        "/api/v1/read",
        Some(("application/x-protobuf", body)),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(String::from_utf8_lossy(&b), "exceeded sample limit (10)\n");
}

#[tokio::test]
async fn federate_gives_latest_samples_in_text_format() {
    let now = crate::api::query::now_ms();
    let series = vec![
        VecSeries {
            labels: Labels::from_pairs(&[("__name__", "f"), ("i", "1")]),
            samples: vec![(now - 60_000, 1.0), (now - 1000, 2.5)],
        },
        VecSeries {
            labels: Labels::from_pairs(&[("__name__", "f"), ("i", "old")]),
            samples: vec![(now - 3_600_000, 1.0)],
        },
        VecSeries {
            labels: Labels::from_pairs(&[("__name__", "g")]),
            samples: vec![(now - 2000, 1e7)],
        },
    ];
    let (app, _) = app_with(ServerArgs::default(), series);
    let (s, ct, b) = call(
        &app,
        "GET",
        "/federate?match%5B%5D=f&match%5B%5D=%7B__name__%3D%22g%22%7D",
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert!(ct.starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(b).unwrap();
    assert_eq!(
        text,
        format!(
            "# TYPE f untyped\nf{{i=\"1\"}} 2.5 {}\n# TYPE g untyped\ng 1e+07 {}\n",
            now - 1000,
            now - 2000
        )
    );
    let (s, _, _) = call(&app, "GET", "/federate?match%5B%5D=f%7B", None).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn admin_api_and_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = ServerArgs {
        storage_path: dir.path().to_path_buf(),
        ..Default::default()
    };
    let (app, _) = app_with(args.clone(), data());
    let (s, v) = {
        let (s, _, b) = call(&app, "POST", "/api/v1/admin/tsdb/snapshot", None).await;
        (s, serde_json::from_slice::<Value>(&b).unwrap())
    };
    assert_eq!(
        (s.as_u16(), v["errorType"].as_str(), v["error"].as_str()),
        (503, Some("unavailable"), Some("admin APIs disabled"))
    );
    let (s, _, _) = call(&app, "POST", "/-/quit", None).await;
    assert_eq!(s, 403);

    args.enable_admin_api = true;
    args.enable_lifecycle = true;
    let (app, state) = app_with(args, data());
    let (s, _, b) = call(
        &app,
        "POST",
        "/api/v1/admin/tsdb/snapshot?skip_head=true",
        None,
    )
    .await;
    assert_eq!(s, 200);
    let v: Value = serde_json::from_slice(&b).unwrap();
    let name = v["data"]["name"].as_str().unwrap();
    assert!(dir.path().join("snapshots").join(name).is_dir());
    let (s, _, _) = call(
        &app,
        "POST",
        "/api/v1/admin/tsdb/snapshot?skip_head=maybe",
        None,
    )
    .await;
    assert_eq!(s, 400);
    let (s, _, _) = call(
        &app,
        "POST",
        "/api/v1/admin/tsdb/delete_series?match%5B%5D=up%7Bjob%3D%22api%22%7D",
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (_, v) = get_json(&app, "/api/v1/series?match%5B%5D=up").await;
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    let (s, _, _) = call(&app, "POST", "/api/v1/admin/tsdb/delete_series", None).await;
    assert_eq!(s, 400);
    let (s, _, _) = call(&app, "POST", "/api/v1/admin/tsdb/clean_tombstones", None).await;
    assert_eq!(s, 204);
    let (s, _, b) = call(&app, "GET", "/-/healthy", None).await;
    assert_eq!(
        (s.as_u16(), String::from_utf8(b).unwrap().as_str()),
        (200, "Prometheus Server is Healthy.\n")
    );
    let (s, _, _) = call(&app, "GET", "/-/ready", None).await;
    assert_eq!(s, 200);
    let (s, _, _) = call(&app, "POST", "/-/reload", None).await;
    assert_eq!(s, 200);
    let (s, _, _) = call(&app, "GET", "/-/quit", None).await;
    assert_eq!(s, 405);
    assert!(!*state.shutdown.borrow());
    let (s, _, _) = call(&app, "POST", "/-/quit", None).await;
    assert_eq!(s, 200);
    assert!(*state.shutdown.borrow());
}

#[tokio::test]
async fn remote_write_v2_keeps_good_samples_and_reports_bad_ones() {
    let app = app();
    let req = proto::v2::Request {
        symbols: vec![
            "".into(),
            "__name__".into(),
            "v2m".into(),
            "k".into(),
            "a".into(),
            "b".into(),
        ],
        timeseries: vec![
            proto::v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                samples: vec![
                    proto::v2::Sample {
                        value: 1.0,
                        timestamp: T0,
                    },
                    proto::v2::Sample {
                        value: 2.0,
                        timestamp: T0 + 1000,
                    },
                ],
                created_timestamp: 0,
            },
            proto::v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 99],
                samples: vec![proto::v2::Sample {
                    value: 1.0,
                    timestamp: T0,
                }],
                created_timestamp: 0,
            },
            proto::v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 5],
                samples: vec![
                    proto::v2::Sample {
                        value: 5.0,
                        timestamp: T0 + 1000,
                    },
                    proto::v2::Sample {
                        value: 6.0,
                        timestamp: T0,
                    },
                ],
                created_timestamp: 0,
            },
        ],
    };
    let body = crate::remote::snappy_encode(&req.encode_to_vec());
    let ct = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
    let resp = app
        .clone()
        .oneshot(
            Request::builder()
                .method("POST")
                .uri("/api/v1/write")
                .header("content-type", ct)
                .body(Body::from(body))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.headers()["x-prometheus-remote-write-samples-written"],
        "3"
    );
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains("out of range") && text.contains("out of order sample"),
        "{text}"
    );
    let (_, v) = get_json(&app, "/api/v1/query?query=v2m&time=1704067201").await;
    let r = v["data"]["result"].as_array().unwrap();
    assert_eq!(r.len(), 2, "{v}");
    assert_eq!(
        r[0]["metric"],
        serde_json::json!({"__name__":"v2m","k":"a"})
    );
    assert_eq!(r[0]["value"][1], "2");
    assert_eq!(r[1]["value"][1], "5");
    let (s, _, _) = call(
        &app,
        "POST",
        "/api/v1/write",
        Some((
            "application/x-protobuf;proto=io.prometheus.write.v9.Nope",
            vec![],
        )),
    )
    .await;
    assert_eq!(s, 415);
}

#[tokio::test]
async fn not_ready_while_the_database_opens() {
    let storage = super::db_storage::DbStorage::pending();
    let state = AppState::new(
        storage,
        Arc::new(PromqlEngine::default()),
        ServerArgs::default(),
    );
    let app = super::router::build(state);
    let (s, _, b) = call(&app, "GET", "/-/ready", None).await;
    assert_eq!(
        (s.as_u16(), String::from_utf8(b).unwrap().as_str()),
        (503, "Service Unavailable")
    );
    let (s, _, _) = call(&app, "GET", "/-/healthy", None).await;
    assert_eq!(s, 200);
    let (s, _, _) = call(&app, "GET", "/api/v1/query?query=1", None).await;
    assert_eq!(s, 503);
    let (s, v) = get_json(&app, "/api/v1/status/walreplay").await;
    assert_eq!((s.as_u16(), &v["data"]["current"]), (200, &Value::from(0)));
    let metrics = String::from_utf8(call(&app, "GET", "/metrics", None).await.2).unwrap();
    assert!(metrics.contains("prometheus_ready 0\n"));
}

#[tokio::test]
async fn route_prefix_moves_every_route() {
    let args = ServerArgs {
        route_prefix: "/prom/".into(),
        ..Default::default()
    };
    let (app, _) = app_with(args, data());
    let (s, v) = get_json(&app, "/prom/api/v1/query?query=1%2B1&time=1").await;
    assert_eq!(
        (s.as_u16(), &v["data"]["result"][1]),
        (200, &Value::from("2"))
    );
    let (s, _, _) = call(&app, "GET", "/prom/-/healthy", None).await;
    assert_eq!(s, 200);
    let (s, _, _) = call(&app, "GET", "/api/v1/query?query=1", None).await;
    assert_eq!(s, 404);
}
