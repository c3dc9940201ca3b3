//! The MD5 password response: `"md5" + md5hex(md5hex(password + user) + salt)`.

use md5::{Digest, Md5};

/// The response to AuthenticationMD5Password, without its NUL terminator.
pub fn md5_password(user: &[u8], password: &[u8], salt: [u8; 4]) -> Vec<u8> {
    let mut inner = Md5::new();
    inner.update(password);
    inner.update(user);
    let inner_hex = hex(&inner.finalize());
    let mut outer = Md5::new();
    outer.update(inner_hex.as_bytes());
    outer.update(salt);
    format!("md5{}", hex(&outer.finalize())).into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected value was computed outside this crate, with Python's
    /// hashlib: `"md5" + md5(md5(b"secret" + b"alice").hexdigest() + bytes([1, 2, 3, 4])).hexdigest()`.
    #[test]
    fn matches_the_servers_formula() {
        let got = md5_password(b"alice", b"secret", [1, 2, 3, 4]);
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "md598a0412b9c31436fc53776e863350083"
        );
        // Salt-dependent.
        assert_ne!(
            md5_password(b"alice", b"secret", [1, 2, 3, 4]),
            md5_password(b"alice", b"secret", [1, 2, 3, 5])
        );
    }
}
