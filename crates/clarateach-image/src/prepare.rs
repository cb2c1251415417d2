//! Seat images an agent builds on demand (issue 11: "the agent builds it first, with the seat
//! showing `preparing`"). An agent may host a workshop whose image it has not built when the
//! image is one of the built-in recipes and this host can build (root and debootstrap): it says
//! so in `register` (`buildable`), the control plane places seats there when no agent has the
//! image already, and the first seat's create builds it while every seat waits as `preparing`.
//! Builds in one process are serialised, so ten seats of one image build it once (the store is
//! cached by the recipe's hash; the later ones find it built).

use std::sync::Mutex;

use crate::recipe::{Recipe, BUILTINS};
use crate::store::{ImageStore, SeatBuildOptions, SeatBuildOutcome};
use crate::ImageError;

static BUILDING: Mutex<()> = Mutex::new(());

/// The built-in recipes this host could build now: all of them as root with debootstrap
/// installed, none otherwise.
pub fn buildable() -> Vec<String> {
    let root = nix::unistd::Uid::effective().is_root();
    if !root || crate::tools::which("debootstrap").is_none() {
        return Vec::new();
    }
    BUILTINS.iter().map(|(n, _)| (*n).to_string()).collect()
}

/// Whether a seat of `name` must wait for a build here: not built, but a built-in recipe.
pub fn needs_build(store: &ImageStore, name: &str) -> bool {
    store.current_dir(name).is_none() && Recipe::builtin(name).is_some()
}

/// Builds `name` from its built-in recipe unless it is built already; `None` when it was.
/// An image that is neither built nor built-in is `NotFound`.
pub fn ensure_built(
    store: &ImageStore,
    name: &str,
) -> Result<Option<SeatBuildOutcome>, ImageError> {
    if store.current_dir(name).is_some() {
        return Ok(None);
    }
    let recipe = Recipe::builtin(name).ok_or_else(|| ImageError::NotFound(name.to_string()))?;
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    if store.current_dir(name).is_some() {
        return Ok(None); // built by another seat while this one waited
    }
    let opts = SeatBuildOptions {
        name: name.to_string(),
        recipe,
        mirror: None,
        force: false,
        show_progress: false,
    };
    store.build(&opts).map(Some)
}
