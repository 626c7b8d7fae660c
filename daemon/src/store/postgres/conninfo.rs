//! The `[fleet] database` string: a libpq-style URL or key=value list.
//! tokio-postgres reads most of it; libpq's TLS verification options
//! (`sslmode=verify-ca|verify-full`, `sslrootcert`, `sslcert`, `sslkey`) it
//! does not know, so they are taken out here and given to OpenSSL, and a
//! password is refused: the file holding the string is world-readable, the
//! password belongs in `password_file`.

use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub mode: SslMode,
    /// CA certificates the server's chain must end in; the system's when
    /// not given.
    pub root_cert: Option<PathBuf>,
    /// A client certificate and its key, for `cert` authentication.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The string without the options above, for tokio-postgres.
    pub rest: String,
    pub tls: Tls,
}

/// Which of libpq's two forms the string was written in.
enum Form {
    /// The URL up to its query.
    Url(String),
    Keywords,
}

impl Form {
    /// The string again, with only the options `kept`.
    fn rebuild(&self, kept: &[(String, String)]) -> String {
        match self {
            Form::Url(prefix) if kept.is_empty() => prefix.clone(),
            Form::Url(prefix) => {
                let query: Vec<String> = kept
                    .iter()
                    .map(|(k, v)| format!("{k}={}", percent_encode(v)))
                    .collect();
                format!("{prefix}?{}", query.join("&"))
            }
            Form::Keywords => kept
                .iter()
                .map(|(k, v)| format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

pub fn parse(text: &str) -> Result<ConnInfo, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty; give a postgresql:// URL or host=... dbname=...".into());
    }
    let (form, pairs) = match text
        .strip_prefix("postgresql://")
        .or_else(|| text.strip_prefix("postgres://"))
    {
        Some(after) => {
            let (base, query) = after.split_once('?').unwrap_or((after, ""));
            let authority = base.split('/').next().unwrap_or("");
            if let Some((userinfo, _)) = authority.rsplit_once('@') {
                if userinfo.contains(':') {
                    return Err(password_refusal());
                }
            }
            (Form::Url(format!("postgresql://{base}")), url_pairs(query)?)
        }
        None => (Form::Keywords, keyword_pairs(text)?),
    };
    let mut tls = Tls {
        mode: SslMode::Prefer,
        root_cert: None,
        cert: None,
        key: None,
    };
    let mut kept = Vec::new();
    for (k, v) in pairs {
        match k.as_str() {
            "password" => return Err(password_refusal()),
            "sslmode" => tls.mode = ssl_mode(&v)?,
            "sslrootcert" => tls.root_cert = Some(absolute(&k, &v)?),
            "sslcert" => tls.cert = Some(absolute(&k, &v)?),
            "sslkey" => tls.key = Some(absolute(&k, &v)?),
            _ => kept.push((k, v)),
        }
    }
    if tls.cert.is_some() != tls.key.is_some() {
        return Err("sslcert and sslkey go together".into());
    }
    if tls.mode == SslMode::Disable && (tls.root_cert.is_some() || tls.cert.is_some()) {
        return Err("sslmode=disable with certificates: choose one".into());
    }
    let rest = form.rebuild(&kept);
    rest.parse::<tokio_postgres::Config>()
        .map_err(|e| format!("cannot be read: {e}"))?;
    Ok(ConnInfo { rest, tls })
}

fn password_refusal() -> String {
    "holds a password; put it in password_file, which only the daemon can read \
     (this file is readable by everyone)"
        .into()
}

fn ssl_mode(v: &str) -> Result<SslMode, String> {
    Ok(match v {
        "disable" => SslMode::Disable,
        "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-ca" => SslMode::VerifyCa,
        "verify-full" => SslMode::VerifyFull,
        // allow: plain text first, which this daemon never wants to try.
        _ => {
            return Err(format!(
                "sslmode={v}: use disable, prefer, require, verify-ca or verify-full"
            ))
        }
    })
}

fn absolute(key: &str, v: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(v);
    match p.is_absolute() {
        true => Ok(p),
        false => Err(format!("{key} must be an absolute path")),
    }
}

/// libpq's key=value syntax: values plain up to white space, or in single
/// quotes; a backslash takes the next character as it is in both.
fn keyword_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("'{key}' has no '=' and value"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(format!("the value of {key} has no closing quote")),
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                match c {
                    '\\' => value.extend(chars.next()),
                    c => value.push(c),
                }
            }
        }
        out.push((key, value));
    }
}

fn url_pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("'{p}' in the URL has no '=' and value"))?;
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("'{s}' has a bad %-escape"))?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{s}' is not UTF-8"))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_are_taken_out_of_keyword_strings() {
        let c = parse(
            "host=db1,db2 port=5432 dbname=apikey user=apikeyd_web1 \
             sslmode=verify-full sslrootcert=/etc/apikey/ca.pem target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(c.tls.mode, SslMode::VerifyFull);
        assert_eq!(c.tls.root_cert, Some(PathBuf::from("/etc/apikey/ca.pem")));
        assert_eq!(
            c.rest,
            "host='db1,db2' port='5432' dbname='apikey' user='apikeyd_web1' \
             target_session_attrs='read-write'"
        );
        let pg: tokio_postgres::Config = c.rest.parse().unwrap();
        assert_eq!(pg.get_user(), Some("apikeyd_web1"));
        assert_eq!(pg.get_hosts().len(), 2);
    }

    #[test]
    fn tls_options_are_taken_out_of_urls() {
        let c = parse(
            "postgresql://apikeyd_web1@db1:5432,db2/apikey?sslmode=verify-ca&\
             sslrootcert=%2Fetc%2Fapikey%2Fca.pem&sslcert=/etc/apikey/c.pem&sslkey=/etc/apikey/c.key\
             &connect_timeout=2",
        )
        .unwrap();
        assert_eq!(c.tls.mode, SslMode::VerifyCa);
        assert_eq!(c.tls.root_cert, Some(PathBuf::from("/etc/apikey/ca.pem")));
        assert_eq!(c.tls.cert, Some(PathBuf::from("/etc/apikey/c.pem")));
        assert_eq!(c.tls.key, Some(PathBuf::from("/etc/apikey/c.key")));
        assert_eq!(
            c.rest,
            "postgresql://apikeyd_web1@db1:5432,db2/apikey?connect_timeout=2"
        );
        let pg: tokio_postgres::Config = c.rest.parse().unwrap();
        assert_eq!(pg.get_dbname(), Some("apikey"));
        assert_eq!(parse("postgres://h/db").unwrap().tls.mode, SslMode::Prefer);
    }

    #[test]
    fn quoted_values_and_escapes_are_read_as_libpq_reads_them() {
        let c = parse(r"host = 'a b' application_name='it\'s' dbname=x\ y").unwrap();
        assert_eq!(
            keyword_pairs(r"host = 'a b' application_name='it\'s' dbname=x\ y").unwrap(),
            vec![
                ("host".into(), "a b".into()),
                ("application_name".into(), "it's".into()),
                ("dbname".into(), "x y".into()),
            ]
        );
        let pg: tokio_postgres::Config = c.rest.parse().unwrap();
        assert_eq!(pg.get_dbname(), Some("x y"));
        assert_eq!(pg.get_application_name(), Some("it's"));
    }

    #[test]
    fn passwords_and_nonsense_are_refused_with_the_reason() {
        for (text, words) in [
            ("host=db password=secret", "password_file"),
            ("postgresql://u:secret@db/apikey", "password_file"),
            ("postgresql://db/apikey?password=secret", "password_file"),
            ("", "empty"),
            ("host=db sslmode=allow", "sslmode=allow"),
            ("host=db sslrootcert=ca.pem", "absolute"),
            ("host=db sslcert=/c.pem", "together"),
            ("host=db sslmode=disable sslrootcert=/ca.pem", "choose one"),
            ("host='db", "closing quote"),
            ("host", "no '='"),
            ("host=db colour=blue", "cannot be read"),
            ("postgresql://db/x?sslrootcert=%zz", "escape"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(words), "{text}: {e}");
        }
    }
}
