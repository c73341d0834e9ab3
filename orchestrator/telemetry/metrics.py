"""The Prometheus metrics of SPEC section 7, served on `--metrics-port` by `phase`, `watch`
and `rehearse`.

    series                     labels                         fed by
    migrate_phase_state        migration, host, phase, state  phase transition events
    migrate_trigger_value      migration, host, trigger       trigger events, cycles
    migrate_trigger_threshold  migration, host, trigger       trigger events, cycles
    migrate_trigger_firing     migration, host, trigger       trigger_fired 1, resolved/reset 0
    migrate_rollbacks_total    migration, phase, reason       rollback_started (one per host)
    migrate_analysis_score     migration, phase, wave         analysis_completed
    migrate_watch_active       migration                      set_watch_active(), watch_role

Integration (one object per process, its own CollectorRegistry, never the global one):

    metrics = MigrateMetrics(project.name)
    metrics.declare(hosts=[h.name for h in hosts],
                    phases={n: list(project.phases[n].triggers) for n in numbers},
                    states={(host, n): "completed", ...})     # what the journal says now
    port = metrics.serve(args.metrics_port)        # 0 picks a free port; returns it
    subscribers.subscribe(metrics.on_event)        # events update the series
    subscribers.subscribe_cycles(metrics.on_cycle) # each monitoring cycle (core.bus.Cycle)
    ... watch HA:   metrics.set_watch_active(True / False)
    metrics.close()

`declare` starts every series it can name at 0 (trigger value/threshold/firing for each
host and trigger of the declared phases, rollbacks for each declared phase and reason:
its triggers, `step_failed`, `analysis`, `operator`; watch_active), and each declared
(host, phase) at its state, so every dashboard query has data before anything happened.

`migrate_phase_state` has one series per (host, phase): the current state's, value 1.
A change of state replaces the label set (Prometheus marks the old series stale at the
next scrape), so a 200-host, 4-phase fleet is 800 series, not 6,400 zeros.

The rollback reason is read from the rollback_started payload (engine.rollback
`Reason.payload()`): the trigger's name when there is one (`analysis` for a failed
canary analysis), `step_failed` for a failed or cancelled step, `operator` for
`migrate rollback`, Ctrl-C, a `pause` answered "roll back", and a resumed rollback; a
dead background worker (origin `worker`) or an exhausted budget without a trigger counts
as `step_failed`.
The firing series stays 1 after the rollback it caused (the trigger fired and is no
longer evaluated); it returns to 0 when the trigger resolves or the phase starts again on
the host. A wave is labelled by its number; `wave="all"` for a phase without waves.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from orchestrator._exceptions import ConfigError
from orchestrator.core.events import EventKind, RunEvent
from orchestrator.core.states import PhaseTransition

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from orchestrator.core.bus import Cycle
    from orchestrator.telemetry.web_config import WebConfig

#: a connection that has not finished its TLS handshake or sent its request by then is
#: dropped (a silent client must not hold a server thread)
CONNECTION_TIMEOUT = 10.0

PHASE_STATE = "migrate_phase_state"
TRIGGER_VALUE = "migrate_trigger_value"
TRIGGER_THRESHOLD = "migrate_trigger_threshold"
TRIGGER_FIRING = "migrate_trigger_firing"
ROLLBACKS = "migrate_rollbacks"  # exposed as migrate_rollbacks_total (a counter)
ANALYSIS_SCORE = "migrate_analysis_score"
WATCH_ACTIVE = "migrate_watch_active"
SERIES = (PHASE_STATE, TRIGGER_VALUE, TRIGGER_THRESHOLD, TRIGGER_FIRING, ROLLBACKS + "_total",
          ANALYSIS_SCORE, WATCH_ACTIVE)

STEP_FAILED, ANALYSIS, OPERATOR = "step_failed", "analysis", "operator"
FIXED_REASONS = (STEP_FAILED, ANALYSIS, OPERATOR)
NO_WAVE = "all"

#: phase events -> the state they move the phase to
_PHASE_TARGET: dict[EventKind, str] = {
    t.value.event: t.value.target.value for t in PhaseTransition}  # type: ignore[attr-defined]
_TRIGGER_EVENTS = frozenset({EventKind.TRIGGER_PENDING, EventKind.TRIGGER_FIRED,
                             EventKind.TRIGGER_RESOLVED, EventKind.TRIGGER_RESET})


def rollback_reason(payload: Mapping[str, Any]) -> str:
    """`reason` of migrate_rollbacks_total from a rollback_started payload."""
    trigger = payload.get("trigger")
    if trigger:
        return str(trigger)
    origin = payload.get("origin")
    if origin in ("step_failure", "budget", "worker"):
        return STEP_FAILED
    return OPERATOR  # operator, resume, or a payload that says nothing


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


class _Collector:
    """Builds the metric families from MigrateMetrics' state (rebuilt only after a change)."""

    def __init__(self, owner: MigrateMetrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        return iter(self.owner._families())

    def describe(self) -> Iterator[Metric]:
        return iter(())


class MigrateMetrics:
    """SPEC section 7's series for one migration, on a private registry."""

    def __init__(self, migration: str) -> None:
        from prometheus_client import CollectorRegistry

        self.migration = migration
        self.registry = CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._states: dict[tuple[str, int], str] = {}
        self._values: dict[tuple[str, str], float] = {}
        self._thresholds: dict[tuple[str, str], float] = {}
        self._firing: dict[tuple[str, str], float] = {}
        self._rollbacks: dict[tuple[int, str], float] = {}
        self._scores: dict[tuple[int, str], float] = {}
        self._watch_active = 0.0
        self._phase_triggers: dict[int, tuple[str, ...]] = {}
        self._version = 0
        self._cache: tuple[int, list[Metric]] | None = None
        self.registry.register(_Collector(self))  # type: ignore[arg-type]
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # --- declaring what exists ------------------------------------------------------------
    def declare(self, hosts: Iterable[str], phases: Mapping[int, Iterable[str]],
                states: Mapping[tuple[str, int], str] | None = None,
                reasons: Iterable[str] = ()) -> None:
        """Start the series of these hosts and phases (phase -> its trigger names) at 0,
        each (host, phase) at `states` or `pending`. Safe to call again with more."""
        names = list(hosts)
        extra = tuple(reasons)
        with self._lock:
            for number, triggers in phases.items():
                trig = tuple(triggers)
                known = self._phase_triggers.get(number, ())
                self._phase_triggers[number] = known + tuple(t for t in trig if t not in known)
                for reason in (*trig, *FIXED_REASONS, *extra):
                    self._rollbacks.setdefault((number, reason), 0.0)
                for host in names:
                    self._states.setdefault((host, number), "pending")
                    for t in trig:
                        for table in (self._values, self._thresholds, self._firing):
                            table.setdefault((host, t), 0.0)
            for key, state in (states or {}).items():
                self._states[key] = str(getattr(state, "value", state))
            self._version += 1

    # --- updates ---------------------------------------------------------------------------
    def set_phase_state(self, host: str, phase: int, state: str) -> None:
        with self._lock:
            self._states[(host, phase)] = str(getattr(state, "value", state))
            self._version += 1

    def set_trigger(self, host: str, trigger: str, *, value: float | None = None,
                    threshold: float | None = None, firing: bool | None = None) -> None:
        """The monitor's latest reading of a trigger (None: leave as it is)."""
        with self._lock:
            self._set_trigger(host, trigger, value, threshold, firing)
            self._version += 1

    def _set_trigger(self, host: str, trigger: str, value: Any, threshold: Any,
                     firing: bool | None) -> None:
        key = (host, trigger)
        v, t = _number(value), _number(threshold)
        if v is not None:
            self._values[key] = v
        else:
            self._values.setdefault(key, 0.0)
        if t is not None:
            self._thresholds[key] = t
        else:
            self._thresholds.setdefault(key, 0.0)
        if firing is not None:
            self._firing[key] = 1.0 if firing else 0.0
        else:
            self._firing.setdefault(key, 0.0)

    def observe(self, snapshot: Mapping[tuple[str, str], tuple[Any, float | None]],
                triggers: Mapping[str, Any]) -> None:
        """A TriggerMonitor.snapshot() ((host, trigger) -> (TriggerState, baseline)) with
        the project's triggers: value, threshold (baseline applied) and firing of each."""
        from orchestrator.metrics.triggers import TriggerStatus, effective_threshold

        with self._lock:
            for (host, name), (state, baseline) in snapshot.items():
                trigger = triggers.get(name)
                limit = effective_threshold(trigger, baseline) if trigger is not None else None
                self._set_trigger(host, name, state.last_value, limit,
                                  state.status is TriggerStatus.FIRING)
            self._version += 1

    def on_cycle(self, cycle: Cycle) -> None:
        """Subscribe to a run's cycles: each trigger's value, threshold (baseline applied)
        and firing after every monitoring cycle."""
        with self._lock:
            for v in cycle.values:
                self._set_trigger(v.host, v.trigger, v.value, v.threshold, v.status == "firing")
            self._version += 1

    def count_rollback(self, phase: int, reason: str) -> None:
        with self._lock:
            key = (phase, reason)
            self._rollbacks[key] = self._rollbacks.get(key, 0.0) + 1
            self._version += 1

    def set_analysis_score(self, phase: int, wave: int | str | None, score: float) -> None:
        with self._lock:
            self._scores[(phase, NO_WAVE if wave is None else str(wave))] = float(score)
            self._version += 1

    def set_watch_active(self, active: bool) -> None:
        with self._lock:
            self._watch_active = 1.0 if active else 0.0
            self._version += 1

    # --- the event hook --------------------------------------------------------------------
    def on_event(self, event: RunEvent) -> None:
        """Subscribe to EventHooks: every journaled event updates the series it concerns."""
        kind, host, phase, payload = event.kind, event.host, event.phase, event.payload
        if kind in _PHASE_TARGET and host is not None and phase is not None:
            with self._lock:
                self._states[(host, phase)] = _PHASE_TARGET[kind]
                if kind in (EventKind.RUN_STARTED, EventKind.RUN_RESUMED):
                    for t in self._phase_triggers.get(phase, ()):
                        if (host, t) in self._firing:
                            self._firing[(host, t)] = 0.0
                if kind is EventKind.ROLLBACK_STARTED:
                    key = (phase, rollback_reason(payload))
                    self._rollbacks[key] = self._rollbacks.get(key, 0.0) + 1
                self._version += 1
            return
        if kind in _TRIGGER_EVENTS and host is not None and payload.get("trigger"):
            firing: bool | None = None
            if kind is EventKind.TRIGGER_FIRED:
                firing = True
            elif kind in (EventKind.TRIGGER_RESOLVED, EventKind.TRIGGER_RESET):
                firing = False
            with self._lock:
                self._set_trigger(host, str(payload["trigger"]), payload.get("value"),
                                  payload.get("threshold"), firing)
                self._version += 1
            return
        if kind.value == "analysis_completed" and phase is not None:
            value = _number(payload.get("score"))
            if value is not None:
                self.set_analysis_score(phase, payload.get("wave"), value)
            return
        if kind is EventKind.WATCH_ROLE and payload.get("role") in ("active", "standby"):
            self.set_watch_active(payload["role"] == "active")

    __call__ = on_event

    # --- exposition ------------------------------------------------------------------------
    def _families(self) -> list[Metric]:
        with self._lock:
            if self._cache is not None and self._cache[0] == self._version:
                return self._cache[1]
            version = self._version
            states = sorted(self._states.items())
            values = sorted(self._values.items())
            thresholds = sorted(self._thresholds.items())
            firing = sorted(self._firing.items())
            rollbacks = sorted(self._rollbacks.items())
            scores = sorted(self._scores.items())
            active = self._watch_active
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        m = self.migration
        state = GaugeMetricFamily(PHASE_STATE, "1 for the phase's current state on the host",
                                  labels=["migration", "host", "phase", "state"])
        for (host, phase), name in states:
            state.add_metric([m, host, str(phase), name], 1.0)
        out: list[Metric] = [state]
        for fam_name, doc, table in (
                (TRIGGER_VALUE, "Latest value of the trigger's metric", values),
                (TRIGGER_THRESHOLD, "The value at which the trigger fires (baseline applied)",
                 thresholds),
                (TRIGGER_FIRING, "1 while the trigger is firing", firing)):
            fam = GaugeMetricFamily(fam_name, doc, labels=["migration", "host", "trigger"])
            for (host, trigger), value in table:
                fam.add_metric([m, host, trigger], value)
            out.append(fam)
        rb = CounterMetricFamily(ROLLBACKS, "Rollbacks started (one per host and phase), by "
                                 "reason: a trigger's name, step_failed, analysis or operator",
                                 labels=["migration", "phase", "reason"])
        for (phase, reason), value in rollbacks:
            rb.add_metric([m, str(phase), reason], value)
        out.append(rb)
        score = GaugeMetricFamily(ANALYSIS_SCORE, "The latest canary analysis score (0-100)",
                                  labels=["migration", "phase", "wave"])
        for (phase, wave), value in scores:
            score.add_metric([m, str(phase), wave], value)
        out.append(score)
        watch = GaugeMetricFamily(WATCH_ACTIVE, "1 on the active watcher, 0 standing by",
                                  labels=["migration"])
        watch.add_metric([m], active)
        out.append(watch)
        with self._lock:
            if self._version == version:
                self._cache = (version, out)
        return out

    def render(self) -> bytes:
        """The /metrics body (Prometheus text format)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "127.0.0.1", web: WebConfig | None = None) -> int:
        """Serve /metrics on a daemon thread; returns the port (0 picks a free one).

        `web` (the `--web-config` file, telemetry.web_config): TLS with its certificate,
        and a 401 for a request without one of its `basic_auth_users`."""
        if self._server is not None:
            return int(self._server.server_port)
        try:
            self._server = _metrics_server(self.registry, addr, port, web)
        except OSError as exc:  # in use, not this machine's address, no such host (gaierror)
            # bad configuration, not a bug: it fails before any run is started or recorded
            shown = f"[{addr}]" if ":" in addr else addr
            reason = exc.strerror or str(exc)
            raise ConfigError(f"--metrics-port/--metrics-listen: cannot serve /metrics on "
                              f"{shown}:{port}: {reason}") from exc
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="metrics-http", daemon=True)
        self._thread.start()
        return int(self._server.server_port)

    @property
    def port(self) -> int | None:
        return None if self._server is None else int(self._server.server_port)

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> MigrateMetrics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the server ------------------------------------------------------------------------------
def _metrics_server(registry: Any, addr: str, port: int, web: WebConfig | None) -> Any:
    """prometheus-client's WSGI app on a threading server of ours: TLS is negotiated per
    connection on its own thread (a client that connects and says nothing, or speaks plain
    HTTP, costs that thread up to CONNECTION_TIMEOUT and gets no answer, and never stalls
    the accepting thread), and basic auth guards the app."""
    import socket
    import ssl
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    app = make_wsgi_app(registry)
    if web is not None and web.needs_auth:
        app = _basic_auth(app, web)
    context = web.ssl_context if web is not None else None
    family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

        def finish_request(self, request: Any, client_address: Any) -> None:
            if context is None:
                super().finish_request(request, client_address)
                return
            request.settimeout(CONNECTION_TIMEOUT)
            try:
                tls = context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):  # plain HTTP, a scanner, a wrong client cert
                return
            try:
                super().finish_request(tls, client_address)
            finally:
                tls.close()

        def handle_error(self, request: Any, client_address: Any) -> None:
            return None  # a client that went away mid-answer is not ours to report

    class Handler(WSGIRequestHandler):
        timeout = CONNECTION_TIMEOUT

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return make_server(addr, port, app, Server, handler_class=Handler)


def _basic_auth(app: Any, web: WebConfig) -> Any:
    """The WSGI app behind HTTP basic auth: 401 without one of the configured users."""
    import base64
    import binascii

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        scheme, _, encoded = header.partition(" ")
        user = password = None
        if scheme.lower() == "basic":
            try:
                user, sep, password = base64.b64decode(encoded.strip(), validate=True) \
                    .decode("utf-8").partition(":")
                if not sep:
                    user = None
            except (binascii.Error, UnicodeDecodeError):
                user = None
        if user is None or password is None or not web.authorized(user, password):
            start_response("401 Unauthorized", [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("WWW-Authenticate", 'Basic realm="migrate"')])
            return [b"Unauthorized\n"]
        return app(environ, start_response)

    return guarded
