// Drives the page in Debian's Chromium like a user would, for the
// end-to-end tests (tests/tests/cockpit.rs), which set up the bus, the
// daemon, the users and cockpit-ws, then check what the page did against
// the daemon and PAM.
//
//   node drive.mjs SCENARIO URL SCREENSHOT_DIR [ARGS...]
//
// Prints one line of JSON: what the scenario saw. Exits non-zero, with a
// screenshot of the failure, when a step fails or times out.
import { chromium } from "playwright-core";
import { join } from "node:path";

const [scenario, url, shots, ...args] = process.argv.slice(2);
const STEP_TIMEOUT_MS = 20000;

async function ready(page, expected = "yes") {
    await page.goto(url);
    await page.waitForSelector("body[data-ready]", { timeout: STEP_TIMEOUT_MS });
    const state = await page.getAttribute("body", "data-ready");
    if (state !== expected) {
        const alerts = await page.locator("#alerts").innerText();
        throw new Error(`page state ${state}, expected ${expected}: ${alerts}`);
    }
}

// The page scrolls inside PatternFly's page section, which a full-page
// screenshot does not see: the viewport grows to the content for the
// shot, scrolled to its top, so every shot is the whole screen.
async function shot(page, name) {
    const viewport = page.viewportSize();
    const height = await page.evaluate(() => {
        let tallest = document.documentElement.scrollHeight;
        for (const e of document.querySelectorAll("*")) {
            tallest = Math.max(tallest, e.scrollHeight);
            e.scrollTop = 0;
        }
        return tallest;
    });
    await page.setViewportSize({ width: viewport.width, height: Math.min(Math.max(height, viewport.height), 4000) });
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
    await page.setViewportSize(viewport);
}

async function successAlert(page) {
    const alert = page.locator("#alerts .pf-m-success").first();
    await alert.waitFor({ timeout: STEP_TIMEOUT_MS });
    return alert.locator(".pf-v5-c-alert__title").innerText();
}

// A call made from the browser's console, as a user poking at the page
// would: the daemon must refuse what the page merely hides.
function consoleCall(page, method, callArgs) {
    return page.evaluate(async ([method, callArgs]) => {
        const client = cockpit.dbus("org.apikey.Keys1", { bus: "system" });
        try {
            await client.call("/org/apikey/Keys1", "org.apikey.Keys1", method, callArgs);
            return "ok";
        } catch (e) {
            return e.name || e.problem || String(e);
        } finally {
            client.close();
        }
    }, [method, callArgs]);
}

const scenarios = {
    // A user generates a key, copies it, and sees it listed.
    // args: its name, then the services to tick (none: all allowed).
    async generate(page) {
        const [name, ...services] = args;
        await ready(page);
        const offered = page.locator("#key-services input");
        await offered.first().waitFor({ timeout: STEP_TIMEOUT_MS });
        for (const service of services)
            await page.check(`#key-services input[value="${service}"]`);
        await page.fill("#key-name", name);
        await page.click("#generate");
        await page.locator("#new-key").waitFor({ timeout: STEP_TIMEOUT_MS });
        const shown = await page.inputValue("#new-key-value");
        const id = await page.locator("#new-key-id").innerText();
        await page.click("#copy-key");
        await page.locator("#copy-key", { hasText: "Copied!" }).waitFor({ timeout: STEP_TIMEOUT_MS });
        const clipboard = await page.evaluate(() => navigator.clipboard.readText());
        // Listed, unless the policy hides users' keys from them.
        const row = page.locator(`#own-keys tr[data-id="${id}"]`);
        await row.or(page.locator("#own-keys-hidden:visible")).first().waitFor({ timeout: STEP_TIMEOUT_MS });
        await shot(page, "user-generated-key");
        return {
            id,
            shown,
            clipboard,
            button: await page.locator("#copy-key").innerText(),
            netrc: await page.locator("#netrc-line").innerText(),
            warning: await page.locator("#new-key .pf-m-warning").innerText(),
            expiries: await page.locator("#key-expires option").evaluateAll(os => os.map(o => o.value)),
            services_offered: await offered.evaluateAll(is => is.map(i => i.value)),
            ticked_after: await page.locator("#key-services input:checked").count(),
            row: await row.isVisible() ? await row.locator("td").allInnerTexts() : [],
            listed: await row.isVisible(),
            hidden_message: await page.locator("#own-keys-hidden").isVisible(),
        };
    },

    // A key usable only from some networks. args: its name, the networks
    // as typed in the field.
    async generate_from(page) {
        const [name, networks] = args;
        await ready(page);
        await page.fill("#key-name", name);
        await page.fill("#key-from", networks);
        await page.click("#generate");
        await page.locator("#new-key").waitFor({ timeout: STEP_TIMEOUT_MS });
        const id = await page.locator("#new-key-id").innerText();
        const row = page.locator(`#own-keys tr[data-id="${id}"]`);
        await row.waitFor({ timeout: STEP_TIMEOUT_MS });
        await shot(page, "user-key-from-networks");
        return {
            id,
            shown: await page.inputValue("#new-key-value"),
            services: await row.locator("td[data-label=Services]").innerText(),
            field_after: await page.inputValue("#key-from"),
        };
    },

    // The user's keys, some close to their expiry. args: a key's id.
    async expiring(page) {
        const [id] = args;
        await ready(page);
        const row = page.locator(`#own-keys tr[data-id="${id}"]`);
        await row.waitFor({ timeout: STEP_TIMEOUT_MS });
        await shot(page, "user-keys-expiring");
        const expires = row.locator("td[data-label=Expires]");
        return {
            expires: await expires.innerText(),
            marked: await expires.evaluate(td => td.classList.contains("apikey-expires-soon")),
            note: await page.locator("#own-keys-expiring").isVisible()
                ? await page.locator("#own-keys-expiring").innerText() : "",
            soon_cells: await page.locator("#own-keys td.apikey-expires-soon").count(),
        };
    },

    // Where one of the user's keys was used from, shown on demand.
    // args: its id.
    async history(page) {
        const [id] = args;
        await ready(page);
        const row = page.locator(`#own-keys tr[data-id="${id}"]`);
        await row.waitFor({ timeout: STEP_TIMEOUT_MS });
        const button = row.locator("button.apikey-history-toggle");
        await button.click();
        const shown = page.locator(`#own-keys tr[data-history-of="${id}"]`);
        await shown.waitFor({ timeout: STEP_TIMEOUT_MS });
        await shot(page, "user-key-history");
        const rows = await shown.locator("tbody tr").evaluateAll(
            trs => trs.map(tr => [...tr.querySelectorAll("td")].map(td => td.textContent)));
        const expanded = await button.getAttribute("aria-expanded");
        await button.click();
        await shown.waitFor({ state: "detached", timeout: STEP_TIMEOUT_MS });
        return { rows, expanded, collapsed: await button.getAttribute("aria-expanded") };
    },

    // A session key: it lives as long as this web console session.
    async session(page) {
        await ready(page);
        await page.fill("#key-name", args[0] ?? "");
        await page.click("#generate-session");
        await page.locator("#new-key").waitFor({ timeout: STEP_TIMEOUT_MS });
        await shot(page, "user-session-key");
        return {
            shown: await page.inputValue("#new-key-value"),
            kind: await page.locator("#new-key-kind").innerText(),
        };
    },

    // A user revokes one of her keys from her list. args: its id.
    async revoke_own(page) {
        const [id] = args;
        await ready(page);
        const row = page.locator(`#own-keys tr[data-id="${id}"]`);
        await row.locator("button", { hasText: "Revoke" }).click();
        await page.locator("#confirm").waitFor({ timeout: STEP_TIMEOUT_MS });
        const question = await page.locator("#confirm-body").innerText();
        await page.click("#confirm-yes");
        const alert = await successAlert(page);
        await row.waitFor({ state: "detached", timeout: STEP_TIMEOUT_MS });
        return { question, alert };
    },

    // Somebody else's key, found in a paste, revoked by its holder.
    // args: the token, then whether to try it twice.
    async revoke_leaked(page) {
        const [token] = args;
        await ready(page);
        await page.fill("#leaked-key", token);
        await shot(page, "user-revokes-leaked-key");
        await page.click("#revoke-leaked");
        const first = await successAlert(page);
        const cleared = (await page.inputValue("#leaked-key")) === "";
        const type = await page.getAttribute("#leaked-key", "type");
        await page.locator("#alerts .pf-m-success").first().locator("button").click().catch(() => {});
        await page.fill("#leaked-key", token);
        await page.click("#revoke-leaked");
        const again = page.locator("#alerts .pf-m-success", { hasText: "already revoked" });
        await again.waitFor({ timeout: STEP_TIMEOUT_MS });
        return { first, cleared, type, again: await again.locator(".pf-v5-c-alert__title").innerText() };
    },

    // With users' keys hidden by the policy: revoke them all anyway.
    async revoke_all_own(page) {
        await ready(page);
        await page.locator("#revoke-all-own").waitFor({ timeout: STEP_TIMEOUT_MS });
        await shot(page, "user-keys-hidden");
        await page.click("#revoke-all-own");
        await page.locator("#confirm").waitFor({ timeout: STEP_TIMEOUT_MS });
        await page.click("#confirm-yes");
        return { alert: await successAlert(page) };
    },

    // The page of a user the policy does not let create keys.
    async forbidden(page) {
        await ready(page);
        await page.locator("#generate-blocked").waitFor({ timeout: STEP_TIMEOUT_MS });
        await shot(page, "user-policy-forbids");
        return {
            message: await page.locator("#policy-message").innerText(),
            form_visible: await page.locator("#generate-form").isVisible(),
            admin_visible: await page.locator("#settings-card").isVisible(),
            console_generate: await consoleCall(page, "Generate", ["from the console", "", [], ""]),
        };
    },

    // A user who is no administrator calls the administrators' methods
    // from the console. args: the id of somebody else's key.
    async console(page) {
        const [otherId] = args;
        await ready(page);
        return {
            admin_visible: await page.locator("#settings-card").isVisible(),
            set_settings: await consoleCall(page, "SetSettings", ["yes", "never", "yes", "30m"]),
            list_all: await consoleCall(page, "List", ["", true, false]),
            revoke_other: await consoleCall(page, "Revoke", [[otherId]]),
            revoke_site: await consoleCall(page, "RevokeSite", []),
            metrics: await consoleCall(page, "Metrics", []),
            activity_visible: await page.locator("#activity-card").isVisible(),
        };
    },

    // An administrator's Activity card: the daemon's metrics, summarised.
    async activity(page) {
        await ready(page);
        const card = page.locator("#activity-card");
        await card.waitFor({ timeout: STEP_TIMEOUT_MS });
        await shot(page, "admin-activity");
        const terms = await card.locator("dt").allInnerTexts();
        const values = await card.locator("dd").allInnerTexts();
        const seen = Object.fromEntries(terms.map((t, i) => [t, values[i]]));
        // Where the button takes the shell: cockpit.jump's argument, as
        // the page alone (outside the shell) has nowhere to go.
        await page.evaluate(() => {
            window.jumpedTo = [];
            cockpit.jump = (path) => window.jumpedTo.push(path);
        });
        await page.click("#audit-log");
        const jumped = await page.evaluate(() => window.jumpedTo);
        seen.audit_log = jumped.length === 1 ? jumped[0] : JSON.stringify(jumped);
        return seen;
    },

    // An administrator changes the site settings.
    // args: allow (yes/no), expiry, users see own (yes/no), idle timeout,
    // networks required (yes/no), unused keys revoked after.
    async settings(page) {
        const [allow, expires, seeOwn, timeout, requireFrom = "no", revokeUnused = "never"] = args;
        await ready(page);
        await page.locator("#settings-card").waitFor({ timeout: STEP_TIMEOUT_MS });
        await page.setChecked("#allow-user-keys", allow === "yes");
        await page.selectOption("#policy-expires", expires);
        await page.setChecked("#users-see-own", seeOwn === "yes");
        await page.fill("#session-timeout", timeout);
        await page.setChecked("#require-from", requireFrom === "yes");
        await page.selectOption("#revoke-unused", revokeUnused);
        await page.click("#save-settings");
        const alert = await successAlert(page);
        await shot(page, "admin-settings");
        // What a fresh load shows: what the daemon stored.
        await ready(page);
        return {
            alert,
            allow: await page.isChecked("#allow-user-keys"),
            expires: await page.inputValue("#policy-expires"),
            see_own: await page.isChecked("#users-see-own"),
            timeout: await page.inputValue("#session-timeout"),
            require_from: await page.isChecked("#require-from"),
            revoke_unused: await page.inputValue("#revoke-unused"),
        };
    },

    // An administrator filters by user, ticks some keys and deletes them.
    // args: the user to filter by, then the ids to tick.
    async delete(page) {
        const [user, ...ids] = args;
        await ready(page);
        await page.locator("#all-keys-card").waitFor({ timeout: STEP_TIMEOUT_MS });
        await page.fill("#user-filter", user);
        const rows = page.locator("#all-keys tbody tr");
        const shownBefore = await rows.evaluateAll(trs => trs.map(tr => tr.dataset.id));
        for (const id of ids)
            await page.check(`#all-keys tr[data-id="${id}"] .row-select`);
        await shot(page, "admin-keys-selected");
        await page.click("#delete-selected");
        await page.locator("#confirm").waitFor({ timeout: STEP_TIMEOUT_MS });
        const question = await page.locator("#confirm-title").innerText();
        await shot(page, "admin-delete-confirm");
        await page.click("#confirm-yes");
        const alert = await successAlert(page);
        for (const id of ids)
            await page.locator(`#all-keys tr[data-id="${id}"]`).waitFor({ state: "detached", timeout: STEP_TIMEOUT_MS });
        await page.fill("#user-filter", "");
        await shot(page, "admin-keys");
        return {
            shown_before: shownBefore,
            columns: await page.locator("#all-keys thead th").allInnerTexts(),
            question,
            alert,
        };
    },

    // Select all, then untick: the count and the Delete button follow.
    async select_all(page) {
        await ready(page);
        await page.locator("#all-keys-card").waitFor({ timeout: STEP_TIMEOUT_MS });
        await page.check("#select-all");
        const all = await page.locator("#selection-count").innerText();
        const enabled = await page.isEnabled("#delete-selected");
        await page.uncheck("#select-all");
        return {
            rows: await page.locator("#all-keys tbody tr").count(),
            count_text: all,
            delete_enabled: enabled,
            delete_enabled_after: await page.isEnabled("#delete-selected"),
        };
    },

    // Cockpit's shell (cockpit-system) around the page: the menu entry
    // leads to it. URL: the shell's root.
    async shell(page) {
        await page.goto(url);
        const entry = page.getByRole("link", { name: "API keys", exact: true });
        await entry.waitFor({ timeout: STEP_TIMEOUT_MS });
        await entry.click();
        const frame = page.frameLocator('iframe[name="cockpit1:localhost/apikey"]');
        await frame.locator("body[data-ready]").waitFor({ state: "attached", timeout: STEP_TIMEOUT_MS });
        await frame.locator("#generate-card").waitFor({ timeout: STEP_TIMEOUT_MS });
        await shot(page, "shell-menu");
        return {
            url: page.url(),
            whoami: await frame.locator("#whoami").innerText(),
        };
    },

    // The page when the daemon does not answer.
    async down(page) {
        await ready(page, "error");
        await shot(page, "service-down");
        return { alert: await page.locator("#alerts").innerText() };
    },
};

async function main() {
    const run = scenarios[scenario];
    if (!run)
        throw new Error(`unknown scenario ${scenario}`);
    const browser = await chromium.launch({
        executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
        args: [
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
        ],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(url).origin });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    const consoleLines = [];
    page.on("console", m => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", e => consoleLines.push(`pageerror: ${e.message}`));
    // Every file the page asks for must be there (stylesheet, fonts).
    const missing = [];
    page.on("response", r => {
        if (r.status() >= 400)
            missing.push(`${r.status()} ${r.url()}`);
    });
    try {
        const answer = await run(page);
        answer.failed_requests = missing;
        answer.page_errors = consoleLines.filter(l => l.startsWith("pageerror") || l.startsWith("error"));
        console.log(JSON.stringify(answer));
    } catch (e) {
        await shot(page, `failed-${scenario}`).catch(() => {});
        console.error(`scenario ${scenario}: ${e.stack ?? e}`);
        console.error(`browser console:\n${consoleLines.join("\n")}`);
        process.exitCode = 1;
    } finally {
        await browser.close();
    }
}

await main();
