// The page's decisions, without a browser: `node --test test/unit`.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
    decodeKey, decodeStatus, deleteQuestion, errorMessage, expiryChoices, filterKeys,
    formatDuration, formatLastUsed, formatScope, formatServices, formatTime, generateBlocker, netrcLine,
    activitySummary, decodeSettingsWith, decodeUses, parseExposition, expiringNote, formatExpires, formatRhost, parseNetworks, revokeUnusedLabel, SERVICE_DOWN, withExtras,
    zoneName,
} from "../../src/model.js";
import { readFileSync } from "node:fs";

const key = (user, id) => ({ user, id });

test("users are offered no expiry longer than the policy's", () => {
    assert.deepEqual(expiryChoices("never"), ["7d", "30d", "90d", "365d", "never"]);
    assert.deepEqual(expiryChoices("30d"), ["7d", "30d"]);
    assert.deepEqual(expiryChoices("7d"), ["7d"]);
    // An expiry this page does not know: the shortest, never "never".
    assert.deepEqual(expiryChoices("14d"), ["7d"]);
});

test("the delete question says how many keys and whose", () => {
    assert.equal(deleteQuestion([key("alice", "a")]), "Delete 1 key of alice?");
    assert.equal(deleteQuestion([key("bob", "b"), key("alice", "a"), key("alice", "c")]),
                 "Delete 3 keys of alice and bob?");
    assert.equal(deleteQuestion([key("c", "1"), key("b", "2"), key("a", "3")]),
                 "Delete 3 keys of a, b and c?");
});

test("the .netrc line, and none when a name cannot be written there", () => {
    assert.equal(netrcLine("host.example", "alice", "apikey|x"),
                 "machine host.example login alice password apikey|x");
    assert.equal(netrcLine("host", "al ice", "apikey|x"), null);
    assert.equal(netrcLine("", "alice", "apikey|x"), null);
});

test("the filter matches part of the owner's name, any case", () => {
    const keys = [key("alice", "1"), key("bob", "2"), key("Malice", "3")];
    assert.deepEqual(filterKeys(keys, "").map(k => k.id), ["1", "2", "3"]);
    assert.deepEqual(filterKeys(keys, " ALI ").map(k => k.id), ["1", "3"]);
    assert.deepEqual(filterKeys(keys, "zed"), []);
});

test("times are shown in the browser's zone, with the zone named", () => {
    // 2001-09-09 01:46:40 UTC.
    assert.equal(zoneName(new Date(1e12), "en-US"), new Intl.DateTimeFormat("en-US", { timeZoneName: "short" })
            .formatToParts(new Date(1e12)).find(p => p.type === "timeZoneName").value);
    const shown = formatTime(1e9);
    assert.match(shown, /^\d{4}-\d\d-\d\d \d\d:\d\d \S+$/);
    assert.ok(shown.endsWith(` ${zoneName(new Date(1e12))}`), shown);
    if (process.env.TZ === "UTC")
        assert.equal(shown, "2001-09-09 01:46 UTC");
    assert.equal(formatTime(0), "Never");
    assert.equal(formatTime(0, "-"), "-");
});

test("durations are written as the daemon reads them", () => {
    assert.equal(formatDuration(1800), "30m");
    assert.equal(formatDuration(2700), "45m");
    assert.equal(formatDuration(7200), "2h");
    assert.equal(formatDuration(86400 * 7), "7d");
    assert.equal(formatDuration(90), "90s");
});

test("keys and status decode from the bus's tuples", () => {
    const k = decodeKey(["id1", "alice", 1000, "laptop", ["sshd*"], 10, 0, 0, "", "", 1000, false, 0]);
    assert.equal(k.id, "id1");
    assert.equal(k.name, "laptop");
    assert.equal(formatServices(k.services), "sshd*");
    assert.equal(formatServices([]), "All allowed");
    assert.equal(formatLastUsed(k), "Never");
    assert.match(formatLastUsed({ ...k, lastUsed: 1e9, lastService: "sshd", lastRhost: "10.0.0.1" }),
                 /^\d{4}-\d\d-\d\d \d\d:\d\d \S+ \(sshd from 10\.0\.0\.1\)$/);
    const s = decodeStatus(["0.1.0", 1000, "alice", false, false, true, false, 0, [true, "30d", false, 1800]]);
    assert.equal(s.user, "alice");
    assert.equal(s.settings.expires, "30d");
    assert.equal(s.settings.usersSeeOwn, false);
});

test("why a user cannot generate, in the order that matters", () => {
    const status = (over, settings = {}) => ({
        admin: false, loggedIn: true, impersonating: false,
        settings: { allowUserKeys: true, ...settings }, ...over,
    });
    assert.equal(generateBlocker(status({})), null);
    assert.match(generateBlocker(status({}, { allowUserKeys: false })), /does not let users create/);
    assert.equal(generateBlocker(status({ admin: true }, { allowUserKeys: false })), null);
    assert.match(generateBlocker(status({ impersonating: true })), /another user/);
    assert.match(generateBlocker(status({ loggedIn: false })), /not a login session/);
});

test("errors read as sentences; a missing daemon says how to start it", () => {
    assert.equal(errorMessage({ name: "org.freedesktop.DBus.Error.ServiceUnknown", message: "x" }), SERVICE_DOWN);
    assert.equal(errorMessage({ problem: "not-found" }), SERVICE_DOWN);
    assert.equal(errorMessage({ name: "org.apikey.Keys1.Error.Denied", message: "no" }), "Permission denied: no");
    assert.equal(errorMessage({ name: "org.apikey.Keys1.Error.QuotaExceeded", message: "too many" }), "too many");
    assert.match(errorMessage({ name: "org.example.Other", message: "boom" }), /failed: boom/);
});

test("the page builds its DOM from text only", () => {
    // S11: nothing the daemon sends may become markup.
    for (const file of ["apikey.js", "api.js", "model.js"]) {
        const source = readFileSync(new URL(`../../src/${file}`, import.meta.url), "utf8");
        assert.doesNotMatch(source, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/, file);
    }
});

test("the menu entry is called API keys", () => {
    const manifest = JSON.parse(readFileSync(new URL("../../src/manifest.json", import.meta.url), "utf8"));
    assert.equal(manifest.menu.index.label, "API keys");
});

test("a key limited to networks says so beside its services", () => {
    const k = withExtras({ services: ["sshd*"] }, { from: { t: "as", v: ["10.1.0.0/16", "2001:db8::/32"] } });
    assert.deepEqual(k.from, ["10.1.0.0/16", "2001:db8::/32"]);
    assert.equal(formatScope(k), "sshd*, from 10.1.0.0/16, 2001:db8::/32 only");
    assert.equal(formatScope(withExtras({ services: [] }, {})), "All allowed");
    // An entry of another type is taken as absent.
    assert.deepEqual(withExtras({ services: [] }, { from: { t: "s", v: "10.0.0.0/8" } }).from, []);
    assert.deepEqual(parseNetworks(" 10.1.0.0/16,2001:db8::/32  192.0.2.7 ,"),
                     ["10.1.0.0/16", "2001:db8::/32", "192.0.2.7"]);
    assert.deepEqual(parseNetworks("  "), []);
});

test("the settings beyond the struct come with it, defaults when absent", () => {
    const s = decodeSettingsWith([[true, "30d", false, 2700],
        { require_from: { t: "b", v: true }, revoke_unused: { t: "s", v: "90d" } }]);
    assert.equal(s.allowUserKeys, true);
    assert.equal(s.sessionTimeout, 2700);
    assert.equal(s.requireFrom, true);
    assert.equal(s.revokeUnused, "90d");
    const old = decodeSettingsWith([[false, "never", true, 1800], {}]);
    assert.equal(old.requireFrom, false);
    assert.equal(old.revokeUnused, "never");
    assert.equal(revokeUnusedLabel("365d"), "365 days");
});

test("keys the daemon says expire soon are marked, and counted above the user's keys", () => {
    const soon = withExtras({ services: [], expires: 1765000000 }, { expires_soon: { t: "b", v: true } });
    const later = withExtras({ services: [], expires: 1795000000 }, {});
    assert.equal(soon.expiresSoon, true);
    assert.equal(later.expiresSoon, false);
    // An entry of another type is taken as absent.
    assert.equal(withExtras({ services: [] }, { expires_soon: { t: "s", v: "yes" } }).expiresSoon, false);
    assert.match(formatExpires(soon), /^\d{4}-\d\d-\d\d \d\d:\d\d .+ \(expires soon\)$/);
    assert.doesNotMatch(formatExpires(later), /soon/);
    assert.equal(expiringNote([later]), null);
    assert.match(expiringNote([soon, later]), /^1 key of yours expires soon\. Replace it /);
    assert.match(expiringNote([soon, soon]), /^2 keys of yours expire soon\. Replace them /);
});

test("a key's use history decodes from ShowKey's a(ssxxs)", () => {
    const uses = decodeUses([["sshd", "192.0.2.7", "1765000000", "1765000600", ""], ["vsftpd", "", 1, 2, "web-1"]]);
    assert.deepEqual(uses[0], { service: "sshd", rhost: "192.0.2.7", first: 1765000000, last: 1765000600, host: "" });
    assert.equal(formatRhost(uses[0]), "192.0.2.7");
    assert.equal(formatRhost(uses[1]), "(local)");
    assert.equal(uses[1].host, "web-1");
    assert.deepEqual(decodeUses([]), []);
});

test("the metrics parse by name and labels, and summarise for the Activity card", () => {
    const text = [
        "# HELP apikey_verifications_total Key verifications.",
        "# TYPE apikey_verifications_total counter",
        'apikey_verifications_total{service="sshd",outcome="ok"} 3',
        'apikey_verifications_total{service="vsftpd",outcome="ok"} 2',
        'apikey_verifications_total{service="sshd",outcome="refused"} 1',
        'apikey_build_info{version="1\\"2"} 1',
        "apikey_keys_active 7",
        "apikey_session_keys_active 1",
        "apikey_keys_expiring_soon 2",
        "apikey_warn_before_seconds 604800",
        "apikey_throttled_sources 0",
        "apikey_store_up 1",
        "not a sample line",
    ].join("\n");
    const samples = parseExposition(text);
    assert.equal(samples.apikey_verifications_total.length, 3);
    assert.deepEqual(samples.apikey_verifications_total[0].labels, { service: "sshd", outcome: "ok" });
    assert.equal(samples.apikey_build_info[0].labels.version, '1"2');
    const summary = Object.fromEntries(activitySummary(samples));
    assert.equal(summary["Key logins since the daemon started"], "5 accepted, 1 refused, 0 unavailable");
    assert.equal(summary["Active API keys"], "7");
    assert.equal(summary["Expiring within 7d"], "2");
    assert.equal(summary["Key store"], "answering");
    // The store failing: its gauges are absent, and it says so.
    const failing = Object.fromEntries(activitySummary(parseExposition("apikey_store_up 0\napikey_warn_before_seconds 0")));
    assert.equal(failing["Key store"], "FAILING: key logins answer unavailable");
    assert.equal(failing["Active API keys"], "unknown (the key store cannot be read)");
    assert.equal(failing["Expiring soon"], "not counted (warn_before = 0s)");
});
