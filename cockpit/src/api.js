// org.apikey.Keys1 on the system bus, through Cockpit's bridge: the
// daemon sees the web console user's own uid and login session, and makes
// every permission decision itself.
import {
    decodeKey, decodeSettingsWith, decodeStatus, decodeUses, parseExposition, withExtras,
} from "./model.js";

const NAME = "org.apikey.Keys1";
const PATH = "/org/apikey/Keys1";

export class KeysApi {
    constructor(cockpit) {
        this.client = cockpit.dbus(NAME, { bus: "system" });
    }

    call(method, args) {
        return this.client.call(PATH, NAME, method, args);
    }

    async status() {
        // Status and SetSettings return their fields as out arguments.
        return decodeStatus(await this.call("Status", []));
    }

    /// `services`: patterns within the site's key_services; none means
    /// every service the site allows.
    /// `from`: networks logins with the key may come from; none: anywhere.
    async generate(name, expires, services = [], from = []) {
        if (from.length === 0) {
            const [token, key] = await this.call("Generate", [name, expires, services, ""]);
            return { token, key: decodeKey(key) };
        }
        const options = { from: { t: "as", v: from } };
        const [token, key, extras] = await this.call("GenerateWith", [name, expires, services, "", options]);
        return { token, key: withExtras(decodeKey(key), extras) };
    }

    /// The site's key_services: what a key's scope may be narrowed to.
    async keyServices() {
        const [services] = await this.call("KeyServices", []);
        return services;
    }

    async createSessionKey(name) {
        const [token, key] = await this.call("CreateSessionKey", [name]);
        return { token, key: decodeKey(key) };
    }

    /// The caller's own keys, or (`all`, administrators only) everyone's:
    /// active ones, a page at a time (ListPage), as `apikey list` asks.
    async list(all) {
        const keys = [];
        let after = "";
        do {
            const [page, next] = await this.call("ListPageWith", ["", all, false, [], after, 1000]);
            keys.push(...page.map(([key, extras]) => withExtras(decodeKey(key), extras)));
            after = next;
        } while (after !== "");
        return keys;
    }

    /// The daemon's metrics (administrators), parsed by metric name.
    async metrics() {
        const [text] = await this.call("Metrics", []);
        return parseExposition(text);
    }

    /// Where key `id` was used from: its last distinct (service, remote
    /// host) pairs, newest first (ShowKey).
    async history(id) {
        const [, , uses] = await this.call("ShowKey", [id]);
        return decodeUses(uses);
    }

    async revoke(ids) {
        const [revoked] = await this.call("Revoke", [ids]);
        return revoked;
    }

    async revokeAllOwn() {
        const [revoked] = await this.call("RevokeAll", [""]);
        return revoked;
    }

    /// Revokes the key `token` is, whoever owns it: its id, and whether
    /// this call revoked it (false: it was revoked already).
    async revokeByToken(token) {
        const [id, revoked] = await this.call("RevokeByToken", [token]);
        return { id, revoked };
    }

    /// Every setting, those beyond the Settings struct included.
    async settingsWith() {
        return decodeSettingsWith(await this.call("GetSettingsWith", []));
    }

    /// Changes every setting shown on the page at once.
    async setSettingsWith({ allowUserKeys, expires, usersSeeOwn, sessionTimeout, requireFrom, revokeUnused }) {
        const yesNo = b => (b ? "yes" : "no");
        const changes = {
            allow_user_keys: yesNo(allowUserKeys),
            expires,
            users_see_own: yesNo(usersSeeOwn),
            session_timeout: sessionTimeout,
            require_from: yesNo(requireFrom),
            revoke_unused: revokeUnused,
        };
        return decodeSettingsWith(await this.call("SetSettingsWith", [changes]));
    }
}
