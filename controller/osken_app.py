"""The os-ken application and its launcher: the ONLY module that imports os-ken.

It runs on os-ken 4.2 (native threads: the hub type is pinned before the
import) and falls back to Ryu 4.34 under the same names (its base class is
RyuApp; that path is not installed here, so it is untested).  Events in:
switches connecting (features + port descriptions), leaving, barrier
replies, errors, LLDP probes coming back.  Messages out: the core's
plain-data messages, encoded by controller/ofwire.py (os-ken's own
serialisation, ``to_osken`` here, is four times slower; the tests hold the
two byte for byte equal), sent in phases separated by barriers whose replies
confirm them.  The service (controller/service.py) decides what to send;
this module only talks to switches.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

os.environ["OSKEN_HUB_TYPE"] = "native"    # pinned: the service's threads wait on plain threading primitives

try:
    from os_ken import cfg
    from os_ken.base import app_manager
    from os_ken.controller import ofp_event
    from os_ken.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
    from os_ken.ofproto import nicira_ext, ofproto_v1_3, ofproto_v1_3_parser

    PROJECT = "os_ken"
    OFP_HANDLER = "os_ken.controller.ofp_handler"
    BaseApp = app_manager.OSKenApp
except ImportError:  # pragma: no cover - the Ryu fallback is not installed here
    from ryu import cfg  # type: ignore[no-redef]
    from ryu.base import app_manager  # type: ignore[no-redef]
    from ryu.controller import ofp_event  # type: ignore[no-redef]
    from ryu.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls  # type: ignore[no-redef]
    from ryu.ofproto import nicira_ext, ofproto_v1_3, ofproto_v1_3_parser  # type: ignore[no-redef]

    PROJECT = "ryu"
    OFP_HANDLER = "ryu.controller.ofp_handler"
    BaseApp = app_manager.RyuApp

from controller.core.ofmsg import (
    Action,
    Barrier,
    DeleteFlows,
    DeleteGroups,
    Flow,
    FlowMod,
    GroupAction,
    GroupMod,
    Learn,
    MatchValue,
    Message,
    Multipath,
    Output,
    PopMpls,
    PushMpls,
    Resubmit,
    SetField,
    dpid_of,
    match,
)
from controller import lldp, ofwire
from controller.core import cookies
from controller.core.compiler import TABLE_HANDOFF, TABLE_STEER
from controller.core.stats import FlowStat, PortStat, SwitchStats
from controller.southbound import SendResult, SwitchError, phases

log = logging.getLogger(__name__)

ofp = ofproto_v1_3
parser = ofproto_v1_3_parser

FLOW_COMMANDS = {"add": ofp.OFPFC_ADD, "modify_strict": ofp.OFPFC_MODIFY_STRICT,
                 "delete_strict": ofp.OFPFC_DELETE_STRICT}
GROUP_COMMANDS = {"add": ofp.OFPGC_ADD, "modify": ofp.OFPGC_MODIFY, "delete": ofp.OFPGC_DELETE}
GROUP_TYPES = {"all": ofp.OFPGT_ALL, "select": ofp.OFPGT_SELECT, "indirect": ofp.OFPGT_INDIRECT,
               "ff": ofp.OFPGT_FF}


# ---- translation (pure) ---------------------------------------------------------------

def _learn(learn: Learn, pins: ofwire.Pins) -> Any:
    """NXActionLearn; a copied field the flow pins (ofwire.learn_pins) is matched as that constant."""
    pinned = dict(pins)
    specs = [parser.NXFlowSpecMatch(src=ofwire.field_int(name, pinned[name]) if name in pinned else (name, 0),
                                    dst=(name, 0), n_bits=ofwire.field_bits(name))
             for name in learn.copy]
    specs += [parser.NXFlowSpecLoad(src=ofwire.field_int(name, value), dst=(name, 0), n_bits=ofwire.field_bits(name))
              for name, value in learn.load]
    return parser.NXActionLearn(table_id=learn.table_id, specs=specs, idle_timeout=learn.idle_timeout,
                                hard_timeout=0, priority=learn.priority, cookie=learn.cookie, flags=0,
                                fin_idle_timeout=learn.fin_idle_timeout, fin_hard_timeout=0)


def _action(action: Action, pins: ofwire.Pins = ()) -> Any:
    if isinstance(action, Output):
        return parser.OFPActionOutput(action.port, ofp.OFPCML_NO_BUFFER)
    if isinstance(action, GroupAction):
        return parser.OFPActionGroup(action.group_id)
    if isinstance(action, SetField):
        return parser.OFPActionSetField(**{action.field: action.value})
    if isinstance(action, PushMpls):
        return parser.OFPActionPushMpls(action.ethertype)
    if isinstance(action, PopMpls):
        return parser.OFPActionPopMpls(action.ethertype)
    if isinstance(action, Resubmit):
        return parser.NXActionResubmitTable(in_port=ofp.OFPP_IN_PORT & 0xFFFF, table_id=action.table_id)
    if isinstance(action, Multipath):
        # os-ken 4.2 names no nx_hash_fields past SYMMETRIC_L4.
        return parser.NXActionMultipath(fields=ofwire.NX_HASH_FIELDS_SYMMETRIC_L3L4_UDP, basis=action.basis,
                                        algorithm=nicira_ext.NX_MP_ALG_HRW, max_link=action.n_links - 1, arg=0,
                                        ofs_nbits=nicira_ext.ofs_nbits(0, 15), dst=action.dst)
    if isinstance(action, Learn):
        return _learn(action, pins)
    raise TypeError(f"not an action: {action!r}")


def _instructions(flow: Flow) -> list[Any]:
    out = []
    if flow.actions:
        pins = ofwire.learn_pins(flow.match, flow.actions)
        out.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                [_action(a, p) for a, p in zip(flow.actions, pins)]))
    if flow.goto_table is not None:
        out.append(parser.OFPInstructionGotoTable(flow.goto_table))
    return out


def to_osken(message: Message, datapath: Any) -> Any:
    """The os-ken message for one core message (the reference the fast encoder is tested against)."""
    if isinstance(message, FlowMod):
        flow = message.flow
        return parser.OFPFlowMod(
            datapath, cookie=flow.cookie, table_id=flow.table_id, command=FLOW_COMMANDS[message.command],
            priority=flow.priority, buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_ANY,
            out_group=ofp.OFPG_ANY, match=parser.OFPMatch(**dict(flow.match)),
            instructions=[] if message.command == "delete_strict" else _instructions(flow))
    if isinstance(message, GroupMod):
        group = message.group
        buckets = [parser.OFPBucket(weight=b.weight if group.type == "select" else 0,
                                    watch_port=ofp.OFPP_ANY, watch_group=ofp.OFPG_ANY,
                                    actions=[_action(a) for a in b.actions])
                   for b in group.buckets]
        return parser.OFPGroupMod(datapath, GROUP_COMMANDS[message.command], GROUP_TYPES[group.type],
                                  group.group_id, [] if message.command == "delete" else buckets)
    if isinstance(message, DeleteFlows):
        return parser.OFPFlowMod(datapath, cookie=message.cookie, cookie_mask=message.cookie_mask,
                                 table_id=message.table_id, command=ofp.OFPFC_DELETE, out_port=ofp.OFPP_ANY,
                                 out_group=ofp.OFPG_ANY, match=parser.OFPMatch())
    if isinstance(message, DeleteGroups):
        return parser.OFPGroupMod(datapath, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, message.group_id, [])
    if isinstance(message, Barrier):
        return parser.OFPBarrierRequest(datapath)
    raise TypeError(f"not a message: {message!r}")


def error_text(msg: Any) -> str:
    """A switch error as words: ``OFPET_BAD_ACTION(2)/OFPBAC_BAD_OUT_GROUP(9)``."""
    try:
        return f"{ofp.ofp_error_type_to_str(msg.type)}/{ofp.ofp_error_code_to_str(msg.type, msg.code)}"
    except (KeyError, ValueError):
        return f"error type {msg.type} code {msg.code}"


# ---- the application -----------------------------------------------------------------------

SwitchHooks = Any   # the service: switch_up(dpid, ports), switch_down(dpid), link_seen(dpid, port, dpid, port)
LLDP_COOKIE = 0x11D9
LLDP_INTERVAL_S = 2.0


def _guarded(handler: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """os-ken's event loop only logs a handler's exception, far from its cause: log it here, loudly."""
    def wrapper(self: Any, ev: Any) -> None:
        try:
            handler(self, ev)
        except Exception:  # noqa: BLE001 - keep the event loop alive, and say what failed
            log.exception("handler %s failed on %s", handler.__name__, type(ev).__name__)
    wrapper.__name__ = handler.__name__
    return wrapper


class _Pending:
    """Barriers of one phase we wait for, and errors seen for that phase's messages."""

    def __init__(self) -> None:
        self.outstanding: set[tuple[int, int]] = set()
        self.done = threading.Event()
        self.errors: list[SwitchError] = []
        self.lost: set[int] = set()          # switches that left before answering


class _StatsRound:
    """The statistics replies one ``stats`` call waits for, and what has come back so far."""

    def __init__(self) -> None:
        self.outstanding: set[tuple[int, int]] = set()   # (dpid, xid) of requests not answered in full
        self.flows: dict[int, list[FlowStat]] = {}
        self.ports: dict[int, list[PortStat]] = {}
        self.time: dict[int, float] = {}                 # when a switch's last reply was complete
        self.lost: set[int] = set()                      # switches that left (or took no request)
        self.done = threading.Event()


class ClickSteerApp(BaseApp):  # type: ignore[misc,valid-type]
    OFP_VERSIONS = [ofp.OFP_VERSION]

    def __init__(self, *args: Any, hooks: SwitchHooks = None, barrier_timeout: float = 10.0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hooks = hooks
        self.barrier_timeout = barrier_timeout
        self.datapaths: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._sent: dict[tuple[int, int], tuple[Message | None, _Pending]] = {}   # (dpid, xid) -> what
        self._barriers: dict[tuple[int, int], _Pending] = {}
        self._stats_rounds: dict[tuple[int, int], _StatsRound] = {}   # (dpid, xid) -> the round asking
        self.clock: Callable[[], float] = time.monotonic                # stamps statistics replies
        # The event loop delivers barrier replies, so it must never wait for a sender (the service
        # holds its lock while it sends): switch and link events go to the service through this
        # queue, in order, from one worker of their own.
        # A plain thread, not a hub task: under Ryu's eventlet hub a task that waits would stall them all.
        self._work: queue.Queue[tuple[Callable[..., None], tuple[Any, ...]]] = queue.Queue()
        threading.Thread(target=self._worker, name="clicksteer-events", daemon=True).start()

    # -- events --------------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    @_guarded
    def _state_change(self, ev: Any) -> None:
        dp = ev.datapath
        if dp.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            # Features and port descriptions are in (os-ken's handshake): the switch is ready.
            with self._lock:
                self.datapaths[dp.id] = dp
            ports = {no: _port_name(port) for no, port in (dp.ports or {}).items() if no < ofp.OFPP_MAX}
            log.info("switch %#x connected with %d ports", dp.id, len(ports))
            self._work.put((self._switch_ready, (dp.id, ports)))
        elif ev.state == DEAD_DISPATCHER:
            with self._lock:
                if self.datapaths.get(dp.id) is not dp:
                    return   # an old connection of a switch that has already reconnected
                del self.datapaths[dp.id]
            log.info("switch %#x disconnected", dp.id)
            self._fail_waits(dp.id)
            if self.hooks is not None:
                self._work.put((self.hooks.switch_down, (dp.id,)))

    def _switch_ready(self, dpid: int, ports: dict[int, str]) -> None:
        """Hand LLDP to the controller, probe the links, then let the service check and resync the switch."""
        self._send_phase([FlowMod("add", lldp_flow(dpid))], {dpid})
        self.probe_links()
        if self.hooks is not None:
            self.hooks.switch_up(dpid, ports)

    def probe_links(self) -> None:
        """An LLDP probe out of every port of every connected switch (links are seen when they return)."""
        with self._lock:
            targets = [(dp, [no for no in (dp.ports or {}) if no < ofp.OFPP_MAX]) for dp in self.datapaths.values()]
            frames = {dp.id: b"".join(ofwire.packet_out(_next_xid(dp), no, lldp.probe(dp.id, no)) for no in nos)
                      for dp, nos in targets}
        for dp, _ in targets:
            dp.send(frames[dp.id])

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    @_guarded
    def _packet_in(self, ev: Any) -> None:
        msg = ev.msg
        sender = lldp.parse(bytes(msg.data))
        if sender is not None and self.hooks is not None:
            self._work.put((self.hooks.link_seen, (*sender, msg.datapath.id, msg.match["in_port"])))

    def _worker(self) -> None:
        """Run the queued calls in order; when idle, probe the links again (a probe sent while a
        link was still coming up is lost, and links change)."""
        while True:
            try:
                call, args = self._work.get(timeout=LLDP_INTERVAL_S)
            except queue.Empty:
                call, args = self.probe_links, ()
            try:
                call(*args)
            except Exception:  # noqa: BLE001 - a failing call must not stop the ones after it
                log.exception("%s%r failed", getattr(call, "__name__", call), args)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    @_guarded
    def _barrier_reply(self, ev: Any) -> None:
        key = (ev.msg.datapath.id, ev.msg.xid)
        with self._lock:
            pending = self._barriers.pop(key, None)
            if pending is None:
                return
            pending.outstanding.discard(key)
            if not pending.outstanding:
                pending.done.set()

    @set_ev_cls(ofp_event.EventOFPErrorMsg, MAIN_DISPATCHER)
    @_guarded
    def _error(self, ev: Any) -> None:
        msg = ev.msg
        dpid = msg.datapath.id
        reason = error_text(msg)
        with self._lock:
            sent = self._sent.pop((dpid, msg.xid), None)
        if sent is None:
            log.warning("switch %#x: error %s for xid %#x, not ours", dpid, reason, msg.xid)
            return
        message, pending = sent
        log.warning("switch %#x refused %s: %s", dpid, message, reason)
        pending.errors.append(SwitchError(dpid, message, reason))

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    @_guarded
    def _flow_stats_reply(self, ev: Any) -> None:
        self._stats_part(ev.msg, [FlowStat(s.table_id, s.priority, s.cookie, canonical_match(s.match),
                                           s.packet_count, s.byte_count) for s in ev.msg.body], [])

    @set_ev_cls(ofp_event.EventOFPPortStatsReply, MAIN_DISPATCHER)
    @_guarded
    def _port_stats_reply(self, ev: Any) -> None:
        self._stats_part(ev.msg, [], [PortStat(s.port_no, s.rx_packets, s.tx_packets, s.rx_bytes, s.tx_bytes)
                                      for s in ev.msg.body])

    def _stats_part(self, msg: Any, flows: list[FlowStat], ports: list[PortStat]) -> None:
        """One part of a multipart reply; the reply is complete at the part without OFPMPF_REPLY_MORE."""
        dpid = msg.datapath.id
        key = (dpid, msg.xid)
        with self._lock:
            round_ = self._stats_rounds.get(key)
            if round_ is None:
                return   # a round that gave up waiting
            round_.flows[dpid] += flows
            round_.ports[dpid] += ports
            if msg.flags & ofp.OFPMPF_REPLY_MORE:
                return
            del self._stats_rounds[key]
            round_.outstanding.discard(key)
            round_.time[dpid] = self.clock()
            if not round_.outstanding:
                round_.done.set()

    # -- sending (any thread) ----------------------------------------------------------------

    def connected(self) -> set[int]:
        with self._lock:
            return set(self.datapaths)

    def send(self, messages: Sequence[Message]) -> SendResult:
        """Send phase by phase; each phase is confirmed by barrier replies before the next goes."""
        result = SendResult()
        for batch, barrier_dpids in phases(messages):
            result.merge(self._send_phase(batch, barrier_dpids))
        return result

    def _send_phase(self, batch: Sequence[Message], barrier_dpids: set[int]) -> SendResult:
        result = SendResult()
        pending = _Pending()
        per_switch: dict[int, list[Message]] = {}
        for message in batch:
            per_switch.setdefault(dpid_of(message), []).append(message)
        with self._lock:
            datapaths = dict(self.datapaths)
        for dpid in sorted(set(per_switch) | barrier_dpids):
            dp = datapaths.get(dpid)
            if dp is None:
                result.unconfirmed.add(dpid)
                continue
            with self._lock:
                chunks = []
                for message in per_switch.get(dpid, ()):
                    xid = _next_xid(dp)
                    self._sent[(dpid, xid)] = (message, pending)
                    chunks.append(ofwire.encode(message, xid))
                if dpid in barrier_dpids:
                    xid = _next_xid(dp)
                    chunks.append(ofwire.encode(Barrier(dpid), xid))
                    pending.outstanding.add((dpid, xid))
                    self._barriers[(dpid, xid)] = pending
            # One write per switch per phase: os-ken's per-message queueing dominates large batches.
            if not dp.send(b"".join(chunks)):
                result.unconfirmed.add(dpid)
        with self._lock:
            waiting = bool(pending.outstanding)
        if waiting and not pending.done.wait(self.barrier_timeout):
            with self._lock:
                late = {dpid for dpid, _ in pending.outstanding}
                for key in pending.outstanding:
                    self._barriers.pop(key, None)
            log.warning("no barrier reply from %s within %g s", ", ".join(f"{d:#x}" for d in sorted(late)),
                        self.barrier_timeout)
            result.unconfirmed |= late
        with self._lock:
            for key in [k for k, (_, p) in self._sent.items() if p is pending]:
                del self._sent[key]
        result.errors += pending.errors
        result.unconfirmed |= pending.lost
        return result

    def stats(self, dpids: Collection[int] | None = None, timeout: float = 1.0) -> dict[int, SwitchStats]:
        """Our flows of the steering and hand-off tables and every port's counters (see Southbound.stats)."""
        round_ = _StatsRound()
        writes = []
        with self._lock:
            for dpid, dp in sorted(self.datapaths.items()):
                if dpids is not None and dpid not in dpids:
                    continue
                # Only these two tables: the others hold Open vSwitch learn and multipath actions, whose
                # parsing by os-ken we would depend on for nothing.
                requests = [parser.OFPFlowStatsRequest(dp, 0, table, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                                       cookies.TAG << 56, cookies.OWNER_MASK, parser.OFPMatch())
                            for table in (TABLE_STEER, TABLE_HANDOFF)]
                requests.append(parser.OFPPortStatsRequest(dp, 0, ofp.OFPP_ANY))
                for request in requests:
                    request.set_xid(_next_xid(dp))
                    request.serialize()
                    round_.outstanding.add((dpid, request.xid))
                    self._stats_rounds[(dpid, request.xid)] = round_
                round_.flows[dpid], round_.ports[dpid] = [], []
                writes.append((dp, b"".join(r.buf for r in requests)))
        for dp, data in writes:
            if not dp.send(data):
                self._fail_waits(dp.id)
        with self._lock:
            waiting = bool(round_.outstanding)
        if waiting:
            round_.done.wait(timeout)
        with self._lock:
            for key in round_.outstanding:
                self._stats_rounds.pop(key, None)
            late = {dpid for dpid, _ in round_.outstanding}
            if late:
                log.info("no complete statistics from %s within %g s", ", ".join(f"{d:#x}" for d in sorted(late)),
                         timeout)
            return {dpid: SwitchStats(dpid, round_.time[dpid], tuple(round_.flows[dpid]), tuple(round_.ports[dpid]))
                    for dpid in sorted(round_.flows) if dpid not in late | round_.lost}

    def _fail_waits(self, dpid: int) -> None:
        """A switch left: nobody will answer its barriers or statistics requests, so stop waiting for them."""
        with self._lock:
            waits: list[dict[tuple[int, int], Any]] = [self._barriers, self._stats_rounds]
            for by_key in waits:
                for key in [k for k in by_key if k[0] == dpid]:
                    pending = by_key.pop(key)
                    pending.outstanding.discard(key)
                    pending.lost.add(dpid)
                    if not pending.outstanding:
                        pending.done.set()


def lldp_flow(dpid: int) -> Flow:
    """Every LLDP frame to the controller.  Its cookie is not ClickSteer's tag: a resync keeps it."""
    return Flow(dpid, 0, 0xFFFF, match(eth_type=lldp.ETH_TYPE), (Output(ofwire.OFPP_CONTROLLER),),
                cookie=LLDP_COOKIE)


def canonical_match(osken_match: Any) -> tuple[tuple[str, MatchValue], ...]:
    """An os-ken OFPMatch as the core's match: sorted (field, value) items, a masked value as (value, mask)."""
    return match(**dict(osken_match.items()))


def _next_xid(dp: Any) -> int:
    """The datapath's next transaction id, as os-ken's set_xid counts them (hold the app's lock)."""
    dp.xid = (dp.xid + 1) & ofp.MAX_XID
    return dp.xid


def _port_name(port: Any) -> str:
    name = getattr(port, "name", b"")
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)


# ---- the launcher ----------------------------------------------------------------------------

def start(hooks: SwitchHooks, host: str, port: int, barrier_timeout: float = 10.0) -> ClickSteerApp:
    """Start os-ken's OpenFlow server and our application (replaces the removed ``osken-manager``).

    Returns at once; os-ken's threads serve switches in the background.  They
    cannot be stopped cleanly (the listener loops forever), so a process that
    started them ends with ``os._exit``.
    """
    cfg.CONF(args=[], project=PROJECT)
    cfg.CONF.set_override("ofp_listen_host", host)
    cfg.CONF.set_override("ofp_tcp_listen_port", port)
    manager = app_manager.AppManager.get_instance()
    manager.load_apps([OFP_HANDLER])
    contexts = manager.create_contexts()
    manager.applications_cls["clicksteer"] = ClickSteerApp
    manager.instantiate_apps(hooks=hooks, barrier_timeout=barrier_timeout, **contexts)
    return next(a for a in manager.applications.values() if isinstance(a, ClickSteerApp))
