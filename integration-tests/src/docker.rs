//! A real Apache Kafka for the tests, from testcontainers' Kafka module,
//! where a Docker engine exists and `KLAXON_TEST_BROKERS` is unset. One
//! broker serves the whole test process; the container is removed by
//! testcontainers' reaper when the process ends.

use std::sync::mpsc;
use std::sync::OnceLock;

use testcontainers_modules::kafka::apache;
use testcontainers_modules::testcontainers::runners::SyncRunner;

/// Whether a Docker engine answers here.
pub fn docker_available() -> bool {
    let socket = std::env::var("DOCKER_HOST").is_ok()
        || std::path::Path::new("/var/run/docker.sock").exists();
    socket
        && std::process::Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// The bootstrap address of the process's Kafka container, started on
/// first use; `None` (with the reason on stderr) if it cannot start.
pub fn kafka() -> Option<String> {
    static BROKERS: OnceLock<Option<String>> = OnceLock::new();
    BROKERS
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel();
            // The container lives as long as this thread: the whole process.
            std::thread::spawn(
                move || match apache::Kafka::default().with_jvm_image().start() {
                    Ok(node) => match node.get_host_port_ipv4(apache::KAFKA_PORT) {
                        Ok(port) => {
                            let _ = tx.send(Some(format!("127.0.0.1:{port}")));
                            loop {
                                std::thread::park();
                            }
                        }
                        Err(e) => {
                            eprintln!("testcontainers: no Kafka port: {e}");
                            let _ = tx.send(None);
                        }
                    },
                    Err(e) => {
                        eprintln!("testcontainers: cannot start apache/kafka: {e}");
                        let _ = tx.send(None);
                    }
                },
            );
            rx.recv().ok().flatten()
        })
        .clone()
}
