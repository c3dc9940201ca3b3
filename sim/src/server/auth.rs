//! The simulated server's authentication: cleartext, MD5 and SCRAM-SHA-256(-PLUS),
//! written from RFC 5802/7677 and the protocol documentation with the
//! simulator's own code, and able to misbehave on cue the way a real server
//! (or a man in the middle) could.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};

use super::encode::{authentication, error_response};
use super::pg::{Log, read_message, send};

/// The simulated user's password.
pub const PASSWORD: &str = "sim secret";
const USER: &str = "sim";
const MD5_SALT: [u8; 4] = [0x5a, 0x17, 0x00, 0xff];
const SCRAM_SALT: &[u8] = b"simulated salt..";
const ITERATIONS: u32 = 4096;
const SERVER_NONCE: &str = "c2ltdWxhdGVkIHNlcnZlcg";

/// How the server asks the client to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No password: AuthenticationOk at once.
    Trust,
    /// AuthenticationCleartextPassword.
    Cleartext,
    /// AuthenticationMD5Password.
    Md5,
    /// SCRAM-SHA-256, and -PLUS as well over TLS; `Twist` departs from the
    /// standard exchange.
    Scram(Twist),
}

/// A SCRAM server that does not do what it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Twist {
    /// The standard exchange.
    None,
    /// AuthenticationOk without SASLFinal: the server never proves it knows
    /// the password.
    OkWithoutFinal,
    /// A server signature that does not verify.
    BadSignature,
    /// SASLFinal straight after the client's first message, skipping the
    /// challenge.
    FinalFirst,
    /// A second SASLContinue where SASLFinal belongs.
    ContinueTwice,
}

/// Runs the exchange `auth` asks for. `Ok(true)`: the client proved the
/// password (send AuthenticationOk next); `Ok(false)`: the client failed or
/// left, and an ErrorResponse was sent where one is due.
pub(crate) async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    auth: Auth,
    tls: bool,
    log: &Arc<Mutex<Log>>,
) -> std::io::Result<bool> {
    let ok = match auth {
        Auth::Trust => return Ok(true),
        Auth::Cleartext => {
            let Some(body) = ask(s, 3, &[], log).await? else {
                return Ok(false);
            };
            body.strip_suffix(b"\0") == Some(PASSWORD.as_bytes())
        }
        Auth::Md5 => {
            let Some(body) = ask(s, 5, &MD5_SALT, log).await? else {
                return Ok(false);
            };
            body.strip_suffix(b"\0") == Some(md5_response().as_bytes())
        }
        Auth::Scram(twist) => match scram(s, twist, tls, log).await? {
            Some(ok) => ok,
            None => return Ok(false),
        },
    };
    if !ok {
        fatal(
            s,
            "28P01",
            &format!("password authentication failed for user \"{USER}\""),
        )
        .await?;
    }
    Ok(ok)
}

/// Sends AuthenticationRequest `code` and returns the client's
/// PasswordMessage/SASL body, `None` if it sent something else or left.
async fn ask<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    code: i32,
    data: &[u8],
    log: &Arc<Mutex<Log>>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    authentication(&mut out, code, data);
    send(s, &out).await?;
    let Some((tag, body)) = read_message(s).await? else {
        return Ok(None);
    };
    let mut l = log.lock().unwrap();
    l.tags.push(tag);
    if tag != b'p' {
        return Ok(None);
    }
    l.password_messages += 1;
    Ok(Some(body))
}

async fn fatal<S: AsyncWrite + Unpin>(s: &mut S, code: &str, message: &str) -> std::io::Result<()> {
    let mut out = Vec::new();
    error_response(&mut out, "FATAL", code, message);
    send(s, &out).await
}

fn md5_response() -> String {
    let inner = hex(&Md5::digest(
        [PASSWORD.as_bytes(), USER.as_bytes()].concat(),
    ));
    let outer = hex(&Md5::digest([inner.as_bytes(), &MD5_SALT].concat()));
    format!("md5{outer}")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SCRAM exchange; `Some(proved)`, or `None` if the exchange stopped
/// (the client left or sent something malformed, answered with an error).
async fn scram<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    twist: Twist,
    tls: bool,
    log: &Arc<Mutex<Log>>,
) -> std::io::Result<Option<bool>> {
    let Some(first) = client_first(s, tls, log).await? else {
        return Ok(None);
    };
    if twist == Twist::FinalFirst {
        // SASLFinal, then the AuthenticationOk a client that accepted it
        // would wait for.
        let mut out = Vec::new();
        authentication(&mut out, 12, b"v=AAAA");
        authentication(&mut out, 0, &[]);
        send(s, &out).await?;
        return Ok(Some(true));
    }
    if !binding_ok(&first, tls) {
        fatal(s, "28000", "SCRAM channel binding negotiation error").await?;
        return Ok(None);
    }
    let Some(client_nonce) = first.bare.split(',').find_map(|a| a.strip_prefix("r=")) else {
        fatal(s, "08P01", "SCRAM client-first-message without a nonce").await?;
        return Ok(None);
    };
    let nonce = format!("{client_nonce}{SERVER_NONCE}");
    let server_first = format!("r={nonce},s={},i={ITERATIONS}", BASE64.encode(SCRAM_SALT));
    let Some(last) = ask(s, 11, server_first.as_bytes(), log).await? else {
        return Ok(None);
    };
    let last = String::from_utf8_lossy(&last).into_owned();
    let Some((without_proof, proof)) = last.rsplit_once(",p=") else {
        fatal(s, "08P01", "SCRAM client-final-message without a proof").await?;
        return Ok(None);
    };
    if without_proof != final_without_proof(&first, &nonce) {
        fatal(s, "28000", "SCRAM channel binding check failed").await?;
        return Ok(None);
    }
    let salted = hi(PASSWORD.as_bytes(), SCRAM_SALT, ITERATIONS);
    let auth_message = format!("{},{server_first},{without_proof}", first.bare);
    if !proof_verifies(&salted, &auth_message, proof) {
        return Ok(Some(false));
    }
    server_final(s, twist, &salted, &auth_message, &server_first).await?;
    Ok(Some(true))
}

/// The client's SASLInitialResponse, taken apart.
struct ClientFirst {
    /// It chose SCRAM-SHA-256-PLUS.
    plus: bool,
    /// The gs2 header, its last comma included.
    header: String,
    /// client-first-message-bare.
    bare: String,
}

/// Offers the mechanisms (-PLUS only over TLS) and takes the client's
/// choice and first message apart; `None` if the exchange stopped.
async fn client_first<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    tls: bool,
    log: &Arc<Mutex<Log>>,
) -> std::io::Result<Option<ClientFirst>> {
    let offer: &[u8] = if tls {
        b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"
    } else {
        b"SCRAM-SHA-256\0\0"
    };
    let Some(initial) = ask(s, 10, offer, log).await? else {
        return Ok(None);
    };
    let Some((mechanism, first)) = parse_initial(&initial) else {
        fatal(s, "08P01", "malformed SASLInitialResponse").await?;
        return Ok(None);
    };
    let plus = mechanism == "SCRAM-SHA-256-PLUS";
    log.lock().unwrap().mechanism = Some(mechanism);
    // gs2-header: "n,," / "y,," / "p=tls-server-end-point,,", then client-first-bare.
    let Some(header_len) = first.match_indices(',').nth(1).map(|(i, _)| i + 1) else {
        fatal(s, "08P01", "malformed SCRAM client-first-message").await?;
        return Ok(None);
    };
    let (header, bare) = first.split_at(header_len);
    Ok(Some(ClientFirst {
        plus,
        header: header.to_owned(),
        bare: bare.to_owned(),
    }))
}

/// Whether the gs2 header fits the mechanism chosen and the connection.
fn binding_ok(first: &ClientFirst, tls: bool) -> bool {
    match (first.plus, first.header.as_str()) {
        (true, "p=tls-server-end-point,,") => tls,
        (false, "n,,") => true,
        // "y": the client could bind but thinks we cannot; we can over TLS,
        // so someone stripped -PLUS from our offer.
        (false, "y,,") => !tls,
        _ => false,
    }
}

/// What the client-final-message must say before its proof: the gs2 header
/// and (for -PLUS) the certificate's hash, then the combined nonce.
fn final_without_proof(first: &ClientFirst, nonce: &str) -> String {
    let cbind = [
        first.header.as_bytes(),
        &if first.plus {
            super::tls::end_point()
        } else {
            Vec::new()
        },
    ]
    .concat();
    format!("c={},r={nonce}", BASE64.encode(cbind))
}

/// Whether `proof` (base64) is the ClientProof for the password `salted`
/// was derived from.
fn proof_verifies(salted: &[u8; 32], auth_message: &str, proof: &str) -> bool {
    let stored_key = Sha256::digest(hmac(salted, b"Client Key"));
    let signature = hmac(&stored_key, auth_message.as_bytes());
    BASE64.decode(proof).is_ok_and(|p| {
        p.len() == 32 && {
            let key: Vec<u8> = p.iter().zip(signature).map(|(a, b)| a ^ b).collect();
            Sha256::digest(&key) == stored_key
        }
    })
}

/// SASLFinal with the server's signature, or the departure `twist` makes
/// from it: nothing, a forged signature, or a second SASLContinue.
async fn server_final<S: AsyncWrite + Unpin>(
    s: &mut S,
    twist: Twist,
    salted: &[u8; 32],
    auth_message: &str,
    server_first: &str,
) -> std::io::Result<()> {
    let mut server_signature = hmac(&hmac(salted, b"Server Key"), auth_message.as_bytes());
    match twist {
        Twist::OkWithoutFinal => return Ok(()),
        Twist::BadSignature => server_signature[0] ^= 0x80,
        Twist::ContinueTwice => {
            let mut out = Vec::new();
            authentication(&mut out, 11, server_first.as_bytes());
            return send(s, &out).await;
        }
        Twist::None | Twist::FinalFirst => {}
    }
    let mut out = Vec::new();
    let server_final = format!("v={}", BASE64.encode(server_signature));
    authentication(&mut out, 12, server_final.as_bytes());
    send(s, &out).await
}

/// SASLInitialResponse: mechanism\0, Int32 length, client-first-message.
fn parse_initial(body: &[u8]) -> Option<(String, String)> {
    let nul = body.iter().position(|&b| b == 0)?;
    let mechanism = std::str::from_utf8(&body[..nul]).ok()?.to_owned();
    let len = i32::from_be_bytes(body.get(nul + 1..nul + 5)?.try_into().ok()?);
    let data = body.get(nul + 5..)?;
    if usize::try_from(len).ok()? != data.len() {
        return None;
    }
    Some((mechanism, std::str::from_utf8(data).ok()?.to_owned()))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Hi() of RFC 5802: PBKDF2-HMAC-SHA-256 with one block.
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut block = hmac(password, &[salt, &[0, 0, 0, 1]].concat());
    let mut out = block;
    for _ in 1..iterations {
        block = hmac(password, &block);
        out.iter_mut().zip(block).for_each(|(o, b)| *o ^= b);
    }
    out
}
