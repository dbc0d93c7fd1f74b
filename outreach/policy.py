"""Delivery policy: whether, how and when one match becomes a contact — pure functions, no I/O.

For each candidate, in the order of the contract:

    dedupe → channel (consent, address, suppression; fall back) → cooldown → frequency caps
    → holdout → quiet hours → delay and expires

`decide` takes everything it needs as arguments (the candidates, the customer's past contacts,
the settings' limits and `now`) and returns one `Decision` per candidate with the reason in
plain words and every step it took, so `preview`, `explain` and the daemon say the same thing.
A contact that a frequency cap would stop may take the place of a lower-priority one that is
still waiting for its send time (the displaced one is held back and decided again later).

`gate` is the send-time check: immediately before a message leaves, the state as it is then
(condition, expiry, consent, quiet hours in the customer's current time zone, pause and
silences, the caps of the local day and week it leaves in) says whether it goes, on which
channel, or what happens to it instead.
"""

from __future__ import annotations

import hashlib
import operator
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from outreach.durations import format_duration
from outreach.quiet_hours import OFF, QuietHours, first_instant_at
from outreach.vocabulary import HELD_STATES, LIVE_STATES, Arm, State

DUPLICATE = "duplicate"  # a decision that writes nothing: the match was decided before

RETRY_BASE = 30.0
RETRY_CAP = 3600.0
MAX_ATTEMPTS = 8

_CHANNEL_LABEL = {"email": "email", "sms": "SMS"}


@dataclass(frozen=True)
class RulePolicy:
    """What a rule says about delivery."""

    name: str
    about: str
    channels: tuple[str, ...]
    priority: int = 0
    cooldown: timedelta | None = None
    delay: timedelta | None = None
    expires: timedelta | None = None
    quiet_hours: str | None = None  # None: the settings' window; "off": none for this rule
    holdout: float = 0.0  # fraction of customers, 0..1
    group: bool = False  # several matches of one customer become one message
    group_wait: timedelta = timedelta(0)  # the first waits this long for others to join it
    # (rule, period): a contact of that rule keeps this one quiet for the customer for the period.
    inhibited_by: tuple[tuple[str, timedelta], ...] = ()

    def __post_init__(self) -> None:
        where = f'rule "{self.name}"'
        if not self.channels:
            raise ValueError(f"{where}: no channels: list at least one, e.g. channels: [email]")
        if not 0.0 <= self.holdout <= 1.0:
            raise ValueError(f"{where}: holdout {self.holdout} must be a fraction from 0 to 1 (10% is 0.1)")
        for label, value in (("cooldown", self.cooldown), ("delay", self.delay), ("expires", self.expires)):
            if value is not None and value < timedelta(0):
                raise ValueError(f"{where}: {label} must not be negative")
        if self.expires is not None and self.expires <= (self.delay or timedelta(0)):
            raise ValueError(
                f"{where}: expires ({format_duration(self.expires)}) must be longer than delay"
                f" ({format_duration(self.delay or timedelta(0))}), or every contact would expire unsent"
            )
        if self.quiet_hours is not None and self.quiet_hours != OFF:
            try:
                QuietHours.parse(self.quiet_hours)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class Recipient:
    """What policy needs to know about a customer."""

    id: str
    timezone: str  # IANA name
    preferred_channel: str | None
    email: str | None
    phone: str | None
    email_opt_in: bool
    sms_opt_in: bool
    suppressed: frozenset[str] = frozenset()  # channels with a suppression (bounce, STOP, …)
    zone: ZoneInfo = field(init=False, repr=False, compare=False)  # of `timezone`

    def __post_init__(self) -> None:
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"customer {self.id!r}: unknown time zone {self.timezone!r}:"
                " use an IANA name such as Europe/London"
            ) from None
        object.__setattr__(self, "zone", zone)


_first = operator.itemgetter(0)


@dataclass(slots=True)  # not frozen: a tick builds 10^5, and a frozen one costs twice as much
class PastContact:
    """One row of the ledger for a customer."""

    rule: str
    dedupe_key: str
    channel: str | None
    state: str
    decided_at: datetime
    send_at: datetime | None  # when it is or was due: the local day it counts against
    expires_at: datetime | None = None  # kept when a held-back match is decided again
    id: str = ""  # the ledger row's id, for a contact a later decision displaces
    priority: int = 0

    @property
    def at(self) -> datetime:
        return _aware_utc(self.send_at or self.decided_at, "send_at")


@dataclass(frozen=True)
class Limits:
    """The settings' delivery limits."""

    quiet_hours: str  # "21:00-09:00" or "off"
    max_per_day: int
    max_per_week: int

    def __post_init__(self) -> None:
        if self.max_per_day < 0 or self.max_per_week < 0:
            raise ValueError("delivery.max_per_day and delivery.max_per_week must not be negative")
        if self.quiet_hours != OFF:
            try:
                QuietHours.parse(self.quiet_hours)
            except ValueError as exc:
                raise ValueError(f"delivery.quiet_hours: {exc}") from None


@dataclass(frozen=True)
class Candidate:
    """One match of a rule: the rule, the id of its `about` record, the customer."""

    rule: RulePolicy
    entity_id: str
    recipient: Recipient
    step: int = 1  # a follow-up of the rule's journey when > 1 (its RulePolicy carries the step's channels)


@dataclass(frozen=True)
class Displaced:
    """A waiting contact a higher-priority one took the place of: held back, decided again later."""

    contact_id: str
    dedupe_key: str
    reason: str
    recheck_at: datetime


@dataclass(slots=True)  # not frozen: a tick builds 10^5, and a frozen one costs twice as much
class Decision:
    """What happens to one candidate, and why.

    `state` is "pending" (to be sent at `send_at`), "holdout" (control group, never sent),
    "suppressed" (no channel with an address and consent: decided again when the customer's
    address, consent or suppressions change, or at `recheck_at`, its expiry), "skipped" (cooldown
    or a cap: decided again from `recheck_at`, when what held it back may have changed; None:
    when the customer's reach changes), "expired" (cannot be sent before
    `expires_at`) or "duplicate" (decided before: write nothing). `send_at` is set for "pending"
    only. `displaced` lists the waiting contacts this one took the place of.
    """

    rule: str
    entity_id: str
    customer_id: str
    dedupe_key: str
    state: str
    channel: str | None
    reason: str
    send_at: datetime | None
    expires_at: datetime | None
    trace: tuple[tuple[str, str | _Later], ...]  # each step taken and its words (see `steps`)
    recheck_at: datetime | None = None
    displaced: tuple[Displaced, ...] = ()
    priority: int = 0
    step: int = 1
    group_key: str | None = None  # a grouped match: the dedupe key of the contact whose message it joins

    @property
    def steps(self) -> tuple[tuple[str, str], ...]:
        """Every step taken, in the order of the contract, with what it found, in plain words."""
        return tuple((name, str(text)) for name, text in self.trace)

    @property
    def step_names(self) -> tuple[str, ...]:
        return tuple(map(_first, self.trace))  # C-level: a tick asks 10^5 decisions for them


def dedupe_key(rule: str, about: str, entity_id: str, customer_id: str, step: int = 1) -> str:
    """The key of "one contact per rule and entity, ever" (per rule and customer for `about:
    customer`); a follow-up step of the journey has its own."""
    base = f"{rule}:customer:{customer_id}" if about == "customer" else f"{rule}:{about}:{entity_id}"
    return base if step == 1 else f"{base}:step{step}"


def inhibition(
    rule: RulePolicy, history: Sequence[PastContact], now: datetime
) -> tuple[str, datetime] | None:
    """Why RULE must stay quiet for the customer at NOW, and until when: a contact of a rule that
    inhibits it is sent or on its way (from its decision until its send time plus the period)."""
    found: list[tuple[datetime, str]] = []
    for source, period in rule.inhibited_by:
        for row in history:
            if row.rule != source or row.state not in LIVE_STATES:
                continue
            until = row.at + period
            if _aware_utc(row.decided_at, "decided_at") <= now < until:
                word = "sent" if row.state == State.SENT else "due"
                found.append(
                    (until, f"inhibited by {source} ({word} {_utc_text(row.at)}) until {_utc_text(until)}")
                )
    if not found:
        return None
    until, reason = max(found)
    return reason, until


def in_holdout(rule: str, customer_id: str, fraction: float) -> bool:
    """Whether the customer is in the rule's control group: the same answer in every process, forever."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"holdout {fraction} must be a fraction from 0 to 1 (10% is 0.1)")
    # sha256 rather than hash(): Python salts str hashes per process (PYTHONHASHSEED). The rule
    # name is mixed in so each rule draws its own control group.
    digest = hashlib.sha256(f"{rule}\x00{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def assigned_arm(decision: Decision) -> Arm | None:
    """The arm of the rule's experiment DECISION assigns its match to: the holdout, the
    message once it went past the holdout draw without being held out (whatever
    the later steps make of it), or None when a step before the draw held it back."""
    if decision.state == "holdout":
        return Arm.HOLDOUT
    if "holdout" in decision.step_names:
        return Arm.MESSAGE
    return None


def quiet_hours_for(rule: RulePolicy, limits: Limits) -> QuietHours | None:
    """The quiet hours that apply to a rule's contacts: its own, else the settings'; None when off."""
    text = rule.quiet_hours if rule.quiet_hours is not None else limits.quiet_hours
    return None if text == OFF else _quiet_window(text)


# A tick decides 10^5 matches under a handful of windows, send times and time zones: parse each
# window once, and work out the end of a window (and say so) once per instant and zone.
_quiet_window = lru_cache(maxsize=64)(QuietHours.parse)


@lru_cache(maxsize=4096)
def _next_allowed(quiet: QuietHours, planned: datetime, tz: ZoneInfo) -> datetime:
    return quiet.next_allowed(planned, tz)


@lru_cache(maxsize=4096)
def _deferred_note(quiet: QuietHours, send_at: datetime, tz: ZoneInfo) -> str:
    return f"quiet hours {quiet} in {tz.key}: deferred to {_local_text(send_at, tz)}"


def decide(
    candidates: Sequence[Candidate],
    history: Mapping[str, Sequence[PastContact]],
    limits: Limits,
    now: datetime,
) -> list[Decision]:
    """One decision per candidate, in the candidates' order; HISTORY maps customer id → ledger rows.

    A customer's candidates are weighed highest priority first (ties: rule name, then entity),
    so when a cap leaves room for one contact the most important one takes it; contacts
    decided earlier in the same call count against the caps and cooldowns of later ones. A
    contact a cap would stop takes the place of a lower-priority one of the ledger that is
    still waiting for its send time on that day (or week), which is then displaced.
    A match whose row is "skipped" or "suppressed" is decided again, keeping its expiry.
    """
    now = _aware_utc(now, "now")
    contacts: dict[str, _Contacts] = {}
    decided: dict[int, Decision] = {}
    order = sorted(
        range(len(candidates)),
        key=lambda i: (-candidates[i].rule.priority, candidates[i].rule.name, candidates[i].entity_id),
    )
    for index in order:
        candidate = candidates[index]
        customer = candidate.recipient.id
        if customer not in contacts:
            contacts[customer] = _Contacts.of(history.get(customer, ()), now)
        decision = _decide_one(candidate, contacts[customer], limits, now)
        contacts[customer].record(decision, now)
        decided[index] = decision
    return [decided[i] for i in range(len(candidates))]


def choose_channel(rule: RulePolicy, who: Recipient) -> tuple[str | None, str]:
    """The first channel, in preference order, with an address, consent and no suppression."""
    return _choose_channel(tuple(rule.channels), who.preferred_channel, _Reach.of(who))


def channel_problem(channel: str, who: Recipient) -> str | None:
    """Why CHANNEL cannot reach WHO (no address, no consent, a suppression), or None if it can."""
    return _channel_problem(channel, _Reach.of(who))


class _Reach(NamedTuple):
    """What choosing a channel reads of a customer: a tick meets few distinct ones, so the
    choice is worked out once for each (`_choose_channel` is cached)."""

    email: bool
    phone: bool
    email_opt_in: bool
    sms_opt_in: bool
    suppressed: frozenset[str]

    @classmethod
    def of(cls, who: Recipient) -> _Reach:
        return cls(bool(who.email), bool(who.phone), who.email_opt_in, who.sms_opt_in, who.suppressed)


@lru_cache(maxsize=1024)
def _choose_channel(
    channels: tuple[str, ...], preferred: str | None, reach: _Reach
) -> tuple[str | None, str]:
    order = list(channels)
    if preferred in order:
        order.remove(preferred)
        order.insert(0, preferred)
    problems: list[str] = []
    for channel in order:
        problem = _channel_problem(channel, reach)
        if problem is None:
            label = _CHANNEL_LABEL.get(channel, channel)
            return channel, "; ".join(
                [*problems, f"{'preferred ' if channel == preferred else ''}{label} opted in → {channel}"]
            )
        problems.append(problem)
    return None, "no channel left: " + "; ".join(problems)


def _channel_problem(channel: str, reach: _Reach) -> str | None:
    if channel == "email":
        address, consent, address_name = reach.email, reach.email_opt_in, "email address"
    elif channel == "sms":
        address, consent, address_name = reach.phone, reach.sms_opt_in, "phone number"
    else:
        return f"{channel!r} is not a channel (email or sms)"
    label = _CHANNEL_LABEL[channel]
    if not address:
        return f"no {address_name}"
    if not consent:
        return f"no {label} consent"
    if channel in reach.suppressed:
        return f"{label} suppressed (bounce, complaint or STOP)"
    return None


def at_send_time(expires_at: datetime | None, now: datetime) -> str | None:
    """The reason a due contact must not be sent any more, or None if it may still go."""
    if expires_at is not None and _aware_utc(now, "now") >= _aware_utc(expires_at, "expires_at"):
        return f"expired at {_utc_text(expires_at)} before it could be sent: dropped, never sent stale"
    return None


def retry_at(
    attempt: int,
    now: datetime,
    retry_after: float | None,
    expires_at: datetime | None,
    rng: random.Random,
    *,
    quiet: QuietHours | None = None,
    timezone: str = "UTC",
) -> datetime | None:
    """When to try a send again after ATTEMPT failed tries, or None to give up.

    Full-jitter exponential backoff (30 s doubling, capped at 1 h); a provider's Retry-After is
    a floor. With QUIET, a retry that would land in the customer's quiet hours waits them out.
    None once MAX_ATTEMPTS tries have failed or the retry would fall at or after EXPIRES_AT.
    """
    if attempt < 1:
        raise ValueError(f"attempt {attempt}: count the failed tries, starting at 1")
    if attempt >= MAX_ATTEMPTS:
        return None
    when = _aware_utc(now, "now") + timedelta(seconds=backoff_seconds(attempt, rng, retry_after))
    if quiet is not None:
        when = quiet.next_allowed(when, ZoneInfo(timezone))
    if expires_at is not None and when >= _aware_utc(expires_at, "expires_at"):
        return None
    return when


def backoff_seconds(attempt: int, rng: random.Random, floor: float | None = None) -> float:
    """Full-jitter exponential backoff after ATTEMPT failed tries: 30 s doubling, capped at an hour."""
    # Full jitter spreads the retries of many contacts that failed together (a provider outage)
    # instead of having them return in step: AWS Architecture Blog, "Exponential Backoff And Jitter".
    delay = rng.uniform(0.0, min(RETRY_CAP, RETRY_BASE * 2 ** min(attempt - 1, 20)))
    return max(delay, floor) if floor is not None else delay


# -- the send-time gate -------------------------------------------------------------------------

SEND, REROUTE, DEFER, HOLD, CANCEL, EXPIRE, SUPPRESS, INHIBIT, CAP = (
    "send",
    "reroute",
    "defer",
    "hold",
    "cancel",
    "expire",
    "suppress",
    "inhibit",
    "cap",
)


@dataclass(frozen=True)
class Controls:
    """The operators' switches in force at an instant: the pause (its reason) and silenced rules."""

    paused: str | None = None
    silenced: Mapping[str, str] | None = None  # rule → reason

    def holding(self, rule: str) -> str | None:
        """Why RULE's messages must wait now, or None if they may go."""
        if self.paused is not None:
            return f"sending is paused ({self.paused}): held until `outreach resume`"
        if self.silenced and rule in self.silenced:
            return f"rule {rule} is silenced ({self.silenced[rule]}): held until the silence ends"
        return None


@dataclass(frozen=True)
class Verdict:
    """What the send-time gate says of one contact about to leave.

    `action` is "send" (on `channel`), "reroute" (send on another consented `channel`), "defer"
    (wait for the end of the customer's quiet hours: `until`), "hold" (pause or a silence: stays
    due), "inhibit" (another rule's contact quiets it until `until`: held back), or a final
    "cancel" / "expire", or "suppress" (no consented channel left: held back).
    """

    action: str
    reason: str
    channel: str | None = None
    until: datetime | None = None


def gate(
    *,
    rule: RulePolicy | None,
    channel: str | None,
    expires_at: datetime | None,
    recipient: Recipient | None,
    condition_holds: bool,
    limits: Limits,
    controls: Controls,
    now: datetime,
    goal_met: bool = False,
    inhibited: tuple[str, datetime] | None = None,
    delivered: Sequence[PastContact] = (),
) -> Verdict:
    """The send-time check of one due contact against the state as it is at NOW.

    In order: the rule still exists; not past `expires`; the customer and record still exist
    and the rule's condition still holds (and a follow-up's goal is not met); the channel still
    has address, consent and no suppression (else the rule's next consented channel); outside
    quiet hours in the customer's *current* time zone (else deferred to their end); not paused
    or silenced (else held); within the frequency caps of the local day and week it leaves in,
    counting the customer's messages already DELIVERED (else held back to the next period).

    Caps were counted when the contact was decided, for the day it was due then; a deferral,
    a retry or a move to another time zone can carry it into a local day or week that is full
    since. Only messages already in the customer's hands count here: of two contacts waiting
    for the same day, the first to leave goes.
    """
    now = _aware_utc(now, "now")
    if rule is None:
        return Verdict(CANCEL, "the rule no longer exists")
    expired = at_send_time(expires_at, now)
    if expired:
        return Verdict(EXPIRE, expired)
    if recipient is None:
        return Verdict(CANCEL, "the customer or the record is gone")
    if not condition_holds:
        return Verdict(CANCEL, "the condition no longer holds at send time")
    if goal_met:
        return Verdict(CANCEL, "the goal was met before this step was sent")
    if inhibited is not None:
        reason, until = inhibited
        return Verdict(INHIBIT, f"at send time: {reason}", until=until)
    action, reason = SEND, ""
    if channel is None or channel_problem(channel, recipient) is not None:
        was = channel_problem(channel, recipient) if channel else "no channel"
        other, why = choose_channel(rule, recipient)
        if other is None:
            return Verdict(SUPPRESS, f"at send time: {why}")
        action, channel, reason = REROUTE, other, f"at send time: {channel} {was}; {why}"
    quiet = quiet_hours_for(rule, limits)
    if quiet is not None:
        allowed = quiet.next_allowed(now, recipient.zone)
        if allowed != now:
            if expires_at is not None and allowed >= _aware_utc(expires_at, "expires_at"):
                return Verdict(
                    EXPIRE,
                    f"quiet hours {quiet} in {recipient.timezone} last past its expiry at"
                    f" {_utc_text(expires_at)}: dropped, never sent stale",
                )
            return Verdict(
                DEFER,
                f"quiet hours {quiet} in {recipient.timezone} at send time: deferred to"
                f" {_local_text(allowed, recipient.zone)}",
                channel,
                allowed,
            )
    held = controls.holding(rule.name)
    if held is not None:
        return Verdict(HOLD, held, channel)
    if delivered:
        lives = [_Live(c.at, c.rule, c.priority, c, False) for c in delivered]
        full = _cap_reached(now, lives, limits, recipient.zone)
        if full is not None:
            text, per = full
            return Verdict(
                CAP, f"at send time: {text}", channel, until=_next_period(now, per, recipient.zone)
            )
    return Verdict(action, reason, channel)


# -- one candidate ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Live:
    """A contact that is, or will be, in the customer's hands, as the caps count it."""

    at: datetime
    rule: str
    priority: int
    contact: PastContact | None  # the ledger row; None for a decision of this call
    waiting: bool  # still pending, its send time not reached: a higher priority may take its place
    entity_key: str = ""  # the journey it belongs to (its step-1 dedupe key)


@dataclass
class _Contacts:
    """A customer's contacts as `decide` sees them: past rows plus this call's decisions."""

    keys: dict[str, PastContact | Decision]
    live: list[_Live]
    history: list[PastContact]  # as inhibitions read it, with this call's decisions added
    open_groups: dict[str, str]  # rule → dedupe key of its contact still waiting, which others may join

    @classmethod
    def of(cls, rows: Sequence[PastContact], now: datetime) -> _Contacts:
        if not rows:  # most customers of a first tick
            return cls({}, [], [], {})
        return cls(
            keys={row.dedupe_key: row for row in rows},
            live=[
                _Live(
                    row.at,
                    row.rule,
                    row.priority,
                    row,
                    row.state == State.PENDING and bool(row.id) and row.at > now,
                    _journey(row.dedupe_key),
                )
                for row in rows
                if row.state in LIVE_STATES
            ],
            history=list(rows),
            open_groups={row.rule: row.dedupe_key for row in rows if row.state == State.PENDING},
        )

    def record(self, decision: Decision, now: datetime) -> None:
        if decision.state == DUPLICATE:
            return
        self.keys[decision.dedupe_key] = decision
        if decision.state == State.PENDING and decision.send_at is not None:
            self.live.append(
                _Live(
                    decision.send_at,
                    decision.rule,
                    decision.priority,
                    None,
                    False,
                    _journey(decision.dedupe_key),
                )
            )
            self.history.append(
                PastContact(
                    decision.rule,
                    decision.dedupe_key,
                    decision.channel,
                    decision.state,
                    now,
                    decision.send_at,
                )
            )
            self.open_groups[decision.rule] = decision.dedupe_key


def _journey(key: str) -> str:
    """The step-1 key of a contact's journey (a follow-up's key is its journey's plus `:stepN`)."""
    head, _, tail = key.rpartition(":step")
    return head if head and tail.isdigit() else key


def _decide_one(candidate: Candidate, seen: _Contacts, limits: Limits, now: datetime) -> Decision:
    rule, who = candidate.rule, candidate.recipient
    tz = who.zone
    key = dedupe_key(rule.name, rule.about, candidate.entity_id, who.id, candidate.step)
    earlier = seen.keys.get(key)
    retry = earlier if isinstance(earlier, PastContact) and earlier.state in HELD_STATES else None
    expires_at = None
    if rule.expires is not None:
        # A match held back on earlier runs expires counting from its first decision, not this one.
        kept = retry.expires_at if retry is not None else None
        expires_at = _aware_utc(kept, "expires_at") if kept is not None else now + rule.expires
    steps: list[tuple[str, str | _Later]] = []
    displaced: list[Displaced] = []
    # Contacts this one would take the place of: left in the customer's contacts unless it is sent.
    victims: list[_Live] = []

    def end(
        state: str,
        reason: str,
        channel: str | None = None,
        send_at: datetime | None = None,
        recheck_at: datetime | None = None,
        group_key: str | None = None,
    ) -> Decision:
        if recheck_at is not None and expires_at is not None:
            recheck_at = min(recheck_at, expires_at)  # then it is decided again, and expires
        elif state == State.SUPPRESSED:
            # Decided again once the customer can be reached (the ledger marks it due when an
            # address, consent or a lifted suppression arrives), or at its expiry, to expire.
            recheck_at = expires_at
        if state == State.PENDING:
            for victim in victims:
                seen.live.remove(victim)
        return Decision(
            rule=rule.name,
            entity_id=candidate.entity_id,
            customer_id=who.id,
            dedupe_key=key,
            state=state,
            channel=channel,
            reason=reason,
            send_at=send_at,
            expires_at=expires_at if state != DUPLICATE else None,
            trace=tuple(steps),
            recheck_at=recheck_at,
            displaced=tuple(displaced) if state == State.PENDING else (),
            priority=rule.priority,
            step=candidate.step,
            group_key=group_key,
        )

    if retry is not None:
        steps.append(("dedupe", f"decided again: {retry.state} {_utc_text(retry.decided_at)}"))
        if expires_at is not None and now >= expires_at:
            reason = f"held back until it expired at {_utc_text(expires_at)}: dropped"
            steps.append(("expires", reason))
            return end(State.EXPIRED, reason)
    elif earlier is not None:
        reason = _duplicate_reason(rule, earlier)
        steps.append(("dedupe", reason))
        return end(DUPLICATE, reason)
    else:
        steps.append(("dedupe", _Later("first decision for {}".format, key)))

    if rule.group:
        lead = seen.open_groups.get(rule.name)
        if lead is not None and lead != key:
            reason = (
                f"joins the message still waiting for this customer ({lead}): one message for several matches"
            )
            steps.append(("group", reason))
            return end(State.GROUPED, reason, group_key=lead)
        steps.append(
            ("group", f"first of a group: waits {format_duration(rule.group_wait)} for others to join")
        )

    channel, channel_reason = choose_channel(rule, who)
    steps.append(("channel", channel_reason))
    if channel is None:
        return end(State.SUPPRESSED, channel_reason)

    blocker = _cooldown_blocker(rule, seen, now, _journey(key))
    if blocker is not None:
        reason, free_at = blocker
        steps.append(("cooldown", reason))
        return end(State.SKIPPED, reason, channel, recheck_at=free_at)
    steps.append(("cooldown", _Later(_cooldown_clear, rule)))

    quieted = inhibition(rule, seen.history, now)
    if quieted is not None:
        reason, until = quieted
        steps.append(("inhibition", reason))
        return end(State.SKIPPED, reason, channel, recheck_at=until)
    if rule.inhibited_by:
        steps.append(
            ("inhibition", "no inhibiting contact: " + ", ".join(name for name, _ in rule.inhibited_by))
        )

    # Caps count the local day the contact will be sent, so the send instant (delay, then out of
    # quiet hours) is worked out before the cap is checked, though the cap is the earlier step.
    quiet = quiet_hours_for(rule, limits)
    planned = now + max(rule.delay or timedelta(0), rule.group_wait if rule.group else timedelta(0))
    send_at = _next_allowed(quiet, planned, tz) if quiet is not None else planned
    counted = list(seen.live)
    full = _cap_reached(send_at, counted, limits, tz)
    while full is not None:
        reason, per = full
        victim = _displaceable(send_at, per, rule.priority, counted, tz)
        if victim is None:
            steps.append(("cap", reason))
            displaced.clear()
            victims.clear()
            return end(State.SKIPPED, reason, channel, recheck_at=_next_period(send_at, per, tz))
        assert victim.contact is not None
        counted.remove(victim)
        victims.append(victim)
        displaced.append(
            Displaced(
                victim.contact.id,
                victim.contact.dedupe_key,
                f"gave its place to {rule.name} (priority {rule.priority} over {victim.priority}):"
                f" {reason}; decided again later",
                _next_period(victim.at, per, tz),
            )
        )
        steps.append(("cap", f"took the place of {victim.rule} (priority {victim.priority}), still waiting"))
        full = _cap_reached(send_at, counted, limits, tz)
    steps.append(("cap", _Later(_within_caps, send_at, counted, limits, tz)))

    if candidate.step == 1 and rule.holdout > 0 and in_holdout(rule.name, who.id, rule.holdout):
        reason = f"held out ({_percent(rule.holdout)} control group): recorded, never sent"
        steps.append(("holdout", reason))
        displaced.clear()  # a held-out match sends nothing: it takes no one's place
        victims.clear()
        return end(State.HOLDOUT, reason, channel)
    if candidate.step > 1:
        steps.append(("holdout", f"step {candidate.step} of the journey: decided once, at step 1"))
    else:
        steps.append(
            (
                "holdout",
                f"not held out ({_percent(rule.holdout)} control group)" if rule.holdout else "no holdout",
            )
        )

    quiet_note = None
    if quiet is None:
        steps.append(("quiet hours", "off for this rule"))
    elif send_at != planned:
        quiet_note = _deferred_note(quiet, send_at, tz)
        steps.append(("quiet hours", quiet_note))
    else:
        steps.append(("quiet hours", _Later("outside quiet hours {} in {}".format, quiet, who.timezone)))

    delay_note = f"delay {format_duration(rule.delay)}" if rule.delay else None
    if rule.group and rule.group_wait and (rule.delay or timedelta(0)) < rule.group_wait:
        delay_note = f"waits {format_duration(rule.group_wait)} for other matches to join"
    steps.append(("delay", _Later(_due_text, delay_note, planned)))
    if expires_at is not None and send_at >= expires_at:
        reason = (
            f"would be sent {_local_text(send_at, tz)}, after it expires at"
            f" {_local_text(expires_at, tz)} ({format_duration(rule.expires or timedelta(0))} after the match): dropped"
        )
        steps.append(("expires", reason))
        displaced.clear()
        victims.clear()
        return end(State.EXPIRED, reason, channel)
    steps.append(("expires", _Later(_expiry_text, expires_at)))

    notes = [channel_reason, delay_note, quiet_note]
    return end(State.PENDING, "; ".join(n for n in notes if n), channel, send_at)


class _Later:
    """A step's words, written only when someone reads them (explain, preview): a tick decides
    10^5 matches and records only their reasons."""

    __slots__ = ("args", "write")

    def __init__(self, write: Callable[..., str], *args: Any) -> None:
        self.write, self.args = write, args

    def __str__(self) -> str:
        return self.write(*self.args)


def _due_text(delay_note: str | None, planned: datetime) -> str:
    return f"{delay_note}: due {_utc_text(planned)}" if delay_note else "no delay"


def _expiry_text(expires_at: datetime | None) -> str:
    return f"expires {_utc_text(expires_at)}" if expires_at else "never expires"


def _duplicate_reason(rule: RulePolicy, earlier: PastContact | Decision) -> str:
    per = "customer" if rule.about == "customer" else rule.about
    if isinstance(earlier, Decision):
        return f"already decided in this run ({earlier.state}): one contact per rule and {per}"
    return (
        f"already decided {_utc_text(earlier.decided_at)} ({earlier.state}):"
        f" one contact per rule and {per}, ever"
    )


def _cooldown_blocker(
    rule: RulePolicy, seen: _Contacts, now: datetime, journey: str
) -> tuple[str, datetime] | None:
    """Why the rule's cooldown holds this contact back, and when it ends; None if it does not.
    The steps of one journey do not hold each other back: their spacing is their `after`."""
    if not rule.cooldown:
        return None
    recent = [
        live.at
        for live in seen.live
        if live.rule == rule.name and live.at > now - rule.cooldown and live.entity_key != journey
    ]
    if not recent:
        return None
    last = max(recent)
    return (
        f"within the {format_duration(rule.cooldown)} cooldown of the last contact from {rule.name}"
        f" ({_utc_text(last)})",
        last + rule.cooldown,
    )


def _cooldown_clear(rule: RulePolicy) -> str:
    if not rule.cooldown:
        return "no cooldown"
    return f"no contact from {rule.name} in the last {format_duration(rule.cooldown)}"


_DAY, _WEEK = "day", "week"


def _cap_reached(
    when: datetime, live: Sequence[_Live], limits: Limits, tz: ZoneInfo
) -> tuple[str, str] | None:
    """Why a contact at WHEN would break the daily or weekly cap of the customer's zone, and
    which (`day`/`week`); None when it would not."""
    if limits.max_per_day == 0 or limits.max_per_week == 0:
        return "frequency cap is 0 (delivery.max_per_day / max_per_week): nothing may be sent", _DAY
    if len(live) < min(limits.max_per_day, limits.max_per_week):
        return None  # too few contacts to fill either cap, whatever days they fall on
    day = when.astimezone(tz).date()
    on_day = [c.rule for c in live if c.at.astimezone(tz).date() == day]
    in_week = [c.rule for c in live if _week(c.at.astimezone(tz).date()) == _week(day)]
    if len(on_day) >= limits.max_per_day:
        full, cap, per, by = "daily", limits.max_per_day, _DAY, on_day
    elif len(in_week) >= limits.max_per_week:
        full, cap, per, by = "weekly", limits.max_per_week, _WEEK, in_week
    else:
        return None
    when_text = f"on {day}" if per == _DAY else f"in the week of {day}"
    return f"{full} cap reached ({cap} a {per}) by {', '.join(sorted(set(by)))} {when_text} ({tz.key})", per


def _displaceable(
    when: datetime, per: str, priority: int, live: Sequence[_Live], tz: ZoneInfo
) -> _Live | None:
    """The waiting contact of lower priority in the same local day (or week) as WHEN that a new
    contact may take the place of: the lowest priority, then the latest due; None if there is none."""
    day = when.astimezone(tz).date()

    def same_period(c: _Live) -> bool:
        local = c.at.astimezone(tz).date()
        return local == day if per == _DAY else _week(local) == _week(day)

    found = [c for c in live if c.waiting and c.priority < priority and same_period(c)]
    return min(found, key=lambda c: (c.priority, -c.at.timestamp())) if found else None


def _next_period(when: datetime, per: str, tz: ZoneInfo) -> datetime:
    """The first instant of the customer's next local day (or ISO week) after WHEN."""
    local_day = when.astimezone(tz).date()
    start = (
        local_day + timedelta(days=1) if per == _DAY else local_day + timedelta(days=7 - local_day.weekday())
    )
    wall = datetime.combine(start, time(0, 0))
    return first_instant_at(wall, tz, not_before=when)


def _within_caps(when: datetime, live: Sequence[_Live], limits: Limits, tz: ZoneInfo) -> str:
    day = when.astimezone(tz).date()
    on_day = sum(1 for c in live if c.at.astimezone(tz).date() == day)
    in_week = sum(1 for c in live if _week(c.at.astimezone(tz).date()) == _week(day))
    return (
        f"within caps: {on_day} of {limits.max_per_day} on {day}, {in_week} of {limits.max_per_week}"
        f" that week ({tz.key})"
    )


# -- time ---------------------------------------------------------------------------------------


def _week(day: date) -> tuple[int, int]:
    iso = day.isocalendar()
    return iso.year, iso.week


def _aware_utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} {value.isoformat()} has no UTC offset: policy needs aware instants")
    return value.astimezone(UTC)


def _local_text(value: datetime, tz: ZoneInfo) -> str:
    local = value.astimezone(tz)
    return f"{local:%H:%M} local on {local:%Y-%m-%d}"


def _utc_text(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"
