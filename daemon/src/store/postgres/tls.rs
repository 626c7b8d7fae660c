//! TLS to the fleet database as libpq's `sslmode` means it, through the
//! system's OpenSSL: `verify-full` checks the chain and the host name,
//! `verify-ca` the chain only, `require` and `prefer` encrypt without
//! checking (as libpq does when no root certificate is given; with one,
//! `require` checks the chain like `verify-ca`).

use super::conninfo::{SslMode, Tls};
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use std::future::Future;
use std::pin::Pin;
use tokio_postgres::{Client, Config, NoTls};

pub type Driver = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

#[derive(Clone)]
pub enum Connector {
    Plain,
    OpenSsl(MakeTlsConnector),
}

pub fn postgres_mode(mode: SslMode) -> tokio_postgres::config::SslMode {
    use tokio_postgres::config::SslMode as Pg;
    match mode {
        SslMode::Disable => Pg::Disable,
        SslMode::Prefer => Pg::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
    }
}

/// What a mode checks of the server's certificate: (chain, host name).
pub fn checks(tls: &Tls) -> (bool, bool) {
    match tls.mode {
        SslMode::Disable | SslMode::Prefer => (false, false),
        SslMode::Require => (tls.root_cert.is_some(), false),
        SslMode::VerifyCa => (true, false),
        SslMode::VerifyFull => (true, true),
    }
}

impl Connector {
    pub fn new(tls: &Tls) -> Result<Connector, String> {
        if tls.mode == SslMode::Disable {
            return Ok(Connector::Plain);
        }
        let fail = |what: &str, e: openssl::error::ErrorStack| format!("TLS: {what}: {e}");
        let mut builder =
            SslConnector::builder(SslMethod::tls_client()).map_err(|e| fail("setup", e))?;
        let (chain, name) = checks(tls);
        if let Some(ca) = &tls.root_cert {
            builder
                .set_ca_file(ca)
                .map_err(|e| fail(&format!("cannot read sslrootcert {}", ca.display()), e))?;
        }
        builder.set_verify(match chain {
            true => SslVerifyMode::PEER,
            false => SslVerifyMode::NONE,
        });
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            builder
                .set_certificate_chain_file(cert)
                .map_err(|e| fail(&format!("cannot read sslcert {}", cert.display()), e))?;
            builder
                .set_private_key_file(key, SslFiletype::PEM)
                .map_err(|e| fail(&format!("cannot read sslkey {}", key.display()), e))?;
        }
        let mut connector = MakeTlsConnector::new(builder.build());
        connector.set_callback(move |config, _| {
            config.set_verify_hostname(name);
            Ok(())
        });
        Ok(Connector::OpenSsl(connector))
    }

    pub async fn connect(
        &self,
        config: &Config,
    ) -> Result<(Client, Driver), tokio_postgres::Error> {
        // The driver's error ends the connection; the next call sees the
        // client closed and connects again.
        Ok(match self {
            Connector::Plain => {
                let (client, conn) = config.connect(NoTls).await?;
                (client, Box::pin(async move { drop(conn.await) }))
            }
            Connector::OpenSsl(tls) => {
                let (client, conn) = config.connect(tls.clone()).await?;
                (client, Box::pin(async move { drop(conn.await) }))
            }
        })
    }
}

impl Connector {
    /// A connection whose notifications (LISTEN) come on the receiver;
    /// it ends, and the receiver with it, when the connection breaks.
    pub async fn connect_listening(
        &self,
        config: &Config,
    ) -> Result<
        (
            Client,
            tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
            Driver,
        ),
        tokio_postgres::Error,
    > {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(match self {
            Connector::Plain => {
                let (client, conn) = config.connect(NoTls).await?;
                (client, rx, forward(conn, tx))
            }
            Connector::OpenSsl(tls) => {
                let (client, conn) = config.connect(tls.clone()).await?;
                (client, rx, forward(conn, tx))
            }
        })
    }
}

/// Drives a connection, passing its notifications on.
fn forward<S, T>(
    mut conn: tokio_postgres::Connection<S, T>,
    tx: tokio::sync::mpsc::UnboundedSender<tokio_postgres::Notification>,
) -> Driver
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message {
                if tx.send(n).is_err() {
                    return;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(mode: SslMode, root: bool) -> Tls {
        Tls {
            mode,
            root_cert: root.then(|| "/etc/ssl/certs/ca-certificates.crt".into()),
            cert: None,
            key: None,
        }
    }

    #[test]
    fn each_mode_checks_what_libpq_checks() {
        assert_eq!(checks(&tls(SslMode::Prefer, false)), (false, false));
        assert_eq!(checks(&tls(SslMode::Require, false)), (false, false));
        assert_eq!(checks(&tls(SslMode::Require, true)), (true, false));
        assert_eq!(checks(&tls(SslMode::VerifyCa, false)), (true, false));
        assert_eq!(checks(&tls(SslMode::VerifyFull, true)), (true, true));
        use tokio_postgres::config::SslMode as Pg;
        assert_eq!(postgres_mode(SslMode::Disable), Pg::Disable);
        assert_eq!(postgres_mode(SslMode::Prefer), Pg::Prefer);
        assert_eq!(postgres_mode(SslMode::VerifyFull), Pg::Require);
    }

    #[test]
    fn unreadable_certificates_are_named() {
        let mut t = tls(SslMode::VerifyFull, false);
        t.root_cert = Some("/nonexistent/ca.pem".into());
        let Err(e) = Connector::new(&t) else {
            panic!("a missing CA file was accepted")
        };
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
