"""Ray Serve's side of replica choice: a custom ``RequestRouter`` (Ray 2.60's public
``ray.serve.request_router`` API, set with ``request_router_config``) that asks Hearth's pure
router (:class:`hearth.cluster.routing.PrefixRouter`: consistent hashing over the prompt's first
blocks, bounded load, sticky adapters) which replica should take a request.

It runs in the ingress process, inside the DeploymentHandle's router. Ray still does the rest:
it probes the chosen replica's queue and falls back to the next rank (every other replica, least
loaded first) when it is full or gone, with backoff, and it tracks replicas that come and go.
"""

from __future__ import annotations

from typing import Any

from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica

from hearth.cluster.deployment import ForwardedRequest
from hearth.cluster.routing import PrefixRouter, ReplicaLoad

ROUTER_CLASS = "hearth.cluster.ray_router.HearthRequestRouter"


class HearthRequestRouter(RequestRouter):
    """Ranks: the replica Hearth's router picks, then the others by queue length."""

    def initialize_state(self, **kwargs: Any) -> None:
        self._router = PrefixRouter()

    async def choose_replicas(
        self,
        candidate_replicas: list[RunningReplica],
        pending_request: PendingRequest | None = None,
    ) -> list[list[RunningReplica]]:
        call = _forwarded(pending_request)
        avoid = call.avoid if call is not None else frozenset()
        candidates = [r for r in candidate_replicas if r.replica_id.unique_id not in avoid]
        candidates = candidates or list(candidate_replicas)  # nothing else left: try again
        if not candidates:
            return []
        loads = [self._load(replica) for replica in candidates]
        text = call.routing_text if call is not None else ""
        chosen = self._router.choose(text, loads)
        first = [r for r in candidates if r.replica_id.unique_id == chosen]
        rest = sorted(
            (r for r in candidates if r.replica_id.unique_id != chosen),
            key=lambda r: self._queue_length(r),
        )
        return [first, rest] if rest else [first]

    def _load(self, replica: RunningReplica) -> ReplicaLoad:
        return ReplicaLoad(
            id=replica.replica_id.unique_id,
            ongoing=self._queue_length(replica),
            capacity=max(1, replica.max_ongoing_requests),
        )

    def _queue_length(self, replica: RunningReplica) -> int:
        length = self.replica_queue_len_cache.get(replica.replica_id)
        return int(length) if length is not None else 0


def _forwarded(pending: PendingRequest | None) -> ForwardedRequest | None:
    if pending is None:
        return None
    for value in (*pending.args, *pending.kwargs.values()):
        if isinstance(value, ForwardedRequest):
            return value
    return None
