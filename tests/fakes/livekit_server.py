"""A fake LiveKit server API on loopback: the Twirp endpoints livekit-api calls.

It speaks what livekit-api 1.x sends (see livekit/api/twirp_client.py): POST
/twirp/livekit.<Service>/<Method> with a protobuf body (Content-Type application/protobuf) and
`Authorization: Bearer <JWT>` signed with the API secret. Each request's JWT is verified with
livekit-api's TokenVerifier and its grants checked like the real server does; errors are Twirp
JSON ({"code", "msg"}). Rooms live in memory; every call is recorded. It also signs webhooks
the way the LiveKit server does (a JWT carrying the body's SHA-256).

Used by the tests and by bench/realtime_bench.py. It runs its own thread.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.json_format import MessageToJson
from google.protobuf.message import Message
from livekit import api


@dataclass(frozen=True)
class Call:
    service: str
    method: str
    request: Any  # the decoded protobuf request
    claims: api.Claims


@dataclass
class Gate:
    """Holds the next call of a method: `reached` is set when it arrives, and it proceeds
    once `release` is set (a hang guard lets it go after HOLD_LIMIT_S)."""

    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


HOLD_LIMIT_S = 60.0


class TwirpFailure(Exception):
    def __init__(self, status: int, code: str, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


@dataclass
class FakeLiveKit:
    api_key: str = "devkey"
    api_secret: str = "devsecret-0123456789-0123456789-0123"
    calls: list[Call] = field(default_factory=list)
    rooms: dict[str, api.Room] = field(default_factory=dict)
    # method -> (status, twirp code) to answer on the next calls of that method (one per entry)
    failures: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    # room -> its agent participant; tests edit attributes as the worker would. Like the real
    # server, a dispatch only records a job request: a worker takes the job and joins later.
    # By default that happens on a timer `join_after_s` after CreateDispatch; with
    # `joins_by_hand` the test does it (take_job, join_agent); with `agents_join` False no
    # worker ever comes (none is free).
    agents: dict[str, api.ParticipantInfo] = field(default_factory=dict)
    agents_join: bool = True
    joins_by_hand: bool = False
    join_after_s: float = 0.02
    # room -> dispatch id -> the dispatch (its state.jobs names the job a worker took)
    dispatches: dict[str, dict[str, api.AgentDispatch]] = field(default_factory=dict)
    clock: Callable[[], float] = time.time  # epoch seconds of joined_at (tests: a FakeClock)
    gates: dict[str, Gate] = field(default_factory=dict)  # method -> its next call's gate
    _lock: threading.Lock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self._verifier = api.TokenVerifier(self.api_key, self.api_secret)
        self._handlers: dict[tuple[str, str], tuple[type[Message], Callable[[Any], Message]]] = {
            ("RoomService", "CreateRoom"): (api.CreateRoomRequest, self._create_room),
            ("RoomService", "DeleteRoom"): (api.DeleteRoomRequest, self._delete_room),
            ("RoomService", "UpdateRoomMetadata"): (
                api.UpdateRoomMetadataRequest,
                self._update_metadata,
            ),
            ("RoomService", "ListRooms"): (api.ListRoomsRequest, self._list_rooms),
            ("RoomService", "ListParticipants"): (
                api.ListParticipantsRequest,
                self._list_participants,
            ),
            ("AgentDispatchService", "CreateDispatch"): (
                api.CreateAgentDispatchRequest,
                self._create_dispatch,
            ),
            # livekit-api's get_dispatch is ListDispatch with a dispatch id
            ("AgentDispatchService", "ListDispatch"): (
                api.ListAgentDispatchRequest,
                self._list_dispatch,
            ),
            ("AgentDispatchService", "DeleteDispatch"): (
                api.DeleteAgentDispatchRequest,
                self._delete_dispatch,
            ),
        }
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> FakeLiveKit:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as aiohttp expects
            # One buffered write per response and no Nagle, or delayed ACKs add ~40 ms a call.
            wbufsize = 64 * 1024
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, payload, content_type = fake.handle(self.path, dict(self.headers), body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- inspection ---------------------------------------------------------------------------
    def calls_of(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def hold_next(self, method: str) -> Gate:
        with self._lock:
            gate = self.gates[method] = Gate()
        return gate

    def fail_next(self, method: str, *, status: int = 503, code: str = "unavailable") -> None:
        with self._lock:
            self.failures.setdefault(method, []).append((status, code))

    def take_job(self, room: str) -> None:
        """A worker accepts the room's newest dispatch (LiveKit records the job on it)."""
        with self._lock:
            dispatch = list(self.dispatches.get(room, {}).values())[-1]
            dispatch.state.jobs.append(api.Job(id=f"AJ_{len(dispatch.state.jobs)}_{dispatch.id}"))

    def join_agent(self, room: str, *, at: float | None = None) -> api.ParticipantInfo:
        """The worker's participant joins `room` at `at` (epoch seconds; now by default)."""
        joined = self.clock() if at is None else at
        with self._lock:
            agent = api.ParticipantInfo(
                sid=f"PA_{len(self.calls)}",
                identity=f"agent-AJ_{len(self.calls)}",
                kind=api.ParticipantInfo.Kind.AGENT,
                joined_at=int(joined),
                joined_at_ms=int(joined * 1000),
            )
            self.agents[room] = agent
            return agent

    def _join_later(self, room: str) -> None:
        with self._lock:
            if room not in self.rooms or room in self.agents:
                return
            self.take_job(room)
            self.join_agent(room)

    def signed_webhook(self, event: api.WebhookEvent) -> tuple[str, str]:
        """(body, Authorization value) as the LiveKit server sends a webhook."""
        body = MessageToJson(event)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        token = api.AccessToken(self.api_key, self.api_secret).with_sha256(digest).to_jwt()
        return body, token

    # --- request handling ---------------------------------------------------------------------
    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes, str]:
        try:
            return 200, self._dispatch(path, headers, body), "application/protobuf"
        except TwirpFailure as exc:
            payload = json.dumps({"code": exc.code, "msg": exc.msg}).encode()
            return exc.status, payload, "application/json"

    def _dispatch(self, path: str, headers: dict[str, str], body: bytes) -> bytes:
        prefix = "/twirp/livekit."
        if not path.startswith(prefix) or path.count("/") != 3:
            raise TwirpFailure(404, "bad_route", "no such route")
        service, method = path[len(prefix) :].split("/")
        handler = self._handlers.get((service, method))
        if handler is None:
            raise TwirpFailure(404, "bad_route", "no such method")
        ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        if ctype != "application/protobuf":
            raise TwirpFailure(415, "malformed", "expected application/protobuf")
        claims = self._authenticate(headers)
        request_class, run = handler
        request = request_class.FromString(body)
        self._authorize(method, claims, request)
        with self._lock:
            gate = self.gates.pop(method, None)
        if gate is not None:
            gate.reached.set()
            gate.release.wait(HOLD_LIMIT_S)
        with self._lock:
            self.calls.append(Call(service, method, request, claims))
            queued = self.failures.get(method)
            failure = queued.pop(0) if queued else None
            if failure is not None:
                raise TwirpFailure(failure[0], failure[1], "injected failure")
            return run(request).SerializeToString()

    def _authenticate(self, headers: dict[str, str]) -> api.Claims:
        value = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        if not value.startswith("Bearer "):
            raise TwirpFailure(401, "unauthenticated", "missing bearer token")
        try:
            return self._verifier.verify(value.removeprefix("Bearer "))
        except Exception as exc:
            raise TwirpFailure(401, "unauthenticated", type(exc).__name__) from exc

    @staticmethod
    def _authorize(method: str, claims: api.Claims, request: Any) -> None:
        video = claims.video or api.VideoGrants()
        if method in {"CreateRoom", "DeleteRoom"}:
            ok = bool(video.room_create)
        elif method == "ListRooms":
            ok = bool(video.room_list)
        else:  # room admin on exactly this room
            ok = bool(video.room_admin) and video.room == request.room
        if not ok:
            raise TwirpFailure(403, "permission_denied", "insufficient grants")

    # --- the services (called under the lock) -------------------------------------------------
    def _create_room(self, req: api.CreateRoomRequest) -> api.Room:
        room = self.rooms.get(req.name)
        if room is None:  # like LiveKit, creating an existing room returns it
            room = api.Room(
                sid="RM_" + hashlib.sha1(req.name.encode()).hexdigest()[:12],
                name=req.name,
                empty_timeout=req.empty_timeout,
                departure_timeout=req.departure_timeout,
                metadata=req.metadata,
                creation_time=int(time.time()),
            )
            self.rooms[req.name] = room
        return room

    def _list_rooms(self, req: api.ListRoomsRequest) -> api.ListRoomsResponse:
        names = set(req.names)
        rooms = [room for name, room in self.rooms.items() if not names or name in names]
        return api.ListRoomsResponse(rooms=rooms)

    def _list_participants(self, req: api.ListParticipantsRequest) -> api.ListParticipantsResponse:
        if req.room not in self.rooms:
            raise TwirpFailure(404, "not_found", "requested room does not exist")
        agent = self.agents.get(req.room)
        return api.ListParticipantsResponse(participants=[agent] if agent is not None else [])

    def _delete_room(self, req: api.DeleteRoomRequest) -> api.DeleteRoomResponse:
        self.agents.pop(req.room, None)
        self.dispatches.pop(req.room, None)
        if self.rooms.pop(req.room, None) is None:
            raise TwirpFailure(404, "not_found", "requested room does not exist")
        return api.DeleteRoomResponse()

    def _update_metadata(self, req: api.UpdateRoomMetadataRequest) -> api.Room:
        room = self.rooms.get(req.room)
        if room is None:
            raise TwirpFailure(404, "not_found", "requested room does not exist")
        room.metadata = req.metadata
        return room

    def _create_dispatch(self, req: api.CreateAgentDispatchRequest) -> api.AgentDispatch:
        dispatch = api.AgentDispatch(
            id="AD_" + hashlib.sha1(f"{req.room}{len(self.calls)}".encode()).hexdigest()[:12],
            agent_name=req.agent_name,
            room=req.room,
            metadata=req.metadata,
            state=api.AgentDispatchState(created_at=int(self.clock() * 1e9)),
        )
        self.dispatches.setdefault(req.room, {})[dispatch.id] = dispatch
        if self.agents_join and not self.joins_by_hand and req.room in self.rooms:
            timer = threading.Timer(self.join_after_s, self._join_later, args=(req.room,))
            timer.daemon = True
            timer.start()
        return dispatch

    def _list_dispatch(self, req: api.ListAgentDispatchRequest) -> api.ListAgentDispatchResponse:
        found = self.dispatches.get(req.room, {})
        listed = [d for d in found.values() if not req.dispatch_id or d.id == req.dispatch_id]
        return api.ListAgentDispatchResponse(agent_dispatches=listed)

    def _delete_dispatch(self, req: api.DeleteAgentDispatchRequest) -> api.AgentDispatch:
        dispatch = self.dispatches.get(req.room, {}).pop(req.dispatch_id, None)
        if dispatch is None:
            raise TwirpFailure(404, "not_found", "dispatch not found")
        return dispatch
