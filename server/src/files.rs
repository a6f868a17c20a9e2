//! Where files (photos and their thumbnails) are kept: through `object_store`, a directory under
//! the data directory by default (`<TURNS_DATA_DIR>/files`), or any S3-compatible store with
//! `FILE_STORE=s3://bucket/prefix` (credentials and endpoint from the usual `AWS_*` variables:
//! `AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, and
//! `AWS_ALLOW_HTTP=true` for a store on plain HTTP). Keys are plain relative paths
//! (`photos/<turn>/<id>/thumb.jpg`); several instances share one store.
use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutPayload};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::OnceCell;

/// Why the file store failed: configuration, or the store itself (logged, never shown).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("FILE_STORE {0:?}: {1}")]
    Config(String, String),
    #[error(transparent)]
    Store(#[from] object_store::Error),
}

/// The file store, opened on first use (so building the app state cannot fail; `serve` checks
/// it at start).
pub struct Files {
    url: Option<String>,
    dir: PathBuf,
    store: OnceCell<Arc<dyn ObjectStore>>,
}

impl Files {
    /// `url`: `FILE_STORE` (`s3://…` or `file:///…`); unset, the directory `dir`.
    pub fn new(url: Option<String>, dir: PathBuf) -> Self {
        Files {
            url,
            dir,
            store: OnceCell::new(),
        }
    }

    async fn store(&self) -> Result<&Arc<dyn ObjectStore>, FileError> {
        self.store.get_or_try_init(|| async { self.open() }).await
    }

    fn open(&self) -> Result<Arc<dyn ObjectStore>, FileError> {
        let bad = |why: String| FileError::Config(self.url.clone().unwrap_or_default(), why);
        let Some(raw) = &self.url else {
            return local(&self.dir);
        };
        let url = url::Url::parse(raw).map_err(|e| bad(e.to_string()))?;
        match url.scheme() {
            "file" => local(&PathBuf::from(url.path())),
            "s3" => {
                let s3 = AmazonS3Builder::from_env().with_url(raw).build()?;
                let prefix = url.path().trim_matches('/');
                Ok(if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix))
                })
            }
            other => Err(bad(format!(
                "unknown scheme {other:?} (use s3:// or file://)"
            ))),
        }
    }

    /// Open the store now: a misconfigured store stops the server at start, not at the first
    /// upload.
    pub async fn check(&self) -> Result<(), FileError> {
        self.store().await.map(|_| ())
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), FileError> {
        self.store()
            .await?
            .put(&Path::from(key), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// The file's bytes, or `None` when there is none under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, FileError> {
        match self.store().await?.get(&Path::from(key)).await {
            Ok(got) => Ok(Some(got.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The keys under `prefix` (a folder: `uploads/<user>/<photo>`).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, FileError> {
        let metas: Vec<object_store::ObjectMeta> = self
            .store()
            .await?
            .list(Some(&Path::from(prefix)))
            .try_collect()
            .await?;
        Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
    }

    /// Delete every file under `prefix` (missing ones are fine).
    pub async fn delete_all(&self, prefix: &str) -> Result<(), FileError> {
        let store = self.store().await?;
        for key in self.list(prefix).await? {
            match store.delete(&Path::from(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

fn local(dir: &std::path::Path) -> Result<Arc<dyn ObjectStore>, FileError> {
    let bad = |e: std::io::Error| FileError::Config(dir.display().to_string(), e.to_string());
    std::fs::create_dir_all(dir).map_err(bad)?;
    // Files are written to a temporary name and renamed: a reader never sees half a photo.
    Ok(Arc::new(LocalFileSystem::new_with_prefix(dir)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_are_kept_listed_and_deleted_by_key() {
        let dir = tempfile::tempdir().expect("dir");
        let files = Files::new(None, dir.path().join("files"));
        files.check().await.expect("opens");
        assert_eq!(files.get("photos/a/b/thumb.jpg").await.expect("get"), None);
        files
            .put("uploads/u/p/000", Bytes::from_static(b"one"))
            .await
            .expect("put");
        files
            .put("uploads/u/p/001", Bytes::from_static(b"two"))
            .await
            .expect("put");
        let mut keys = files.list("uploads/u/p").await.expect("list");
        keys.sort();
        assert_eq!(keys, vec!["uploads/u/p/000", "uploads/u/p/001"]);
        assert_eq!(
            files.get("uploads/u/p/001").await.expect("get"),
            Some(Bytes::from_static(b"two"))
        );
        files.delete_all("uploads/u/p").await.expect("delete");
        assert!(files.list("uploads/u/p").await.expect("list").is_empty());
        let wrong = Files::new(Some("ftp://example.com/x".into()), dir.path().into());
        assert!(matches!(wrong.check().await, Err(FileError::Config(..))));
    }
}
