//! HTTPS for clients that insist on it (MSAL refuses plain-http authorities; the JS Graph
//! client sends tokens only over https): a local certificate authority, kept in a folder so
//! clients trust it once (`NODE_EXTRA_CA_CERTS`, `REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE`), and a
//! server certificate it signs for loopback and the Microsoft hosts a client may be redirected
//! from (`login.microsoftonline.com`, `graph.microsoft.com`, `smba.trafficmanager.net`).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The names the server certificate is valid for.
const SERVER_NAMES: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "login.microsoftonline.com",
    "login.botframework.com",
    "graph.microsoft.com",
    "smba.trafficmanager.net",
];

/// The emulator's certificate authority and the server configuration it signs.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The authority's certificate, for clients to trust.
    pub ca_pem: String,
    /// Where `ca_pem` is on disk, when the authority is kept in a folder.
    pub ca_file: Option<PathBuf>,
    pub server: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "teams-emulator local CA");
    name.push(DnType::OrganizationName, "teams-emulator");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl TlsIdentity {
    /// A fresh authority in memory (tests).
    pub fn generate() -> Result<Self, String> {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let ca_pem = ca_params()
            .self_signed(&key)
            .map_err(|e| e.to_string())?
            .pem();
        Self::with_authority(ca_pem, key, None)
    }

    /// The authority kept in `dir` (`ca.pem`, `ca-key.pem`), created there on first use, so a
    /// client told to trust `ca.pem` keeps trusting the emulator across restarts.
    pub fn load_or_create(dir: &Path) -> Result<Self, String> {
        let (cert_file, key_file) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
        let failed =
            |what: &str, e: &dyn std::fmt::Display| format!("{what} {}: {e}", dir.display());
        if cert_file.exists() && key_file.exists() {
            let ca_pem = std::fs::read_to_string(&cert_file)
                .map_err(|e| failed("cannot read the authority in", &e))?;
            let key_pem = std::fs::read_to_string(&key_file)
                .map_err(|e| failed("cannot read the authority's key in", &e))?;
            let key = KeyPair::from_pem(&key_pem)
                .map_err(|e| failed("the authority's key is not usable in", &e))?;
            return Self::with_authority(ca_pem, key, Some(cert_file));
        }
        std::fs::create_dir_all(dir).map_err(|e| failed("cannot create", &e))?;
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let ca_pem = ca_params()
            .self_signed(&key)
            .map_err(|e| e.to_string())?
            .pem();
        write_private(&key_file, &key.serialize_pem())
            .map_err(|e| failed("cannot write the authority's key to", &e))?;
        std::fs::write(&cert_file, &ca_pem)
            .map_err(|e| failed("cannot write the authority to", &e))?;
        Self::with_authority(ca_pem, key, Some(cert_file))
    }

    fn with_authority(
        ca_pem: String,
        ca_key: KeyPair,
        ca_file: Option<PathBuf>,
    ) -> Result<Self, String> {
        // Certificates are checked by the authority's name and key, so a re-made issuer with the
        // same name and key signs what the kept ca.pem verifies.
        let issuer = Issuer::new(ca_params(), ca_key);
        let mut params = CertificateParams::new(
            SERVER_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .map_err(|e| e.to_string())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "teams-emulator");
        let leaf_key = KeyPair::generate().map_err(|e| e.to_string())?;
        let leaf = params
            .signed_by(&leaf_key, &issuer)
            .map_err(|e| e.to_string())?;
        let chain = vec![leaf.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem,
            ca_file,
            server: Arc::new(server),
        })
    }

    pub fn ca_der(&self) -> Option<CertificateDer<'static>> {
        let pem = self
            .ca_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>();
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(pem)
            .ok()
            .map(CertificateDer::from)
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
