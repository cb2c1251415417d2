//! Seats start from the small launch namespace (`sandbox::launchns`): no process of a seat sees
//! another seat's file system or the host's other mounts, and what bwrap starts from does not
//! grow with the number of seats (it used to hold one more mount per seat, and bwrap reads it
//! whole for every bind it makes). As root, with bwrap; skips with a printed reason otherwise.

mod sandbox_support;

use clarateach_core::Limits;
use clarateach_isolation::Backend;
use sandbox_support::{ok, skipped, Harness};

/// Mount points of every process of a seat, as each of them sees its own namespace.
fn mountinfo_of_seat(h: &Harness, seat: u32) -> Vec<(i32, String)> {
    h.backend
        .pids(&h.key(seat))
        .into_iter()
        .filter_map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
                .ok()
                .map(|t| (pid, t))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_start_from_a_namespace_without_other_seats_or_host_mounts() {
    if skipped("seats_start_from_a_namespace_without_other_seats_or_host_mounts") {
        return;
    }
    let h = Harness::new();
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .count();
    let mut eps = Vec::new();
    for seat in 1..=4 {
        eps.push(h.seat(seat, Limits::default(), &[]).await);
    }
    let seats_dir = h
        .dir
        .path()
        .join("seats")
        .canonicalize()
        .expect("seats dir");
    for seat in 1..=4u32 {
        let procs = mountinfo_of_seat(&h, seat);
        assert!(!procs.is_empty(), "seat {seat} has no processes");
        for (pid, text) in &procs {
            let lines = text.lines().count();
            // The launch namespace: root, /proc, /dev, the seat's own file system (and the
            // mounts a data dir off the root file system needs); bwrap's own adds a dozen.
            assert!(
                lines < 40 && lines < host_mounts,
                "pid {pid} of seat {seat} sees {lines} mounts (host: {host_mounts}):\n{text}"
            );
            for other in (1..=4u32).filter(|o| *o != seat) {
                let name = format!("seat-{other:02}");
                assert!(
                    !text.contains(&format!("{}/{}/{name}", seats_dir.display(), h.ws)),
                    "pid {pid} of seat {seat} sees {name}'s file system:\n{text}"
                );
            }
        }
    }
    // The seats work as before: each writes its own /workspace, on its own file system.
    for (i, ep) in eps.iter().enumerate() {
        ok(ep, &format!("echo {i} > /workspace/mine")).await;
        let out = ok(ep, "cat /workspace/mine; ls /workspace").await;
        assert_eq!(out, format!("{i}\nmine"), "seat {} sees {out:?}", i + 1);
    }
    let bwrap_lines: Vec<usize> = (1..=4u32)
        .filter_map(|s| {
            mountinfo_of_seat(&h, s)
                .into_iter()
                .map(|(_, t)| t.lines().count())
                .min()
        })
        .collect();
    assert!(
        bwrap_lines.windows(2).all(|w| w[0] == w[1]),
        "the namespace bwrap starts from grows with the seats: {bwrap_lines:?}"
    );
    for seat in 1..=4 {
        h.backend
            .destroy(&h.key(seat), true)
            .await
            .expect("destroy");
    }
}
