"""The words outreach is built from, each defined once: channels, what a rule is about, contact states.

A contact (one row of the ledger) moves through these states:

    held ─────────────► (decided again later: a cap, a cooldown, an inhibition, no channel)
      skipped             a policy step held it back for now
      suppressed          no channel has an address, consent and no suppression
    waiting ──────────► pending (due at send_at) → claimed (a dispatcher's lease) → sending
    final
      sent                the provider accepted it
      failed              permanently refused, rendering failed for good, or retries exhausted
      cancelled           the condition (or the journey's goal) changed before it was sent
      expired             not sent within the rule's `expires`
      holdout             the rule's control group: recorded, never sent
      unknown             a send whose outcome could not be known; never resent blindly
      grouped             one of several matches sent as one message (see `group` in rules)
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """How a customer is reached."""

    EMAIL = "email"
    SMS = "sms"


CHANNELS: tuple[Channel, ...] = tuple(Channel)


class About(StrEnum):
    """What a rule is about: the record one match stands for."""

    ORDER = "order"
    CHECKOUT = "checkout"
    SURVEY = "survey"
    CUSTOMER = "customer"


ABOUTS: tuple[About, ...] = tuple(About)


class State(StrEnum):
    """The state of one contact in the ledger (see the module docstring)."""

    SKIPPED = "skipped"
    SUPPRESSED = "suppressed"
    PENDING = "pending"
    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    HOLDOUT = "holdout"
    UNKNOWN = "unknown"
    GROUPED = "grouped"


# Not contacted this time; decided again when what held it back may have changed.
HELD_STATES = frozenset({State.SKIPPED, State.SUPPRESSED})
# Decided, waiting to be sent: a later decision of a higher priority may still displace a pending one.
WAITING_STATES = frozenset({State.PENDING, State.CLAIMED, State.SENDING})
# Nothing more will happen to the contact.
FINAL_STATES = frozenset(
    {
        State.SENT,
        State.FAILED,
        State.CANCELLED,
        State.EXPIRED,
        State.HOLDOUT,
        State.UNKNOWN,
        State.GROUPED,
    }
)
# A message that is, or will be, in the customer's hands: what frequency caps count. `unknown`
# counts — the provider may have delivered it, and a cap errs on the side of not spamming.
LIVE_STATES = frozenset({State.PENDING, State.CLAIMED, State.SENDING, State.SENT, State.UNKNOWN})

assert set(State) == HELD_STATES | WAITING_STATES | FINAL_STATES


class Arm(StrEnum):
    """The group of a rule's experiment a match was assigned to, once and for good.

    A match is assigned when policy draws it for the holdout or not (after the caps, before
    quiet hours): `holdout` is recorded and never sent; `message` is meant to be sent, whatever
    then happens to it (deferred, cancelled at send time, expired, failed…). A match held back
    before the draw (a cap, a cooldown, no consent) is in neither group until it is drawn.
    `outreach report` compares the goal rates of the two groups (intention to treat).
    """

    MESSAGE = "message"
    HOLDOUT = "holdout"
