//! The built `klaxon` binary against the dispatch API (an in-memory
//! backend on 127.0.0.1:0): `KLAXON_URL`, `KLAXON_API_TOKEN` and `$USER`
//! from the environment, output on stdout, errors on stderr with exit
//! code 1.

use std::process::{Command, Output};
use std::sync::Arc;

use klaxon::api::memory::MemoryBackend;
use klaxon::api::Backend;
use klaxon::config::run::Secret;

const TOKEN: &str = "tok-bin-4d5e";
/// 2026-11-28T13:00:00Z
const NOW: i64 = 1_795_870_800_000;

fn serve(backend: Arc<MemoryBackend>) -> String {
    let app = klaxon::api::router_with_clock(backend, Some(Secret::new(TOKEN)), Arc::new(|| NOW));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(l, app).await.unwrap();
            });
    });
    format!("http://{addr}")
}

fn klaxon(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_klaxon"));
    c.args(args)
        .env_clear()
        .env("KLAXON_URL", url)
        .env("USER", "kim");
    if let Some(t) = token {
        c.env("KLAXON_API_TOKEN", t);
    }
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

#[test]
fn silences_from_the_command_line() {
    let backend = Arc::new(MemoryBackend::new(Arc::new(|| NOW)));
    let url = serve(backend.clone());
    let out = klaxon(
        &url,
        Some(TOKEN),
        &[
            "silence",
            "add",
            r#"InstanceId=~"i-0.*""#,
            "severity=warning",
            "--duration",
            "2h",
            "--comment",
            "patching",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    let stored = backend.silences();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, id);
    assert_eq!(stored[0].created_by, "kim", "from $USER");

    let out = klaxon(&url, None, &["silence", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "ID                STATE   STARTS                ENDS                  CREATED BY  MATCHERS                                COMMENT\n\
             {id}  active  2026-11-28T13:00:00Z  2026-11-28T15:00:00Z  kim         InstanceId=~\"i-0.*\" severity=\"warning\"  patching\n"
        )
    );

    // A write without the token: the API's message on stderr, exit 1.
    let out = klaxon(&url, None, &["silence", "expire", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(out.stdout, b"");
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: unauthorized (401 DELETE /api/v1/silences/{id}): this write needs an `Authorization: Bearer <token>` header\n"
        )
    );

    let out = klaxon(&url, Some(TOKEN), &["silence", "expire", &id, "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(v[0]["state"], "expired");
    assert_eq!(
        klaxon(&url, None, &["silence", "list"]).stdout,
        b"no silences\n"
    );
    assert_eq!(klaxon(&url, None, &["alerts"]).stdout, b"no alerts\n");
}

#[test]
fn nothing_listening() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = klaxon(&format!("http://127.0.0.1:{port}"), None, &["alerts"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "error: cannot reach the klaxon API at http://127.0.0.1:{port}: "
        )),
        "{err}"
    );
}
