//! Test-only kill points, for the fault tests (`cli/tests/faults.rs`): a `kill -9` at an exact
//! phase, which a signal sent from outside can only hit by luck.
//!
//! Built only with the `kill-points` feature, which `fastpath`'s dev-dependencies turn on: the
//! binary `cargo test` builds has it, `cargo build` and `cargo build --release` do not (there
//! [`reached`] compiles to nothing). With it built in, `FASTPATH_KILL_AT=<point>` in the
//! environment makes the process send itself SIGKILL on reaching that point: no destructor,
//! no signal handler and no exit code path runs, exactly as after `kill -9`.
//!
//! The points, in the order a run meets them:
//!
//! | point | where |
//! |---|---|
//! | `attach:steer-loaded` | attach: steer runs in the module chain, its program pin is not yet made |
//! | `rules:defs-written` | a rule change: the rule records are written, the match maps are not |
//! | `rules:exact-table-written` | a rule change: an exact table is in its idle bank, not switched to |
//! | `replace:steer-swapped` | replace: the chain runs the new steer, the program pin names the old one |
//! | `lb:attached` | the load balancer: steering attached, no rule and no socket yet |
//! | `lb:workers-started` | the load balancer: sockets in the XSKMAP, control socket not yet bound |
//! | `lb:rules-pruned` | a reload: rules of removed VIPs deleted, new ones not yet added |
//! | `lb:reload-rules-synced` | a reload: rules match the new config, the workers run the old tables |
//! | `lb:swap` | a hot swap: the first worker runs the new chain, the others the old one |
//! | `control:request-sent` | `fastpath lb <command>`: the request is sent, the response not yet read |
//! | `module:revision-built` | a module change: the new revision is in its bank, not switched to |
//! | `module:switched` | a module change: the new revision runs, its records are not yet updated |
//! | `trial:built` | `module test`: the scratch chain is built and pinned, no packet has run |
//! | `topology:before-switch` | `topology apply`: the journal and the new programs are staged, the kernel runs the old revision |
//! | `topology:after-switch` | `topology apply`: the kernel runs the new revision, the records are not yet updated |

/// Kills this process with SIGKILL if it was built with the `kill-points` feature and
/// `FASTPATH_KILL_AT` names `point`; otherwise does nothing.
#[inline]
pub fn reached(point: &str) {
    #[cfg(feature = "kill-points")]
    if std::env::var("FASTPATH_KILL_AT").is_ok_and(|at| at == point) {
        eprintln!("FASTPATH_KILL_AT={point}: SIGKILL (a test-only kill point)");
        // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    #[cfg(not(feature = "kill-points"))]
    let _ = point;
}
