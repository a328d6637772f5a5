//! The test support's hosts: network namespaces that reach the test's servers over a bridge,
//! each with an address of its own, until their link is cut.

use std::process::Output;

use mesh_tests::hosts::Hosts;
use redpill::testing::TestRedis;

/// `redis-cli PING` to `redis` at the hosts' gateway, run on host `index`, giving up after 2 s.
fn ping_from(hosts: &Hosts, index: usize, redis: &TestRedis) -> Output {
    hosts
        .host(index)
        .command("timeout")
        .args(["2", "redis-cli", "-h"])
        .arg(hosts.gateway().to_string())
        .args(["-p", &redis.port().to_string(), "PING"])
        .output()
        .expect("run redis-cli on a test host")
}

fn answered(output: &Output) -> bool {
    output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "PONG"
}

/// Each host has its own address and reaches a server on the gateway; a host cut off reaches
/// nothing while the others still do, and reaches it again once restored.
#[test]
fn hosts_reach_the_gateway_until_cut_off() {
    let hosts = Hosts::create(2);
    let redis = TestRedis::start_also_on(&hosts.gateway().to_string());
    assert_ne!(hosts.host(0).address(), hosts.host(1).address());
    let shown = hosts
        .host(1)
        .command("ip")
        .args(["-4", "-o", "addr", "show", "eth0"])
        .output()
        .expect("run ip on a test host");
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains(&format!("{}/24", hosts.host(1).address())),
        "{shown:?}"
    );
    for index in 0..hosts.len() {
        let output = ping_from(&hosts, index, &redis);
        assert!(answered(&output), "host {index}: {output:?}");
    }

    hosts.cut(0);
    let output = ping_from(&hosts, 0, &redis);
    assert!(!answered(&output), "a host cut off got through: {output:?}");
    assert!(
        answered(&ping_from(&hosts, 1, &redis)),
        "host 1 lost its link too"
    );

    hosts.restore(0);
    let output = ping_from(&hosts, 0, &redis);
    assert!(
        answered(&output),
        "host 0 after its link came back: {output:?}"
    );
}
