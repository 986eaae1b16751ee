//! The binary's life as an operator sees it: SIGTERM drains requests in
//! flight (and cuts off what is left after the grace period), a bad
//! configuration is refused with the reason, `check-config` says the same
//! without serving, and the logs never carry tokens or variables.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_commerce-graph");
const SECRET: &str = "lifecycle-secret-0123456789";

/// A running `commerce-graph serve`, its log lines as they come.
struct Server {
    child: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    address: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(args: &[&str], log_filter: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let database = format!("sqlite://{}", dir.path().join("commerce.db").display());
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &database,
                "--seed-on-start",
                "false",
                "--jwt-secret",
                SECRET,
            ])
            .args(args)
            .env("COMMERCE_GRAPH_LOG", log_filter)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let mut server = Server {
            child,
            lines,
            log,
            address: String::new(),
            _dir: dir,
        };
        let line = server.wait_for("listening");
        let start = line.find("http://").expect("the address in the log") + "http://".len();
        server.address = line[start..]
            .split(['/', '"', ' '])
            .next()
            .unwrap()
            .to_string();
        server
    }

    /// The next log line containing `text` (within a minute).
    fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => panic!("no log line with {text:?}"),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the server ended before logging {text:?}: {:#?}",
                    self.log.lock().unwrap()
                ),
            }
        }
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to end (within a minute).
    fn exit_status(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a POST's headers and the first bytes of its body.
    async fn half_sent(&self, body: &str) -> tokio::net::TcpStream {
        let mut stream = tokio::net::TcpStream::connect(&self.address).await.unwrap();
        let head = format!(
            "POST /graphql HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{}",
            self.address,
            body.len(),
            &body[..10]
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
    }
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_then_exits_0() {
    // tower-http logs at debug when a request's handler starts.
    let mut server = Server::start(&[], "info,tower_http=debug");
    let body = json!({ "query": "{ __typename }" }).to_string();
    let mut slow = server.half_sent(&body).await;
    server.wait_for("started processing request");

    server.terminate();
    server.wait_for("shutting down");
    // No new connections once draining began.
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&server.address)
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "new connections are refused while draining");

    // The request in flight still gets its answer.
    slow.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"__typename\":\"Query\""), "{answer}");

    assert_eq!(server.exit_status().code(), Some(0));
    server.wait_for("every request finished");
}

#[tokio::test]
async fn what_is_still_running_after_the_grace_period_is_cut_off() {
    let mut server = Server::start(&["--shutdown-grace", "500ms"], "info,tower_http=debug");
    let body = json!({ "query": "{ __typename }" }).to_string();
    // A client that never sends the rest.
    let _stuck = server.half_sent(&body).await;
    server.wait_for("started processing request");
    server.terminate();
    let status = server.exit_status();
    assert_eq!(
        status.code(),
        Some(0),
        "{status:?}: {:#?}",
        server.log.lock().unwrap()
    );
    server.wait_for("cut off");
}

fn check_config(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(BIN)
        .arg("check-config")
        .args(args)
        .env_remove("COMMERCE_GRAPH_JWT_SECRET")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_says_what_is_wrong_and_exits_1() {
    let (ok, stdout, _) = check_config(&["--rate-limit-clients", "ios=20000/1000/32"]);
    assert!(ok);
    assert!(stdout.contains("the configuration is valid"), "{stdout}");
    assert!(stdout.contains("clients ios=20000/1000/32"), "{stdout}");

    for (args, reason) in [
        (
            vec!["--profile", "production"],
            "the production profile needs a JWT secret",
        ),
        (
            vec!["--rate-limit-anonymous", "100/0/4"],
            "the restore rate",
        ),
        (
            vec!["--rate-limit-clients", "ios"],
            "is not NAME=CAPACITY/RATE/CONCURRENT",
        ),
        (vec!["--shutdown-grace", "soon"], "not a duration"),
        (
            vec!["--database-url", "mysql://db/x"],
            "unsupported database URL",
        ),
        (vec!["--metrics-token", "short"], "at least 16 bytes"),
    ] {
        let (ok, _, stderr) = check_config(&args);
        assert!(!ok, "{args:?} is refused");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "shutdown_grace = \"5s\"\nrate_limt = true\n").unwrap();
    let (ok, _, stderr) = check_config(&["--config", file.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("rate_limt"), "{stderr}");
}

#[test]
fn serve_refuses_an_invalid_configuration_before_listening() {
    let output = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--rate-limit-customer",
            "lots",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "clap's usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--rate-limit-customer"), "{stderr}");
    assert!(stderr.contains("CAPACITY/RATE/CONCURRENT"), "{stderr}");

    let output = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--profile",
            "production",
        ])
        .env_remove("COMMERCE_GRAPH_JWT_SECRET")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("needs a JWT secret"), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}

#[tokio::test]
async fn logs_name_the_operation_and_client_but_never_tokens_or_variables() {
    let mut server = Server::start(&["--log-format", "json"], "debug");
    let token = String::from_utf8(
        Command::new(BIN)
            .args(["token", "--customer", "7", "--jwt-secret", SECRET])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    assert!(token.len() > 20);
    let secret_value = "sku-nobody-may-read-4f1c";
    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://{}/graphql", server.address))
        .bearer_auth(&token)
        .header("apollographql-client-name", "ios-app")
        .header("apollographql-client-version", "4.2.0")
        .json(&json!({
            "query": "query BySku($sku: String!) { productBySku(sku: $sku) { id title } }",
            "variables": { "sku": secret_value },
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server.terminate();
    assert_eq!(server.exit_status().code(), Some(0));
    server.wait_for("stopped");

    let log = server.log.lock().unwrap().join("\n");
    assert!(!log.contains(&token), "the token is in the log");
    // Not even part of it (its signature).
    let signature = token.rsplit('.').next().unwrap();
    assert!(
        !log.contains(signature),
        "the token's signature is in the log"
    );
    assert!(!log.contains(secret_value), "a variable is in the log");
    for field in [
        "\"operation_name\":\"BySku\"",
        "\"operation_type\":\"query\"",
        "\"client_name\":\"ios-app\"",
        "\"client_version\":\"4.2.0\"",
        "\"request_id\":",
        "\"name\":\"loader_batch\"",
        "\"entity\":\"ProductSku\"",
    ] {
        assert!(log.contains(field), "{field} in the log:\n{log}");
    }
}

#[cfg(not(feature = "otel"))]
#[test]
fn an_otlp_endpoint_needs_a_build_with_the_otel_feature() {
    let (ok, _, stderr) = check_config(&["--otlp-endpoint", "http://127.0.0.1:4318/v1/traces"]);
    assert!(!ok);
    assert!(stderr.contains("--features otel"), "{stderr}");
}

/// With the `otel` feature, the spans of a request reach an OTLP/HTTP
/// collector (here a listener that takes one export), in the caller's trace.
#[cfg(feature = "otel")]
#[tokio::test]
async fn spans_are_exported_over_otlp_in_the_callers_trace() {
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/v1/traces", collector.local_addr().unwrap());
    let mut server = Server::start(&["--otlp-endpoint", &endpoint], "info");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = reqwest::Client::new()
        .post(format!("http://{}/graphql", server.address))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Exported at the latest when the server flushes on its way out.
    server.terminate();
    let (mut socket, _) = tokio::time::timeout(Duration::from_secs(30), collector.accept())
        .await
        .expect("an export within 30 s")
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 65536];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        received.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&received);
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let length: usize = text[..end]
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .unwrap_or(0);
        if received.len() >= end + 4 + length {
            break;
        }
    }
    socket
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("POST /v1/traces"), "{text}");
    assert!(text.to_ascii_lowercase().contains("application/x-protobuf"));
    // The protobuf carries the trace id as 16 raw bytes.
    let id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_id[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert!(
        received.windows(16).any(|w| w == id),
        "the caller's trace id"
    );
    assert_eq!(server.exit_status().code(), Some(0));
}
