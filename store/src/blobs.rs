//! Attachment bytes on the local disk under generated names: `<dir>/<2 hex>/<32 hex>`.

use async_trait::async_trait;
use std::path::{Path, PathBuf};
use switchboard_core::ports::{BlobStore, StoreError};

pub struct FileBlobs {
    dir: PathBuf,
}

impl FileBlobs {
    /// Creates `dir` if needed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Backend(format!("cannot create attachment directory {}: {e}", dir.display())))?;
        Ok(Self { dir })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        // Keys are ours: 32 lowercase hex digits. Anything else never touches the disk.
        if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
            return Err(StoreError::Corrupt(format!("`{key}` is not an attachment key")));
        }
        Ok(self.dir.join(&key[..2]).join(key))
    }
}

fn io(path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Backend(format!("{}: {error}", path.display()))
}

#[async_trait]
impl BlobStore for FileBlobs {
    async fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let key = uuid::Uuid::new_v4().simple().to_string();
        let path = self.path(&key)?;
        let parent = path.parent().expect("keys have a folder");
        tokio::fs::create_dir_all(parent).await.map_err(|e| io(parent, e))?;
        // Write then rename, so a crash never leaves a half file under a real key.
        let partial = path.with_extension("partial");
        tokio::fs::write(&partial, bytes).await.map_err(|e| io(&partial, e))?;
        tokio::fs::rename(&partial, &path).await.map_err(|e| io(&path, e))?;
        Ok(key)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path(key)?;
        tokio::fs::read(&path).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::Missing("file".into()),
            _ => io(&path, e),
        })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path, e)),
            _ => Ok(()),
        }
    }
}
