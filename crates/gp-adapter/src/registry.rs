//! How a GP system joins the gateway: it names itself ([`GpSystem`]), says how its
//! `[systems.<id>]` config table reads and how an adapter is built from it
//! ([`AdapterFactory`]), and is registered once ([`Registry::with`]). Nothing in the
//! gateway matches on systems: config, practices, the sandbox and the adapters it
//! builds all come from the registry.
//!
//! ```
//! use std::sync::Arc;
//! use gp_adapter::{Adapter, AdapterFactory, GpSystem, Registration, Registry};
//! # use gp_adapter::{AdapterError, PatientRecord, PatientRequest, SearchPage, SearchRequest};
//! # struct Acme;
//! # #[async_trait::async_trait]
//! # impl Adapter for Acme {
//! #     fn system(&self) -> GpSystem { ACME }
//! #     async fn read_patient(&self, _: &PatientRequest) -> Result<PatientRecord, AdapterError> { Err(AdapterError::PatientNotFound) }
//! #     async fn search(&self, _: &SearchRequest) -> Result<SearchPage, AdapterError> { Err(AdapterError::PatientNotFound) }
//! # }
//!
//! pub const ACME: GpSystem = GpSystem::new("acme", "Acme Clinical");
//!
//! #[derive(Debug, Clone, serde::Deserialize)]
//! pub struct AcmeConfig { base_url: String }
//!
//! impl AdapterFactory for Acme {
//!     const SYSTEM: GpSystem = ACME;
//!     type Config = AcmeConfig;
//!     fn validate(config: &AcmeConfig) -> Result<(), String> {
//!         if config.base_url.is_empty() { Err("acme.base_url is empty".into()) } else { Ok(()) }
//!     }
//!     fn set_base_url(config: &mut AcmeConfig, url: &str) { config.base_url = url.into() }
//!     fn build(_config: &AcmeConfig) -> Result<Arc<dyn Adapter>, String> { Ok(Arc::new(Acme)) }
//! }
//!
//! let registry = Registry::new().with(Registration::of::<Acme>());
//! let table = serde_json::json!({ "base_url": "http://127.0.0.1:9009" });
//! let config = registry.configure("acme", table).unwrap();
//! assert_eq!(config.system().display_name(), "Acme Clinical");
//! assert!(config.build().is_ok());
//! ```

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Adapter;

/// A GP clinical system's identity: the `id` used in `[systems.<id>]`, the practice
/// registry and the sandbox manifest, and the product name suppliers and operators
/// know. Each adapter crate declares its own as a constant; a [`Registry`] holds one
/// system per id. Ordered by id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GpSystem {
    id: &'static str,
    display_name: &'static str,
}

impl GpSystem {
    /// A system named `id` (lowercase, as in config) shown as `display_name`.
    pub const fn new(id: &'static str, display_name: &'static str) -> Self {
        Self { id, display_name }
    }

    /// The id used in config and the sandbox manifest, e.g. `emis`.
    pub fn id(self) -> &'static str {
        self.id
    }

    /// The product name, e.g. `EMIS Web`.
    pub fn display_name(self) -> &'static str {
        self.display_name
    }
}

impl fmt::Display for GpSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name)
    }
}

impl fmt::Debug for GpSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id)
    }
}

impl Serialize for GpSystem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id)
    }
}

/// What a GP system's crate implements, beside [`Adapter`], to be registered: its
/// identity, its config table, and how an adapter is built from that table.
pub trait AdapterFactory: 'static {
    /// The system this factory builds adapters for.
    const SYSTEM: GpSystem;

    /// The `[systems.<id>]` table, read with serde (refuse unknown fields, so a typo
    /// is an error rather than an ignored setting).
    type Config: DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static;

    /// Checks the config without any I/O (`gp-gateway check-config` runs this in CI).
    /// The message names the field, prefixed with the system id (`acme.base_url: …`).
    fn validate(config: &Self::Config) -> Result<(), String>;

    /// Points the config at another base URL (the sandbox's simulators).
    fn set_base_url(config: &mut Self::Config, url: &str);

    /// Builds the adapter from a validated config, with no network I/O until its
    /// first call.
    fn build(config: &Self::Config) -> Result<Arc<dyn Adapter>, String>;
}

/// One system's config, read and validated by its factory; builds its adapter.
pub struct SystemConfig {
    system: GpSystem,
    inner: Box<dyn ErasedConfig>,
}

impl SystemConfig {
    /// The system this config is for.
    pub fn system(&self) -> GpSystem {
        self.system
    }

    /// Points the system at another base URL (the sandbox's simulators).
    pub fn set_base_url(&mut self, url: &str) {
        self.inner.set_base_url(url);
    }

    /// Checks the config again (after [`SystemConfig::set_base_url`]).
    pub fn validate(&self) -> Result<(), String> {
        self.inner.validate()
    }

    /// Builds the system's adapter.
    pub fn build(&self) -> Result<Arc<dyn Adapter>, String> {
        self.inner.build()
    }

    /// The factory's own config type, when it is `T`.
    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.inner.as_any().downcast_ref()
    }
}

impl Clone for SystemConfig {
    fn clone(&self) -> Self {
        Self {
            system: self.system,
            inner: self.inner.clone_box(),
        }
    }
}

impl fmt::Debug for SystemConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.debug(f)
    }
}

/// A factory's config with its type erased, so configs of every system sit in one map.
trait ErasedConfig: Send + Sync {
    fn validate(&self) -> Result<(), String>;
    fn set_base_url(&mut self, url: &str);
    fn build(&self) -> Result<Arc<dyn Adapter>, String>;
    fn clone_box(&self) -> Box<dyn ErasedConfig>;
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    fn as_any(&self) -> &dyn Any;
}

struct Typed<F: AdapterFactory>(F::Config);

impl<F: AdapterFactory> ErasedConfig for Typed<F> {
    fn validate(&self) -> Result<(), String> {
        F::validate(&self.0)
    }
    fn set_base_url(&mut self, url: &str) {
        F::set_base_url(&mut self.0, url);
    }
    fn build(&self) -> Result<Arc<dyn Adapter>, String> {
        F::build(&self.0)
    }
    fn clone_box(&self) -> Box<dyn ErasedConfig> {
        Box::new(Typed::<F>(self.0.clone()))
    }
    fn debug(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
    fn as_any(&self) -> &dyn Any {
        &self.0
    }
}

/// A registered system: its identity and how its config table is read.
#[derive(Clone, Copy)]
pub struct Registration {
    system: GpSystem,
    configure: fn(serde_json::Value) -> Result<SystemConfig, String>,
}

impl Registration {
    /// The registration of factory `F`.
    pub fn of<F: AdapterFactory>() -> Self {
        Self {
            system: F::SYSTEM,
            configure: configure::<F>,
        }
    }

    /// The system registered.
    pub fn system(&self) -> GpSystem {
        self.system
    }
}

fn configure<F: AdapterFactory>(table: serde_json::Value) -> Result<SystemConfig, String> {
    let config: F::Config = serde_json::from_value(table).map_err(|e| e.to_string())?;
    F::validate(&config)?;
    Ok(SystemConfig {
        system: F::SYSTEM,
        inner: Box::new(Typed::<F>(config)),
    })
}

/// The systems a gateway can talk to, by id.
#[derive(Clone, Default)]
pub struct Registry {
    by_id: BTreeMap<&'static str, Registration>,
}

impl Registry {
    /// No systems.
    pub fn new() -> Self {
        Self::default()
    }

    /// This registry and `registration`.
    ///
    /// # Panics
    /// When another system already has the same id: two crates claiming one id is a
    /// mistake in how the binary is put together, found the first time it starts.
    #[allow(clippy::panic)]
    pub fn with(mut self, registration: Registration) -> Self {
        let id = registration.system.id();
        if let Some(existing) = self.by_id.insert(id, registration) {
            panic!(
                "two GP systems are registered with the id '{id}': {} and {}",
                existing.system.display_name(),
                registration.system.display_name()
            );
        }
        self
    }

    /// The system registered as `id`.
    pub fn get(&self, id: &str) -> Option<GpSystem> {
        self.by_id.get(id).map(|r| r.system)
    }

    /// Every registered system, by id.
    pub fn systems(&self) -> impl Iterator<Item = GpSystem> + '_ {
        self.by_id.values().map(|r| r.system)
    }

    /// Reads and validates the `[systems.<id>]` table of system `id`. The error says
    /// what is wrong: an id nobody registered (listing those that are), or the
    /// factory's own message.
    pub fn configure(&self, id: &str, table: serde_json::Value) -> Result<SystemConfig, String> {
        let Some(registration) = self.by_id.get(id) else {
            let known: Vec<&str> = self.by_id.keys().copied().collect();
            return Err(format!(
                "no GP system '{id}' is registered in this gateway (registered: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        (registration.configure)(table)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_id.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AdapterError, PatientRecord, PatientRequest, SearchPage, SearchRequest};

    const ONE: GpSystem = GpSystem::new("one", "System One");

    struct One;

    #[async_trait::async_trait]
    impl Adapter for One {
        fn system(&self) -> GpSystem {
            ONE
        }
        async fn read_patient(&self, _: &PatientRequest) -> Result<PatientRecord, AdapterError> {
            Err(AdapterError::PatientNotFound)
        }
        async fn search(&self, _: &SearchRequest) -> Result<SearchPage, AdapterError> {
            Err(AdapterError::PatientNotFound)
        }
    }

    #[derive(Debug, Clone, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct OneConfig {
        base_url: String,
    }

    impl AdapterFactory for One {
        const SYSTEM: GpSystem = ONE;
        type Config = OneConfig;
        fn validate(config: &OneConfig) -> Result<(), String> {
            if config.base_url.starts_with("http://") {
                Ok(())
            } else {
                Err(format!("one.base_url '{}' is not http://", config.base_url))
            }
        }
        fn set_base_url(config: &mut OneConfig, url: &str) {
            config.base_url = url.to_owned();
        }
        fn build(_: &OneConfig) -> Result<Arc<dyn Adapter>, String> {
            Ok(Arc::new(One))
        }
    }

    fn registry() -> Registry {
        Registry::new().with(Registration::of::<One>())
    }

    #[test]
    fn a_system_shows_its_name_and_serialises_as_its_id() {
        assert!(ONE < GpSystem::new("two", "A System"), "ordered by id");
        assert_eq!(ONE.to_string(), "System One");
        assert_eq!(format!("{ONE:?}"), "one");
        assert_eq!(serde_json::to_string(&ONE).unwrap(), "\"one\"");
    }

    #[test]
    fn a_registered_table_is_read_validated_and_builds() {
        let mut config = registry()
            .configure("one", serde_json::json!({"base_url": "http://127.0.0.1:1"}))
            .unwrap();
        assert_eq!(config.system(), ONE);
        assert_eq!(
            config.get::<OneConfig>().unwrap().base_url,
            "http://127.0.0.1:1"
        );
        config.set_base_url("http://127.0.0.1:2");
        assert_eq!(
            config.clone().get::<OneConfig>().unwrap().base_url,
            "http://127.0.0.1:2"
        );
        assert_eq!(config.build().unwrap().system(), ONE);
        config.set_base_url("ftp://x");
        assert_eq!(
            config.validate().unwrap_err(),
            "one.base_url 'ftp://x' is not http://"
        );
    }

    #[test]
    fn bad_tables_and_unknown_ids_say_what_is_wrong() {
        let r = registry();
        assert_eq!(
            r.configure("two", serde_json::json!({})).unwrap_err(),
            "no GP system 'two' is registered in this gateway (registered: one)"
        );
        assert_eq!(
            Registry::new()
                .configure("two", serde_json::json!({}))
                .unwrap_err(),
            "no GP system 'two' is registered in this gateway (registered: none)"
        );
        assert!(
            r.configure("one", serde_json::json!({}))
                .unwrap_err()
                .contains("missing field `base_url`")
        );
        assert!(
            r.configure("one", serde_json::json!({"base_url": "http://h", "x": 1}))
                .unwrap_err()
                .contains("unknown field `x`")
        );
        assert_eq!(
            r.configure("one", serde_json::json!({"base_url": "https://h"}))
                .unwrap_err(),
            "one.base_url 'https://h' is not http://"
        );
        assert_eq!(r.get("one"), Some(ONE));
        assert_eq!(r.get("two"), None);
        assert_eq!(r.systems().collect::<Vec<_>>(), vec![ONE]);
    }

    #[test]
    #[should_panic(expected = "two GP systems are registered with the id 'one'")]
    fn one_id_cannot_be_registered_twice() {
        let _ = registry().with(Registration::of::<One>());
    }
}
