//! The daemon when its bus goes away: it must come back by itself. Before,
//! a daemon whose dbus-daemon was killed and restarted stayed alive,
//! silent and off the bus, and every key login failed as "unavailable"
//! until someone restarted it by hand.

use std::time::Instant;

use apikey_tests::prelude::*;

/// `apikey verify` as root over the bus: exit code 0 when accepted.
fn verify_code(world: &World, token: &str, user: &str) -> i32 {
    world
        .as_root()
        .stdin(format!("{token}\n"))
        .apikey(&["verify", "--user", user, "--service", "sshd"])
        .code()
}

#[test]
fn the_daemon_serves_again_within_2_s_of_the_bus_coming_back_after_a_crash() {
    require!(Need::World);
    let mut world = World::new();
    world.allow_user_keys();
    let alice = TestUser::create("akbl");
    let (token, _) = world.new_key(&alice, &[]);
    assert_eq!(verify_code(&world, &token, alice.name()), 0);
    let pid = world.daemon().pid();

    for round in 1..=2 {
        world.bus_mut().restart_on_same_socket();
        let back = Instant::now();
        let mut answered = None;
        while back.elapsed() < Duration::from_secs(2) {
            if verify_code(&world, &token, alice.name()) == 0 {
                answered = Some(back.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let took = answered.unwrap_or_else(|| {
            panic!(
                "round {round}: no valid Verify within 2 s of the bus's return:\n{}",
                world.daemon().stderr_text()
            )
        });
        eprintln!("round {round}: serving again {took:?} after the bus came back");
        assert_eq!(world.daemon().pid(), pid, "the same process came back");
        let log = world.daemon().stderr_text();
        assert_eq!(
            log.matches("lost the connection to the system bus").count(),
            round,
            "each loss is logged:\n{log}"
        );
        assert_eq!(
            log.matches("back on the system bus").count(),
            round,
            "each return is logged:\n{log}"
        );
    }
    // Refusals come from the daemon again too: the key is not root's.
    assert_eq!(verify_code(&world, &token, "root"), 1);
}

#[test]
fn a_bus_that_stays_away_ends_the_daemon_with_status_69_for_its_supervisor() {
    require!(Need::World);
    let mut world = World::new();
    world.bus_mut().kill();
    // It tries for a minute before it gives up; the test waits that long.
    let deadline = Instant::now() + Duration::from_secs(75);
    while world.daemon_mut().is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = world.daemon_mut().stop();
    assert_eq!(status.code(), Some(69), "{}", world.daemon().stderr_text());
    assert!(world
        .daemon()
        .stderr_text()
        .contains("did not come back within 60 s"));
}
