//! The binary as a user starts it: `serve` on an empty database migrates,
//! seeds and answers; `migrate` and `seed` work on their own.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::TestDatabase;

const BIN: &str = env!("CARGO_BIN_EXE_commerce-graph");

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `serve` on a free port and returns the base URL it logged.
fn start(database_url: &str) -> (Server, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .env("COMMERCE_GRAPH_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(start) = line.find("http://") {
                let url: String = line[start..].split_whitespace().next().unwrap().to_string();
                let _ = tx.send(
                    url.trim_end_matches("/graphql")
                        .trim_end_matches('"')
                        .to_string(),
                );
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the server logged its address");
    (server, url.trim_end_matches("/graphql").to_string())
}

#[tokio::test]
async fn serve_on_an_empty_database_migrates_seeds_and_answers() {
    let database = TestDatabase::empty().await;
    let (_server, url) = start(database.url());
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("{url}/health/ready"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the server became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_serves_the_scale_1_seed(&client, &url).await;
}

/// Replicas deployed together on a fresh PostgreSQL database: both migrate
/// (one after the other), one seeds, both serve the same rows. SQLite is one
/// process's database: nothing to prove there.
#[tokio::test]
async fn two_servers_started_together_on_an_empty_database_both_serve_one_seed() {
    if TestDatabase::postgres_url().is_none() {
        return;
    }
    let database = TestDatabase::empty().await;
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| start(database.url()));
        let b = scope.spawn(|| start(database.url()));
        (a.join().unwrap(), b.join().unwrap())
    });
    let client = reqwest::Client::new();
    for (_server, url) in [&a, &b] {
        assert_serves_the_scale_1_seed(&client, url).await;
    }
}

#[test]
fn migrate_then_seed_fill_a_database_and_seed_refuses_a_second_time() {
    let database = TestDatabase::empty_blocking();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("COMMERCE_GRAPH_DATABASE_URL", database.url())
            .output()
            .unwrap()
    };
    let migrate = run(&["migrate"]);
    assert!(migrate.status.success(), "{migrate:?}");
    let seed = run(&["seed", "--scale", "1"]);
    assert!(seed.status.success(), "{seed:?}");
    assert!(
        String::from_utf8_lossy(&seed.stderr).contains("1000"),
        "{seed:?}"
    );
    let again = run(&["seed", "--scale", "1"]);
    assert!(!again.status.success(), "a second seed is refused");
}

#[test]
fn production_without_a_secret_refuses_to_start() {
    let output = Command::new(BIN)
        .args(["serve", "--profile", "production"])
        .env_remove("COMMERCE_GRAPH_JWT_SECRET")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("JWT secret"));
}

#[test]
fn persisted_import_list_and_remove_manage_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let database = TestDatabase::empty_blocking();
    let run = |args: &[&str]| {
        let output = Command::new(BIN)
            .args(args)
            .env("COMMERCE_GRAPH_DATABASE_URL", database.url())
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).to_string(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let workloads = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/persisted-queries/workloads.json"
    );
    let (ok, _, stderr) = run(&["persisted", "import", workloads]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("3 document(s) registered"), "{stderr}");

    // Relay's format; one document invalid: nothing registered, each reason told.
    let relay = dir.path().join("persisted-queries.json");
    std::fs::write(
        &relay,
        json!({
            "a1": "query Fine { categories { slug } }",
            "b2": "query Broken { categories { nope } }",
        })
        .to_string(),
    )
    .unwrap();
    let (ok, _, stderr) = run(&["persisted", "import", relay.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("invalid: b2"), "{stderr}");
    assert!(stderr.contains("nope"), "{stderr}");
    assert!(stderr.contains("nothing was registered"), "{stderr}");

    let (ok, listed, _) = run(&["persisted", "list"]);
    assert!(ok);
    let names: Vec<&str> = listed
        .lines()
        .map(|l| l.split('\t').nth(3).unwrap())
        .collect();
    assert_eq!(names, ["Catalog", "ProductPage", "AllOrders"]);
    assert!(!listed.contains("a1"));

    // Scoped to a client, then removed.
    std::fs::write(
        &relay,
        json!({ "a1": "query Fine { categories { slug } }" }).to_string(),
    )
    .unwrap();
    let (ok, _, stderr) = run(&[
        "persisted",
        "import",
        "--client",
        "ios",
        relay.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let (_, listed, _) = run(&["persisted", "list", "--json"]);
    let documents: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let fine = documents
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "a1")
        .unwrap();
    assert_eq!(fine["client"], "ios");
    assert_eq!(fine["name"], "Fine");
    let (ok, _, _) = run(&["persisted", "remove", "a1"]);
    assert!(ok);
    let (ok, _, stderr) = run(&["persisted", "remove", "a1"]);
    assert!(!ok && stderr.contains("no registered document"), "{stderr}");
}

/// The server at `url` answers with the scale-1 demo data.
async fn assert_serves_the_scale_1_seed(client: &reqwest::Client, url: &str) {
    let body: serde_json::Value = client
        .post(format!("{url}/graphql"))
        .json(&json!({ "query": "{ categories { id } products(first: 0) { totalCount } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["data"]["categories"].as_array().unwrap().len(), 20);
    assert_eq!(body["data"]["products"]["totalCount"], 1000);
}
