//! Seat file systems made ahead of a workshop's start (issue 12: a class of 200 ready within a
//! second of Start). A workshop that is created (or whose `start_at` approaches) reserves one
//! spare per seat: a fresh ext4 image copied from the template, loop-attached and mounted, with
//! its `workspace/` and `home/` made, exactly what a new seat otherwise makes at Start (the image
//! copy, a loop attach that waits on the device, a mount: ~3 ms of CPU and 25-60 ms of waiting
//! per seat). Start then takes a spare per seat: a rename and a mount move.
//!
//! Spares belong to no seat and hold nothing of a learner or of the workshop's secret (they are
//! empty file systems of one size); a seat that takes one makes its dirs its own uid's then. What
//! a workshop reserved is counted on top of the usual [`SPARES_PER_SIZE`] until its seats start
//! (`started`: they take the spares) or it is deleted or never started (`release`: the spares
//! beyond what is still wanted are unmounted and their images deleted). An agent restart drops
//! every spare (`drop_spares` in `open`): nothing prepared outlives the process that counted it.

use std::path::PathBuf;
use std::sync::Arc;

use super::{read_dirs, seatfs, SeatStore, SeatStoreError, SPARES_PER_SIZE};

/// Spares made side by side: the copies and mounts mostly wait on I/O, the loop attach itself
/// is one at a time (`seatfs::attach`).
const MAKERS: usize = 4;

/// How long after its start a prepared workshop's leftover spares are trimmed.
const LEFTOVERS_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

impl SeatStore {
    /// Spares of `disk_mb` to keep: the usual ones plus every reservation of that size.
    pub(super) fn spares_wanted(&self, disk_mb: u32) -> usize {
        let ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        SPARES_PER_SIZE
            + ahead
                .values()
                .filter(|(mb, _)| *mb == disk_mb)
                .map(|(_, n)| n)
                .sum::<usize>()
    }

    /// Mounted spares of `disk_mb` (a spare whose mount is still being made is not counted).
    pub fn spares_ready(&self, disk_mb: u32) -> usize {
        self.spare_mounts_of(disk_mb)
            .iter()
            .filter(|m| seatfs::is_mount_point(m).unwrap_or(false))
            .count()
    }

    fn spare_mounts_of(&self, disk_mb: u32) -> Vec<PathBuf> {
        let prefix = format!("{disk_mb}-");
        read_dirs(&self.spare_mounts())
            .into_iter()
            .filter(|m| {
                m.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .collect()
    }

    /// Reserves `seats` spares of `disk_mb` for workshop `owner` (replacing an earlier
    /// reservation of it) and makes them; blocking, returns once they are mounted with how many
    /// spares of that size are ready. A store without disk limits has nothing to make ahead.
    pub fn reserve_ahead(
        self: &Arc<Self>,
        owner: &str,
        disk_mb: u32,
        seats: usize,
    ) -> Result<usize, SeatStoreError> {
        if !self.enforced {
            return Ok(0);
        }
        {
            let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.made_template(disk_mb)?;
            drop(guard);
        }
        self.ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(owner.to_string(), (disk_mb, seats));
        let makers: Vec<_> = (0..MAKERS)
            .map(|_| {
                let store = Arc::clone(self);
                std::thread::spawn(move || -> Result<(), SeatStoreError> {
                    // One at a time per maker, so the makers share the work.
                    while store.refill_spares(disk_mb, 1)? > 0 {}
                    Ok(())
                })
            })
            .collect();
        let mut first_err = None;
        for maker in makers {
            let done = maker.join().unwrap_or_else(|_| {
                Err(SeatStoreError::Dir(
                    self.spare_mounts(),
                    std::io::Error::other("a spare maker panicked"),
                ))
            });
            if let Err(e) = done {
                first_err.get_or_insert(e);
            }
        }
        // Released while the makers ran: what they made after the release goes too.
        let still = self
            .ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(owner);
        if !still {
            self.trim_spares(disk_mb)?;
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(self.spares_ready(disk_mb)),
        }
    }

    /// The seats of `owner` are being created: its reservation ends and they take the spares.
    /// What they leave (fewer seats placed here than prepared, another size) is trimmed once
    /// the class has had [`LEFTOVERS_AFTER`] to take its spares.
    pub fn started_ahead(self: &Arc<Self>, owner: &str) {
        let ended = self
            .ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(owner);
        if let Some((disk_mb, _)) = ended {
            let store = Arc::clone(self);
            std::thread::spawn(move || {
                std::thread::sleep(LEFTOVERS_AFTER);
                if let Err(e) = store.trim_spares(disk_mb) {
                    tracing::warn!(disk_mb, error = %e, "trimming spares left after a start failed");
                }
            });
        }
    }

    /// The reservation of `owner` ends without a trim: seats run ahead take its spares now
    /// (`warm`), and while it stood every spare they took would have been made again.
    pub fn hand_over_ahead(&self, owner: &str) -> bool {
        self.ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(owner)
            .is_some()
    }

    /// Unmounts and deletes mounted spares beyond what is wanted, of every size (what seats
    /// run ahead, or a Start that cut their run short, did not take); how many went.
    pub fn trim_leftovers(&self) -> Result<usize, SeatStoreError> {
        let mut sizes: Vec<u32> = read_dirs(&self.spare_mounts())
            .iter()
            .filter_map(|m| m.file_name()?.to_str()?.split('-').next()?.parse().ok())
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        let mut gone = 0;
        for disk_mb in sizes {
            gone += self.trim_spares(disk_mb)?;
        }
        Ok(gone)
    }

    /// Gives back what `owner` reserved (deleted, or never started): the reservation ends and
    /// spares beyond what is still wanted are unmounted and deleted. Returns how many went.
    pub fn release_ahead(&self, owner: &str) -> Result<usize, SeatStoreError> {
        let gone = self
            .ahead
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(owner);
        match gone {
            Some((disk_mb, _)) => self.trim_spares(disk_mb),
            None => Ok(0),
        }
    }

    /// Unmounts and deletes mounted spares of `disk_mb` beyond [`Self::spares_wanted`].
    fn trim_spares(&self, disk_mb: u32) -> Result<usize, SeatStoreError> {
        let _guard = self.spares.lock().unwrap_or_else(|p| p.into_inner());
        let wanted = self.spares_wanted(disk_mb);
        let mounted: Vec<PathBuf> = self
            .spare_mounts_of(disk_mb)
            .into_iter()
            .filter(|m| seatfs::is_mount_point(m).unwrap_or(false))
            .collect();
        let extra = mounted.len().saturating_sub(wanted);
        for mnt in mounted.iter().take(extra) {
            seatfs::unmount(mnt).map_err(|e| SeatStoreError::Unmount(mnt.clone(), e))?;
            std::fs::remove_dir(mnt).map_err(|e| SeatStoreError::Remove(mnt.clone(), e))?;
            if let Some(name) = mnt.file_name() {
                let image = self.spare_images().join(name).with_extension("img");
                std::fs::remove_file(&image).map_err(|e| SeatStoreError::Remove(image, e))?;
            }
        }
        Ok(extra)
    }
}
