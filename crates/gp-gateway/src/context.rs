//! What the transport knows of a request that the handlers may need: a leaf, set by
//! the server and read by the pipeline and the access checks.

use gp_auth::CertThumbprint;

/// The fingerprint of the client certificate a request's connection presented (mutual
/// TLS), put in each request's extensions by the server: only the TLS handshake sets it,
/// never a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCertificate(pub CertThumbprint);

/// The client certificate fingerprint of the connection a request came over, if any.
pub fn client_certificate(extensions: &http::Extensions) -> Option<&CertThumbprint> {
    extensions.get::<ClientCertificate>().map(|c| &c.0)
}
