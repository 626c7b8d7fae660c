// What the page shows, decided without a browser or a bus: decoding the
// daemon's answers, the choices policy leaves, and every message. The
// daemon decides what is allowed; these functions only describe it.

export const EXPIRY_CHOICES = ["7d", "30d", "90d", "365d", "never"];

const EXPIRY_LABELS = {
    "7d": "7 days",
    "30d": "30 days",
    "90d": "90 days",
    "365d": "365 days",
    never: "Never",
};

export function expiryLabel(choice) {
    return EXPIRY_LABELS[choice] ?? choice;
}

/// A key as `List` and `Generate` return it: (ssusasxxxssubx).
export function decodeKey(t) {
    return {
        id: t[0],
        user: t[1],
        uid: t[2],
        name: t[3],
        services: t[4],
        created: Number(t[5]),
        expires: Number(t[6]),
        lastUsed: Number(t[7]),
        lastService: t[8],
        lastRhost: t[9],
        createdByUid: t[10],
        session: t[11],
        revoked: Number(t[12]),
    };
}

/// ShowKey's history (a(ssxxs)): where a key was used from, newest first.
export function decodeUses(rows) {
    return rows.map(u => ({
        service: u[0],
        rhost: u[1],
        first: Number(u[2]),
        last: Number(u[3]),
        host: u[4],
    }));
}

/// A use's remote host for a table cell; a local login has none.
export function formatRhost(use) {
    return use.rhost || "(local)";
}

/// Metrics's exposition (Prometheus' text format), as samples by metric
/// name: [{ labels: { name: value }, value: Number }]. Comment lines and
/// lines it cannot read are passed over.
export function parseExposition(text) {
    const samples = {};
    for (const line of text.split("\n")) {
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
        if (!m)
            continue;
        const labels = {};
        for (const [, name, value] of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
            labels[name] = value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
        (samples[m[1]] ??= []).push({ labels, value: Number(m[3]) });
    }
    return samples;
}

/// What the administrators' Activity card shows, from parsed metrics:
/// [label, text] pairs. A gauge the daemon left out (the store cannot be
/// read) shows as unknown.
export function activitySummary(samples) {
    const one = name => samples[name]?.[0]?.value;
    const logins = outcome => (samples.apikey_verifications_total ?? [])
            .filter(s => s.labels.outcome === outcome)
            .reduce((sum, s) => sum + s.value, 0);
    const known = v => (v === undefined ? "unknown (the key store cannot be read)" : String(v));
    const started = one("apikey_start_time_seconds");
    const written = one("apikey_store_last_write_timestamp_seconds");
    const warn = one("apikey_warn_before_seconds");
    return [
        ["Key logins since the daemon started",
         `${logins("ok")} accepted, ${logins("refused")} refused, ${logins("unavailable")} unavailable` +
         (started ? ` (since ${formatTime(started)})` : "")],
        ["Active API keys", known(one("apikey_keys_active"))],
        ["Active session keys", known(one("apikey_session_keys_active"))],
        [warn ? `Expiring within ${formatDuration(warn)}` : "Expiring soon",
         warn ? known(one("apikey_keys_expiring_soon")) : "not counted (warn_before = 0s)"],
        ["Sources being throttled", known(one("apikey_throttled_sources"))],
        ["Key store", one("apikey_store_up") === 0
            ? "FAILING: key logins answer unavailable"
            : written ? `answering; last written ${formatTime(written)}` : "answering"],
    ];
}

/// The site policy: GetSettings's out arguments (bsbt), or Status's last one.
export function decodeSettings(t) {
    return {
        allowUserKeys: t[0],
        expires: t[1],
        usersSeeOwn: t[2],
        sessionTimeout: Number(t[3]),
    };
}

/// How long unused keys live: `revoke_unused`'s choices.
export const REVOKE_UNUSED_CHOICES = ["never", "30d", "90d", "365d"];

/// The choices are written as expiries are, and named the same way.
export const revokeUnusedLabel = expiryLabel;

/// GetSettingsWith's and SetSettingsWith's out arguments: (bsbt)a{sv}.
/// Entries of another type, or missing, are the defaults.
export function decodeSettingsWith(t) {
    const extra = t[1] ?? {};
    const requireFrom = extra.require_from?.t === "b" ? extra.require_from.v : false;
    const revokeUnused = extra.revoke_unused?.t === "s" ? extra.revoke_unused.v : "never";
    return { ...decodeSettings(t[0]), requireFrom, revokeUnused };
}

/// `Status`'s out arguments: susbbbbu(bsbt)s.
export function decodeStatus(t) {
    return {
        version: t[0],
        uid: t[1],
        user: t[2],
        admin: t[3],
        verifier: t[4],
        loggedIn: t[5],
        impersonating: t[6],
        sessionKeys: t[7],
        settings: decodeSettings(t[8]),
        // Empty while the key store answers (older daemons send nothing).
        storeProblem: t[9] || "",
    };
}

/// The expiries a user may pick: never longer than the policy's.
export function expiryChoices(policyExpires) {
    const limit = EXPIRY_CHOICES.indexOf(policyExpires);
    if (limit < 0)
        return ["7d"];
    return EXPIRY_CHOICES.slice(0, limit + 1);
}

/// Seconds as the daemon's durations are written: 30m, 12h, 7d.
export function formatDuration(secs) {
    for (const [unit, scale] of [["d", 86400], ["h", 3600], ["m", 60]]) {
        if (secs !== 0 && secs % scale === 0)
            return `${secs / scale}${unit}`;
    }
    return `${secs}s`;
}

function pad(n) {
    return String(n).padStart(2, "0");
}

/// The browser's name for the time zone a date is shown in ("UTC",
/// "CET", "GMT+5:30").
export function zoneName(date, locale = undefined) {
    const part = new Intl.DateTimeFormat(locale, { timeZoneName: "short" })
            .formatToParts(date)
            .find(p => p.type === "timeZoneName");
    return part?.value ?? "local time";
}

/// A time for a table cell, in the browser's time zone, named; 0 means none.
export function formatTime(secs, none = "Never") {
    if (!secs)
        return none;
    const d = new Date(secs * 1000);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())} ${zoneName(d)}`;
}

export function formatLastUsed(key) {
    if (!key.lastUsed)
        return "Never";
    const where = [key.lastService, key.lastRhost && `from ${key.lastRhost}`].filter(Boolean).join(" ");
    return where ? `${formatTime(key.lastUsed)} (${where})` : formatTime(key.lastUsed);
}

export function formatServices(services) {
    return services.length ? services.join(", ") : "All allowed";
}

/// A key's services, and the networks it may be used from if limited.
export function formatScope(key) {
    const services = formatServices(key.services);
    return key.from?.length ? `${services}, from ${key.from.join(", ")} only` : services;
}

/// What the "Only from" field holds: networks separated by commas or
/// blanks (the daemon checks each, and says which it cannot read).
export function parseNetworks(text) {
    return text.split(/[\s,]+/).filter(Boolean);
}

/// ListPageWith's extras dictionary (a{sv}, as Cockpit hands variants:
/// { t, v }), onto a decoded key.
export function withExtras(key, extras) {
    const from = extras?.from;
    const soon = extras?.expires_soon;
    return {
        ...key,
        from: from?.t === "as" ? from.v : [],
        expiresSoon: soon?.t === "b" ? soon.v : false,
    };
}

/// A key's expiry for a table cell, marked when the daemon says it is
/// within the site's `warn_before`.
export function formatExpires(key) {
    const when = formatTime(key.expires);
    return key.expiresSoon ? `${when} (expires soon)` : when;
}

/// The note above the user's keys when some expire soon; null when none.
export function expiringNote(keys) {
    const n = keys.filter(k => k.expiresSoon).length;
    if (n === 0)
        return null;
    return `${keyCount(n)} of yours ${n === 1 ? "expires" : "expire"} soon. Replace ${n === 1 ? "it" : "them"} before then (apikey rotate ID, or generate a new one here) so that scripts keep working.`;
}

/// The line a user pastes into ~/.netrc. A host name never holds
/// whitespace; a user name could, and .netrc cannot quote it.
export function netrcLine(host, user, token) {
    if (/\s/.test(host) || /\s/.test(user) || !host || !user)
        return null;
    return `machine ${host} login ${user} password ${token}`;
}

/// The keys whose owner's name contains `filter` (case-insensitive).
export function filterKeys(keys, filter) {
    const wanted = filter.trim().toLowerCase();
    if (!wanted)
        return keys;
    return keys.filter(k => k.user.toLowerCase().includes(wanted));
}

function joinNames(names) {
    if (names.length <= 1)
        return names.join("");
    return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]}`;
}

/// "Delete 2 keys of alice and bob?": how many keys, and whose.
export function deleteQuestion(keys) {
    const owners = [...new Set(keys.map(k => k.user))].sort();
    return `Delete ${keyCount(keys.length)} of ${joinNames(owners)}?`;
}

/// "1 key", "2 keys".
export function keyCount(n) {
    return n === 1 ? "1 key" : `${n} keys`;
}

export const SERVICE_DOWN =
    "The API key service (apikeyd) is not running. An administrator can start it with \"systemctl start apikeyd\".";

/// A D-Bus or Cockpit error as a sentence for the user.
export function errorMessage(error) {
    const name = error?.name ?? "";
    const detail = error?.message ?? String(error);
    switch (name) {
    case "org.freedesktop.DBus.Error.ServiceUnknown":
    case "org.freedesktop.DBus.Error.NameHasNoOwner":
    case "org.freedesktop.DBus.Error.NoReply":
    case "org.freedesktop.DBus.Error.Disconnected":
        return SERVICE_DOWN;
    case "org.apikey.Keys1.Error.PolicyForbids":
        return `Not allowed by the site's policy: ${detail}`;
    case "org.apikey.Keys1.Error.Denied":
        return `Permission denied: ${detail}`;
    case "org.apikey.Keys1.Error.NotLoggedIn":
    case "org.apikey.Keys1.Error.Impersonating":
    case "org.apikey.Keys1.Error.NoSession":
    case "org.apikey.Keys1.Error.QuotaExceeded":
    case "org.apikey.Keys1.Error.InvalidArgument":
    case "org.apikey.Keys1.Error.NotFound":
    case "org.apikey.Keys1.Error.AlreadyRevoked":
        return detail;
    }
    if (error?.problem === "not-found" || error?.problem === "disconnected")
        return SERVICE_DOWN;
    return `The API key service failed: ${detail}`;
}

/// Why a user cannot generate keys here, or null when they can.
export function generateBlocker(status) {
    if (!status.admin && !status.settings.allowUserKeys)
        return "Your administrator does not let users create API keys.";
    if (status.impersonating)
        return "This web console session runs as another user than the one who logged in; log in as yourself to create keys.";
    if (!status.loggedIn)
        return "This web console session is not a login session, so it cannot create keys.";
    return null;
}
