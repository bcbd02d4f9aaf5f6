"""A community's policy applied to its stream of activity: the per-message rules plus the
rules that need memory (repeat offenders, raids). No I/O beyond the policy store's files."""

import time

from schemas import ActivityKind, MemberActivity
from services.moderation.policy.evaluate import Decision, evaluate_message
from services.moderation.policy.load import PolicyStore
from services.moderation.policy.model import Policy
from services.moderation.policy.trackers import OffenderWindow, RaidTracker

RELOAD_EVERY_S = 2.0


class PolicyEngine:
    def __init__(self, store: PolicyStore, *, clock=time.monotonic) -> None:
        self.store = store
        self.offenders = OffenderWindow()
        self.raids = RaidTracker()
        self._clock = clock
        self._checked_at = float("-inf")

    def policy_for(self, community_id: str) -> Policy:
        # Edited policy files are picked up within seconds, without a restart; an invalid
        # edit is refused by the store and the last good version keeps serving.
        now = self._clock()
        if now - self._checked_at >= RELOAD_EVERY_S:
            self._checked_at = now
            self.store.reload_if_changed()
        return self.store.for_community(community_id)

    def observe(self, event: MemberActivity) -> None:
        """Remember what later decisions depend on (joins, for raid detection)."""
        if event.kind is ActivityKind.member_joined:
            self.raids.record_join(event.community_id, event.member_id, event.occurred_at)

    def decide(self, policy: Policy, event: MemberActivity, scores: dict[str, float]) -> Decision | None:
        member = (event.community_id, event.member_id)
        at = event.occurred_at
        offences = policy.repeat_offenders
        raid = policy.raid
        decision = evaluate_message(
            policy, scores, text=event.text, channel_id=event.channel_id, member_id=event.member_id,
            offender_count=self.offenders.count(member, at, offences.window_s) if offences else 0,
            raid_member=bool(raid) and self.raids.is_raid_member(
                event.community_id, event.member_id, at,
                joins=raid.joins, join_window_s=raid.join_window_s, message_window_s=raid.message_window_s,
            ),
        )
        if decision is not None and not decision.shadow:
            self.offenders.record(member, at, offences.window_s if offences else None)
        return decision
