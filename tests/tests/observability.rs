//! What an operator watches, from the real daemon: audit lines as journal
//! entries (journald's native protocol, read from a socket the test owns:
//! the MESSAGE_ID of each event and its APIKEY_* fields, never the token),
//! and the metrics, from `apikey status --prometheus` and from the file
//! node_exporter's textfile collector reads, checked by a strict parser of
//! Prometheus' text format.

mod pam_common;

use apikey_tests::prelude::*;
use openmetrics_parser::prometheus::parse_prometheus;
use pam_common::login_from;
use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// `MESSAGE_ID` of `verify` lines, as apikeyd's journal.rs fixes it.
const VERIFY_ID: &str = "ba76703ea36e42cfb72dec6e9d31965e";
const RHOST: &str = "192.0.2.55";

type Entry = BTreeMap<String, String>;

/// journald's native protocol: `NAME=value\n`, or `NAME\n`, a 64-bit
/// little-endian length, the value and `\n`.
fn parse_entry(mut data: &[u8]) -> Entry {
    let mut fields = Entry::new();
    while !data.is_empty() {
        let end = data
            .iter()
            .position(|b| *b == b'\n' || *b == b'=')
            .expect("a field name ends with = or a newline");
        let name = String::from_utf8(data[..end].to_vec()).expect("field names are ASCII");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                && !name.starts_with('_'),
            "journald would refuse the field name {name:?}"
        );
        let (value, rest) = if data[end] == b'=' {
            let rest = &data[end + 1..];
            let nl = rest.iter().position(|b| *b == b'\n').expect("a newline");
            (&rest[..nl], &rest[nl + 1..])
        } else {
            let len = u64::from_le_bytes(data[end + 1..end + 9].try_into().unwrap()) as usize;
            let value = &data[end + 9..end + 9 + len];
            assert_eq!(data[end + 9 + len], b'\n');
            (value, &data[end + 10 + len..])
        };
        fields.insert(name, String::from_utf8_lossy(value).into_owned());
        data = rest;
    }
    fields
}

/// Reads entries from `socket` until one satisfies `want` (or 10 s pass).
fn read_until(socket: &UnixDatagram, seen: &mut Vec<Entry>, want: impl Fn(&Entry) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 64 * 1024];
    while !seen.iter().any(&want) {
        assert!(
            std::time::Instant::now() < deadline,
            "no such journal entry; got {seen:#?}"
        );
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(parse_entry(&buf[..n]));
        }
    }
}

/// The exposition as a scraper reads it: strictly parsed, and the value
/// of each sample by name and labels.
fn scrape(text: &str) -> BTreeMap<String, f64> {
    let parsed = parse_prometheus(text).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    let mut samples = BTreeMap::new();
    for (name, family) in &parsed.families {
        assert!(!family.help.is_empty(), "{name} has no HELP");
        for sample in family.iter_samples() {
            // Labels in name order, whatever order they came in.
            let mut labels: Vec<String> = sample
                .get_labelset()
                .map(|set| set.iter().map(|(l, v)| format!("{l}=\"{v}\"")).collect())
                .unwrap_or_default();
            labels.sort();
            let key = match labels.is_empty() {
                true => name.clone(),
                false => format!("{name}{{{}}}", labels.join(",")),
            };
            let value = match &sample.value {
                openmetrics_parser::PrometheusValue::Gauge(v)
                | openmetrics_parser::PrometheusValue::Unknown(v) => v.as_f64(),
                openmetrics_parser::PrometheusValue::Counter(c) => c.value.as_f64(),
                other => panic!("{name}: unexpected {other:?}"),
            };
            samples.insert(key, value);
        }
    }
    // The conventions promtool checks: counters end in _total, names are
    // snake case under one prefix.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut words = line.split(' ').skip(2);
        let (name, kind) = (words.next().unwrap(), words.next().unwrap());
        assert!(name.starts_with("apikey_"), "{line}");
        assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
    }
    samples
}

#[test]
fn audit_lines_reach_the_journal_with_their_fields_and_metrics_parse() {
    require!(
        Need::World,
        Need::Program("pamtester"),
        Need::Program("bwrap")
    );
    let dir = apikey_tests::tmp::temp_dir("observe");
    let journal_path = dir.path().join("journal.sock");
    let journal = UnixDatagram::bind(&journal_path).expect("bind the journal socket");
    journal
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let textfile = dir.path().join("apikey.prom");
    let mut world = World::with_config(|c| {
        c.extra_toml = format!(
            "journal_socket = \"{}\"\n[metrics]\ntextfile = \"{}\"\n",
            journal_path.display(),
            textfile.display()
        );
    });
    world.allow_user_keys();
    let alice = TestUser::create("alice");
    let (key, id) = world.new_key(&alice, &[]);
    login_from(&world, &alice, &key, RHOST).ok();
    // A well-formed key that is no key (a mistyped one never leaves the
    // module).
    let unknown = apikey_proto::Token::generate().unwrap();
    login_from(&world, &alice, unknown.as_str(), RHOST).refused();

    // The journal: the login's entry, found by MESSAGE_ID and fields as
    // `journalctl MESSAGE_ID=... APIKEY_USER=alice` finds it.
    let mut seen = Vec::new();
    let of = |e: &Entry, k: &str| e.get(k).cloned().unwrap_or_default();
    let login = |e: &Entry| {
        of(e, "MESSAGE_ID") == VERIFY_ID
            && of(e, "APIKEY_USER") == alice.name()
            && of(e, "APIKEY_OUTCOME") == "ok"
    };
    read_until(&journal, &mut seen, login);
    let refused =
        |e: &Entry| of(e, "APIKEY_EVENT") == "verify" && of(e, "APIKEY_OUTCOME") == "refused";
    read_until(&journal, &mut seen, refused);
    let ok = seen.iter().find(|e| login(e)).unwrap();
    assert_eq!(of(ok, "APIKEY_KEY_ID"), id);
    assert_eq!(of(ok, "APIKEY_RHOST"), RHOST);
    assert!(of(ok, "APIKEY_SERVICE").starts_with("sshd"), "{ok:?}");
    assert_eq!(of(ok, "SYSLOG_IDENTIFIER"), "apikeyd");
    assert_eq!(of(ok, "PRIORITY"), "6");
    assert!(of(ok, "MESSAGE").starts_with("event=verify "), "{ok:?}");
    let no = seen.iter().find(|e| refused(e)).unwrap();
    assert_eq!(of(no, "APIKEY_REASON"), "unknown-key");
    assert_eq!(of(no, "PRIORITY"), "4");
    // The generate line has its own id; the token is in no entry.
    assert!(seen
        .iter()
        .chain(std::iter::once(ok))
        .all(|e| e.values().all(|v| !v.contains(&key[7..]))));
    let generate = seen.iter().find(|e| of(e, "APIKEY_EVENT") == "generate");
    assert!(
        generate.is_some_and(|e| of(e, "MESSAGE_ID") == "2340e3b71af34f70aba3e8b2f7e81029"),
        "{seen:#?}"
    );
    // Nothing of it went to syslog instead.
    assert!(
        !world.log().contains("event=verify "),
        "{:?}",
        world.log().lines()
    );

    // The metrics, as an administrator asks for them.
    let text = world.as_root().apikey(&["status", "--prometheus"]);
    let samples = scrape(&text.ok().stdout);
    let service = ok.get("APIKEY_SERVICE").unwrap();
    let count = |outcome: &str| {
        samples
            .get(&format!(
                "apikey_verifications_total{{outcome=\"{outcome}\",service=\"{service}\"}}"
            ))
            .copied()
    };
    assert_eq!(count("ok"), Some(1.0), "{samples:#?}");
    assert_eq!(count("refused"), Some(1.0), "{samples:#?}");
    assert_eq!(samples.get("apikey_keys_active"), Some(&1.0));
    assert_eq!(samples.get("apikey_store_up"), Some(&1.0));
    assert!(samples
        .get("apikey_store_size_bytes")
        .is_some_and(|b| *b > 0.0));
    assert!(samples.contains_key("apikey_store_last_write_timestamp_seconds"));
    // Not to users.
    let out = world.as_user(&alice).apikey(&["status", "--prometheus"]);
    assert_eq!(out.code(), 77, "{}", out.stderr);
    assert!(out.stdout.is_empty());

    // The textfile, written at stop with the last counts.
    world.daemon_mut().stop();
    let written = std::fs::read_to_string(&textfile).expect("the textfile");
    let from_file = scrape(&written);
    assert_eq!(
        from_file.get(&format!(
            "apikey_verifications_total{{outcome=\"ok\",service=\"{service}\"}}"
        )),
        Some(&1.0)
    );
    let mode = std::fs::metadata(&textfile).unwrap().permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        mode.mode() & 0o777,
        0o644,
        "node_exporter reads it as another user"
    );
    assert!(
        no_temp_files(dir.path()),
        "nothing left beside the textfile"
    );
}

fn no_temp_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().contains(".tmp"))
}
