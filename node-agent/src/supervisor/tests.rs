//! End-to-end tests of the supervisor with real processes.
//!
//! Tests run concurrently in threads of one process, sharing the process-wide reaper;
//! each has its own temp directory and supervisor, and stops its services at the end
//! (a failing test's services are killed when its runtime drops the runner tasks).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use machine_config::{HealthCheck, HumanDuration, RestartPolicy, ServiceSpec};
use tempfile::TempDir;
use tokio::net::TcpListener;

use super::logs::lines_of;
use super::*;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// A temp dir and a supervisor with fast backoff logging into it.
fn setup() -> (TempDir, Supervisor) {
    setup_with(|_| {})
}

fn setup_with(adjust: impl FnOnce(&mut SupervisorOptions)) -> (TempDir, Supervisor) {
    become_subreaper().expect("become a subreaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut options = SupervisorOptions {
        backoff_initial: ms(40),
        backoff_max: ms(1000),
        ..SupervisorOptions::new(dir.path().join("logs"))
    };
    adjust(&mut options);
    (dir, Supervisor::new(options))
}

/// A service running `script` with /bin/sh (restart always, 2 s stop timeout).
fn sh(name: &str, script: &str) -> ServiceSpec {
    ServiceSpec {
        restart: RestartPolicy::Always,
        stop_timeout: HumanDuration(Duration::from_secs(2)),
        ..ServiceSpec::process(name, vec!["/bin/sh".into(), "-c".into(), script.into()])
    }
}

fn with_restart(spec: ServiceSpec, restart: RestartPolicy) -> ServiceSpec {
    ServiceSpec { restart, ..spec }
}

fn with_deps(spec: ServiceSpec, deps: &[&str]) -> ServiceSpec {
    ServiceSpec {
        depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
        ..spec
    }
}

fn with_check(spec: ServiceSpec, exec: Option<&str>, tcp: Option<String>) -> ServiceSpec {
    let check = HealthCheck {
        exec: exec.map(|script| vec!["/bin/sh".into(), "-c".into(), script.into()]),
        tcp,
        interval: HumanDuration(ms(50)),
        timeout: HumanDuration(ms(1000)),
    };
    ServiceSpec {
        health_check: Some(check),
        ..spec
    }
}

/// Calls `check` every 10 ms until it gives `Ok` (10 s at most); the `Err` text of the
/// last attempt is in the panic message.
async fn poll<T>(what: &str, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last seen: {last}"
            ),
        }
        tokio::time::sleep(ms(10)).await;
    }
}

/// Polls the status of `name` until `done` holds.
async fn wait_for(
    sup: &Supervisor,
    name: &str,
    what: &str,
    done: impl Fn(&ServiceStatus) -> bool,
) -> ServiceStatus {
    poll(&format!("{name}: {what}"), async || {
        let status = sup.status(name).expect("known service");
        if done(&status) {
            Ok(status)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await
}

async fn wait_state(sup: &Supervisor, name: &str, state: ServiceState) -> ServiceStatus {
    wait_for(sup, name, state.as_str(), |s| s.state == state).await
}

/// Polls the log of `name` until its last line is `line`; returns all its lines.
async fn wait_last_line(sup: &Supervisor, name: &str, line: &str) -> Vec<String> {
    poll(&format!("{name}: line {line:?}"), async || {
        let lines = lines_of(sup.tail(name, usize::MAX).await.expect("tail"));
        if lines.last().is_some_and(|last| last == line) {
            Ok(lines)
        } else {
            Err(format!("{lines:?}"))
        }
    })
    .await
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn start_order_follows_dependencies() {
    let (dir, sup) = setup();
    let order = dir.path().join("order");
    // Healthy only once it has written its name, so a dependent cannot start earlier;
    // the first pause keeps the dependents waiting long enough to be seen waiting.
    let svc = |name: &str, pause: &str| {
        let script = format!(
            "sleep {pause}; echo {name} >> {}; exec sleep 100",
            order.display()
        );
        let spec = sh(name, &script);
        with_check(
            spec,
            Some(&format!("grep -qx {name} {}", order.display())),
            None,
        )
    };
    sup.reconcile(&[
        with_deps(svc("c", "0"), &["b"]),
        with_deps(svc("b", "0"), &["a"]),
        svc("a", "0.3"),
    ])
    .await;
    // Listed in config order whatever the start order.
    let names: Vec<String> = sup.list().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["c", "b", "a"]);
    let c = wait_state(&sup, "c", ServiceState::Waiting).await;
    assert_eq!(c.message, "waiting for \"b\" (waiting)");
    wait_for(&sup, "c", "healthy", |s| s.health == Health::Healthy).await;
    assert_eq!(read(&order), "a\nb\nc\n");
    sup.stop_all().await;
}

#[tokio::test]
async fn restart_always_backs_off_exponentially() {
    let (dir, sup) = setup();
    let starts = dir.path().join("starts");
    sup.reconcile(&[sh(
        "crash",
        &format!("date +%s%N >> {}; exit 1", starts.display()),
    )])
    .await;
    let backoff = wait_state(&sup, "crash", ServiceState::Backoff).await;
    assert!(
        backoff.message.contains("restarting in"),
        "{}",
        backoff.message
    );
    let status = wait_for(&sup, "crash", "4 restarts", |s| s.restarts >= 4).await;
    assert_eq!(status.last_exit.as_deref(), Some("exit status 1"));
    // The 4th restart is counted when it begins: wait for it to record its start.
    poll("a 5th start", async || {
        match read(&starts).lines().count() {
            5.. => Ok(()),
            n => Err(format!("{n} starts")),
        }
    })
    .await;
    sup.stop("crash").await.expect("stop");

    let times: Vec<u128> = read(&starts)
        .lines()
        .map(|l| l.parse().expect("nanoseconds"))
        .collect();
    let gaps: Vec<u128> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Each gap is at least its (doubling) delay: 40, 80, 160, 320 ms, with 1 ms of slack
    // for clocks. No upper bound: a loaded machine may add any latency.
    for (i, gap) in gaps.iter().take(4).enumerate() {
        let delay = 40_000_000u128 << i;
        assert!(
            *gap + 1_000_000 >= delay,
            "gap {i} is {gap} ns < {delay} ns; gaps {gaps:?}"
        );
    }
}

#[tokio::test]
async fn on_failure_restarts_only_failures() {
    let (_dir, sup) = setup();
    sup.reconcile(&[
        with_restart(sh("ok", "exit 0"), RestartPolicy::OnFailure),
        with_restart(sh("bad", "exit 3"), RestartPolicy::OnFailure),
    ])
    .await;
    let ok = wait_state(&sup, "ok", ServiceState::Finished).await;
    assert_eq!(ok.last_exit.as_deref(), Some("exit status 0"));
    wait_for(&sup, "bad", "a restart", |s| s.restarts >= 2).await;
    tokio::time::sleep(ms(200)).await;
    let ok = sup.status("ok").expect("status");
    assert_eq!((ok.state, ok.restarts), (ServiceState::Finished, 0));
    sup.stop_all().await;
}

#[tokio::test]
async fn never_restart_fails_and_stays_failed() {
    let (_dir, sup) = setup();
    sup.reconcile(&[
        with_restart(sh("once", "exit 1"), RestartPolicy::Never),
        with_restart(
            ServiceSpec {
                command: vec!["/nonexistent/binary".into()],
                ..sh("missing", "")
            },
            RestartPolicy::Never,
        ),
    ])
    .await;
    let once = wait_state(&sup, "once", ServiceState::Failed).await;
    assert_eq!(once.last_exit.as_deref(), Some("exit status 1"));
    let missing = wait_state(&sup, "missing", ServiceState::Failed).await;
    assert!(missing.message.contains("spawning"), "{}", missing.message);
    tokio::time::sleep(ms(200)).await;
    assert_eq!(sup.status("once").expect("status").restarts, 0);
    // An explicit start runs it again.
    sup.start("once").await.expect("start");
    wait_for(&sup, "once", "a second run", |s| {
        s.state == ServiceState::Failed && s.started_at != once.started_at
    })
    .await;
}

#[tokio::test]
async fn exec_health_check_reports_healthy_and_unhealthy() {
    let (_dir, sup) = setup();
    sup.reconcile(&[
        with_check(sh("good", "exec sleep 100"), Some("true"), None),
        with_check(sh("sick", "exec sleep 100"), Some("exit 4"), None),
    ])
    .await;
    wait_for(&sup, "good", "healthy", |s| s.health == Health::Healthy).await;
    let sick = wait_for(&sup, "sick", "unhealthy", |s| {
        matches!(s.health, Health::Unhealthy(_))
    })
    .await;
    assert_eq!(
        sick.health,
        Health::Unhealthy("\"/bin/sh\" ended with exit status 4".into())
    );
    sup.stop_all().await;
    assert_eq!(sup.status("good").expect("status").health, Health::Unknown);
}

#[tokio::test]
async fn tcp_health_check_connects() {
    let (_dir, sup) = setup();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let open = listener.local_addr().expect("addr").to_string();
    let closed = {
        let probe = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        probe.local_addr().expect("addr").to_string()
    };
    sup.reconcile(&[
        with_check(sh("up", "exec sleep 100"), None, Some(open)),
        with_check(sh("down", "exec sleep 100"), None, Some(closed.clone())),
    ])
    .await;
    wait_for(&sup, "up", "healthy", |s| s.health == Health::Healthy).await;
    let down = wait_for(&sup, "down", "unhealthy", |s| {
        matches!(s.health, Health::Unhealthy(_))
    })
    .await;
    assert!(down.health.to_string().contains(&closed), "{}", down.health);
    sup.stop_all().await;
}

#[tokio::test]
async fn dependent_waits_for_an_unhealthy_dependency() {
    let (dir, sup) = setup();
    let flag = dir.path().join("healthy");
    sup.reconcile(&[
        with_check(
            sh("db", "exec sleep 100"),
            Some(&format!("test -e {}", flag.display())),
            None,
        ),
        with_deps(sh("app", "exec sleep 100"), &["db"]),
    ])
    .await;
    wait_for(&sup, "db", "unhealthy", |s| {
        matches!(s.health, Health::Unhealthy(_))
    })
    .await;
    tokio::time::sleep(ms(200)).await;
    let app = sup.status("app").expect("status");
    assert_eq!(app.state, ServiceState::Waiting);
    assert_eq!(app.message, "waiting for \"db\" (not healthy)");
    assert_eq!(app.pid, None);
    fs::write(&flag, "").expect("write flag");
    wait_state(&sup, "app", ServiceState::Running).await;
    sup.stop_all().await;
}

#[tokio::test]
async fn log_size_stays_bounded() {
    const LIMIT: u64 = 100_000;
    const LINE: &str = "0123456789012345678901234567890123456789";
    let (_dir, sup) = setup_with(|o| {
        o.log_max_bytes = LIMIT;
        o.log_files_kept = 2;
    });
    let script = format!("yes {LINE} | head -c 5000000; echo; echo done");
    sup.reconcile(&[with_restart(sh("chatty", &script), RestartPolicy::Never)])
        .await;
    wait_state(&sup, "chatty", ServiceState::Finished).await;
    wait_last_line(&sup, "chatty", "done").await;
    let log = sup.log_path("chatty").expect("log path");
    let mut total = 0;
    for suffix in ["", ".1", ".2"] {
        total += fs::metadata(format!("{}{suffix}", log.display()))
            .expect("log file")
            .len();
    }
    assert!(!Path::new(&format!("{}.3", log.display())).exists());
    assert!(total <= LIMIT * 3 + LINE.len() as u64 + 1, "{total} bytes");
    assert!(total >= LIMIT * 2, "the old files are kept: {total} bytes");
}

#[tokio::test]
async fn tail_returns_the_last_lines_across_rotated_files() {
    let (_dir, sup) = setup_with(|o| o.log_max_bytes = 200);
    let script = "for i in $(seq 1 100); do echo line $i; done; echo stderr >&2";
    sup.reconcile(&[with_restart(sh("count", script), RestartPolicy::Never)])
        .await;
    let all = wait_last_line(&sup, "count", "stderr").await;
    assert_eq!(
        lines_of(sup.tail("count", 3).await.expect("tail")),
        ["line 99", "line 100", "stderr"]
    );
    // Everything still on disk, contiguous and oldest first, beyond one 200-byte file.
    assert!(all.len() > 30, "{all:?}");
    let first: u32 = all[0]
        .strip_prefix("line ")
        .and_then(|n| n.parse().ok())
        .expect("a numbered line");
    let expected: Vec<String> = (first..=100).map(|i| format!("line {i}")).collect();
    assert_eq!(all[..all.len() - 1], expected);
}

#[tokio::test]
async fn follow_receives_new_lines() {
    let (_dir, sup) = setup();
    sup.reconcile(&[sh("ticker", "while :; do echo tick; sleep 0.05; done")])
        .await;
    let (_, mut lines) = sup.follow("ticker", 0).await.expect("follow");
    let line = tokio::time::timeout(Duration::from_secs(5), lines.recv())
        .await
        .expect("a line in time")
        .expect("a line");
    assert_eq!(line, "tick");
    sup.stop_all().await;
}

#[tokio::test]
async fn stop_all_stops_dependents_first() {
    let (dir, sup) = setup();
    let stops = dir.path().join("stops");
    let svc = |name: &str| {
        let script = format!(
            "trap 'echo {name} >> {}; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
            stops.display()
        );
        sh(name, &script)
    };
    sup.reconcile(&[
        svc("base"),
        with_deps(svc("middle"), &["base"]),
        with_deps(svc("top"), &["middle"]),
        svc("alone"),
    ])
    .await;
    for name in ["base", "middle", "top", "alone"] {
        wait_last_line(&sup, name, "ready").await;
    }
    sup.stop_all().await;
    let order: Vec<String> = read(&stops).lines().map(str::to_owned).collect();
    let position = |name: &str| order.iter().position(|n| n == name).expect("stopped");
    assert_eq!(order.len(), 4, "{order:?}");
    assert!(position("top") < position("middle") && position("middle") < position("base"));
    for status in sup.list() {
        assert_eq!(status.state, ServiceState::Stopped);
        assert_eq!(status.last_exit.as_deref(), Some("exit status 0"));
    }
}

/// Zombie children of this test process, as seen in /proc.
fn zombies() -> Vec<u32> {
    let all = procfs::read_all(Path::new("/proc")).expect("/proc");
    procfs::zombie_children(&all, std::process::id())
}

#[tokio::test]
async fn orphaned_grandchildren_are_reaped() {
    let (_dir, sup) = setup();
    let script = "sleep 0.2 & echo $!; exit 0";
    sup.reconcile(&[with_restart(sh("parent", script), RestartPolicy::Never)])
        .await;
    wait_state(&sup, "parent", ServiceState::Finished).await;
    let lines = lines_of(sup.tail("parent", 1).await.expect("tail"));
    let grandchild: u32 = lines[0].parse().expect("the grandchild's pid");
    poll("the grandchild to be reaped", async || {
        if alive(grandchild) {
            Err(format!("/proc/{grandchild} exists"))
        } else {
            Ok(())
        }
    })
    .await;
    // Other tests spawn processes concurrently; none of them stays a zombie either.
    poll("no zombie children", async || match zombies() {
        zombies if zombies.is_empty() => Ok(()),
        zombies => Err(format!("{zombies:?}")),
    })
    .await;
}

#[tokio::test]
async fn stop_escalates_to_sigkill() {
    let (_dir, sup) = setup();
    let spec = ServiceSpec {
        stop_timeout: HumanDuration(ms(300)),
        ..sh("stubborn", "trap '' TERM; echo ready; sleep 100")
    };
    sup.reconcile(&[spec]).await;
    wait_last_line(&sup, "stubborn", "ready").await;
    let pid = sup
        .status("stubborn")
        .expect("status")
        .pid
        .expect("running");
    let began = Instant::now();
    sup.stop("stubborn").await.expect("stop");
    let took = began.elapsed();
    assert!(took >= ms(300) && took < Duration::from_secs(5), "{took:?}");
    let status = sup.status("stubborn").expect("status");
    assert_eq!(status.state, ServiceState::Stopped);
    assert_eq!(status.last_exit.as_deref(), Some("signal 9 (SIGKILL)"));
    assert!(!alive(pid));
}

#[tokio::test]
async fn stop_start_and_restart_on_request() {
    let (_dir, sup) = setup();
    sup.reconcile(&[sh("svc", "exec sleep 100")]).await;
    let first = wait_state(&sup, "svc", ServiceState::Running).await;
    sup.stop("svc").await.expect("stop");
    tokio::time::sleep(ms(200)).await;
    let stopped = sup.status("svc").expect("status");
    assert_eq!((stopped.state, stopped.pid), (ServiceState::Stopped, None));
    assert_eq!(stopped.last_exit.as_deref(), Some("signal 15 (SIGTERM)"));

    sup.start("svc").await.expect("start");
    let second = wait_state(&sup, "svc", ServiceState::Running).await;
    sup.start("svc").await.expect("start a running service");
    tokio::time::sleep(ms(100)).await;
    assert_eq!(sup.status("svc").expect("status").pid, second.pid);

    sup.restart("svc").await.expect("restart");
    let third = wait_state(&sup, "svc", ServiceState::Running).await;
    let pids = [first.pid, second.pid, third.pid];
    assert!(pids[0] != pids[1] && pids[1] != pids[2], "{pids:?}");
    assert_eq!(third.restarts, 0, "explicit restarts are not counted");
    sup.stop_all().await;
}

#[tokio::test]
async fn reconcile_applies_changes_only() {
    let (_dir, sup) = setup();
    let a = sh("a", "exec sleep 100");
    let b = sh("b", "exec sleep 100");
    sup.reconcile(&[a.clone(), b.clone()]).await;
    let a1 = wait_state(&sup, "a", ServiceState::Running).await.pid;
    let b1 = wait_state(&sup, "b", ServiceState::Running).await.pid;

    let b2_spec = sh("b", "exec sleep 200");
    sup.reconcile(&[a.clone(), b2_spec, sh("c", "exec sleep 100")])
        .await;
    let b2 = wait_state(&sup, "b", ServiceState::Running).await.pid;
    wait_state(&sup, "c", ServiceState::Running).await;
    assert_eq!(
        sup.status("a").expect("status").pid,
        a1,
        "unchanged service left alone"
    );
    assert_ne!(b1, b2, "changed service restarted");
    assert!(!alive(b1.expect("pid")));

    sup.reconcile(&[a]).await;
    let names: Vec<String> = sup.list().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["a"]);
    assert!(!alive(b2.expect("pid")));
    assert!(matches!(sup.status("b"), Err(Error::UnknownService(_))));
    sup.stop_all().await;
}

#[tokio::test]
async fn unknown_services_are_errors() {
    let (_dir, sup) = setup();
    let err = sup.start("x").await.expect_err("unknown");
    assert_eq!(err.to_string(), "unknown service \"x\"");
    assert!(sup.stop("x").await.is_err());
    assert!(sup.restart("x").await.is_err());
    assert!(sup.status("x").is_err());
    assert!(sup.log_path("x").is_err());
    assert!(sup.tail("x", 1).await.is_err());
    assert!(sup.follow("x", 0).await.is_err());
    assert!(sup.stats("x").is_err());
}

#[tokio::test]
async fn environment_and_working_directory() {
    let (dir, sup) = setup_with(|o| o.state_dir = o.log_dir.parent().map(|d| d.join("state")));
    let script = "echo \"$FOO\"; pwd; echo \"${PATH:+has path}\"";
    let mut spec = with_restart(sh("env", script), RestartPolicy::Never);
    spec.env.insert("FOO".into(), "bar".into());
    sup.reconcile(&[spec]).await;
    let lines = wait_last_line(&sup, "env", "has path").await;
    let cwd = dir.path().join("state").join("env");
    assert_eq!(lines, ["bar", &cwd.display().to_string(), "has path"]);
}

#[tokio::test]
async fn stats_from_proc_and_from_a_cgroup() {
    let (dir, sup) = setup();
    sup.reconcile(&[sh("plain", "exec sleep 100")]).await;
    wait_state(&sup, "plain", ServiceState::Running).await;
    // Right after spawn the process may still be in exec, without memory of its own.
    poll("resident memory", async || match sup.stats("plain") {
        Ok(stats) if stats.memory_bytes > 0 => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
    sup.stop_all().await;
    assert!(matches!(sup.stats("plain"), Err(Error::NotRunning(_))));

    // A directory standing in for a cgroup v2 hierarchy.
    let root = dir.path().join("cgroup");
    let (_dir2, grouped) = setup_with(|o| o.cgroup_root = Some(root.clone()));
    grouped.reconcile(&[sh("svc", "exec sleep 100")]).await;
    let status = wait_state(&grouped, "svc", ServiceState::Running).await;
    let cgroup = root.join("svc");
    assert_eq!(status.cgroup.as_deref(), Some(cgroup.as_path()));
    let pid = status.pid.expect("pid");
    assert_eq!(read(&cgroup.join("cgroup.procs")), format!("{pid}\n"));
    fs::write(cgroup.join("cpu.stat"), "usage_usec 1500\n").expect("write");
    fs::write(cgroup.join("memory.current"), "4096\n").expect("write");
    let stats = grouped.stats("svc").expect("stats");
    assert_eq!(
        stats,
        ProcessStats {
            cpu_time: Duration::from_micros(1500),
            memory_bytes: 4096
        }
    );
    grouped.stop_all().await;
}
