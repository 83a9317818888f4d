//! The supervisor as a user sees it through the API: dependency order gated by
//! health, restarts with growing backoff, recovery from a killed process, bounded
//! logs, and no zombies left behind.

use std::time::{Duration, Instant};

use api::machine::machine_service_client::MachineServiceClient;
use api::machine::{ServiceInfo, ServiceListRequest};
use e2e::{Node, runtime, wait_for, zombie_children};
use pki::Role;
use tonic::transport::Channel;

async fn services(client: &mut MachineServiceClient<Channel>) -> Vec<ServiceInfo> {
    client
        .service_list(ServiceListRequest {})
        .await
        .unwrap()
        .into_inner()
        .messages
        .remove(0)
        .services
}

async fn service(client: &mut MachineServiceClient<Channel>, name: &str) -> ServiceInfo {
    services(client)
        .await
        .into_iter()
        .find(|s| s.name == name)
        .expect("service listed")
}

#[test]
fn services_start_in_dependency_order_recover_and_leave_no_zombies() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().display();
    let patch = format!(
        r#"{{"machine":{{"services":[
            {{"name":"web","command":["sh","-c","echo web >> {dir}/order; exec sleep 100000"],"dependsOn":["db"]}},
            {{"name":"db","command":["sh","-c","echo db >> {dir}/order; sleep 1; touch {dir}/db-ready; exec sleep 100000"],
              "healthCheck":{{"exec":["test","-f","{dir}/db-ready"],"interval":"200ms","timeout":"200ms"}}}},
            {{"name":"crasher","command":["sh","-c","echo crashing; exit 3"],"restart":"on-failure"}},
            {{"name":"orphaner","command":["sh","-c","sleep 0.2 & exit 0"],"restart":"always"}},
            {{"name":"chatty","command":["sh","-c","yes 0123456789012345678901234567890123456789 | head -c 5000000; exec sleep 100000"]}}
        ]}}}}"#
    );
    let node = Node::start_control_plane("127.0.13.2:50000".parse().unwrap(), &[&patch]);
    runtime().block_on(async {
        let mut client = node.client(Role::Operator).await.unwrap();
        let started = Instant::now();

        // web waits for db to be healthy, then starts.
        let web = loop {
            let web = service(&mut client, "web").await;
            if web.state == "running" {
                break web;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "web never started: {web:?}\n{}",
                node.log()
            );
            assert!(web.state == "waiting" || web.state == "starting", "{web:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(
            work.path().join("db-ready").exists(),
            "web started before db was healthy"
        );
        assert_eq!(
            std::fs::read_to_string(work.path().join("order")).unwrap(),
            "db\nweb\n"
        );
        assert_eq!(service(&mut client, "db").await.health, "healthy");

        // A crashing service is restarted with growing backoff: in 4 s, with 0.5 s
        // doubling, a handful of restarts, not dozens.
        tokio::time::sleep(Duration::from_secs(4).saturating_sub(started.elapsed())).await;
        let crasher = service(&mut client, "crasher").await;
        assert!((2..=5).contains(&crasher.restarts), "{crasher:?}");
        assert_eq!(crasher.last_exit, "exit status 3");

        // A killed process is restarted with a new pid.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(web.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = service(&mut client, "web").await;
            if now.state == "running" && now.pid != web.pid {
                assert!(now.last_exit.contains("SIGKILL"), "{now:?}");
                break;
            }
            assert!(Instant::now() < deadline, "web was not restarted: {now:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    // The orphaned grandchildren of `orphaner` (re-parented to the agent) are reaped.
    std::thread::sleep(Duration::from_secs(1));
    let zombies = zombie_children(node.child.id());
    assert!(
        zombies.is_empty(),
        "zombies left under the agent: {zombies:?}"
    );

    // 5 MB of output is kept within the default bound: 1 MiB per file, 2 rotated.
    let logs = node.state_dir.path().join("logs");
    let total = wait_for("chatty to finish writing", Duration::from_secs(20), || {
        let size: u64 = std::fs::read_dir(&logs)
            .ok()?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("chatty.log"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        let rotated = logs.join("chatty.log.2").exists();
        (rotated && size > 0).then_some(size)
    });
    assert!(
        total <= 3 * 1024 * 1024 + 16 * 1024,
        "chatty's logs take {total} bytes"
    );
}

#[test]
fn following_a_log_streams_lines_written_after_the_call() {
    let patch = r#"{"machine":{"services":[{"name":"counter","command":["sh","-c","i=0; while true; do i=$((i+1)); echo line $i; sleep 0.1; done"]}]}}"#;
    let node = Node::start_control_plane("127.0.13.3:50000".parse().unwrap(), &[patch]);
    runtime().block_on(async {
        let mut reader = node.client(Role::Reader).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let request = api::machine::LogsRequest {
            service: "counter".into(),
            tail_lines: 1,
            follow: true,
            namespace: String::new(),
        };
        let mut stream = reader.logs(request).await.unwrap().into_inner();
        let mut numbers = Vec::new();
        while numbers.len() < 5 {
            let data = tokio::time::timeout(Duration::from_secs(5), stream.message())
                .await
                .expect("a line within 5 s")
                .unwrap()
                .expect("the stream stays open");
            for line in std::str::from_utf8(&data.bytes).unwrap().lines() {
                numbers.push(line.trim_start_matches("line ").parse::<u32>().unwrap());
            }
        }
        // One line of history, then consecutive new lines.
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
        assert!(
            numbers[0] >= 3,
            "the tail started at the beginning: {numbers:?}"
        );
    });
}
