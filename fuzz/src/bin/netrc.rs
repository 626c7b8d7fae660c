//! The CLI's `.netrc` editor: an existing file of any shape, and the
//! entry it puts in (host, login and password as the CLI would check
//! them). The entry must be in the result, whole and once.

use apikey::netrc::{check_token, upsert};
use apikey_fuzz::fields;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let f = fields(data, 4);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let (existing, host, login) = (text(f[0]), text(f[1]), text(f[2]));
        let password = "apikey|FuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzAB";
        if check_token("host", &host).is_err() || check_token("login", &login).is_err() {
            return;
        }
        let out = upsert(&existing, &host, &login, password);
        let entry = format!("machine {host} login {login} password {password}");
        assert_eq!(out.matches(&entry).count(), 1, "{out:?}");
    });
}
