//! Unix socket files for the listeners that take Telegraf's `unix://` and `unixgram://`
//! service addresses (`inputs.socket_listener`, `inputs.http_listener_v2`): a socket left by
//! an earlier run is replaced, `socket_mode` is applied, and the file is removed when the
//! listener goes away, unless another listener has bound the same path since (a reload).

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Removes the socket file it names when dropped, if it is still the one bound.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Parses Telegraf's `socket_mode` (octal, e.g. "777"); `None` for "".
pub fn parse_mode(mode: &str) -> Result<Option<u32>, String> {
    if mode.is_empty() {
        return Ok(None);
    }
    match u32::from_str_radix(mode, 8) {
        Ok(m) if m <= 0o7777 => Ok(Some(m)),
        _ => Err(format!("{mode:?} is not an octal mode like \"777\"")),
    }
}

/// Clears the way for binding `path`: a stale socket is removed, any other file is an error.
fn clear(path: &Path) -> anyhow::Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!(
                "cannot listen on {}: a file that is not a socket is in the way",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .map_err(|e| anyhow::anyhow!("removing the old socket {}: {e}", path.display()))?;
    }
    Ok(())
}

/// After binding: applies the mode and returns the guard of the file.
fn finish(path: &Path, mode: Option<u32>) -> anyhow::Result<SocketFile> {
    if let Some(m) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m))
            .map_err(|e| anyhow::anyhow!("setting socket_mode on {}: {e}", path.display()))?;
    }
    let meta =
        std::fs::symlink_metadata(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(SocketFile {
        path: path.to_path_buf(),
        id: (meta.dev(), meta.ino()),
    })
}

/// Binds a unix stream socket at `path`.
pub fn bind_stream(
    path: &Path,
    mode: Option<u32>,
) -> anyhow::Result<(tokio::net::UnixListener, SocketFile)> {
    clear(path)?;
    let l = tokio::net::UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("cannot listen on unix://{}: {e}", path.display()))?;
    Ok((l, finish(path, mode)?))
}

/// Binds a unix datagram socket at `path`.
pub fn bind_datagram(
    path: &Path,
    mode: Option<u32>,
) -> anyhow::Result<(tokio::net::UnixDatagram, SocketFile)> {
    clear(path)?;
    let s = tokio::net::UnixDatagram::bind(path)
        .map_err(|e| anyhow::anyhow!("cannot listen on unixgram://{}: {e}", path.display()))?;
    Ok((s, finish(path, mode)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replaces_stale_sockets_and_removes_only_its_own() {
        let dir = std::env::temp_dir().join(format!("sonde-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s.sock");
        let (l1, g1) = bind_stream(&p, Some(0o600)).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A second bind (a reload) replaces the file; dropping the first guard keeps it.
        let (_l2, g2) = bind_stream(&p, None).unwrap();
        drop((l1, g1));
        assert!(p.exists());
        drop(g2);
        assert!(!p.exists());
        std::fs::write(&p, "not a socket").unwrap();
        assert!(
            bind_datagram(&p, None)
                .unwrap_err()
                .to_string()
                .contains("not a socket")
        );
        assert_eq!(parse_mode("777"), Ok(Some(0o777)));
        assert!(parse_mode("rwx").is_err() && parse_mode("99999").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
