//! Which consecutive Lua instances of a phase run as one batch (`lua::runtime::Batch`: one
//! entry into Lua for all of them), and their latency metrics.

use std::time::Instant;

use super::Gateway;
use crate::plugins::chain::Link;
use crate::plugins::lua::runtime::{Batch, BATCH_MAX};
use crate::plugins::Phase;
use crate::snapshot::Snapshot;

/// Where each member of a batch is in the sequence the phase walks (a chain's links, or the
/// request's `ran` list), and its instance index.
#[derive(Default)]
pub(super) struct Members {
    at: [(usize, usize); BATCH_MAX],
    len: usize,
}

impl Members {
    /// The position in the sequence of member `j`.
    pub(super) fn position(&self, j: usize) -> usize {
        self.at[j.min(self.len.saturating_sub(1))].0
    }

    /// The instance index of member `j`.
    fn instance(&self, j: usize) -> usize {
        self.at[j.min(self.len.saturating_sub(1))].1
    }
}

/// A batch gathered from a sequence: its members and the position of the first item it did
/// not take.
pub(super) struct Gathered<'s> {
    pub(super) batch: Batch<'s>,
    pub(super) members: Members,
    pub(super) next: usize,
}

impl<'s> Gathered<'s> {
    /// The position to go on from once the batch has run: after it, or at the member it
    /// stopped short of (one the runtime could not prepare, which then fails on its own).
    pub(super) fn resume_at(&self) -> usize {
        if self.batch.len() < self.members.len {
            self.members.position(self.batch.len())
        } else {
            self.next
        }
    }

    /// Gathers a batch from `items` (position, instance index; None for an item that cannot
    /// join a batch), if the first item is a Lua instance of `phase` and at least two join (a
    /// single instance takes the ordinary call). Items whose instance is disabled or does not
    /// run in `phase` are passed over; the batch ends before a native instance that runs in
    /// the phase, an item that cannot join, or when it is full.
    pub(super) fn gather(
        snap: &'s Snapshot,
        phase: Phase,
        mut items: impl Iterator<Item = (usize, Option<usize>)>,
    ) -> Option<Box<Gathered<'s>>> {
        let (first, Some(i)) = items.next()? else {
            return None;
        };
        let lua = lua_of(snap, i, phase)?;
        let (second, next) = items.by_ref().find_map(|(pos, item)| match item {
            None => Some((None, pos)),
            Some(i) => match snap.instances[i].as_deref() {
                Some(inst) if inst.phases().contains(&phase) => {
                    Some((inst.as_lua().map(|l| (l, i)), pos))
                }
                _ => None,
            },
        })?;
        let (second, i2) = second?;
        let mut g = Box::new(Gathered {
            batch: Batch::default(),
            members: Members::default(),
            next: next + 1,
        });
        g.add(lua, first, i);
        g.add(second, next, i2);
        for (pos, item) in items {
            let Some(i) = item else { break };
            if let Some(inst) = snap.instances[i].as_deref() {
                if inst.phases().contains(&phase) {
                    match inst.as_lua() {
                        Some(lua) if g.batch.len() < BATCH_MAX => g.add(lua, pos, i),
                        _ => break,
                    }
                }
            }
            g.next = pos + 1;
        }
        Some(g)
    }

    fn add(&mut self, lua: &'s crate::plugins::lua::LuaInstance, pos: usize, i: usize) {
        if self.batch.push(lua) {
            self.members.at[self.members.len] = (pos, i);
            self.members.len += 1;
        }
    }
}

/// Instance `i` as a Lua instance that runs in `phase`.
fn lua_of(snap: &Snapshot, i: usize, phase: Phase) -> Option<&crate::plugins::lua::LuaInstance> {
    snap.instances[i]
        .as_deref()
        .filter(|inst| inst.phases().contains(&phase))?
        .as_lua()
}

/// The items of `chain` from `from` for [`gather`]: a link joins a batch when its instance
/// does not depend on the consumer (an earlier member may set it: a link that does is
/// selected when the chain reaches it) and, in access, has no condition (evaluated when
/// reached, against what the plugins before it did).
pub(super) fn links<'c>(
    snap: &'c Snapshot,
    chain: &'c [Link],
    from: usize,
    phase: Phase,
) -> impl Iterator<Item = (usize, Option<usize>)> + 'c {
    chain[from..].iter().enumerate().map(move |(k, link)| {
        let any_consumer = link.candidates.iter().all(|(_, c)| c.is_none());
        let i =
            link.candidates.first().map(|(i, _)| *i).filter(|&i| {
                any_consumer && (phase != Phase::Access || snap.conditions[i].is_none())
            });
        (from + k, i)
    })
}

impl Gateway {
    /// Records the latency of each member of a batch that ran (the first began at `started`;
    /// the one it returned from failed if `failed`), and returns when the last ended.
    pub(super) fn observe_batch(
        &self,
        snap: &Snapshot,
        g: &Gathered<'_>,
        phase: Phase,
        started: Instant,
        failed: bool,
    ) -> Instant {
        let reached = g.batch.reached();
        let mut start = started;
        for j in 0..reached {
            let Some(end) = g.batch.ended(j) else { break };
            self.record(snap, g.members.instance(j), phase, start, end, false);
            start = end;
        }
        self.observe(snap, g.members.instance(reached), phase, start, failed)
    }
}
