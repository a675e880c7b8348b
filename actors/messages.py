"""Messages between the broker's actors (and, marked, between nodes).

Events are in the past tense, commands in the imperative. Frames travel as the raw text they came
in (``text``), never re-serialised, so a relay forwards exactly what it got. Messages marked
``@persisted`` may be committed to a durable mailbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from actors.energy_messages import ConnectorLimit, ConnectorReport
from actors.evolve import value
from drivers.store.codec import persisted

# -- listener -> charge point -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargePointConnected:
    conn_no: int
    ocpp_version: str
    remote_address: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameFromChargePoint:
    conn_no: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargePointDisconnected:
    conn_no: int
    code: int | None
    reason: str


# -- charge point -> cloud link ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayCall:
    """A charge point CALL that is not transaction-related: send it now or answer unavailable.

    ``queue``: a message that must not be lost while the cloud is away (OCPP-NOTES: "other
    messages", neither transaction-related nor coalesced): relayed live like the rest while the
    cloud answers; what cannot be relayed (no session, no answer in time, the session lost) goes
    into the durable outbox, and the charge point is answered only once it is committed."""

    message_id: str
    action: str
    text: str
    queue: bool = False
    received_utc: str = ""


@persisted(name="broker.EnqueueCall")
@dataclass(frozen=True, slots=True, kw_only=True)
class EnqueueCall:
    """A transaction-related CALL: into the durable ordered outbox; the charge point waits
    (``live``) for the cloud's answer or for "unavailable"."""

    message_id: str
    action: str
    text: str
    received_utc: str
    live: bool = True
    # A 1.6 StartTransaction: this copy's reference, unique across connections and restarts (a
    # message id is unique per connection only), under which its cloud id and its edge id meet
    # (outbox.TxMap). Empty: the message id (as before references existed).
    start_ref: str = ""


@persisted(name="broker.EdgeTransactionMinted")
@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeTransactionMinted:
    """The edge answered StartTransaction ``message_id`` itself with ``edge_id`` (1.6): the
    transaction of the copy queued as ``start_ref`` (EnqueueCall.start_ref; empty: the message
    id, as before references existed)."""

    message_id: str
    edge_id: int
    start_ref: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LatestForNewSession:
    """The newest BootNotification / StatusNotification payloads, replayed to a new cloud session
    (a charge point does not boot again on a mere reconnect of the edge's upstream)."""

    key: str
    action: str
    payload_json: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargePointLinkState:
    """Whether the charge point is connected, and with which OCPP version (the upstream session
    speaks the same one)."""

    connected: bool
    version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerToCloud:
    session: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconnectUpstream:
    """Close the session to the cloud and open a new one (its key changed): what was sent before
    this message has gone out on the old session."""

    reason: str


# -- cloud link -> charge point ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudAnswered:
    """The cloud's CALLRESULT/CALLERROR text for the charge point's call (ids mapped back)."""

    message_id: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudUnavailable:
    """No answer from the cloud (offline, too slow, or refused): the edge answers itself."""

    message_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFromCloud:
    session: int
    message_id: str
    action: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudLinkChanged:
    online: bool
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionMapped:
    edge_id: int
    cloud_id: int


# -- edge-originated calls to a charge point (e.g. charging profiles from the energy node) ---------


@value
class CallChargePoint:
    """Send ``action``/``payload`` to the charge point as the edge; the answer goes to
    ``reply_to`` (an actor path) as :class:`ChargePointAnswered`, or nowhere if empty.
    ``payload_json``, when given, is the payload as JSON text (sent as it is; ``payload`` is then
    empty): a TxProfile from its template (:class:`actors.profiles.TxProfileTemplate`)."""

    action: str
    payload: dict[str, Any]
    reply_to: str = ""
    tag: str = ""
    replace_key: str = ""  # a newer call with the same key replaces a queued one
    payload_json: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargePointAnswered:
    charge_point_id: str
    action: str
    tag: str
    ok: bool
    payload: dict[str, Any]
    error: str = ""


# -- authorization ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizeLocally:
    """Ask the authorizer for a local decision; answered with :class:`AuthorizedLocally`.

    ``ask_ref`` names this request, echoed in the answer: ``message_id`` alone is unique per
    connection only, and an answer still on its way when the charge point reconnects must not
    answer a new call that reused the id."""

    charge_point_id: str
    message_id: str
    id_token: str
    reply_to: str
    ask_ref: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizedLocally:
    message_id: str
    ask_ref: int = 0  # AuthorizeLocally.ask_ref
    status: str
    expiry_utc: str | None
    parent_id: str | None
    energy_cap_wh: float | None
    path: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CloudAuthorized:
    """What the cloud answered for an id token (feeds the authorization cache).

    Broker shards: the authorizer that learned it passes it on to the other broker nodes'
    (``from_node``: the node that learned it, ``learned_utc``: when), so an id that charged at
    one node's charge point is known offline at every node's."""

    charge_point_id: str
    id_token: str
    id_tag_info: dict[str, Any]
    from_node: str = ""
    learned_utc: str = ""


# -- the edge's own session ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorityShared:
    """Broker shards (``[runtime] broker_shards``): the front's authorizer (``broker``, where
    the edge session lands the cloud's SendLocalList and rules bundles) to another broker node's:
    its local list and rules state as persisted, whole. ``stamp_ns``: when it was taken
    (CLOCK_MONOTONIC, one clock for the machine's processes); an older one than the last
    applied is ignored (two links may reorder)."""

    local_list: dict[str, Any]
    rules: dict[str, Any]
    stamp_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorityWanted:
    """Another broker node's authorizer, started, asks the front's for :class:`AuthorityShared`."""

    reply_to: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeCallFromCloud:
    """A call from the cloud addressed to the edge itself (SendLocalList, GetLocalListVersion,
    DataTransfer RulesBundle/RulesRollback). The handler answers with :class:`AnswerToCloud` to
    the actor at ``reply_path``."""

    session: int
    message_id: str
    action: str
    payload: dict[str, Any]
    reply_path: str


@persisted(name="broker.CloudVerdict")
@dataclass(frozen=True, slots=True, kw_only=True)
class CloudVerdict:
    """The cloud's answer to a transaction message the edge had answered itself: a replayed 1.6
    StartTransaction (``edge_id`` the id the edge minted, ``cloud_id`` the cloud's), or a 2.0.1
    TransactionEvent carrying an idToken (both the station's own transactionId; ``id_token``
    the event's token: a stop token's verdict is not the transaction's). Durable, as the
    LateVerdict and LateDecision it leads to: the cloud's answer is acknowledged (out of the
    outbox, never sent again) in the unit of work that sends it."""

    edge_id: int | str
    cloud_id: int | str
    status: str
    id_token: str | None = None


@persisted(name="broker.LateVerdict")
@dataclass(frozen=True, slots=True, kw_only=True)
class LateVerdict:
    """To the authorizer: the cloud's later answer for a transaction the edge authorized."""

    charge_point_id: str
    transaction_id: str
    local_path: str
    local_energy_cap_wh: int | None
    cloud_status: str
    running: bool
    energy_delivered_wh: float
    reply_to: str
    refused_before: str | None = None  # the cloud's earlier refusal of it (that stands)


@persisted(name="broker.CacheClearedAtChargePoint")
@dataclass(frozen=True, slots=True, kw_only=True)
class CacheClearedAtChargePoint:
    """To the authorizer: a charge point accepted the cloud's ClearCache; the cache the edge
    answers it from offline is cleared too (durable: the cloud is told Accepted only once this
    is committed)."""

    charge_point_id: str
    message_id: str  # the cloud's ClearCache, for the audit record


@persisted(name="broker.LateDecision")
@dataclass(frozen=True, slots=True, kw_only=True)
class LateDecision:
    """From the authorizer: what to do with that transaction (actors.authorization.LateAction)."""

    transaction_id: str
    action: str
    reason: str
    energy_cap_wh: float | None


# -- load management, inside the broker node ---------------------------------------------------------


@value
class ApplyLimit:
    """From the profile router to a ChargePoint: the energy node's latest limit for a connector."""

    limit: ConnectorLimit
    default_limit_a: float
    trigger_monotonic_ns: int = 0  # the batch's meter sample (ProfileWrites)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectorsReported:
    """From a ChargePoint to the demand collector: its connectors as the energy node needs them."""

    charge_point_id: str
    reports: tuple[ConnectorReport, ...]
    urgent: bool = False  # a transaction started or stopped: do not wait for the next batch
