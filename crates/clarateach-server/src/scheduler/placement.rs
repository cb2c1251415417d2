//! Where the seats of one workshop go: a pure function over what each agent has left.
//!
//! An agent offers seat slots (`--capacity`) and, when it reported them at registration, memory
//! and CPU (after the control plane's overcommit factors: a seat's limits are ceilings, not
//! what an idle learner uses). Every seat of a workshop reserves that workshop's
//! `limits.memory_mb` and `limits.cpu_millis`, so how many more seats an agent takes is the
//! smallest of its free slots, free memory / the seat's memory and free CPU / the seat's CPU.
//! Seats are spread one at a time onto the agent with the most room left, so a workshop fills
//! the agents evenly and goes on to the next agent when one is full. Kept apart from the
//! registry task so the arithmetic is unit-tested without channels.

use clarateach_core::Limits;

/// What one seat reserves on its agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Demand {
    pub memory_mb: u64,
    pub cpu_millis: u64,
}

impl Demand {
    pub fn of(limits: &Limits) -> Self {
        Self {
            memory_mb: u64::from(limits.memory_mb),
            cpu_millis: u64::from(limits.cpu_millis),
        }
    }
}

/// One agent as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub agent_id: String,
    /// Seat slots not yet placed.
    pub free_slots: u32,
    /// Memory (MiB) not yet reserved; `None`: the agent did not report memory (slots only).
    pub free_memory_mb: Option<u64>,
    /// CPU (thousandths) not yet reserved; `None`: not reported.
    pub free_cpu_millis: Option<u64>,
    /// Has the workshop's image built (always true for the host root).
    pub has_image: bool,
}

/// Which resource ran out first when a workshop does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortage {
    Slots,
    Memory { per_seat_mb: u64 },
    Cpu { per_seat_millis: u64 },
}

impl std::fmt::Display for Shortage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shortage::Slots => f.write_str("seat slots"),
            Shortage::Memory { per_seat_mb } => {
                write!(f, "memory ({per_seat_mb} MiB reserved per seat)")
            }
            Shortage::Cpu { per_seat_millis } => write!(
                f,
                "CPU ({} CPU reserved per seat)",
                *per_seat_millis as f64 / 1000.0
            ),
        }
    }
}

/// The workshop does not fit: `fit` seats would, `needed` were asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom {
    pub needed: u32,
    pub fit: u32,
    pub short_of: Shortage,
}

impl Candidate {
    /// How many more seats of `demand` this agent takes, and what limits it.
    fn room(&self, demand: Demand) -> (u32, Shortage) {
        let by = |free: Option<u64>, per: u64| match free {
            Some(free) if per > 0 => u32::try_from(free / per).unwrap_or(u32::MAX),
            _ => u32::MAX,
        };
        let mem = by(self.free_memory_mb, demand.memory_mb);
        let cpu = by(self.free_cpu_millis, demand.cpu_millis);
        let mut room = (self.free_slots, Shortage::Slots);
        if mem < room.0 {
            room = (
                mem,
                Shortage::Memory {
                    per_seat_mb: demand.memory_mb,
                },
            );
        }
        if cpu < room.0 {
            room = (
                cpu,
                Shortage::Cpu {
                    per_seat_millis: demand.cpu_millis,
                },
            );
        }
        room
    }
}

/// Assigns every seat in `seats` to an agent, all or nothing: agents with the image first, the
/// one with the most room each time (ties by id, for determinism); agents without it (they
/// build it on demand) only when none with it has room.
pub fn assign(
    candidates: &[Candidate],
    seats: &[u32],
    demand: Demand,
) -> Result<Vec<(u32, String)>, NoRoom> {
    let needed = u32::try_from(seats.len()).unwrap_or(u32::MAX);
    let mut room: Vec<(&Candidate, u32, Shortage)> = candidates
        .iter()
        .map(|c| {
            let (n, s) = c.room(demand);
            (c, n, s)
        })
        .collect();
    let fit = room
        .iter()
        .fold(0u32, |acc, (_, n, _)| acc.saturating_add(*n));
    if fit < needed {
        // Name what binds on most of the room that is missing: the shortage of the agent that
        // would have had the most seat slots otherwise, else slots.
        let short_of = room
            .iter()
            .filter(|(_, _, s)| *s != Shortage::Slots)
            .max_by_key(|(c, n, _)| c.free_slots.saturating_sub(*n))
            .map(|(_, _, s)| *s)
            .unwrap_or(Shortage::Slots);
        return Err(NoRoom {
            needed,
            fit,
            short_of,
        });
    }
    let mut out = Vec::with_capacity(seats.len());
    for &seat in seats {
        room.sort_by(|a, b| {
            (b.0.has_image && b.1 > 0)
                .cmp(&(a.0.has_image && a.1 > 0))
                .then_with(|| b.1.cmp(&a.1))
                .then_with(|| a.0.agent_id.cmp(&b.0.agent_id))
        });
        let Some(best) = room.first_mut().filter(|b| b.1 > 0) else {
            break;
        };
        best.1 -= 1;
        out.push((seat, best.0.agent_id.clone()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, slots: u32, mem: Option<u64>, cpu: Option<u64>) -> Candidate {
        Candidate {
            agent_id: id.into(),
            free_slots: slots,
            free_memory_mb: mem,
            free_cpu_millis: cpu,
            has_image: true,
        }
    }

    const SEAT: Demand = Demand {
        memory_mb: 512,
        cpu_millis: 1000,
    };

    fn count(out: &[(u32, String)], id: &str) -> usize {
        out.iter().filter(|(_, a)| a == id).count()
    }

    #[test]
    fn memory_limits_an_agent_below_its_slots_and_the_rest_spills_over() {
        // a: 50 slots but memory for 2 seats; b: 50 slots, memory for 3.
        let agents = [
            agent("a", 50, Some(1024), None),
            agent("b", 50, Some(1536 + 100), None),
        ];
        let out = assign(&agents, &[1, 2, 3, 4, 5], SEAT).expect("5 fit");
        assert_eq!((count(&out, "a"), count(&out, "b")), (2, 3));
        let err = assign(&agents, &[1, 2, 3, 4, 5, 6], SEAT).expect_err("6 do not");
        assert_eq!(
            err,
            NoRoom {
                needed: 6,
                fit: 5,
                short_of: Shortage::Memory { per_seat_mb: 512 }
            }
        );
        assert_eq!(
            err.short_of.to_string(),
            "memory (512 MiB reserved per seat)"
        );
    }

    #[test]
    fn cpu_binds_when_it_runs_out_first() {
        let agents = [agent("a", 10, Some(1 << 20), Some(2500))];
        assert_eq!(assign(&agents, &[1, 2], SEAT).expect("2 fit").len(), 2);
        let err = assign(&agents, &[1, 2, 3], SEAT).expect_err("2.5 CPUs hold 2 seats");
        assert_eq!(err.fit, 2);
        assert_eq!(
            err.short_of,
            Shortage::Cpu {
                per_seat_millis: 1000
            }
        );
    }

    #[test]
    fn agents_that_report_no_resources_count_slots_only() {
        let agents = [agent("old", 3, None, None)];
        assert_eq!(assign(&agents, &[1, 2, 3], SEAT).expect("fits").len(), 3);
        let err = assign(&agents, &[1, 2, 3, 4], SEAT).expect_err("slots");
        assert_eq!((err.fit, err.short_of), (3, Shortage::Slots));
    }

    #[test]
    fn spreads_by_room_left_not_by_slots() {
        // b has more slots but less memory: a takes more seats.
        let agents = [
            agent("a", 4, Some(4096), None),
            agent("b", 40, Some(1024), None),
        ];
        let out = assign(&agents, &[1, 2, 3, 4, 5, 6], SEAT).expect("6 fit");
        assert_eq!((count(&out, "a"), count(&out, "b")), (4, 2));
        // Most room first (ties by id): a (room 4) takes three seats before b (room 2) gets one.
        let out = assign(&agents, &[1, 2, 3, 4], SEAT).expect("fits");
        assert_eq!((count(&out, "a"), count(&out, "b")), (3, 1));
    }

    #[test]
    fn agents_without_the_image_only_when_those_with_it_are_full() {
        let mut builder = agent("builder", 10, Some(1 << 20), None);
        builder.has_image = false;
        let agents = [agent("has", 2, Some(1 << 20), None), builder];
        let out = assign(&agents, &[1, 2], SEAT).expect("fits");
        assert_eq!(count(&out, "has"), 2);
        let out = assign(&agents, &[1, 2, 3], SEAT).expect("fits");
        assert_eq!((count(&out, "has"), count(&out, "builder")), (2, 1));
    }

    #[test]
    fn nothing_connected_is_no_room() {
        let err = assign(&[], &[1], SEAT).expect_err("no agent");
        assert_eq!((err.needed, err.fit), (1, 0));
    }
}
