//! The real [`Provisioner`]: seats go to connected agents by free capacity, and the store
//! records which agent hosts each seat (the truth a restarted control plane rebuilds from).

use std::sync::Arc;

use async_trait::async_trait;
use clarateach_core::agent_proto::{ControlMessage, SeatSpec};
use clarateach_core::SeatState;
use clarateach_store::Store;

use super::registry::{AgentInfo, RegistryHandle};
use super::{ProvisionError, Provisioner, Release, SeatRoute};

/// Places seats on the agents of a [`RegistryHandle`].
#[derive(Clone)]
pub struct AgentScheduler {
    store: Arc<dyn Store>,
    registry: RegistryHandle,
}

/// Messages of one start or stop in flight at once: an agent another replica holds costs a
/// few database round trips per message (its presence, the queued command), which one after
/// another made a 150-seat start through the other replica take seconds.
const SEND_CONCURRENCY: usize = 8;

impl AgentScheduler {
    pub fn new(store: Arc<dyn Store>, registry: RegistryHandle) -> Self {
        Self { store, registry }
    }

    /// Sends every `(seat, agent, message)`, [`SEND_CONCURRENCY`] at a time; what each send
    /// answered (false: that agent is connected nowhere), in the order given.
    async fn send_all(
        &self,
        msgs: Vec<(u32, String, ControlMessage)>,
    ) -> Result<Vec<(u32, String, bool)>, ProvisionError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        stream::iter(msgs)
            .map(|(seat, agent_id, msg)| async move {
                let sent = self.registry.send(&agent_id, msg).await?;
                Ok::<_, ProvisionError>((seat, agent_id, sent))
            })
            .buffered(SEND_CONCURRENCY)
            .try_collect()
            .await
    }
}

#[async_trait]
impl Provisioner for AgentScheduler {
    async fn place(&self, workshop_id: &str, specs: Vec<SeatSpec>) -> Result<(), ProvisionError> {
        let seats: Vec<u32> = specs.iter().map(|s| s.seat).collect();
        // One workshop, one image: its seats go only where that image is built (or buildable).
        let image = specs.first().and_then(|s| s.image.clone());
        // One workshop, one set of limits: every seat reserves them on its agent.
        let demand = specs
            .first()
            .map(|s| super::Demand::of(&s.limits))
            .unwrap_or_default();
        let placing = self.registry.placing().await?;
        let placements = match self
            .registry
            .reserve_for_image(workshop_id, seats, image, demand)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                placing.done().await;
                return Err(e);
            }
        };
        // Record first, then tell the agents: a fast `ready` report must find the seat placed.
        if let Err(e) = self
            .store
            .place_seats(workshop_id, &placements, SeatState::Creating)
            .await
        {
            placing.done().await;
            self.registry.forget(workshop_id).await;
            return Err(e.into());
        }
        placing.done().await;
        let creates: Vec<(u32, String, ControlMessage)> = specs
            .into_iter()
            .filter_map(|spec| {
                let (_, agent_id) = placements.iter().find(|(seat, _)| *seat == spec.seat)?;
                Some((
                    spec.seat,
                    agent_id.clone(),
                    ControlMessage::CreateSeat(spec),
                ))
            })
            .collect();
        for (seat, agent_id, sent) in self.send_all(creates).await? {
            if !sent {
                // The agent left between reserve and send: its session marks the seat lost.
                tracing::warn!(workshop.id = workshop_id, seat, agent.id = %agent_id, "agent gone before create_seat");
            }
        }
        Ok(())
    }

    async fn release(
        &self,
        workshop_id: &str,
        delete_volumes: bool,
    ) -> Result<Release, ProvisionError> {
        let seats = self.store.list_seats(workshop_id).await?;
        let mut out = Release::default();
        let mut destroys = Vec::new();
        for seat in seats {
            match seat.agent_id {
                Some(agent_id) => {
                    let msg = ControlMessage::DestroySeat {
                        workshop_id: workshop_id.to_string(),
                        seat: seat.seat,
                        delete_volume: delete_volumes,
                    };
                    destroys.push((seat.seat, agent_id, msg));
                }
                None => out.unreachable.push(seat.seat),
            }
        }
        for (seat, _, sent) in self.send_all(destroys).await? {
            if sent {
                out.sent.push(seat);
            } else {
                out.unreachable.push(seat);
            }
        }
        out.unreachable.sort_unstable();
        self.registry.forget(workshop_id).await;
        Ok(out)
    }

    async fn seat_route(&self, workshop_id: &str, seat: u32) -> Option<SeatRoute> {
        self.registry.route(workshop_id, seat).await
    }

    async fn agent_route(&self, agent_id: &str) -> Option<SeatRoute> {
        self.registry.agent_route(agent_id).await
    }

    async fn agents(&self) -> Vec<AgentInfo> {
        self.registry.list().await
    }

    async fn send_to_agent(
        &self,
        agent_id: &str,
        msg: ControlMessage,
    ) -> Result<bool, ProvisionError> {
        self.registry.send(agent_id, msg).await
    }
}
