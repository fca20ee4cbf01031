//! A test PKI made fresh by each test (never committed key material): a root CA, an
//! intermediate CA, a leaf for `localhost`/127.0.0.1 signed by the intermediate, a client
//! certificate, and an expired and a not-yet-valid leaf.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, date_time_ymd,
};

use crate::TempDir;

/// Paths of the PEM files written by [`Pki::new`].
pub struct Pki {
    /// The root CA certificate (the trust anchor).
    pub ca: PathBuf,
    pub intermediate: PathBuf,
    /// The leaf certificate alone, and leaf + intermediate (what a server sends).
    pub leaf: PathBuf,
    pub chain: PathBuf,
    pub leaf_key: PathBuf,
    /// A client certificate (signed by the intermediate) and its key, for mutual TLS.
    pub client: PathBuf,
    pub client_key: PathBuf,
    /// Leaves signed by the intermediate whose validity ended in 2020 / starts in 2090.
    pub expired: PathBuf,
    pub future: PathBuf,
    /// The leaf's `notAfter`, as seconds since the epoch.
    pub leaf_not_after: i64,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "sonde tests");
    p
}

fn leaf_params(cn: &str, names: &[&str]) -> CertificateParams {
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p
}

impl Pki {
    pub fn new(dir: &TempDir) -> Pki {
        let root_key = KeyPair::generate().unwrap();
        let root = CertifiedIssuer::self_signed(ca_params("sonde test root"), root_key).unwrap();
        let inter_key = KeyPair::generate().unwrap();
        let inter =
            CertifiedIssuer::signed_by(ca_params("sonde test intermediate"), inter_key, &root)
                .unwrap();
        let write = |name: &str, s: &str| dir.write(name, s);
        let mut lp = leaf_params("localhost", &["localhost", "127.0.0.1"]);
        lp.not_before = date_time_ymd(2025, 1, 1);
        lp.not_after = date_time_ymd(2035, 6, 1);
        let leaf_not_after = lp.not_after.unix_timestamp();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = lp.signed_by(&leaf_key, &inter).unwrap();
        let mut cp = leaf_params("sonde client", &[]);
        cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().unwrap();
        let client = cp.signed_by(&client_key, &inter).unwrap();
        let mut ep = leaf_params("expired.localhost", &["expired.localhost"]);
        ep.not_before = date_time_ymd(2019, 1, 1);
        ep.not_after = date_time_ymd(2020, 1, 1);
        let expired = ep.signed_by(&KeyPair::generate().unwrap(), &inter).unwrap();
        let mut fp = leaf_params("future.localhost", &["future.localhost"]);
        fp.not_before = date_time_ymd(2090, 1, 1);
        fp.not_after = date_time_ymd(2091, 1, 1);
        let future = fp.signed_by(&KeyPair::generate().unwrap(), &inter).unwrap();
        Pki {
            ca: write("ca.pem", &root.pem()),
            intermediate: write("intermediate.pem", &inter.pem()),
            leaf: write("leaf.pem", &leaf.pem()),
            chain: write("chain.pem", &format!("{}{}", leaf.pem(), inter.pem())),
            leaf_key: write("leaf.key", &leaf_key.serialize_pem()),
            client: write("client.pem", &client.pem()),
            client_key: write("client.key", &client_key.serialize_pem()),
            expired: write("expired.pem", &expired.pem()),
            future: write("future.pem", &future.pem()),
            leaf_not_after,
        }
    }
}
