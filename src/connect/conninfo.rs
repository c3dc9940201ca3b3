//! Connection strings: libpq URLs (`postgresql://…`) and `key=value` lists,
//! turned into (key, value) pairs for [`Config::set`].

use super::config::Config;
use crate::error::Error;

/// `postgresql://[user[:password]@][host[:port][,...]][/dbname][?key=value&...]`
pub(super) fn parse_url(rest: &str, config: &mut Config) -> Result<(), Error> {
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    // As libpq: the user information ends at the first `@` (one in a
    // password must be percent-encoded).
    let (userinfo, hostlist) = match authority.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = userinfo
            .split_once(':')
            .map_or((userinfo, None), |(u, p)| (u, Some(p)));
        if !user.is_empty() {
            config.user = Some(percent_decode(user, "user")?);
        }
        if let Some(p) = password {
            config.password = Some(percent_decode(p, "password")?);
        }
    }
    if !hostlist.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for spec in hostlist.split(',') {
            let (host, port) = split_host_port(spec)?;
            hosts.push(percent_decode(host, "host")?);
            ports.push(port);
        }
        config.hosts = hosts;
        if ports.iter().any(Option::is_some) {
            config.ports = ports.into_iter().map(|p| p.unwrap_or(5432)).collect();
        }
    }
    if !path.is_empty() {
        config.dbname = Some(percent_decode(path, "dbname")?);
    }
    let pairs: Vec<&str> = query.split('&').collect();
    for (i, pair) in pairs.iter().enumerate() {
        // A trailing `&` is allowed; an empty parameter elsewhere is not.
        if pair.is_empty() && i + 1 == pairs.len() {
            continue;
        }
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            Error::config(format!(
                "missing key/value separator \"=\" in URI query parameter: {pair:?}"
            ))
        })?;
        if v.contains('=') {
            return Err(Error::config(format!(
                "extra key/value separator \"=\" in URI query parameter: {pair:?}"
            )));
        }
        let key = percent_decode(k, "URL parameter name")?;
        let value = percent_decode(v, &key)?;
        // libpq accepts `ssl=true` in URLs as sslmode=require.
        if key == "ssl" && value == "true" {
            config.set("sslmode", "require")?;
        } else {
            config.set(&key, &value)?;
        }
    }
    Ok(())
}

fn split_host_port(spec: &str) -> Result<(&str, Option<u16>), Error> {
    let bad_port = |p: &str| Error::config(format!("invalid port {p:?} in URL host {spec:?}"));
    if let Some(v6) = spec.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or_else(|| {
            Error::config(format!("unterminated IPv6 address in URL host {spec:?}"))
        })?;
        if addr.is_empty() {
            return Err(Error::config(format!(
                "IPv6 host address may not be empty in URL host {spec:?}"
            )));
        }
        return match after.strip_prefix(':') {
            Some(p) => Ok((addr, Some(p.parse().map_err(|_| bad_port(p))?))),
            None if after.is_empty() => Ok((addr, None)),
            None => Err(Error::config(format!(
                "unexpected {after:?} after IPv6 address in {spec:?}"
            ))),
        };
    }
    match spec.rsplit_once(':') {
        Some((h, "")) => Ok((h, None)),
        Some((h, p)) => Ok((h, Some(p.parse().map_err(|_| bad_port(p))?))),
        None => Ok((spec, None)),
    }
}

/// libpq's URI decoding: `%` and two hex digits; `%00` is refused, and
/// (PostgreSQL 17+) spaces around a component are dropped while a raw space
/// inside one is refused.
fn percent_decode(s: &str, what: &str) -> Result<String, Error> {
    let trimmed = s.trim_matches(' ');
    if trimmed.contains(' ') {
        return Err(Error::config(format!(
            "unexpected spaces found in {what} {s:?}, use percent-encoded spaces (%20) instead"
        )));
    }
    let bytes = trimmed.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = trimmed
                .get(i + 1..i + 3)
                .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let byte = hex.ok_or_else(|| {
                Error::config(format!("invalid percent-encoded token in {what}: {s:?}"))
            })?;
            if byte == 0 {
                return Err(Error::config(format!(
                    "forbidden value %00 in percent-encoded {what}: {s:?}"
                )));
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        Error::config(format!(
            "{what} is not valid UTF-8 after percent-decoding: {s:?}"
        ))
    })
}

/// `key = value` pairs; values may be single-quoted with `\'` and `\\` escapes.
pub(super) fn parse_keywords(s: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
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
            return Err(Error::config(format!(
                "missing \"=\" after {key:?} in connection string"
            )));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.push(chars.next().unwrap_or('\\')),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(Error::config(format!(
                            "unterminated quoted value for {key:?}"
                        )));
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(chars.next().unwrap_or('\\'));
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}
