// The page: LabKey's screens for API keys on the Cockpit web console.
// Everything the daemon sends is put in the page as text (textContent,
// never markup, S11); hiding a control is a convenience, the daemon
// refuses what the caller may not do.
/* global cockpit */
import { KeysApi } from "./api.js";
import {
    EXPIRY_CHOICES, REVOKE_UNUSED_CHOICES, deleteQuestion, errorMessage, expiryChoices, expiryLabel,
    filterKeys,
    activitySummary, expiringNote, formatDuration, formatExpires, formatLastUsed, formatRhost, formatScope, formatTime,
    generateBlocker,
    keyCount, netrcLine,
    parseNetworks,
} from "./model.js";

const $ = id => document.getElementById(id);

const state = {
    api: null,
    status: null,
    allKeys: [],
    selected: new Set(),
};

function element(tag, className, text) {
    const e = document.createElement(tag);
    if (className)
        e.className = className;
    if (text !== undefined)
        e.textContent = text;
    return e;
}

function show(id, visible) {
    $(id).hidden = !visible;
}

// Alerts: one line each, the newest first; errors stay until dismissed.
function alert(kind, text) {
    const box = element("div", `pf-v5-c-alert pf-m-inline pf-m-${kind}`);
    box.setAttribute("role", kind === "danger" ? "alert" : "status");
    box.append(element("p", "pf-v5-c-alert__title", text));
    const close = element("button", "pf-v5-c-button pf-m-plain apikey-alert-close", "\u00d7");
    close.type = "button";
    close.setAttribute("aria-label", "Dismiss");
    close.addEventListener("click", () => box.remove());
    box.append(close);
    $("alerts").prepend(box);
    if (kind === "success")
        setTimeout(() => box.remove(), 8000);
}

function clearAlerts() {
    $("alerts").replaceChildren();
}

function failed(error) {
    alert("danger", errorMessage(error));
}

function confirmDialog(title, body, yes) {
    $("confirm-title").textContent = title;
    $("confirm-body").textContent = body;
    $("confirm-yes").textContent = yes;
    show("confirm", true);
    $("confirm-yes").focus();
    return new Promise(resolve => {
        const done = answer => {
            show("confirm", false);
            $("confirm-yes").removeEventListener("click", onYes);
            $("confirm-no").removeEventListener("click", onNo);
            resolve(answer);
        };
        const onYes = () => done(true);
        const onNo = () => done(false);
        $("confirm-yes").addEventListener("click", onYes);
        $("confirm-no").addEventListener("click", onNo);
    });
}

function fillSelect(select, choices, selected) {
    select.replaceChildren(...choices.map(choice => {
        const option = element("option", "", expiryLabel(choice));
        option.value = choice;
        option.selected = choice === selected;
        return option;
    }));
}

// --- generating ---------------------------------------------------------

function renderGenerate(status) {
    show("generate-card", true);
    const blocker = generateBlocker(status);
    $("policy-message").textContent = blocker ?? "";
    show("generate-blocked", blocker !== null);
    show("generate-form", blocker === null);
    const choices = expiryChoices(status.settings.expires);
    fillSelect($("key-expires"), choices, choices[choices.length - 1]);
    renderServiceChoices();
    $("session-timeout-text").textContent = formatDuration(status.settings.sessionTimeout);
}

function showNewKey(token, key, kind) {
    $("new-key-kind").textContent = kind;
    $("new-key-name").textContent = key.name || "(no name)";
    $("new-key-id").textContent = key.id;
    $("new-key-expiry").textContent = key.session
        ? "ends with this session"
        : key.expires ? `expires ${formatTime(key.expires)}` : "does not expire";
    $("new-key-value").value = token;
    const line = netrcLine(window.location.hostname, key.user, token);
    $("netrc-line").textContent = line ?? "(this user name cannot be written in .netrc)";
    $("copy-key").textContent = "Copy to clipboard";
    show("new-key", true);
    $("new-key-value").select();
}

function forgetNewKey() {
    $("new-key-value").value = "";
    $("netrc-line").textContent = "";
    show("new-key", false);
}

// `make(name)` asks the daemon for the key; session keys are not listed.
async function makeKey(make, kind, relist) {
    clearAlerts();
    forgetNewKey();
    try {
        const { token, key } = await make($("key-name").value.trim());
        showNewKey(token, key, kind);
        $("key-name").value = "";
        if (relist)
            await refreshKeys();
    } catch (e) {
        failed(e);
    }
}

// One checkbox per pattern of the site's key_services, as text only.
async function renderServiceChoices() {
    const box = $("key-services");
    let services = [];
    try {
        services = await state.api.keyServices();
    } catch (e) {
        failed(e);
    }
    box.replaceChildren(...services.map((service, i) => {
        const label = document.createElement("label");
        label.className = "pf-v5-c-check apikey-service";
        const input = document.createElement("input");
        input.type = "checkbox";
        input.className = "pf-v5-c-check__input";
        input.id = `key-service-${i}`;
        input.value = service;
        const text = document.createElement("span");
        text.className = "pf-v5-c-check__label";
        text.textContent = service;
        label.append(input, text);
        return label;
    }));
}

function chosenServices() {
    return [...$("key-services").querySelectorAll("input:checked")].map(i => i.value);
}

async function generate(event) {
    event.preventDefault();
    const services = chosenServices();
    const from = parseNetworks($("key-from").value);
    await makeKey(name => state.api.generate(name, $("key-expires").value, services, from), "API key", true);
    $("key-from").value = "";
    for (const input of $("key-services").querySelectorAll("input"))
        input.checked = false;
}

async function generateSession() {
    await makeKey(name => state.api.createSessionKey(name || "web console"), "Session key", false);
}

async function copyKey() {
    try {
        await navigator.clipboard.writeText($("new-key-value").value);
        $("copy-key").textContent = "Copied!";
    } catch (e) {
        alert("danger", `The browser did not let the page copy: ${e.message}. Select the key and copy it by hand.`);
    }
}

// --- the user's own keys ---------------------------------------------------

function cell(text, label) {
    const td = element("td", "pf-v5-c-table__td", text);
    td.dataset.label = label;
    return td;
}

/// The last use, and a button that shows (or hides) below the row where
/// the key was used from, asked of the daemon when pressed.
function lastUsedCell(key) {
    const td = cell(formatLastUsed(key), "Last used");
    const button = element("button", "pf-v5-c-button pf-m-link pf-m-inline apikey-history-toggle", "History");
    button.type = "button";
    button.setAttribute("aria-expanded", "false");
    button.setAttribute("aria-label", `Where key ${key.id} was used from`);
    button.addEventListener("click", () => toggleHistory(td.closest("tr"), key, button));
    td.append(" ", button);
    return td;
}

async function toggleHistory(tr, key, button) {
    const next = tr.nextElementSibling;
    if (next?.classList.contains("apikey-history")) {
        next.remove();
        button.setAttribute("aria-expanded", "false");
        return;
    }
    let uses;
    try {
        uses = await state.api.history(key.id);
    } catch (e) {
        failed(e);
        return;
    }
    const row = element("tr", "pf-v5-c-table__tr apikey-history");
    row.dataset.historyOf = key.id;
    const td = element("td", "pf-v5-c-table__td");
    td.colSpan = tr.children.length;
    td.append(historyTable(uses));
    row.append(td);
    tr.after(row);
    button.setAttribute("aria-expanded", "true");
}

function historyTable(uses) {
    if (uses.length === 0)
        return element("p", "apikey-help", "Not used yet.");
    const fleet = uses.some(u => u.host);
    const table = element("table", "pf-v5-c-table pf-m-compact apikey-history-table");
    table.setAttribute("aria-label", "Where the key was used from");
    const head = element("tr", "pf-v5-c-table__tr");
    const titles = ["Service", "Remote host", "First used", "Last used"];
    if (fleet)
        titles.push("Last on host");
    for (const title of titles) {
        const th = element("th", "pf-v5-c-table__th", title);
        th.scope = "col";
        head.append(th);
    }
    const thead = element("thead", "pf-v5-c-table__thead");
    thead.append(head);
    const tbody = element("tbody", "pf-v5-c-table__tbody");
    for (const u of uses) {
        const tr = element("tr", "pf-v5-c-table__tr");
        tr.append(cell(u.service, "Service"), cell(formatRhost(u), "Remote host"),
                  cell(formatTime(u.first), "First used"), cell(formatTime(u.last), "Last used"));
        if (fleet)
            tr.append(cell(u.host, "Last on host"));
        tbody.append(tr);
    }
    table.append(thead, tbody);
    const box = element("div");
    box.append(element("p", "apikey-help",
                       "Where this key was used from: its last distinct services and remote hosts, newest first."),
               table);
    return box;
}

function expiresCell(key) {
    const td = cell(formatExpires(key), "Expires");
    if (key.expiresSoon)
        td.classList.add("apikey-expires-soon");
    return td;
}

function ownKeyRow(key) {
    const tr = element("tr", "pf-v5-c-table__tr");
    tr.dataset.id = key.id;
    tr.append(cell(key.name || "(no name)", "Name"),
              cell(key.id, "ID"),
              cell(formatScope(key), "Services"),
              cell(formatTime(key.created), "Created"),
              expiresCell(key),
              lastUsedCell(key));
    const action = cell("", "Actions");
    const revoke = element("button", "pf-v5-c-button pf-m-secondary pf-m-danger pf-m-small", "Revoke");
    revoke.type = "button";
    revoke.addEventListener("click", async () => {
        const yes = await confirmDialog("Revoke API key?",
                                        `The key "${key.name || key.id}" (${key.id}) stops working at once.`,
                                        "Revoke");
        if (!yes)
            return;
        try {
            await state.api.revoke([key.id]);
            alert("success", `Revoked ${key.id}.`);
        } catch (e) {
            failed(e);
        }
        await refreshKeys();
    });
    action.append(revoke);
    tr.append(action);
    return tr;
}

async function refreshOwnKeys() {
    show("own-keys-card", true);
    let keys;
    try {
        keys = await state.api.list(false);
    } catch (e) {
        const hidden = e?.name === "org.apikey.Keys1.Error.PolicyForbids";
        show("own-keys-hidden", hidden);
        show("revoke-all-own", hidden);
        show("own-keys", false);
        show("own-keys-empty", false);
        if (!hidden)
            failed(e);
        return;
    }
    show("own-keys-hidden", false);
    show("revoke-all-own", false);
    const note = expiringNote(keys);
    $("own-keys-expiring").textContent = note ?? "";
    show("own-keys-expiring", note !== null);
    $("own-keys").tBodies[0].replaceChildren(...keys.map(ownKeyRow));
    show("own-keys", keys.length > 0);
    show("own-keys-empty", keys.length === 0);
}

async function revokeAllOwn() {
    const yes = await confirmDialog("Revoke all your API keys?",
                                    "Every API key you own stops working at once.", "Revoke all");
    if (!yes)
        return;
    try {
        const revoked = await state.api.revokeAllOwn();
        alert("success", `Revoked ${keyCount(revoked.length)}.`);
    } catch (e) {
        failed(e);
    }
}

// A key found where it should not be: whoever holds it may revoke it. The
// field is a password field, so the key is not shown or kept by the form.
async function revokeLeaked(event) {
    event.preventDefault();
    const input = $("leaked-key");
    const token = input.value.trim();
    if (token === "")
        return;
    try {
        const { id, revoked } = await state.api.revokeByToken(token);
        input.value = "";
        alert("success", revoked ? `Revoked ${id}.` : `${id} was already revoked.`);
        await refreshKeys();
    } catch (e) {
        failed(e);
    }
}

// --- administrators --------------------------------------------------------

async function refreshActivity() {
    let samples;
    try {
        samples = await state.api.metrics();
    } catch (e) {
        // A daemon that predates Metrics: no card, nothing to say.
        if (e?.name !== "org.freedesktop.DBus.Error.UnknownMethod")
            failed(e);
        return;
    }
    const pairs = activitySummary(samples);
    $("activity").replaceChildren(...pairs.flatMap(([label, text]) => [element("dt", "", label), element("dd", "", text)]));
    show("activity-card", true);
}

/// Cockpit's own journal viewer, filtered to the daemon's entries.
function openAuditLog() {
    cockpit.jump($("audit-log").dataset.target);
}

function renderSettings(settings) {
    show("settings-card", true);
    $("allow-user-keys").checked = settings.allowUserKeys;
    $("users-see-own").checked = settings.usersSeeOwn;
    $("require-from").checked = settings.requireFrom;
    fillSelect($("policy-expires"), EXPIRY_CHOICES, settings.expires);
    fillSelect($("revoke-unused"), REVOKE_UNUSED_CHOICES, settings.revokeUnused);
    $("session-timeout").value = formatDuration(settings.sessionTimeout);
}

async function saveSettings(event) {
    event.preventDefault();
    clearAlerts();
    try {
        const settings = await state.api.setSettingsWith({
            allowUserKeys: $("allow-user-keys").checked,
            expires: $("policy-expires").value,
            usersSeeOwn: $("users-see-own").checked,
            sessionTimeout: $("session-timeout").value.trim(),
            requireFrom: $("require-from").checked,
            revokeUnused: $("revoke-unused").value,
        });
        alert("success", "Settings saved.");
        state.status.settings = settings;
        renderSettings(settings);
        renderGenerate(state.status);
        await refreshKeys();
    } catch (e) {
        failed(e);
    }
}

function shownKeys() {
    return filterKeys(state.allKeys, $("user-filter").value);
}

function allKeyRow(key) {
    const tr = element("tr", "pf-v5-c-table__tr");
    tr.dataset.id = key.id;
    const check = element("td", "pf-v5-c-table__td pf-v5-c-table__check");
    const box = element("input");
    box.type = "checkbox";
    box.className = "row-select";
    box.checked = state.selected.has(key.id);
    box.setAttribute("aria-label", `Select key ${key.id} of ${key.user}`);
    box.addEventListener("change", () => {
        if (box.checked)
            state.selected.add(key.id);
        else
            state.selected.delete(key.id);
        renderSelection();
    });
    check.append(box);
    tr.append(check,
              cell(key.user, "User"),
              cell(key.name || "(no name)", "Name"),
              cell(key.id, "ID"),
              cell(formatScope(key), "Services"),
              cell(formatTime(key.created), "Created"),
              expiresCell(key),
              lastUsedCell(key));
    return tr;
}

function renderAllKeys() {
    const keys = shownKeys();
    // What the filter hides is not selected: Delete acts on what is seen.
    const shown = new Set(keys.map(k => k.id));
    for (const id of [...state.selected]) {
        if (!shown.has(id))
            state.selected.delete(id);
    }
    $("all-keys").tBodies[0].replaceChildren(...keys.map(allKeyRow));
    show("all-keys-empty", keys.length === 0);
    renderSelection(keys);
}

function renderSelection(keys = shownKeys()) {
    const count = state.selected.size;
    $("delete-selected").disabled = count === 0;
    $("selection-count").textContent = count ? `${count} selected` : "";
    $("select-all").checked = keys.length > 0 && count === keys.length;
    $("select-all").indeterminate = count > 0 && count < keys.length;
}

function selectAll() {
    const on = $("select-all").checked;
    state.selected.clear();
    if (on) {
        for (const k of shownKeys())
            state.selected.add(k.id);
    }
    renderAllKeys();
}

async function deleteSelected() {
    const keys = state.allKeys.filter(k => state.selected.has(k.id));
    if (keys.length === 0)
        return;
    const yes = await confirmDialog(deleteQuestion(keys), "The keys stop working at once. This cannot be undone.",
                                    "Delete");
    if (!yes)
        return;
    clearAlerts();
    try {
        const revoked = await state.api.revoke(keys.map(k => k.id));
        alert("success", `Deleted ${keyCount(revoked.length)}.`);
    } catch (e) {
        failed(e);
    }
    state.selected.clear();
    await refreshKeys();
}

async function refreshAllKeys() {
    show("all-keys-card", true);
    try {
        state.allKeys = await state.api.list(true);
    } catch (e) {
        state.allKeys = [];
        failed(e);
    }
    renderAllKeys();
}

// --- start ---------------------------------------------------------------------

async function refreshKeys() {
    await refreshOwnKeys();
    if (state.status.admin) {
        await refreshAllKeys();
        await refreshActivity();
    }
}

function describeCaller(status) {
    const role = status.admin ? "administrator" : "user";
    return `Signed in as ${status.user} (${role}). apikeyd ${status.version}.`;
}

async function start() {
    state.api = new KeysApi(cockpit);
    try {
        state.status = await state.api.status();
    } catch (e) {
        $("whoami").textContent = "";
        failed(e);
        document.body.dataset.ready = "error";
        return;
    }
    $("whoami").textContent = describeCaller(state.status);
    renderGenerate(state.status);
    show("leaked-card", true);
    if (state.status.admin)
        renderSettings(await state.api.settingsWith());
    await refreshKeys();
    document.body.dataset.ready = "yes";
}

$("generate-form").addEventListener("submit", generate);
$("generate-session").addEventListener("click", generateSession);
$("copy-key").addEventListener("click", copyKey);
$("new-key-done").addEventListener("click", forgetNewKey);
$("revoke-all-own").addEventListener("click", revokeAllOwn);
$("leaked-form").addEventListener("submit", revokeLeaked);
$("settings-form").addEventListener("submit", saveSettings);
$("user-filter").addEventListener("input", renderAllKeys);
$("select-all").addEventListener("change", selectAll);
$("delete-selected").addEventListener("click", deleteSelected);
$("audit-log").addEventListener("click", openAuditLog);
cockpit.transport.wait(start);
