//! The container registry: containers by handle (SPEC 3.1, 3.2).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Why a registry operation was refused; the messages are the original server's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("unknown handle")]
    UnknownHandle,
    #[error("container with handle: {0} already exists.")]
    AlreadyExists(String),
}

/// Containers of type `C` by handle. Cheap to read concurrently; handles list in byte order.
#[derive(Debug)]
pub struct Registry<C> {
    containers: RwLock<BTreeMap<String, Arc<C>>>,
}

impl<C> Default for Registry<C> {
    fn default() -> Self {
        Registry {
            containers: RwLock::new(BTreeMap::new()),
        }
    }
}

impl<C> Registry<C> {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<C>>> {
        // A panic while holding the lock aborts the daemon (panic = "abort"); a poisoned lock
        // still holds a consistent map, as every write is a single map operation.
        self.containers.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<C>>> {
        self.containers.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Every handle.
    pub fn handles(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// How many containers are registered.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// The container registered as `handle`.
    pub fn get(&self, handle: &str) -> Result<Arc<C>, RegistryError> {
        self.read()
            .get(handle)
            .cloned()
            .ok_or(RegistryError::UnknownHandle)
    }

    /// Registers `container` as `handle`, unless the handle is taken.
    pub fn insert(&self, handle: &str, container: Arc<C>) -> Result<(), RegistryError> {
        let mut map = self.write();
        if map.contains_key(handle) {
            return Err(RegistryError::AlreadyExists(handle.to_owned()));
        }
        map.insert(handle.to_owned(), container);
        Ok(())
    }

    /// Removes and returns the container registered as `handle`.
    pub fn remove(&self, handle: &str) -> Result<Arc<C>, RegistryError> {
        self.write()
            .remove(handle)
            .ok_or(RegistryError::UnknownHandle)
    }

    /// Removes `handle` only if it is still `container` (not a newer one that took the
    /// handle since).
    pub fn remove_if_same(&self, handle: &str, container: &Arc<C>) -> bool {
        let mut map = self.write();
        match map.get(handle) {
            Some(c) if Arc::ptr_eq(c, container) => {
                map.remove(handle);
                true
            }
            _ => false,
        }
    }

    /// Every container, with its handle.
    pub fn all(&self) -> Vec<(String, Arc<C>)> {
        self.read()
            .iter()
            .map(|(h, c)| (h.clone(), c.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove_with_the_original_messages() {
        let r: Registry<u32> = Registry::new();
        assert!(r.is_empty());
        r.insert("b", Arc::new(2)).unwrap();
        r.insert("a", Arc::new(1)).unwrap();
        assert_eq!(
            r.insert("a", Arc::new(3)).unwrap_err().to_string(),
            "container with handle: a already exists."
        );
        assert_eq!(r.handles(), ["a", "b"]);
        assert_eq!(*r.get("b").unwrap(), 2);
        assert_eq!(r.get("zz").unwrap_err().to_string(), "unknown handle");
        assert_eq!(*r.remove("a").unwrap(), 1);
        assert_eq!(r.remove("a").unwrap_err(), RegistryError::UnknownHandle);
        assert_eq!(r.len(), 1);
        assert_eq!(r.all().len(), 1);
    }
}
