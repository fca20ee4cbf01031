//! Verification of each certificate, as Telegraf does with Go's `x509.Verify`: the leaf
//! against the roots with the rest of the chain as intermediates (and the server's name, for
//! network sources), every other certificate by a path of valid signatures up to a root.

use std::time::SystemTime;

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::*;

/// The leaf, with webpki: path to a trusted root, validity, key usage, and the name.
pub fn leaf(
    cert: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &[CertificateDer<'_>],
    name: Option<&str>,
    now: SystemTime,
) -> Result<(), String> {
    let anchors: Vec<_> = roots
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    let ee = webpki::EndEntityCert::try_from(cert).map_err(|e| describe(&e))?;
    let time = UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    // A self-signed certificate that is itself trusted is valid (Go accepts a root as leaf).
    if roots.iter().any(|r| r.as_ref() == cert.as_ref())
        && let Ok((_, x)) = parse_x509_certificate(cert)
    {
        return within(&x, time.as_secs() as i64);
    }
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        intermediates,
        time,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| describe(&e))?;
    if let Some(name) = name {
        let sn = ServerName::try_from(name).map_err(|e| format!("server name {name:?}: {e}"))?;
        ee.verify_is_valid_for_subject_name(&sn)
            .map_err(|_| format!("x509: certificate is not valid for {name}"))?;
    }
    Ok(())
}

fn describe(e: &webpki::Error) -> String {
    match e {
        webpki::Error::CertExpired { .. } => "x509: certificate has expired".into(),
        webpki::Error::CertNotValidYet { .. } => "x509: certificate is not yet valid".into(),
        webpki::Error::UnknownIssuer => "x509: certificate signed by unknown authority".into(),
        // An issuer of that name exists but did not sign it: not a trusted chain either.
        webpki::Error::InvalidSignatureForPublicKey => {
            "x509: certificate signed by unknown authority (bad signature)".into()
        }
        other => format!("x509: {other}"),
    }
}

fn within(cert: &X509Certificate<'_>, now: i64) -> Result<(), String> {
    if now < cert.validity().not_before.timestamp() {
        return Err("x509: certificate is not yet valid".into());
    }
    if now > cert.validity().not_after.timestamp() {
        return Err("x509: certificate has expired".into());
    }
    Ok(())
}

/// Certificate `i` of `chain` (a CA): valid now, and a path of valid signatures from it to a
/// trusted root through the other certificates of the chain.
pub fn ca(
    i: usize,
    chain: &[Option<X509Certificate<'_>>],
    roots: &[X509Certificate<'_>],
    now: i64,
) -> Result<(), String> {
    let cert = chain[i].as_ref().ok_or("x509: unparsable certificate")?;
    path(cert, chain, roots, now, 0)
}

fn path(
    cert: &X509Certificate<'_>,
    chain: &[Option<X509Certificate<'_>>],
    roots: &[X509Certificate<'_>],
    now: i64,
    depth: usize,
) -> Result<(), String> {
    within(cert, now)?;
    let trusted = |c: &X509Certificate<'_>| {
        roots.iter().any(|r| {
            r.subject().as_raw() == c.subject().as_raw() && r.public_key().raw == c.public_key().raw
        })
    };
    if trusted(cert) {
        return Ok(());
    }
    if depth > 8 {
        return Err("x509: too many intermediates".into());
    }
    let mut err = "x509: certificate signed by unknown authority".to_string();
    let candidates = roots.iter().chain(chain.iter().flatten());
    for issuer in candidates {
        if issuer.subject().as_raw() != cert.issuer().as_raw()
            || std::ptr::eq(issuer, cert)
            || !issuer.is_ca()
            || cert.verify_signature(Some(issuer.public_key())).is_err()
        {
            continue;
        }
        if trusted(issuer) {
            match within(issuer, now) {
                Ok(()) => return Ok(()),
                Err(e) => err = e,
            }
            continue;
        }
        match path(issuer, chain, roots, now, depth + 1) {
            Ok(()) => return Ok(()),
            Err(e) => err = e,
        }
    }
    Err(err)
}
