//! Secrets read from files (mounted Kubernetes secrets): a leaf that the config tree
//! and the stores it builds both use, and that knows neither.

use std::path::Path;

/// Reads a one-line secret file (a password), trailing newline removed. The error names
/// the file and what is wrong, never the content.
pub fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() || secret.contains(['\r', '\n']) {
        return Err(format!(
            "secret file {} must hold exactly one non-empty line",
            path.display()
        ));
    }
    Ok(secret.to_owned())
}
