//! The command line, as clap definitions. The man pages and shell
//! completions are generated from these same definitions (see
//! `examples/gen-docs.rs`), so the help texts here are the manual.

use crate::text::safe;
use apikey_proto::duration::parse_duration;
use apikey_proto::services::{is_valid_pattern, is_valid_service};
use apikey_proto::token::is_key_id;
use apikey_proto::types::Expiry;
use clap::builder::PossibleValuesParser;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Revocable, expiring API keys for logging in to this host";

const LONG_ABOUT: &str = "\
Revocable, expiring API keys for logging in to this host.

A user who is logged in asks for a key; programs that log in with a \
password (ssh, FTP, an HTTP service behind Basic auth, a .netrc file) can \
then use that key instead of the account password. Keys expire by site \
policy, can be limited to some services, and can be revoked one by one or \
all at once. The keys are kept by the apikeyd daemon, which this command \
talks to on the system bus.

A key looks like apikey| followed by 46 letters and digits; apikey_ is \
accepted as the same key, for shells and environment variables. A key is \
shown once, when it is made. Keys are never given on the command line: \
programs that take a password should read the key from a file, the \
environment or standard input (sshpass -e or -f, never -p).";

const EXIT_STATUS: &str = "\
Exit status:
  0   success
  1   refused or failed: the site policy forbids it (PolicyForbids), the \
command runs under su/sudo (Impersonating), outside a login session \
(NotLoggedIn, NoSession), a limit was reached (QuotaExceeded), no such key \
or user (NotFound), a malformed argument (InvalidArgument), a key that was \
not accepted (verify), or a local failure
  2   usage error
  69  the apikey daemon is not reachable on the system bus
  77  permission denied: the caller may not do this to that object (Denied)

Errors are one line on standard error, starting with \"apikey: \".";

// The synopses of the contract, shown as usage by --help, in usage errors
// and in the man pages. Continuation lines are indented to line up after
// "Usage: ".
const USAGE_GENERATE: &str =
    "apikey generate [--name TEXT] [--expires never|7d|30d|90d|365d] [--services LIST]
                       [--hosts LIST] [--from CIDR,...] [--user USER]
                       [--netrc HOST [--netrc-login apikey]] [--json]";
const USAGE_SESSION: &str = "apikey session [--name TEXT] [--json]";
const USAGE_LIST: &str =
    "apikey list [--all | --user USER] [--sessions] [--expired] [--revoked] [--json]";
const USAGE_REVOKE: &str =
    "apikey revoke ID... | --all [--user USER | --site [--yes]] | --token [--json] < KEYFILE";
const USAGE_SCAN: &str = "apikey scan [--revoke] [--json] [PATH...]";
const USAGE_ROTATE: &str = "apikey rotate ID [--json]";
const USAGE_SHOW: &str = "apikey show ID [--json]";
const USAGE_BACKUP: &str = "apikey backup FILE";
const USAGE_SETTINGS: &str =
    "apikey settings [--allow-user-keys yes|no] [--expires never|7d|30d|90d|365d]
                       [--users-see-own yes|no] [--session-timeout DURATION]
                       [--require-from yes|no] [--revoke-unused never|30d|90d|365d] [--json]";
const USAGE_STATUS: &str = "apikey status [--json | --prometheus]";
const USAGE_VERIFY: &str = "apikey verify [--user USER] [--service NAME] < KEYFILE";
const USAGE: &str = "apikey COMMAND [OPTIONS]
       apikey generate [--name TEXT] [--expires never|7d|30d|90d|365d] [--services LIST]
                       [--hosts LIST] [--from CIDR,...] [--user USER]
                       [--netrc HOST [--netrc-login apikey]] [--json]
       apikey session [--name TEXT] [--json]
       apikey list [--all | --user USER] [--sessions] [--json]
       apikey revoke ID... | --all [--user USER | --site [--yes]] | --token [--json] < KEYFILE
       apikey scan [--revoke] [--json] [PATH...]
       apikey rotate ID [--json]
       apikey show ID [--json]
       apikey settings [--allow-user-keys yes|no] [--expires never|7d|30d|90d|365d]
                       [--users-see-own yes|no] [--session-timeout DURATION]
                       [--require-from yes|no] [--revoke-unused never|30d|90d|365d] [--json]
       apikey status [--json | --prometheus]
       apikey verify [--user USER] [--service NAME] < KEYFILE";

#[derive(Parser, Debug)]
#[command(
    name = "apikey",
    override_usage = USAGE,
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = EXIT_STATUS,
    subcommand_required = true,
    arg_required_else_help = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    Generate(GenerateArgs),
    Session(SessionArgs),
    List(ListArgs),
    Revoke(RevokeArgs),
    Rotate(RotateArgs),
    Show(ShowArgs),
    Settings(SettingsArgs),
    Status(StatusArgs),
    Verify(VerifyArgs),
    Backup(BackupArgs),
    Scan(ScanArgs),
}

/// Make a new long-lived API key and show it once
#[derive(Args, Debug)]
#[command(override_usage = USAGE_GENERATE,
    long_about = "\
Make a new long-lived API key and show it once.

The key is printed alone on one line on standard output, so that \
KEY=$(apikey generate) works; a note on standard error names the key's id \
and expiry. The key cannot be shown again: keep it, or revoke it and make \
another.

Only a user in a login session of their own may make a key: under su, sudo \
or runuser the daemon refuses (Impersonating), and so it does outside a \
login session (NotLoggedIn). Administrators make keys for other accounts, \
such as service accounts that never log in, with --user; that is recorded \
as such.",
    after_long_help = "\
Examples:
  KEY=$(apikey generate --name backup --expires 30d --services sshd)
  SSHPASS=$KEY sshpass -e ssh backup@host
  apikey generate --name ftp --netrc ftp.example.org
  sudo apikey generate --user svc-deploy --services 'nginx*'
    (from an administrator's own login session, e.g. sudo in an ssh login:
    a root shell from docker exec, su - or cron has none and gets
    NotLoggedIn)"
)]
pub struct GenerateArgs {
    /// A name to recognise the key by in listings
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,

    /// When the key expires: never, 7d, 30d, 90d or 365d. The site policy
    /// may impose a shorter expiry, never a longer one [default: the site
    /// policy]
    #[arg(long, value_name = "WHEN", hide_possible_values = true,
          value_parser = PossibleValuesParser::new(Expiry::CHOICES))]
    pub expires: Option<String>,

    /// Services the key may log in to: comma-separated PAM service names,
    /// or prefixes ending in '*' (e.g. sshd,nginx*), within those the site
    /// allows [default: every service the site allows]
    #[arg(long, value_name = "LIST", value_parser = parse_services)]
    pub services: Option<ServiceList>,

    /// Fleet mode: the hosts the key works on, comma-separated host names
    /// or globs of them as the daemons are registered (e.g. 'web-*,db-1')
    /// [default: every host of the fleet]
    #[arg(long, value_name = "LIST", value_parser = parse_hosts)]
    pub hosts: Option<HostList>,

    /// Only logins from these networks may use the key: comma-separated
    /// IPv4 or IPv6 addresses or networks in CIDR notation (e.g.
    /// '10.1.0.0/16,2001:db8::/32'). A login whose remote host is a name
    /// (sshd with UseDNS yes) or empty (a local login) never matches
    /// [default: from anywhere]
    #[arg(long, value_name = "CIDR,...", value_parser = parse_sources)]
    pub from: Option<SourceList>,

    /// Make the key for another account (administrators; still from a
    /// login session, sudo in your ssh login will do)
    #[arg(long, value_name = "USER", conflicts_with = "netrc")]
    pub user: Option<String>,

    /// Write the key into ~/.netrc as the entry for HOST (replacing an
    /// existing entry for HOST) instead of printing it. If the file cannot
    /// be written safely the new key is revoked.
    #[arg(long, value_name = "HOST", value_parser = parse_host)]
    pub netrc: Option<String>,

    /// With --netrc: "--netrc-login apikey" writes "login apikey" instead
    /// of the owner's user name (LabKey's form), for services whose PAM
    /// line maps that name to the key's owner (map_user)
    #[arg(
        long,
        value_name = "apikey",
        requires = "netrc",
        hide_possible_values = true
    )]
    pub netrc_login: Option<NetrcLogin>,

    /// Print the key and its details as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// The login name written into `.netrc` instead of the owner's name.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetrcLogin {
    /// LabKey's form: the service maps the name "apikey" to the key's owner
    Apikey,
}

/// Host patterns given with `--hosts`, already split and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostList(pub Vec<String>);

/// Networks given with `--from`, canonical and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceList(pub Vec<String>);

/// Checks `--from` here (the daemon checks again), so that a typo is a
/// usage error rather than a key no login can use.
pub fn parse_sources(text: &str) -> Result<SourceList, String> {
    apikey_proto::sources::parse_list(text)
        .map(SourceList)
        .map_err(|e| safe(&e, 200))
}

/// Service patterns given with `--services`, already split and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceList(pub Vec<String>);

/// Make a session key, bound to this login session
#[derive(Args, Debug)]
#[command(override_usage = USAGE_SESSION, long_about = "\
Make a session key, bound to this login session.

A session key ends when the login session ends, after the site's idle \
timeout, after a maximum lifetime, or when it is revoked. It is not shown \
by 'apikey list'.")]
pub struct SessionArgs {
    /// A name to recognise the key by
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,

    /// Print the key and its details as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// List API keys (never their secrets)
#[derive(Args, Debug)]
#[command(override_usage = USAGE_LIST, long_about = "\
List API keys: id, owner, name, services, when each was made, when it \
expires and when it was last used (service and remote host).

Without options, the caller's own keys (unless the site hides them from \
their owners). Administrators may list every key (--all) or one user's \
(--user). Keys past their expiry and revoked keys are left out unless \
--expired or --revoked asks for them (they are deleted after the site's \
retention). A SERVICES value of * means every service the site allows. Times \
are relative; --json gives exact UTC timestamps (RFC 3339). A key that \
expires within the site's warn_before (7 days by default) is marked \
\"(soon)\" (--json: expires_soon). The listing \
comes from the daemon a page at a time and is printed as it comes, in the \
order the keys were made.")]
pub struct ListArgs {
    /// Every key on the host (administrators)
    #[arg(long, conflicts_with = "user")]
    pub all: bool,

    /// The keys of USER (administrators)
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Include session keys (administrators)
    #[arg(long)]
    pub sessions: bool,

    /// Include keys past their expiry
    #[arg(long)]
    pub expired: bool,

    /// Include revoked keys
    #[arg(long)]
    pub revoked: bool,

    /// Print a JSON array
    #[arg(long)]
    pub json: bool,
}

/// Revoke keys: by id, all of yours, all of a user's, or every key on the host
#[derive(Args, Debug)]
#[command(override_usage = USAGE_REVOKE,
    group(ArgGroup::new("what").required(true).args(["ids", "all", "token"])),
    long_about = "\
Revoke keys. Revocation is effective for the very next login.

Give the ids of the keys to revoke (as 'apikey list' shows them), or --all \
for every key of yours. Owners can always revoke their own keys. \
Administrators revoke every key of one user with --all --user USER, and \
every key on the host with --all --site.

A key that leaked (pasted into a chat, committed, found in a log) can be \
revoked by anyone who has it, whoever owns it: --token reads the key from \
standard input, never from the command line. Holding the key is the proof. \
The revocation is logged with who made it; tokens that are no key are \
refused and slowed down as wrong keys at a login are.",
    after_long_help = "\
Examples:
  apikey revoke 3fZk9QpLm2Xa
  apikey revoke --all
  sudo apikey revoke --all --user alice
  sudo apikey revoke --all --site
  apikey revoke --token < leaked-key.txt"
)]
pub struct RevokeArgs {
    /// Ids of the keys to revoke
    #[arg(value_name = "ID", value_parser = parse_key_id, conflicts_with = "all")]
    pub ids: Vec<String>,

    /// Every key of yours (or of --user, or of the host with --site)
    #[arg(long)]
    pub all: bool,

    // clap waives `requires` when the required argument conflicts with one
    // that is present (here: ids), hence the explicit conflicts with ids.
    /// With --all: every key of USER (administrators)
    #[arg(long, value_name = "USER", requires = "all", conflicts_with_all = ["site", "ids"])]
    pub user: Option<String>,

    /// With --all: every key on the host (administrators). On a terminal
    /// it asks first, naming how many keys of how many users
    #[arg(long, requires = "all", conflicts_with = "ids")]
    pub site: bool,

    /// With --site: do not ask (scripts). Without a terminal on standard
    /// input, --site is refused unless --yes is given
    #[arg(long, requires = "site")]
    pub yes: bool,

    /// Revoke the key read from standard input, whoever owns it
    #[arg(long, conflicts_with_all = ["ids", "all"])]
    pub token: bool,

    /// With --token: print one JSON object
    #[arg(long, requires = "token", conflicts_with_all = ["ids", "all"])]
    pub json: bool,
}

/// Find API keys in files, and whether they still work
#[derive(Args, Debug)]
#[command(override_usage = USAGE_SCAN,
    long_about = "\
Find API keys in files: in text or inside binary files, anywhere in the \
directory trees given (default: your home directory). A key is recognised by \
its shape and its checksum, so a mistyped key or an example that merely \
looks like one is not reported. Each key found is reported with its file and \
line, its key id and whether it still works (asked of the daemon: active, \
expired, revoked, or unknown to this host); the key itself is never printed.

With --revoke, every active key found is revoked, whoever owns it (holding a \
key is the proof; see 'apikey revoke --token').

Symbolic links below the given paths are not followed, so the scan stays \
inside them and cannot loop; a path given here that is a link is followed. \
Devices, FIFOs and sockets are skipped in a tree and named when given. \
Files that cannot be read are named on standard error and do not change \
the exit status.

Exit status: 0 when no key was found, 1 when any was (so the command works \
as a pre-commit hook or a CI step), 69 when keys were found but the daemon \
could not be asked about them.",
    after_long_help = "\
Examples:
  apikey scan
  apikey scan --revoke ~/projects/site
  apikey scan --json /srv/deploy | jq '.found[].id'

As a git pre-commit hook (.git/hooks/pre-commit, executable), refusing a \
commit when a file it adds or changes holds a key:
  #!/bin/sh
  git diff --cached --name-only -z --diff-filter=ACM | xargs -0 -r apikey scan")]
pub struct ScanArgs {
    /// Files or directories to scan [default: your home directory]
    #[arg(value_name = "PATH")]
    pub paths: Vec<std::path::PathBuf>,

    /// Revoke every active key found
    #[arg(long)]
    pub revoke: bool,

    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

/// Replace a key with a new one of the same owner, name and services
#[derive(Args, Debug)]
#[command(override_usage = USAGE_ROTATE, long_about = "\
Replace a key with a new one of the same owner, name and services; the old \
key is revoked. The new key is printed alone on one line on standard \
output, like 'apikey generate' does, and cannot be shown again.")]
pub struct RotateArgs {
    /// Id of the key to replace
    #[arg(value_name = "ID", value_parser = parse_key_id)]
    pub id: String,

    /// Print the new key and its details as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// Show one key in full, with where it was used from
#[derive(Args, Debug)]
#[command(override_usage = USAGE_SHOW, long_about = "\
Show one key in full: its owner, name, services, the hosts and networks it \
is limited to, when it was made, when it expires and when it was last used, \
then its use history: the last 10 distinct (service, remote host) pairs it \
was used from, newest first, each with its first and last use (and in a \
fleet the host of the last). Uses reach the history within a minute. Your \
own keys (unless the site hides them from their owners); administrators, \
any key. Another user's key is 'no key with id ...' to anyone else. \
--json gives one object with exact UTC timestamps (RFC 3339) and the \
history as \"uses\".")]
pub struct ShowArgs {
    /// Id of the key, as `apikey list` shows it
    #[arg(value_name = "ID", value_parser = parse_key_id)]
    pub id: String,

    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

/// Write a consistent copy of the key store to a new file (administrators)
#[derive(Args, Debug)]
#[command(override_usage = USAGE_BACKUP, long_about = "\
Write a consistent copy of the key store to FILE, which must not exist yet, \
while the daemon goes on serving (administrators). The file is created \
mode 0600: it holds every key's hash and record (never a token), who made \
and revoked it, the registered login sessions and the site policy.

To restore: stop apikeyd, move the store's files away (/var/lib/apikey/keys.db \
and any keys.db-wal and keys.db-shm beside it), copy the backup to \
/var/lib/apikey/keys.db owned by apikeyd with mode 0600, and start apikeyd. \
Keys revoked after the backup was taken are active again in it: revoke them \
again after a restore.",
    after_long_help = "\
Examples:
  sudo apikey backup /root/apikey-$(date +%F).db")]
pub struct BackupArgs {
    /// Where to write the copy (a new file)
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,
}

/// Show or change the site policy
#[derive(Args, Debug)]
#[command(override_usage = USAGE_SETTINGS, long_about = "\
Show the site policy, or change it (administrators) and show the result.

Tightening the expiry also shortens existing keys: a key expires at the \
earlier of its own expiry and its creation plus the policy.

With --revoke-unused, long-lived keys that nobody used for that long (or, \
never used, since they were made) are revoked by the daemon with the reason \
'unused': it looks once an hour, and at every login with a key. With \
--require-from yes, every new long-lived key must name the networks it may \
be used from (apikey generate --from).")]
pub struct SettingsArgs {
    /// Let users create API keys: yes or no
    #[arg(long, value_name = "yes|no", hide_possible_values = true)]
    pub allow_user_keys: Option<YesNo>,

    /// Longest lifetime of a key: never, 7d, 30d, 90d or 365d
    #[arg(long, value_name = "WHEN", hide_possible_values = true,
          value_parser = PossibleValuesParser::new(Expiry::CHOICES))]
    pub expires: Option<String>,

    /// Let users see their own keys in 'apikey list': yes or no
    #[arg(long, value_name = "yes|no", hide_possible_values = true)]
    pub users_see_own: Option<YesNo>,

    /// Idle time after which a session key ends, e.g. 30m, 2h
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub session_timeout: Option<u64>,

    /// Every new key must name its networks (generate --from): yes or no
    #[arg(long, value_name = "yes|no", hide_possible_values = true)]
    pub require_from: Option<YesNo>,

    /// Revoke long-lived keys unused this long: never, 30d, 90d or 365d
    #[arg(long, value_name = "WHEN", hide_possible_values = true,
          value_parser = PossibleValuesParser::new(apikey_proto::extra::REVOKE_UNUSED_CHOICES))]
    pub revoke_unused: Option<String>,

    /// Print the policy as one JSON object
    #[arg(long)]
    pub json: bool,
}

impl SettingsArgs {
    /// True when any setting is to be changed.
    pub fn changes_anything(&self) -> bool {
        !self.changes().is_empty()
    }

    /// True when a setting only `SetSettingsWith` knows is to be changed.
    pub fn changes_beyond_settings(&self) -> bool {
        self.require_from.is_some() || self.revoke_unused.is_some()
    }

    /// Every change, by the name the daemon knows it by.
    pub fn changes(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![];
        let mut add = |name, value: Option<String>| {
            if let Some(v) = value {
                out.push((name, v));
            }
        };
        add(
            "allow_user_keys",
            self.allow_user_keys.map(|v| v.as_str().into()),
        );
        add("expires", self.expires.clone());
        add(
            "users_see_own",
            self.users_see_own.map(|v| v.as_str().into()),
        );
        add(
            "session_timeout",
            self.session_timeout
                .map(apikey_proto::duration::format_duration),
        );
        add("require_from", self.require_from.map(|v| v.as_str().into()));
        add("revoke_unused", self.revoke_unused.clone());
        out
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum YesNo {
    Yes,
    No,
}

impl YesNo {
    pub fn as_str(self) -> &'static str {
        match self {
            YesNo::Yes => "yes",
            YesNo::No => "no",
        }
    }
}

/// Show whether the daemon answers, who you are to it, and the policy
#[derive(Args, Debug)]
#[command(override_usage = USAGE_STATUS, long_about = "\
Show whether the apikey daemon answers and its version, who the caller is \
to it (user, administrator or not, verifier or not, in a login session or \
not, acting through su/sudo or not), how many of the caller's keys expire \
within the site's warn_before, and the site policy.

--prometheus prints instead what an operator alerts on, in Prometheus' \
text exposition format (administrators): verifications since the daemon \
started by service and outcome (apikey_verifications_total), active, \
session and soon-expiring keys, throttled sources, whether the store \
answers, its size and its last successful write. The daemon can also write \
the same every minute for node_exporter's textfile collector ([metrics] \
textfile in apikeyd.toml).")]
pub struct StatusArgs {
    /// Print one JSON object
    #[arg(long, conflicts_with = "prometheus")]
    pub json: bool,

    /// Print the daemon's metrics in Prometheus' text format
    /// (administrators)
    #[arg(long)]
    pub prometheus: bool,
}

/// Check a key read from standard input (verifiers)
#[derive(Args, Debug)]
#[command(override_usage = USAGE_VERIFY,
    long_about = "\
Check a key read from standard input, as a login would (verifiers: root \
and members of the site's verifier groups).

The key is read from standard input, never from the command line; one \
trailing newline is ignored. On a terminal it is not echoed. Prints the \
key's id and owner when the key is valid. Without --service (root only) it \
checks that the key is valid, not where it may be used.",
    after_long_help = "\
Examples:
  apikey verify --user alice --service sshd < key.txt
  printf '%s' \"$KEY\" | apikey verify --service nginx"
)]
pub struct VerifyArgs {
    /// The user the key must belong to [default: any owner]
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// The PAM service the key must be valid for
    #[arg(long, value_name = "NAME", value_parser = parse_service)]
    pub service: Option<String>,
}

/// Splits `--hosts` on commas and checks each pattern (the daemon checks
/// again), so that a typo is a usage error rather than a key that works
/// nowhere.
pub fn parse_hosts(text: &str) -> Result<HostList, String> {
    let mut patterns: Vec<String> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        if !apikey_proto::hosts::is_host_pattern(item) {
            return Err(format!(
                "'{}' {}",
                safe(item, 64),
                apikey_proto::hosts::HOST_PATTERN_RULE
            ));
        }
        if !patterns.iter().any(|p| p == item) {
            patterns.push(item.to_string());
        }
    }
    if patterns.is_empty() {
        return Err("give at least one host name or glob, e.g. web-* or db-1".to_string());
    }
    Ok(HostList(patterns))
}

/// Splits `--services` on commas and checks each pattern, so that a typo
/// is a usage error rather than a key with the wrong scope.
pub fn parse_services(text: &str) -> Result<ServiceList, String> {
    let mut patterns: Vec<String> = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        if !is_valid_pattern(item) {
            return Err(format!(
                "'{}' is not a service name or a prefix ending in '*'",
                safe(item, 64)
            ));
        }
        if !patterns.iter().any(|p| p == item) {
            patterns.push(item.to_string());
        }
    }
    if patterns.is_empty() {
        return Err("give at least one service, e.g. sshd or nginx*".to_string());
    }
    Ok(ServiceList(patterns))
}

fn parse_service(text: &str) -> Result<String, String> {
    if is_valid_service(text) {
        Ok(text.to_string())
    } else {
        Err(format!("'{}' is not a PAM service name", safe(text, 64)))
    }
}

pub fn parse_key_id(text: &str) -> Result<String, String> {
    if is_key_id(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "'{}' is not a key id (12 letters and digits, as 'apikey list' shows)",
            safe(text, 64)
        ))
    }
}

/// Longest DNS name; anything longer cannot be a host.
const MAX_HOST_LEN: usize = 253;

/// A `.netrc` machine name: one token that no `.netrc` reader can split
/// or read as a quoted string, an escape or a comment.
pub fn parse_host(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("the host name is empty".to_string());
    }
    if text.len() > MAX_HOST_LEN {
        return Err(format!("the host name is longer than {MAX_HOST_LEN} bytes"));
    }
    // ASCII only: host names in URLs reach .netrc readers in their
    // ASCII (punycode) form, and this keeps invisible characters out.
    if !text
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        || text.starts_with('#')
    {
        return Err(format!(
            "'{}' cannot be a .netrc host name (printable ASCII only: no spaces, control characters, quotes or backslashes)",
            safe(text, 64)
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("apikey").chain(args.iter().copied()))
    }

    fn usage_error(args: &[&str]) -> bool {
        match parse(args) {
            Ok(_) => false,
            Err(e) => e.exit_code() == 2,
        }
    }

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn generate_takes_every_option() {
        let cli = parse(&[
            "generate",
            "--name",
            "backup",
            "--expires",
            "30d",
            "--services",
            " sshd , nginx*,sshd",
            "--netrc",
            "example.org",
            "--netrc-login",
            "apikey",
            "--json",
        ])
        .unwrap();
        let Cmd::Generate(g) = cli.command else {
            panic!("not generate")
        };
        assert_eq!(g.name.as_deref(), Some("backup"));
        assert_eq!(g.expires.as_deref(), Some("30d"));
        assert_eq!(
            g.services,
            Some(ServiceList(vec!["sshd".into(), "nginx*".into()]))
        );
        assert_eq!(g.netrc.as_deref(), Some("example.org"));
        assert_eq!(g.netrc_login, Some(NetrcLogin::Apikey));
        assert!(g.json);
    }

    #[test]
    fn generate_usage_errors() {
        assert!(usage_error(&["generate", "--user", "bob", "--netrc", "h"]));
        assert!(usage_error(&["generate", "--netrc-login", "apikey"]));
        assert!(usage_error(&[
            "generate",
            "--netrc",
            "h",
            "--netrc-login",
            "bob"
        ]));
        assert!(usage_error(&["generate", "--expires", "8d"]));
        assert!(usage_error(&["generate", "--services", "su do"]));
        assert!(usage_error(&["generate", "--services", ","]));
        assert!(usage_error(&["generate", "--services", "*"]));
        assert!(usage_error(&["generate", "--netrc", "a b"]));
        assert!(usage_error(&["generate", "--netrc", ""]));
        assert!(usage_error(&["generate", "apikey|x"]));
    }

    #[test]
    fn revoke_needs_ids_or_all() {
        let id = "3fZk9QpLm2Xa";
        assert!(usage_error(&["revoke"]));
        assert!(usage_error(&["revoke", id, "--all"]));
        assert!(usage_error(&["revoke", "--user", "bob"]));
        assert!(usage_error(&["revoke", "--site"]));
        assert!(usage_error(&["revoke", "--all", "--site", "--user", "bob"]));
        assert!(usage_error(&["revoke", "not-an-id"]));
        assert!(usage_error(&["revoke", id, "--user", "bob"]));
        assert!(usage_error(&["revoke", id, "--site"]));

        let Cmd::Revoke(r) = parse(&["revoke", id, "AAAAAAAAAAAA"]).unwrap().command else {
            panic!()
        };
        assert_eq!(r.ids, vec![id.to_string(), "AAAAAAAAAAAA".to_string()]);
        assert!(!r.all);

        let Cmd::Revoke(r) = parse(&["revoke", "--all", "--user", "bob"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert!(r.all && r.user.as_deref() == Some("bob") && !r.site);

        let Cmd::Revoke(r) = parse(&["revoke", "--all", "--site"]).unwrap().command else {
            panic!()
        };
        assert!(r.all && r.site);
    }

    #[test]
    fn list_all_and_user_conflict() {
        assert!(usage_error(&["list", "--all", "--user", "bob"]));
        assert!(parse(&["list", "--all", "--sessions", "--json"]).is_ok());
    }

    #[test]
    fn settings_values() {
        let Cmd::Settings(s) = parse(&[
            "settings",
            "--allow-user-keys",
            "yes",
            "--session-timeout",
            "2h",
        ])
        .unwrap()
        .command
        else {
            panic!()
        };
        assert_eq!(s.allow_user_keys, Some(YesNo::Yes));
        assert_eq!(s.session_timeout, Some(7200));
        assert!(s.changes_anything());
        assert!(usage_error(&["settings", "--users-see-own", "maybe"]));
        assert!(usage_error(&["settings", "--session-timeout", "30"]));
    }

    #[test]
    fn verify_takes_no_token_argument() {
        assert!(usage_error(&["verify", "apikey_abc"]));
        assert!(usage_error(&["verify", "--service", "bad name"]));
        assert!(parse(&["verify", "--user", "alice", "--service", "sshd"]).is_ok());
    }

    #[test]
    fn no_subcommand_is_usage() {
        assert!(usage_error(&[]));
        assert!(usage_error(&["frobnicate"]));
    }

    #[test]
    fn host_names() {
        assert!(parse_host("example.org").is_ok());
        assert!(parse_host(&"a".repeat(253)).is_ok());
        assert!(parse_host(&"a".repeat(254)).is_err());
        for bad in ["", "a\tb", "a\u{1b}b", "\"x\"", "a\\b", "#x", "a\u{2028}b"] {
            assert!(parse_host(bad).is_err(), "{bad:?}");
        }
    }
}
