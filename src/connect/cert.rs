//! Checks for a server certificate that is itself a configured root: its
//! validity dates (read from the DER, which WebPKI does not expose) and host
//! name.

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, Error as TlsError};

/// Checks a server certificate that is byte-identical to a trusted root: it
/// must be within its validity dates at `now` and, when `name` is given,
/// valid for that name.
///
/// # Errors
/// `InvalidCertificate`: `BadEncoding` if the dates cannot be read,
/// `ExpiredContext` / `NotValidYetContext`, or `NotValidForName`.
pub(super) fn verify_pinned_root(
    cert: &CertificateDer<'_>,
    name: Option<&ServerName<'_>>,
    now: UnixTime,
) -> Result<(), TlsError> {
    let invalid = TlsError::InvalidCertificate;
    let (not_before, not_after) =
        validity(cert.as_ref()).ok_or(invalid(CertificateError::BadEncoding))?;
    let time = now.as_secs();
    if time < not_before {
        return Err(invalid(CertificateError::NotValidYetContext {
            time: now,
            not_before: UnixTime::since_unix_epoch(std::time::Duration::from_secs(not_before)),
        }));
    }
    if time > not_after {
        return Err(invalid(CertificateError::ExpiredContext {
            time: now,
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(not_after)),
        }));
    }
    if let Some(name) = name {
        let parsed = webpki::EndEntityCert::try_from(cert)
            .map_err(|_| invalid(CertificateError::BadEncoding))?;
        parsed
            .verify_is_valid_for_subject_name(name)
            .map_err(|_| invalid(CertificateError::NotValidForName))?;
    }
    Ok(())
}

/// `(notBefore, notAfter)` in seconds since the Unix epoch, from
/// `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
/// serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter }, … } … }`.
fn validity(der: &[u8]) -> Option<(u64, u64)> {
    let (tag, cert, _) = tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, mut tbs, _) = tlv(cert)?;
    if tag != 0x30 {
        return None;
    }
    // Skip the optional version ([0]), then serial, signature and issuer.
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    for _ in 0..3 {
        tbs = tlv(tbs)?.2;
    }
    let (tag, validity, _) = tlv(tbs)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, before, rest) = tlv(validity)?;
    let not_before = time(tag, before)?;
    let (tag, after, _) = tlv(rest)?;
    Some((not_before, time(tag, after)?))
}

/// One DER element: (tag, contents, what follows). Single-byte tags only.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        (
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
            rest,
        )
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

/// UTCTime (`YYMMDDHHMMSSZ`, 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`,
/// 0x18), the two forms RFC 5280 allows, as seconds since the epoch.
fn time(tag: u8, text: &[u8]) -> Option<u64> {
    let digits = text.strip_suffix(b"Z")?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |range: std::ops::Range<usize>| {
        digits
            .get(range)?
            .iter()
            .try_fold(0u64, |acc, &d| Some(acc * 10 + u64::from(d - b'0')))
    };
    let (year, rest) = match (tag, digits.len()) {
        // RFC 5280: two-digit years 50–99 are 19xx, 00–49 are 20xx.
        (0x17, 12) => {
            let yy = num(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (0x18, 14) => (num(0..4)?, 4),
        _ => return None,
    };
    let month = num(rest..rest + 2)?;
    let day = num(rest + 2..rest + 4)?;
    let hour = num(rest + 4..rest + 6)?;
    let minute = num(rest + 6..rest + 8)?;
    let second = num(rest + 8..rest + 10)?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day)?;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (on or after 1970).
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_and_both_time_forms() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        // 2049-12-31T23:59:59Z as UTCTime and as GeneralizedTime.
        assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(time(0x18, b"20491231235959Z"), Some(2_524_607_999));
        // 1975 as UTCTime (the 19xx half).
        assert_eq!(time(0x17, b"750101000000Z"), Some(157_766_400));
        assert_eq!(time(0x17, b"7501010000Z"), None);
        assert_eq!(time(0x17, b"751301000000Z"), None);
    }
}
