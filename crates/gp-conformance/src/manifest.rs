//! The sandbox manifest format (`GET /_sandbox/manifest`): where the FHIR API and token
//! endpoint are, the suppliers the kit may act as, and the test patients.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub base_url: String,
    pub token_url: String,
    pub suppliers: Vec<Supplier>,
    pub patients: Vec<Patient>,
    /// Set when read from a file: relative key paths are resolved against its folder.
    #[serde(skip)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Supplier {
    pub client_id: String,
    pub kid: String,
    pub alg: String,
    /// A path to the PEM file, or the PEM itself.
    pub private_key_pem: String,
    pub scopes: Vec<String>,
    pub practices: Vec<String>,
    /// `active` (the default) or `suspended`: the security suite checks a suspended
    /// supplier gets no token, and never acts as one otherwise.
    #[serde(default)]
    pub status: Option<String>,
    /// An operator client (reads every supplier's audit trail). When no supplier says,
    /// the one holding an AuditEvent search scope and paired with no practice is taken.
    #[serde(default)]
    pub operator: Option<bool>,
    /// The supplier the `appointments` suite books as. When no supplier says, the active
    /// one holding `system/Slot.s…` and `system/Appointment.c…` and paired with the most
    /// practices is taken (`demo-booking` in the sandbox).
    #[serde(default)]
    pub booking: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Patient {
    pub nhs_number: String,
    pub practice: String,
    pub system: String,
    #[serde(default)]
    pub flags: Vec<String>,
}

impl Manifest {
    pub fn supplier(&self, client_id: &str) -> Option<&Supplier> {
        self.suppliers.iter().find(|s| s.client_id == client_id)
    }

    /// GP systems that hold manifest patients, in first-seen order.
    pub fn systems(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.patients {
            if !out.contains(&p.system) {
                out.push(p.system.clone());
            }
        }
        out
    }

    /// The supplier best placed to read clinical data: paired with the most practices,
    /// then holding the most scopes (operators, paired with none, and suspended
    /// suppliers never qualify).
    pub fn reader(&self) -> Option<&Supplier> {
        self.active()
            .filter(|s| {
                !s.practices.is_empty()
                    && s.scopes.iter().any(|sc| sc.starts_with("system/Patient."))
            })
            .max_by_key(|s| (s.practices.len(), s.scopes.len()))
    }
}

impl Manifest {
    /// The operator client the kit reads the audit trail as (never a suspended one).
    pub fn operator(&self) -> Option<&Supplier> {
        self.active()
            .find(|s| s.operator == Some(true))
            .or_else(|| {
                self.active().find(|s| {
                    s.operator.is_none() && s.practices.is_empty() && s.has_scope("AuditEvent", 's')
                })
            })
    }

    /// The supplier the kit books appointments as (never a suspended one): the one the
    /// manifest marks `"booking": true`, else the one holding Slot search and Appointment
    /// create scopes paired with the most practices.
    pub fn booker(&self) -> Option<&Supplier> {
        self.active().find(|s| s.booking == Some(true)).or_else(|| {
            self.active()
                .filter(|s| {
                    s.booking.is_none()
                        && !s.practices.is_empty()
                        && s.has_scope("Slot", 's')
                        && s.has_scope("Appointment", 'c')
                })
                .max_by_key(|s| s.practices.len())
        })
    }

    /// The suppliers the kit may act as: every one not suspended.
    pub fn active(&self) -> impl Iterator<Item = &Supplier> {
        self.suppliers.iter().filter(|s| !s.is_suspended())
    }

    /// A supplier the manifest says is suspended.
    pub fn suspended(&self) -> Option<&Supplier> {
        self.suppliers.iter().find(|s| s.is_suspended())
    }
}

impl Supplier {
    /// Whether the manifest says the supplier is suspended.
    pub fn is_suspended(&self) -> bool {
        self.status.as_deref() == Some("suspended")
    }

    /// The PEM bytes of the private key.
    pub fn private_key(&self, manifest_dir: Option<&Path>) -> Result<Vec<u8>, String> {
        if self.private_key_pem.trim_start().starts_with("-----BEGIN") {
            return Ok(self.private_key_pem.as_bytes().to_vec());
        }
        let path = self.key_path(manifest_dir);
        std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))
    }

    fn key_path(&self, manifest_dir: Option<&Path>) -> PathBuf {
        let path = PathBuf::from(&self.private_key_pem);
        match manifest_dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        }
    }

    /// The public key beside the private one (`x.private.pem` → `x.public.pem`), if any.
    pub fn public_key(&self, manifest_dir: Option<&Path>) -> Option<Vec<u8>> {
        let path = self.key_path(manifest_dir);
        let name = path
            .file_name()?
            .to_str()?
            .replace(".private.pem", ".public.pem");
        std::fs::read(path.with_file_name(name)).ok()
    }

    /// Whether the supplier holds a scope covering `resource` with `interaction`
    /// (`r`, `s`, …), e.g. `system/Patient.rs` covers (`Patient`, `r`).
    pub fn has_scope(&self, resource: &str, interaction: char) -> bool {
        self.scopes.iter().any(|s| {
            s.strip_prefix("system/")
                .and_then(|s| s.split_once('.'))
                .is_some_and(|(r, i)| {
                    (r == resource || r == "*")
                        && (i.contains(interaction)
                            || i == "*"
                            || i == "read" && "rs".contains(interaction))
                })
        })
    }

    /// The signing identity for `gp_auth`.
    pub fn identity(
        &self,
        manifest_dir: Option<&Path>,
    ) -> Result<gp_auth::ClientAssertion, String> {
        Ok(gp_auth::ClientAssertion {
            client_id: self.client_id.clone(),
            kid: self.kid.clone(),
            alg: self.alg.clone(),
            private_key_pem: self.private_key(manifest_dir)?,
        })
    }
}
