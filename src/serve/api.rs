//! The routes and their handlers. Every error is `{"error": "..."}` with a status that says
//! whose fault it is: 400 unreadable, 404 no such route, 405 wrong method, 408 too slow, 413 too
//! big (bytes or pixels), 415 not an image or a type we do not read, 503 busy or shutting down.

use super::batcher::Refusal;
use super::{AppState, ModelInfo};
use crate::data::DataError;
use crate::data::image::{decode_rgb_within, max_pixels, resize_center_square};
use crate::eval::{ClassScore, top_k};
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Multipart, Query, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The page at `/`: HTML, CSS and script in one file, compiled into the binary.
const PAGE: &str = include_str!("page.html");

/// What the decoder's errors call the image.
const BODY_NAME: &str = "the request body";

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/v1/predict", post(predict))
        .route("/v1/model", get(model))
        .route("/v1/filters.png", get(filters))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "no such route (see GET /v1/model, POST /v1/predict)")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
        })
        // Bodies are read by `read_body` with `--max-body`; axum's own 2 MB limit would apply
        // to the multipart parser a second time.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

/// An error answer: a status and a sentence.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(serde_json::json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// Counts every answer by the route it matched (the router's own pattern, so the labels stay a
/// fixed set; "other" for paths no route matched) and status, and times it.
async fn record(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("other".to_string(), |m| m.as_str().to_string());
    let started = Instant::now();
    let response = next.run(req).await;
    s.metrics.request(&route, response.status().as_u16(), started.elapsed());
    response
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn model(State(s): State<Arc<AppState>>) -> Json<ModelInfo> {
    Json(s.info.clone())
}

async fn filters(State(s): State<Arc<AppState>>) -> Result<Response, ApiError> {
    if s.filters_png.is_empty() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "the first layer is not a convolution of RGB images"));
    }
    Ok(([(CONTENT_TYPE, "image/png")], s.filters_png.clone()).into_response())
}

async fn health(State(s): State<Arc<AppState>>) -> Response {
    if s.batcher.is_running() {
        Json(serde_json::json!({ "status": "ok" })).into_response()
    } else {
        let body = serde_json::json!({ "status": "down", "error": "the batching thread has stopped" });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.render()).into_response()
}

#[derive(Deserialize)]
struct PredictQuery {
    top: Option<usize>,
}

/// `POST /v1/predict`'s answer.
#[derive(Debug, Serialize)]
pub struct PredictResponse {
    /// The most probable classes, highest first.
    pub top: Vec<ClassScore>,
    /// From the request's arrival to this answer, in milliseconds.
    pub server_ms: f64,
    /// Reading the body and decoding the image.
    pub decode_ms: f64,
    /// Waiting for a forward pass.
    pub queue_ms: f64,
    /// The forward pass (shared by `batch` images).
    pub forward_ms: f64,
    pub batch: usize,
}

async fn predict(State(s): State<Arc<AppState>>, req: Request) -> Result<Json<PredictResponse>, ApiError> {
    let arrived = Instant::now();
    let Ok(_admitted) = s.admission.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} requests are already in progress (--max-queue); retry", s.config.batch.max_queue),
        ));
    };
    let _in_progress = s.metrics.admitted();
    let query = Query::<PredictQuery>::try_from_uri(req.uri())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
    let k = query.top.unwrap_or(5);
    if k == 0 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "top must be at least 1"));
    }
    let bytes = image_bytes(&s, req).await?;
    // Counted from here until queued, so the batcher knows this request is worth waiting for.
    let arrival = s.batcher.arrivals.arrive();
    let (stored, limit) = (s.info.input.stored, max_pixels());
    let slot = s.decoding.clone().acquire_owned().await.expect("the semaphore is never closed");
    let decoded = tokio::task::spawn_blocking(move || {
        // The slot goes with the decode: it is held until the decode ends, even if the client
        // hangs up and this handler is dropped.
        let _slot = slot;
        decode_rgb_within(&bytes, Path::new(BODY_NAME), limit).map(|img| resize_center_square(&img, stored))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("decoding failed: {e}")))?
    .map_err(decode_error)?;
    let decode_ms = ms(arrived.elapsed());
    let answer = s.batcher.classify(decoded, arrival).await.map_err(|r| match r {
        Refusal::Busy => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many requests are waiting; retry"),
        Refusal::Closed => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down"),
        Refusal::Failed(why) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the forward pass failed: {why}"))
        }
    })?;
    // (top_k takes at most every class: ?top=1000 on 10 classes lists the 10.)
    let top = top_k(&answer.probabilities, &s.info.classes, k).remove(0);
    Ok(Json(PredictResponse {
        top,
        server_ms: ms(arrived.elapsed()),
        decode_ms,
        queue_ms: ms(answer.queued),
        forward_ms: ms(answer.forward),
        batch: answer.batch,
    }))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The image's bytes: the whole body, or the file of a multipart form.
async fn image_bytes(s: &AppState, req: Request) -> Result<axum::body::Bytes, ApiError> {
    let content_type = req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let multipart = mime == "multipart/form-data";
    if !(multipart || mime.starts_with("image/") || mime == "application/octet-stream") {
        let got = if mime.is_empty() { "none".to_string() } else { mime };
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {got}: send the image's bytes as image/jpeg, image/png or application/octet-stream, \
                 or a multipart/form-data form with one file"
            ),
        ));
    }
    let max = s.config.max_body;
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_big(max));
    }
    let bytes = read_body(req.into_body(), max, s.config.read_timeout).await?;
    if !multipart {
        return Ok(bytes);
    }
    let form = Request::builder()
        .header(CONTENT_TYPE, content_type)
        .body(Body::from(bytes))
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let bad_form = |e: axum::extract::multipart::MultipartError| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("cannot read the form: {}", e.body_text()))
    };
    let mut form = Multipart::from_request(form, &()).await.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    while let Some(field) = form.next_field().await.map_err(bad_form)? {
        if field.file_name().is_some() || matches!(field.name(), Some("image" | "file")) {
            return field.bytes().await.map_err(bad_form);
        }
    }
    Err(ApiError::new(StatusCode::BAD_REQUEST, "the form has no file (send the image in a field named image)"))
}

fn too_big(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is over the limit of {max} bytes (--max-body)"),
    )
}

/// The whole body, at most `max` bytes, within `timeout` (a client that stalls gets 408, one
/// that hangs up gets 400, neither holds the server).
async fn read_body(body: Body, max: usize, timeout: Duration) -> Result<axum::body::Bytes, ApiError> {
    match tokio::time::timeout(timeout, Limited::new(body, max).collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} s", timeout.as_secs_f64()),
        )),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_big(max)),
        Ok(Err(e)) => Err(ApiError::new(StatusCode::BAD_REQUEST, format!("cannot read the request body: {e}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

fn decode_error(e: DataError) -> ApiError {
    let status = match e {
        DataError::TooManyPixels { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        DataError::NotImage { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, e.to_string())
}
