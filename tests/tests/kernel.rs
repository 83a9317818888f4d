//! The kernel hardening report of a running node: every sysctl and command-line
//! parameter is reported as the kernel really has it, and judged against the policy.

use e2e::LocalCluster;

#[test]
fn the_kernel_report_matches_the_running_kernel() {
    let cluster = LocalCluster::create("kernel", 24, 1, &[]);
    let run = cluster.osctl(&["-o", "json", "kernel-security"]);
    // This host's kernel is not hardened to the policy: the command says so.
    assert_eq!(
        run.code != 0,
        run.stderr.contains("unmet"),
        "{}",
        run.stderr
    );
    let rows = run.json();
    let rows = rows.as_array().unwrap();
    assert!(rows.len() > 40, "every check is reported: {}", rows.len());

    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap();
    let mut sysctls_seen = 0;
    for row in rows {
        let name = row["name"].as_str().unwrap();
        let (want, got, status) = (
            row["want"].as_str().unwrap(),
            row["got"].as_str(),
            row["status"].as_str().unwrap(),
        );
        match row["kind"].as_str().unwrap() {
            "sysctl" => {
                let actual =
                    std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/")))
                        .ok()
                        .map(|v| v.trim().to_owned());
                assert_eq!(
                    got,
                    actual.as_deref(),
                    "{name} is reported as the kernel has it"
                );
                sysctls_seen += 1;
                if status == "met" || status == "unmet" {
                    assert_eq!(status == "met", got == Some(want), "{name}: {row}");
                }
            }
            // A parameter the running kernel's config makes moot is met without it.
            "cmdline"
                if status == "met"
                    && !row["reason"].as_str().unwrap().starts_with("not needed:") =>
            {
                let arg = if want.is_empty() {
                    name.to_owned()
                } else {
                    format!("{name}={want}")
                };
                assert!(
                    cmdline.split_whitespace().any(|a| a == arg),
                    "{arg} is not on {cmdline}"
                );
            }
            "cmdline-forbidden" => {
                let present = cmdline.split_whitespace().any(|a| a == name);
                assert_eq!(status == "unmet", present, "{name}: {row}");
            }
            _ => {}
        }
    }
    assert!(sysctls_seen >= 15, "the sysctls are checked");
}
