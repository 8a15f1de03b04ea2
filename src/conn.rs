//! Building redis clients: for the Sentinels and for the data nodes, each
//! with its own AUTH and TLS settings. It builds; it does not connect.

use anyhow::{Context, Result};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use crate::config::TlsConfig;

/// How to log in to one kind of server.
#[derive(Clone, Copy, Debug)]
pub struct Auth<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    /// Present: speak TLS (system roots without a CA file).
    pub tls: Option<&'a TlsConfig>,
    /// Names the config keys in errors (`sentinel_tls`, `redis_tls`).
    pub what: &'static str,
}

/// A client for `host:port` with `auth`.
pub fn client(host: &str, port: u16, auth: &Auth) -> Result<redis::Client> {
    let addr = match auth.tls {
        Some(_) => ConnectionAddr::TcpTls {
            host: host.to_string(),
            port,
            insecure: false,
            tls_params: None,
        },
        None => ConnectionAddr::Tcp(host.to_string(), port),
    };
    let mut redis_info = RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some(p) = auth.password {
        redis_info = redis_info.set_password(p);
    }
    if let Some(u) = auth.username {
        redis_info = redis_info.set_username(u);
    }
    let info = addr.into_connection_info()?.set_redis_settings(redis_info);
    let Some(tls) = auth.tls else {
        return Ok(redis::Client::open(info)?);
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).with_context(|| format!("{}: {}", auth.what, p.display()))
    };
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
            client_cert: read(c)?,
            client_key: read(k)?,
        }),
        _ => None,
    };
    let root_cert = tls.ca_file.as_deref().map(read).transpose()?;
    Ok(redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )?)
}
