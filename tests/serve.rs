//! `alexnet serve` end to end, as a process on 127.0.0.1: the API's good and bad requests,
//! batched answers equal to `alexnet predict`'s, concurrent clients, clients that stall or hang
//! up, and SIGTERM draining a request in flight. (The page in a real browser:
//! scripts/check_page.py, run by CI.)

#![cfg(feature = "serve")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_alexnet");

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("alexnet-serve-{}", std::process::id())).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Eight real 32x32 JPEGs from the embedded validation split, one per class folder.
fn images() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/cifar10-mini/val");
    let mut classes: Vec<PathBuf> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).collect();
    classes.sort();
    classes
        .iter()
        .take(8)
        .map(|c| {
            let mut files: Vec<PathBuf> = std::fs::read_dir(c).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            files.remove(0)
        })
        .collect()
}

fn weights(dir: &Path) -> PathBuf {
    let p = dir.join("weights.safetensors");
    common::tiny_checkpoint().save(&p).unwrap();
    p
}

/// A running `alexnet serve`, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(weights: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["serve", "--weights", weights.to_str().unwrap(), "--addr", "127.0.0.1:0", "--threads", "2"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start alexnet serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line
            .strip_prefix("listening on http://")
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Self { child, addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// POSTs `body` to `path` with `content_type` (none if `None`): status and JSON.
fn post(
    agent: &ureq::Agent,
    s: &Server,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let mut req = agent.post(&s.url(path));
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let mut r = req.send(body).expect("request");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().expect("a JSON body"))
}

fn get(agent: &ureq::Agent, s: &Server, path: &str) -> (u16, Vec<u8>) {
    let mut r = agent.get(&s.url(path)).call().expect("request");
    (r.status().as_u16(), r.body_mut().read_to_vec().unwrap())
}

/// `{"top": [...]}` as (class index, probability) pairs.
fn classes_of(answer: &serde_json::Value) -> Vec<(usize, f64)> {
    answer["top"]
        .as_array()
        .unwrap_or_else(|| panic!("no top in {answer}"))
        .iter()
        .map(|c| (c["index"].as_u64().unwrap() as usize, c["probability"].as_f64().unwrap()))
        .collect()
}

fn error_of(answer: &serde_json::Value) -> String {
    answer["error"].as_str().unwrap_or_else(|| panic!("no error in {answer}")).to_string()
}

/// A request that must be refused: path, content type, body, status, words of the error.
type BadRequest<'a> = (&'a str, Option<&'a str>, &'a [u8], u16, &'a str);

#[test]
fn the_api_answers_good_requests_and_refuses_bad_ones() {
    let d = tmpdir("api");
    // A long --max-wait-ms: a request refused on its way must not leave the batcher waiting.
    let s = Server::start(&weights(&d), &["--max-body", "200000", "--max-wait-ms", "2000"]);
    let a = agent();
    let jpeg = std::fs::read(&images()[0]).unwrap();

    let (status, body) = get(&a, &s, "/healthz");
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (200, r#"{"status":"ok"}"#));
    let (status, body) = get(&a, &s, "/v1/model");
    let model: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200);
    assert_eq!(model["name"], "cifar");
    assert_eq!(model["classes"].as_array().unwrap().len(), 10);
    assert_eq!(model["parameters"].as_u64().unwrap() as usize, common::tiny_checkpoint().param_count());
    assert_eq!((model["input"]["stored"].as_u64(), model["input"]["crop"].as_u64()), (Some(32), Some(32)));
    assert_eq!(model["summary"]["params"], model["parameters"]);
    assert_eq!(model["summary"]["layers"][0]["name"], "conv1");
    let (status, png) = get(&a, &s, "/v1/filters.png");
    assert_eq!((status, &png[..4]), (200, &b"\x89PNG"[..]));
    let (status, page) = get(&a, &s, "/");
    let page = String::from_utf8(page).unwrap();
    assert!(status == 200 && page.contains("/v1/predict") && !page.contains("http://") && !page.contains("https://"));

    // Raw bytes, ?top, and a multipart form: the same answer.
    let (status, plain) = post(&a, &s, "/v1/predict", Some("image/jpeg"), &jpeg);
    assert_eq!(status, 200, "{plain}");
    let top = classes_of(&plain);
    assert_eq!(top.len(), 5);
    assert!(top.windows(2).all(|w| w[0].1 >= w[1].1), "{plain}");
    assert!(plain["server_ms"].as_f64().unwrap() > 0.0 && plain["batch"] == 1, "{plain}");
    let (_, three) = post(&a, &s, "/v1/predict?top=3", Some("application/octet-stream"), &jpeg);
    assert_eq!(classes_of(&three), top[..3]);
    let (_, all) = post(&a, &s, "/v1/predict?top=1000", Some("image/jpeg"), &jpeg);
    let total: f64 = classes_of(&all).iter().map(|c| c.1).sum();
    assert!(classes_of(&all).len() == 10 && (total - 1.0).abs() < 1e-4, "{all}");
    let mut form = b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n--XyZ\r\n".to_vec();
    form.extend(
        b"Content-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n",
    );
    form.extend(&jpeg);
    form.extend(b"\r\n--XyZ--\r\n");
    let (status, multi) = post(&a, &s, "/v1/predict", Some("multipart/form-data; boundary=XyZ"), &form);
    assert_eq!((status, classes_of(&multi)), (200, top.clone()), "{multi}");

    // Bad requests: a 4xx with a JSON error naming the problem.
    let mut cut = jpeg.clone();
    cut.truncate(jpeg.len() / 2);
    let bomb = common::png_claiming(65_500, 65_500);
    let cases: [BadRequest; 9] = [
        ("/v1/predict", None, &jpeg, 415, "Content-Type none"),
        ("/v1/predict", Some("text/plain"), &jpeg, 415, "Content-Type text/plain"),
        ("/v1/predict", Some("image/png"), b"hello, not an image", 415, "not an image"),
        ("/v1/predict", Some("image/jpeg"), &cut, 400, "truncated JPEG"),
        ("/v1/predict", Some("image/jpeg"), b"", 400, "empty"),
        ("/v1/predict", Some("image/png"), &bomb, 413, "65500x65500"),
        ("/v1/predict?top=0", Some("image/jpeg"), &jpeg, 400, "top must be at least 1"),
        ("/v1/predict?top=many", Some("image/jpeg"), &jpeg, 400, "bad query"),
        ("/v1/predict", Some("multipart/form-data; boundary=XyZ"), b"--XyZ--\r\n", 400, "no file"),
    ];
    for (path, ct, body, want, says) in cases {
        let (status, answer) = post(&a, &s, path, ct, body);
        assert_eq!(status, want, "{path} {ct:?}: {answer}");
        assert!(error_of(&answer).contains(says), "{path} {ct:?}: {answer}");
    }
    // Over --max-body, declared or chunked: refused when the limit is passed (the server stops
    // reading, so the client may see its upload cut: a raw socket reads the answer anyway).
    for head in ["Content-Length: 300000", "Transfer-Encoding: chunked"] {
        let mut c = raw(
            s.addr,
            format!("POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n{head}\r\n\r\n").as_bytes(),
        );
        let chunked = head.contains("chunked");
        for _ in 0..30 {
            let piece =
                if chunked { [b"2710\r\n".as_slice(), &[7u8; 10_000], b"\r\n"].concat() } else { vec![7u8; 10_000] };
            if c.write_all(&piece).is_err() {
                break;
            }
        }
        let answer = read_all(&mut c);
        assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("limit of 200000 bytes"), "{head}: {answer}");
    }
    let mut r = a.get(&s.url("/v1/predict")).call().unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert!(error_of(&r.body_mut().read_json().unwrap()).contains("method"));
    let mut r = a.get(&s.url("/v1/nothing")).call().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(error_of(&r.body_mut().read_json().unwrap()).contains("no such route"));

    // Still serving, with no wait for requests that were refused, and every answer counted.
    let (status, last) = post(&a, &s, "/v1/predict", Some("image/jpeg"), &jpeg);
    assert_eq!(status, 200);
    assert!(last["queue_ms"].as_f64().unwrap() < 500.0, "waited for refused requests: {last}");
    let metrics = String::from_utf8(get(&a, &s, "/metrics").1).unwrap();
    for line in [
        r#"alexnet_http_requests_total{route="/v1/predict",code="200"} 5"#,
        r#"alexnet_http_requests_total{route="/v1/predict",code="415"} 3"#,
        r#"alexnet_http_requests_total{route="/v1/predict",code="413"} 3"#,
        r#"alexnet_http_requests_total{route="other",code="404"} 1"#,
        "alexnet_images_total 5",
        "alexnet_batch_size_count 5",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line:?} in\n{metrics}");
    }
    assert!(metrics.contains("alexnet_http_request_duration_seconds_bucket{le=\"0.001\",route=\"/v1/predict\"}"));
}

/// `alexnet predict --json --top 10`'s probabilities, by class index, for each file.
fn predict_cli(weights: &Path, files: &[PathBuf]) -> Vec<Vec<f64>> {
    let out = Command::new(BIN)
        .args(["predict", "--json", "--top", "10", "--weights", weights.to_str().unwrap()])
        .args(files)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["predictions"].as_array().unwrap().iter().map(by_index).collect()
}

fn by_index(answer: &serde_json::Value) -> Vec<f64> {
    let mut p = vec![f64::NAN; 10];
    for (i, prob) in classes_of(answer) {
        p[i] = prob;
    }
    p
}

fn assert_same(what: &str, got: &[f64], want: &[f64]) {
    let d = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(d <= 1e-5, "{what}: {got:?} vs predict's {want:?} (max difference {d:e})");
}

#[test]
fn batched_and_concurrent_answers_equal_predict() {
    let d = tmpdir("batch");
    let w = weights(&d);
    let files = images();
    let want = predict_cli(&w, &files);
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(files.iter().map(|f| std::fs::read(f).unwrap()).collect());

    // Eight requests at once, allowed to wait 2 s for each other: gathered into batches.
    let s = Server::start(&w, &["--max-batch", "8", "--max-wait-ms", "2000"]);
    // A lone request does not wait for company that is not coming.
    let (status, lone) = post(&agent(), &s, "/v1/predict?top=10", Some("image/jpeg"), &bodies[0]);
    assert_eq!(status, 200, "{lone}");
    assert!(lone["queue_ms"].as_f64().unwrap() < 500.0, "a lone request waited for a batch: {lone}");
    assert_same("image 0 alone", &by_index(&lone), &want[0]);
    // Eight uploads, each held back by its last byte, then all released at once.
    let mut uploads: Vec<TcpStream> = bodies
        .iter()
        .map(|b| {
            let mut c = raw(s.addr, head(b.len(), "/v1/predict?top=10", "Connection: close\r\n").as_bytes());
            c.write_all(&b[..b.len() - 1]).unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for (c, b) in uploads.iter_mut().zip(bodies.iter()) {
        c.write_all(&b[b.len() - 1..]).unwrap();
    }
    let answers: Vec<serde_json::Value> = uploads
        .iter_mut()
        .map(|c| {
            let (status, v) = parse(&read_all(c));
            assert_eq!(status, 200, "{v}");
            v
        })
        .collect();
    let largest = answers.iter().map(|a| a["batch"].as_u64().unwrap()).max().unwrap();
    let batches: Vec<&serde_json::Value> = answers.iter().map(|a| &a["batch"]).collect();
    assert!(largest > 1, "no request was batched: batch sizes {batches:?}");
    for (i, a) in answers.iter().enumerate() {
        assert_same(&format!("image {i} in a batch of {}", a["batch"]), &by_index(a), &want[i]);
    }
    drop(s);

    // 32 clients, 4 requests each on a kept-alive connection, default batching.
    let s = Server::start(&w, &[]);
    let answers: Vec<(usize, serde_json::Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..32)
            .map(|c| {
                let (bodies, s) = (bodies.clone(), &s);
                scope.spawn(move || {
                    let a = agent();
                    (0..4)
                        .map(|k| {
                            let i = (c + k) % bodies.len();
                            let (status, v) = post(&a, s, "/v1/predict?top=10", Some("image/jpeg"), &bodies[i]);
                            assert_eq!(status, 200, "{v}");
                            (i, v)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers.len(), 128);
    for (i, a) in &answers {
        assert_same(&format!("image {i}, concurrent, batch of {}", a["batch"]), &by_index(a), &want[*i]);
    }
}

/// A request's head for an image body of `len` bytes, with `extra` header lines.
fn head(len: usize, path: &str, extra: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {len}\r\n{extra}\r\n")
}

/// A whole response as [`read_all`] gives it: status and JSON body.
fn parse(response: &str) -> (u16, serde_json::Value) {
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}")))
}

/// Sends `bytes` on a fresh connection and leaves it open.
fn raw(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(bytes).unwrap();
    c
}

/// Everything the server sends until it closes the connection (or 20 s pass).
fn read_all(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn stalled_and_vanishing_clients_do_not_hold_the_server() {
    let d = tmpdir("hostile");
    // A long --max-wait-ms: bodies still arriving must not make a batch wait.
    let s = Server::start(&weights(&d), &["--read-timeout", "3", "--max-wait-ms", "2000"]);
    let a = agent();
    let jpeg = std::fs::read(&images()[1]).unwrap();
    let head = |len: usize| head(len, "/v1/predict", "");

    // Headers that never end, and a body that stops halfway.
    let mut no_headers = raw(s.addr, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Le");
    let mut half_body = raw(s.addr, head(jpeg.len()).as_bytes());
    half_body.write_all(&jpeg[..jpeg.len() / 2]).unwrap();
    // A client that hangs up mid-upload.
    let mut gone = raw(s.addr, head(100_000).as_bytes());
    gone.write_all(&[0u8; 1000]).unwrap();
    drop(gone);

    // Meanwhile others are answered, well before the stalled ones time out.
    let t = Instant::now();
    let (status, other) = post(&a, &s, "/v1/predict", Some("image/jpeg"), &jpeg);
    assert_eq!(status, 200);
    assert!(t.elapsed() < Duration::from_millis(2500), "a stalled client delayed another: {:?}", t.elapsed());
    assert!(other["queue_ms"].as_f64().unwrap() < 500.0, "waited for a stalled upload: {other}");

    let answer = read_all(&mut half_body);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 3 s"), "{answer}");
    let _ = read_all(&mut no_headers);
    assert!(t.elapsed() < Duration::from_secs(10), "stalled connections held for {:?}", t.elapsed());

    assert_eq!(get(&a, &s, "/healthz").0, 200);
    assert_eq!(post(&a, &s, "/v1/predict", Some("image/jpeg"), &jpeg).0, 200);
}

#[test]
fn sigterm_answers_the_request_in_flight_then_exits() {
    let d = tmpdir("drain");
    let mut s = Server::start(&weights(&d), &[]);
    let jpeg = std::fs::read(&images()[2]).unwrap();
    let mut c = raw(s.addr, head(jpeg.len(), "/v1/predict", "").as_bytes());
    c.write_all(&jpeg[..jpeg.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    // No new connections once draining...
    assert!(TcpStream::connect_timeout(&s.addr, Duration::from_secs(2)).is_err(), "still accepting after SIGTERM");
    // ...but the request in flight is answered.
    c.write_all(&jpeg[jpeg.len() / 2..]).unwrap();
    let answer = read_all(&mut c);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"top\""), "{answer}");
    let t = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "still running 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn past_max_queue_requests_get_503_with_retry_after() {
    let d = tmpdir("busy");
    let s = Server::start(&weights(&d), &["--max-queue", "1"]);
    let jpeg = std::fs::read(&images()[3]).unwrap();
    // One upload in progress holds the only place...
    let mut first = raw(s.addr, head(jpeg.len(), "/v1/predict", "Connection: close\r\n").as_bytes());
    first.write_all(&jpeg[..10]).unwrap();
    // Once the server has admitted it (its gauge says so: probing before then could take the
    // place first and get the upload refused instead)...
    let t = Instant::now();
    while in_progress(&s) != 1 {
        assert!(t.elapsed() < Duration::from_secs(10), "the upload was not admitted");
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...the next request is refused.
    let mut r = agent().post(&s.url("/v1/predict")).header("Content-Type", "image/jpeg").send(&jpeg[..]).unwrap();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    assert_eq!((r.status().as_u16(), retry.as_deref()), (503, Some("1")));
    assert!(error_of(&r.body_mut().read_json().unwrap()).contains("--max-queue"));
    // ...until it is answered; then the next is admitted.
    first.write_all(&jpeg[10..]).unwrap();
    assert_eq!(parse(&read_all(&mut first)).0, 200);
    assert_eq!(post(&agent(), &s, "/v1/predict", Some("image/jpeg"), &jpeg).0, 200);
    assert_eq!(in_progress(&s), 0);
}

/// `alexnet_predictions_in_progress` from /metrics.
fn in_progress(s: &Server) -> i64 {
    let metrics = String::from_utf8(get(&agent(), s, "/metrics").1).unwrap();
    let line = metrics.lines().find_map(|l| l.strip_prefix("alexnet_predictions_in_progress "));
    line.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no predictions_in_progress in\n{metrics}"))
}

#[test]
fn ensembles_and_ten_crops_answer_as_predict() {
    let d = tmpdir("ensemble");
    let first = weights(&d);
    // A second member that differs: fc8 halved.
    let mut ck = common::tiny_checkpoint();
    ck.params.iter_mut().find(|p| p.name == "fc8.weight").unwrap().data.iter_mut().for_each(|v| *v *= 0.5);
    let second = d.join("second.safetensors");
    ck.save(&second).unwrap();
    let files = images();
    let out = Command::new(BIN)
        .args(["predict", "--json", "--top", "10", "--ten-crop", "--weights"])
        .arg(&first)
        .arg("--weights")
        .arg(&second)
        .args(&files[..3])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want: Vec<Vec<f64>> = v["predictions"].as_array().unwrap().iter().map(by_index).collect();

    let s = Server::start(&first, &["--weights", second.to_str().unwrap(), "--ten-crop"]);
    let a = agent();
    let (_, model) = get(&a, &s, "/v1/model");
    let model: serde_json::Value = serde_json::from_slice(&model).unwrap();
    assert_eq!((model["members"].as_u64(), model["input"]["ten_crop"].as_bool()), (Some(2), Some(true)));
    for (i, f) in files[..3].iter().enumerate() {
        let (status, answer) = post(&a, &s, "/v1/predict?top=10", Some("image/jpeg"), &std::fs::read(f).unwrap());
        assert_eq!(status, 200, "{answer}");
        assert_same(&format!("image {i}, two members, ten crops"), &by_index(&answer), &want[i]);
    }
}

/// `examples/loadgen.rs`, which `cargo test` builds beside the test binaries.
fn loadgen() -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    deps.parent().unwrap().join("examples").join("loadgen")
}

#[test]
fn the_load_generator_counts_answers_and_talks_to_loopback_only() {
    let d = tmpdir("loadgen");
    let s = Server::start(&weights(&d), &[]);
    let files = images();
    assert!(
        loadgen().is_file(),
        "{} is missing: an unfiltered `cargo test` builds the examples, or `cargo build --release --examples`",
        loadgen().display()
    );
    let out = Command::new(loadgen())
        .args(["--url", &s.url(""), "--concurrency", "4", "--requests", "24", "--seconds", "60"])
        .args(&files)
        .output()
        .expect("run examples/loadgen (cargo test builds it)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((r["ok"].as_u64(), r["errors"].as_object().map(|e| e.len())), (Some(24), Some(0)), "{r}");
    assert!(r["p50_ms"].as_f64().unwrap() > 0.0 && r["mean_batch"].as_f64().unwrap() >= 1.0, "{r}");
    let metrics = String::from_utf8(get(&agent(), &s, "/metrics").1).unwrap();
    assert!(metrics.lines().any(|l| l == "alexnet_images_total 24"), "{metrics}");

    let out = Command::new(loadgen()).args(["--url", "http://192.0.2.1:8080"]).args(&files[..1]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only talks to this machine"));
}

#[test]
fn the_batcher_waits_for_a_request_still_decoding() {
    let d = tmpdir("wait");
    let s = Server::start(&weights(&d), &["--max-batch", "8", "--max-wait-ms", "3000", "--max-body", "100000000"]);
    // A 36-megapixel PNG (hundreds of ms to decode and shrink), and 100 ms later (its body read
    // by then, its decode under way) a small JPEG, decoded and queued while the PNG still
    // decodes: the batcher must wait for the PNG.
    let big = image::RgbImage::from_fn(6000, 6000, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    big.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let png = png.into_inner();
    let jpeg = std::fs::read(&images()[4]).unwrap();
    let mut slow = raw(s.addr, head(png.len(), "/v1/predict", "Connection: close\r\n").as_bytes());
    slow.write_all(&png).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut quick = raw(s.addr, head(jpeg.len(), "/v1/predict", "Connection: close\r\n").as_bytes());
    quick.write_all(&jpeg).unwrap();
    let (quick, slow) = (parse(&read_all(&mut quick)), parse(&read_all(&mut slow)));
    assert_eq!((quick.0, slow.0), (200, 200), "{quick:?} {slow:?}");
    let batches = (quick.1["batch"].as_u64(), slow.1["batch"].as_u64());
    assert_eq!(batches, (Some(2), Some(2)), "PNG decoded in {} ms: {quick:?} {slow:?}", slow.1["decode_ms"]);
}
