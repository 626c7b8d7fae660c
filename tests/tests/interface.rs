//! The bus interface as clients see it: the live introspection data is
//! the committed XML, refusals carry typed error names, and malformed
//! messages are answered with errors instead of hurting the daemon.

use apikey_proto::names::{BUS_NAME, ERROR_PREFIX, OBJECT_PATH};
use apikey_tests::prelude::*;

const COMMITTED_XML: &str = include_str!("../../proto/org.apikey.Keys1.xml");

/// The `<interface name="NAME">…</interface>` element of an introspection
/// document, as written.
fn interface_element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<interface name=\"{name}\"");
    let start = xml.find(&open)?;
    let len = xml[start..].find("</interface>")? + "</interface>".len();
    Some(&xml[start..start + len])
}

/// Whitespace made irrelevant: runs collapse to one space, and none is
/// kept between tags or around the ends of a tag.
fn normalise(xml: &str) -> String {
    let collapsed = xml.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .replace("> <", "><")
        .replace(" />", "/>")
        .replace(" >", ">")
        .replace("< ", "<")
}

/// `dbus-send --system --print-reply` as `who`: the reply text, or the
/// error name and message dbus-send reports.
fn dbus_send(who: &As, method: &str, args: &[&str]) -> Result<String, (String, String)> {
    let member = format!("org.apikey.Keys1.{method}");
    let dest = format!("--dest={BUS_NAME}");
    let mut argv = vec!["--system", "--print-reply", &dest, OBJECT_PATH, &member];
    argv.extend_from_slice(args);
    let out = who.run("dbus-send", &argv);
    if out.code() == 0 {
        return Ok(out.stdout.clone());
    }
    // dbus-send prints "Error <name>: <message>" on stderr.
    let line = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("Error "))
        .unwrap_or_else(|| panic!("{}: no error line\n{}", out.description, out.stderr));
    let (name, message) = line.split_once(": ").unwrap_or((line, ""));
    Err((name.to_string(), message.to_string()))
}

/// Asserts the call failed with `org.apikey.Keys1.Error.<short>`.
#[track_caller]
fn assert_typed(result: Result<String, (String, String)>, short: &str, what: &str) {
    let want = format!("{ERROR_PREFIX}.{short}");
    match result {
        Err((name, message)) => {
            assert!(
                name.starts_with(&format!("{ERROR_PREFIX}.")),
                "{what}: error {name} is not one of the daemon's typed errors ({message})"
            );
            assert_eq!(name, want, "{what}: {message}");
            assert!(
                !message.trim().is_empty(),
                "{what}: {name} without a sentence"
            );
        }
        Ok(reply) => panic!("{what}: expected {want}, got a reply:\n{reply}"),
    }
}

fn assert_still_answers(world: &World) {
    let proxy = world.proxy_as_root();
    let status = world.block_on(proxy.status()).unwrap_or_else(|e| {
        panic!(
            "the daemon stopped answering: {e}\n{}",
            world.daemon().stderr_text()
        )
    });
    assert_eq!(status.uid, 0);
}

/// Clients generated from the committed XML (and the documentation) must
/// describe the daemon that actually runs.
#[test]
fn live_interface_matches_the_committed_xml() {
    require!(Need::World);
    let world = World::new();
    let conn = world.root_connection();
    let live: String = world.block_on(async {
        let reply = conn
            .call_method(
                Some(BUS_NAME),
                OBJECT_PATH,
                Some("org.freedesktop.DBus.Introspectable"),
                "Introspect",
                &(),
            )
            .await
            .expect("Introspect");
        reply.body().deserialize::<String>().expect("a string")
    });
    let live_iface = interface_element(&live, BUS_NAME)
        .unwrap_or_else(|| panic!("no {BUS_NAME} interface in the live data:\n{live}"));
    let committed_iface = interface_element(COMMITTED_XML, BUS_NAME)
        .expect("proto/org.apikey.Keys1.xml has the interface");
    assert!(
        normalise(live_iface) == normalise(committed_iface),
        "the live interface differs from proto/org.apikey.Keys1.xml\n\
         --- live ---\n{live_iface}\n--- committed ---\n{committed_iface}"
    );
}

/// The out argument types the committed XML gives `method`, in order.
fn out_types(method: &str) -> String {
    let open = format!("<method name=\"{method}\">");
    let start = COMMITTED_XML
        .find(&open)
        .unwrap_or_else(|| panic!("no method {method} in the committed XML"));
    let body = &COMMITTED_XML[start..start + COMMITTED_XML[start..].find("</method>").unwrap()];
    body.lines()
        .filter(|l| l.contains("direction=\"out\""))
        .map(|l| {
            let t = &l[l.find("type=\"").expect("a type") + 6..];
            t[..t.find('"').unwrap()].to_string()
        })
        .collect()
}

/// Clients built from the introspection data (gdbus, dasbus, Cockpit)
/// decode a reply by it: what each method sends must be what the XML
/// says, argument for argument. zbus sends a returned struct as its
/// fields, which once made three replies disagree with their XML.
#[test]
fn replies_carry_exactly_the_introspected_out_arguments() {
    require!(Need::World);
    let world = World::new();
    let conn = world.root_connection();
    let sent = |method: &str| -> String {
        world.block_on(async {
            let (iface, path) = (Some(BUS_NAME), OBJECT_PATH);
            let reply = match method {
                "SetSettings" => {
                    conn.call_method(iface, path, iface, method, &("", "", "", ""))
                        .await
                }
                "List" => {
                    conn.call_method(iface, path, iface, method, &("", true, false))
                        .await
                }
                _ => conn.call_method(iface, path, iface, method, &()).await,
            };
            let reply = reply.unwrap_or_else(|e| panic!("{method}: {e}"));
            reply.body().signature().to_string_no_parens()
        })
    };
    for method in ["GetSettings", "SetSettings", "Status", "List", "RevokeSite"] {
        assert_eq!(sent(method), out_types(method), "the reply of {method}");
    }
}

/// Programs tell refusals apart by error name alone; a name outside the
/// contract's namespace would leave them guessing.
#[test]
fn refusals_carry_typed_error_names() {
    require!(Need::World, Need::Program("dbus-send"));
    let world = World::new();
    let alice = TestUser::create("alice");
    let bob = TestUser::create("bob");
    let root = world.as_root();

    // Non-administrators may read the policy, not change it.
    assert_typed(
        dbus_send(
            &world.as_user(&alice),
            "SetSettings",
            &["string:yes", "string:", "string:", "string:"],
        ),
        "Denied",
        "SetSettings by a user",
    );
    let out = world
        .as_user(&alice)
        .apikey(&["settings", "--allow-user-keys", "yes"]);
    out.assert_code(77);
    assert!(out.stderr.starts_with("apikey: "), "{}", out.stderr);

    // The test process has no loginuid: a daemon, a cron job.
    assert_typed(
        dbus_send(
            &root,
            "Generate",
            &["string:n", "string:", "array:string:sshd", "string:"],
        ),
        "NotLoggedIn",
        "Generate by root outside a login session",
    );
    world.as_root().apikey(&["generate"]).assert_code(1);

    assert_typed(
        dbus_send(
            &root,
            "Generate",
            &["string:n", "string:8d", "array:string:sshd", "string:"],
        ),
        "InvalidArgument",
        "Generate with an expiry outside the choices",
    );

    assert_typed(
        dbus_send(
            &world.as_user(&alice).logged_in(),
            "Generate",
            &["string:n", "string:", "array:string:sshd", "string:"],
        ),
        "PolicyForbids",
        "Generate by a user while the policy forbids user keys",
    );
    world
        .as_user(&alice)
        .logged_in()
        .apikey(&["generate"])
        .assert_code(1);

    assert_typed(
        dbus_send(
            &world.as_user(&bob).logged_in_as(alice.uid()),
            "Generate",
            &["string:n", "string:", "array:string:sshd", "string:"],
        ),
        "Impersonating",
        "Generate by bob in alice's login session",
    );

    assert_typed(
        dbus_send(&root, "Revoke", &["array:string:AAAAAAAAAAAA"]),
        "NotFound",
        "Revoke of an id that does not exist",
    );

    assert_typed(
        dbus_send(
            &world.as_user(&alice),
            "List",
            &["string:", "boolean:true", "boolean:false"],
        ),
        "Denied",
        "List of every key by a user",
    );

    assert_typed(
        dbus_send(
            &world.as_user(&alice),
            "Verify",
            &[
                "string:apikey|not-a-key",
                "string:",
                "string:sshd",
                "string:",
            ],
        ),
        "Denied",
        "Verify by a user in no verifier group",
    );

    assert_typed(
        dbus_send(
            &root,
            "Verify",
            &[
                "string:apikey|not-a-key",
                "string:",
                "string:sshd",
                "string:",
            ],
        ),
        "Refused",
        "Verify of a malformed key",
    );
    assert_still_answers(&world);
}

/// A client with the wrong idea of the signatures, or a fuzzer, must get
/// an error reply, and must not take the daemon down for everyone else.
#[test]
fn wrong_signatures_get_error_replies_and_the_daemon_keeps_answering() {
    require!(Need::World, Need::Program("dbus-send"));
    let mut world = World::new();
    let root = world.as_root();
    let cases: [(&str, &str, &[&str]); 5] = [
        ("Verify with an int32 for the token", "Verify", &["int32:5"]),
        (
            "Generate with too few arguments",
            "Generate",
            &["string:n", "string:"],
        ),
        ("a method the interface does not have", "Frobnicate", &[]),
        (
            "Revoke with a string for the id list",
            "Revoke",
            &["string:x"],
        ),
        (
            "Verify with an extra argument",
            "Verify",
            &["string:a", "string:b", "string:c", "string:d", "string:e"],
        ),
    ];
    for (what, method, args) in cases {
        match dbus_send(&root, method, args) {
            Err((name, message)) => {
                assert!(
                    name.starts_with("org.freedesktop.DBus.Error.")
                        || name.starts_with(&format!("{ERROR_PREFIX}.")),
                    "{what}: unexpected error {name}: {message}"
                );
            }
            Ok(reply) => panic!("{what}: the daemon accepted it:\n{reply}"),
        }
        assert!(
            world.daemon_mut().is_running(),
            "{what}: the daemon exited\n{}",
            world.daemon().stderr_text()
        );
        assert_still_answers(&world);
    }
    // The calls that went wrong did nothing.
    let rows: i64 = world
        .daemon()
        .open_db_readonly()
        .query_row("SELECT count(*) FROM keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
}
