//! `requirepeer`: the operating-system user the server process must run as,
//! for Unix-socket connections (libpq's semantics; ignored over TCP).

use crate::error::Error;
use crate::transport::UnixTransport;

/// Refuses the connection unless the process at the other end of `socket`
/// runs as the user `want`. Nothing has been sent on the socket yet.
///
/// # Errors
/// Kind `Auth`: the peer runs as another user, or its user cannot be
/// determined.
pub(super) fn check(socket: &UnixTransport, want: &str) -> Result<(), Error> {
    let uid = match socket.peer_uid() {
        Ok(uid) => uid,
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => {
            return Err(Error::auth(
                "requirepeer parameter is not supported on this platform",
            ));
        }
        Err(e) => return Err(Error::auth(format!("could not get peer credentials: {e}"))),
    };
    let actual = user_name(uid)?;
    if actual != want {
        return Err(Error::auth(format!(
            "requirepeer specifies {want:?}, but actual peer user name is {actual:?}"
        )));
    }
    Ok(())
}

/// The name of local user `uid` (getpwuid_r).
fn user_name(uid: u32) -> Result<String, Error> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids);
        // getpwuid_r fills it in.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `pwd`, `buf` (with its true length) and `found` are valid
        // for writes for the whole call, as getpwuid_r requires.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &raw mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &raw mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 {
            return Err(Error::auth(format!(
                "could not look up local user ID {uid}: {}",
                std::io::Error::from_raw_os_error(rc)
            )));
        }
        if found.is_null() || pwd.pw_name.is_null() {
            return Err(Error::auth(format!(
                "local user with ID {uid} does not exist"
            )));
        }
        // SAFETY: on success `pw_name` points to a NUL-terminated string in
        // `buf`, which is still alive.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return Ok(name.to_string_lossy().into_owned());
    }
}
