//! [`MemoryBudget`]: how many bytes of row groups all DoGet streams together may hold, shared
//! by the [`super::ObjectReader`]s of the server.
//!
//! Imports: nothing of the crate.

use std::sync::Arc;

/// A server-wide bound on the row-group bytes DoGet streams hold at once: each stream takes its
/// row group's share before fetching it and gives it back when it moves to the next one (or ends),
/// so many concurrent clients queue for memory instead of exhausting it. A row group larger than
/// the whole budget takes all of it, and runs alone.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    permits: Arc<tokio::sync::Semaphore>,
    total: u32,
}

/// Bytes per permit of a [`MemoryBudget`].
pub(super) const BUDGET_UNIT: u64 = 64 * 1024;

impl MemoryBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: u64) -> Self {
        let total = (bytes / BUDGET_UNIT).clamp(1, u64::from(u32::MAX >> 4)) as u32;
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits until `bytes` are free, and holds them until the permit is dropped.
    pub async fn reserve(&self, bytes: u64) -> tokio::sync::OwnedSemaphorePermit {
        let units = bytes.div_ceil(BUDGET_UNIT).clamp(1, u64::from(self.total)) as u32;
        Arc::clone(&self.permits)
            .acquire_many_owned(units)
            .await
            .unwrap_or_else(|_| unreachable!("the budget's semaphore is never closed"))
    }

    /// Waits until `bytes` and `extra` are free, and holds them in two permits: `bytes`, then
    /// `extra` (taken together, so a stream never holds one while waiting for the other).
    pub async fn reserve_with(
        &self,
        bytes: u64,
        extra: u64,
    ) -> (
        tokio::sync::OwnedSemaphorePermit,
        Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let main = self.units(bytes);
        let extra = if extra == 0 { 0 } else { self.units(extra) };
        let wanted = main.saturating_add(extra).min(self.total);
        let mut permit = Arc::clone(&self.permits)
            .acquire_many_owned(wanted)
            .await
            .unwrap_or_else(|_| unreachable!("the budget's semaphore is never closed"));
        let extra = permit.split((wanted - main.min(wanted)) as usize);
        (permit, extra.filter(|p| p.num_permits() > 0))
    }

    fn units(&self, bytes: u64) -> u32 {
        bytes.div_ceil(BUDGET_UNIT).clamp(1, u64::from(self.total)) as u32
    }

    /// Takes `bytes` if they are free right now.
    pub fn try_reserve(&self, bytes: u64) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let units = bytes.div_ceil(BUDGET_UNIT).clamp(1, u64::from(self.total)) as u32;
        Arc::clone(&self.permits).try_acquire_many_owned(units).ok()
    }

    /// Bytes free right now.
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * BUDGET_UNIT
    }

    /// The whole budget in bytes.
    pub fn total(&self) -> u64 {
        u64::from(self.total) * BUDGET_UNIT
    }
}
