"""Bullhorn REST API stand-in: the contract of ../shared/bullhorn-api-facts.md.

Login (loginInfo with a data-centre 307, OAuth authorization code, token refresh that
retires the old refresh token, REST login -> BhRestToken + restUrl), ``search`` (Lucene)
and ``query`` (JPQL ``where``) for Candidate and JobOrder with the ``{total, start, count,
data}`` envelope, ``entity/<Entity>/<id>[,<id>...]``, ``ping``; sessions that expire (401), and records that tests create,
modify, delete or corrupt (``app.state.bullhorn`` or the ``/_standin/admin`` routes, behind the stand-ins' admin key). 429s, 5xx,
timeouts and malformed bodies come from the shared fault injection.

Records follow Bullhorn's documented field types (``tests/contract/entityref.json``, from
the entity reference): ``create`` and ``modify`` refuse anything else; only ``corrupt``
breaks the contract on purpose.
"""

from __future__ import annotations

import bisect
import json
import re
import secrets
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Body, HTTPException, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse

from devplatform.standin import create_app

ENTITYREF_PATH = Path(__file__).resolve().parents[1] / "tests" / "contract" / "entityref.json"
ENTITYREF: dict[str, dict[str, dict]] = {
    name: spec["fields"] for name, spec in json.loads(ENTITYREF_PATH.read_text())["entities"].items()}
FIELDS = {entity: list(fields) for entity, fields in ENTITYREF.items()}
SKILLS = ["python", "airflow", "sql", "postgres", "spark", "kafka", "java", "react", "typescript", "aws",
          "docker", "kubernetes", "ml", "nlp", "golang", "terraform"]


def violations(entity: str, record: dict) -> list[str]:
    """How ``record`` departs from Bullhorn's documented field types (entityref.json)."""
    out = []
    for name, value in record.items():
        spec = ENTITYREF[entity].get(name)
        if spec is None:
            out.append(f"{name}: not a documented {entity} field")
        elif value is None:
            if spec.get("not_null"):
                out.append(f"{name}: documented Not null")
        elif spec["type"] in ("Integer", "Timestamp"):
            if type(value) is not int:
                out.append(f"{name}: {spec['type']} must be a JSON integer, not {value!r}")
            elif "values" in spec and value not in spec["values"]:
                out.append(f"{name}: only {spec['values']} are allowed, not {value!r}")
        elif spec["type"] == "Boolean":
            if type(value) is not bool:
                out.append(f"{name}: Boolean must be true or false, not {value!r}")
        elif spec["type"] == "String":
            if not isinstance(value, str) or len(value) > spec["length"]:
                out.append(f"{name}: String ({spec['length']}) expected, not {value!r}")
        else:
            out.append(f"{name}: type {spec['type']} has no check here")
    return out


class Record:
    __slots__ = ("id", "dlm", "data")

    def __init__(self, rid: int, dlm: int, data: dict) -> None:
        self.id, self.dlm, self.data = rid, dlm, data

    @property
    def key(self) -> tuple[int, int]:
        return (self.dlm, self.id)


class BullhornState:
    """Everything the stand-in knows; thread-safe. Tests drive it directly."""

    def __init__(self, client_id="platform-client", client_secret="platform-secret",
                 username="api.user", password="api.password") -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.username, self.password = username, password
        self.corp_token = "corp7"
        self.lock = threading.RLock()
        self.codes: set[str] = set()
        self.access_tokens: dict[str, float] = {}
        self.refresh_tokens: set[str] = set()
        self.sessions: dict[str, float] = {}
        self.session_ttl = 600.0
        self.expire_after_calls: int | None = None  # expire every session after N data calls
        self.redirect_login_info = True
        self.records: dict[str, dict[int, Record]] = {"Candidate": {}, "JobOrder": {}}
        self._sorted: dict[str, list[tuple[int, int]]] = {"Candidate": [], "JobOrder": []}
        self._clock = int(time.time() * 1000) - 86_400_000
        self._next_id = {"Candidate": 1000, "JobOrder": 5000}
        self.data_calls = 0
        self.logins = 0

    # -- time and records ----------------------------------------------------------------
    def _tick(self) -> int:
        self._clock = max(self._clock + 1, int(time.time() * 1000) - 86_400_000)
        return self._clock

    def _put(self, entity: str, rec: Record) -> None:
        old = self.records[entity].get(rec.id)
        keys = self._sorted[entity]
        if old is not None:
            del keys[bisect.bisect_left(keys, old.key)]
        self.records[entity][rec.id] = rec
        bisect.insort(keys, rec.key)

    def create(self, entity: str, **fields: Any) -> dict:
        with self.lock:
            rid = fields.pop("id", None) or self._next_id[entity]
            self._next_id[entity] = max(self._next_id[entity], rid) + 1
            now = self._tick()
            data = {f: None for f in FIELDS[entity]}
            data.update({"id": rid, "dateAdded": now, "dateLastModified": now, "isDeleted": False})
            if entity == "JobOrder":  # Bullhorn's defaults for a new job: open, not published
                data.update({"isOpen": True, "isPublic": 0})
            data.update(fields)
            self._check(entity, data)
            self._put(entity, Record(rid, now, data))
            return dict(data)

    def modify(self, entity: str, rid: int, **fields: Any) -> dict:
        with self.lock:
            rec = self.records[entity][rid]
            data = {**rec.data, **fields}
            now = self._tick()
            data["dateLastModified"] = now
            self._check(entity, data)
            self._put(entity, Record(rid, now, data))
            return dict(data)

    @staticmethod
    def _check(entity: str, data: dict) -> None:
        if problems := violations(entity, data):
            raise ValueError(f"{entity} {data.get('id')}: {'; '.join(problems)} (use corrupt() to break the contract)")

    def delete(self, entity: str, rid: int) -> dict:
        return self.modify(entity, rid, isDeleted=True)

    def corrupt(self, entity: str, rid: int, **bad_fields: Any) -> None:
        """Make a record break the contract (e.g. ``id=None`` or ``dateLastModified="x"``)."""
        with self.lock:
            rec = self.records[entity][rid]
            now = self._tick()
            data = {**rec.data, "dateLastModified": now, **bad_fields}
            self._put(entity, Record(rid, now, data))

    def seed(self, candidates: int, positions: int, seed: int = 7) -> None:
        import random

        rng = random.Random(seed)
        for i in range(positions):
            skills = rng.sample(SKILLS, 4)
            self.create("JobOrder", title=f"{skills[0].title()} engineer #{i}", skillList=",".join(skills),
                        description=f"We need {', '.join(skills)}.", publicDescription=f"{skills[0]} role",
                        isPublic=(1, 0, -1)[i % 3])
        for i in range(candidates):
            skills = rng.sample(SKILLS, 4)
            self.create("Candidate", firstName=f"First{i}", lastName=f"Last{i}", email=f"c{i}@example.com",
                        skillSet=", ".join(skills), description=f"Worked with {' and '.join(skills)}.",
                        status="Active")

    def visible(self, entity: str) -> list[dict]:
        with self.lock:
            return [dict(self.records[entity][k[1]].data) for k in self._sorted[entity]]

    # -- auth ----------------------------------------------------------------------------
    def check_session(self, token: str | None) -> None:
        with self.lock:
            self.data_calls += 1
            if self.expire_after_calls is not None and self.data_calls > self.expire_after_calls:
                self.sessions.clear()
                self.expire_after_calls = None
            exp = self.sessions.get(token or "")
            if exp is None or exp < time.time():
                raise HTTPException(401, {"errorMessage": "Bad 'BhRestToken' or timed-out.", "errorCode": 401})

    def issue_tokens(self) -> dict:
        access, refresh = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        self.access_tokens[access] = time.time() + 600
        self.refresh_tokens.add(refresh)
        return {"access_token": access, "token_type": "Bearer", "expires_in": 600, "refresh_token": refresh}


# -- query languages -------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(>=|<=|<>|=|>|<|\(|\)|AND\b|OR\b|[A-Za-z_][A-Za-z0-9_.]*|-?\d+|'[^']*')", re.I)


def _jpql(where: str):
    """A small JPQL ``where`` evaluator: comparisons joined by AND/OR with parentheses."""
    tokens = _TOKEN.findall(where)
    if "".join(tokens).replace(" ", "") != where.replace(" ", ""):
        raise ValueError(f"cannot parse where clause: {where!r}")
    pos = 0

    def peek():
        return tokens[pos].upper() if pos < len(tokens) else None

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def atom():
        if peek() == "(":
            take()
            e = expr()
            if take() != ")":
                raise ValueError("missing )")
            return e
        field, op, raw = take(), take(), take()
        value: Any = raw.strip("'") if raw.startswith("'") else (
            raw.lower() == "true" if raw.lower() in ("true", "false") else int(raw))
        ops = {"=": lambda a, b: a == b, "<>": lambda a, b: a != b, ">": lambda a, b: a > b,
               "<": lambda a, b: a < b, ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}
        if op not in ops:
            raise ValueError(f"bad operator {op!r}")
        return lambda r: (v := _field(r, field)) is not None and ops[op](v, value)

    def chain(word, operand, combine):
        """``operand (word operand)*``, folded left with ``combine``."""
        def parse():
            e = operand()
            while peek() == word:
                take()
                left, right = e, operand()
                e = lambda r, left=left, right=right: combine(left, right, r)  # noqa: E731
            return e
        return parse

    conj = chain("AND", atom, lambda left, right, r: left(r) and right(r))
    expr = chain("OR", conj, lambda left, right, r: left(r) or right(r))

    result = expr()
    if pos != len(tokens):
        raise ValueError(f"unexpected {tokens[pos]!r}")
    return result


def _field(rec: Record, name: str):
    if name == "id":
        return rec.id
    if name == "dateLastModified":
        return rec.dlm
    value = rec.data.get(name)
    return int(value) if isinstance(value, bool) else value


def _lucene(query: str):
    """``field:value`` and ``field:[A TO B]`` terms joined by AND; dates as yyyyMMddHHmmss."""
    tests = []
    for term in re.split(r"\s+AND\s+", query.strip()):
        m = re.fullmatch(r"(\w+):\[(\S+) TO (\S+)\]", term) or re.fullmatch(r"(\w+):(\S+)", term)
        if not m:
            raise ValueError(f"cannot parse query term {term!r}")
        field = m.group(1)
        if m.lastindex == 3:
            lo, hi = (None if v == "*" else _lucene_value(field, v) for v in (m.group(2), m.group(3)))
            tests.append(lambda r, f=field, lo=lo, hi=hi: (v := _field(r, f)) is not None
                         and (lo is None or v >= lo) and (hi is None or v <= hi))
        else:
            want = _lucene_value(field, m.group(2))
            tests.append(lambda r, f=field, w=want: _field(r, f) == w)
    return lambda r: all(t(r) for t in tests)


def _lucene_value(field: str, raw: str):
    if field.startswith("date") and len(raw) == 14:
        return int(datetime.strptime(raw, "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp() * 1000)
    return int(raw) if raw.lstrip("-").isdigit() else raw


_KEYSET = re.compile(r"^\s*dateLastModified\s*>\s*(\d+)\s+OR\s+\(\s*dateLastModified\s*=\s*(\d+)\s+AND\s+id\s*>\s*(\d+)\s*\)\s*$", re.I)


def create_bullhorn_app(seed_candidates: int = 0, seed_positions: int = 0, **state_kwargs):
    app = create_app("bullhorn")
    state = BullhornState(**state_kwargs)
    if seed_candidates or seed_positions:
        state.seed(seed_candidates, seed_positions)
    app.state.bullhorn = state

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    @app.get("/dc2/rest-services/loginInfo")
    def login_info_dc(request: Request, username: str):
        return {"oauthUrl": f"{base(request)}/oauth", "restUrl": f"{base(request)}/rest-services"}

    @app.get("/rest-services/loginInfo")
    def login_info(request: Request, username: str):
        """The wrong data centre answers 307 to the right one (dc2)."""
        if state.redirect_login_info:
            return RedirectResponse(f"/dc2/rest-services/loginInfo?{urlencode({'username': username})}", 307)
        return login_info_dc(request, username)

    @app.get("/oauth/authorize")
    def authorize(request: Request, client_id: str, response_type: str, username: str, password: str,
                  action: str = "", redirect_uri: str | None = None, state_: str | None = Query(None, alias="state")):
        if client_id != state.client_id:
            raise HTTPException(400, {"error": "invalid_client"})
        if (username, password) != (state.username, state.password) or action != "Login":
            raise HTTPException(401, {"error": "access_denied", "error_description": "Invalid credentials"})
        code = secrets.token_urlsafe(12)
        with state.lock:
            state.codes.add(code)
        params = {"code": code, **({"state": state_} if state_ else {})}
        return RedirectResponse(f"{redirect_uri or base(request) + '/oauth/callback'}?{urlencode(params)}", 302)

    @app.post("/oauth/token")
    def token(grant_type: str, client_id: str, client_secret: str, code: str | None = None,
              refresh_token: str | None = None):
        if (client_id, client_secret) != (state.client_id, state.client_secret):
            raise HTTPException(400, {"error": "invalid_client"})
        with state.lock:
            if grant_type == "authorization_code" and code in state.codes:
                state.codes.discard(code)
                return state.issue_tokens()
            if grant_type == "refresh_token" and refresh_token in state.refresh_tokens:
                state.refresh_tokens.discard(refresh_token)  # the old refresh token stops working
                return state.issue_tokens()
        raise HTTPException(400, {"error": "invalid_grant"})

    @app.api_route("/rest-services/login", methods=["GET", "POST"])
    def rest_login(request: Request, access_token: str, version: str = "*", ttl: int | None = None):
        with state.lock:
            if state.access_tokens.pop(access_token, 0) < time.time():
                return JSONResponse({"errorMessage": "Invalid or expired OAuth access token."}, 401)
            bh = secrets.token_urlsafe(16)
            state.sessions[bh] = time.time() + (ttl * 60 if ttl else state.session_ttl)
            state.logins += 1
        return {"BhRestToken": bh, "restUrl": f"{base(request)}/rest-services/{state.corp_token}/"}

    def session_token(request: Request) -> str | None:
        return (request.query_params.get("BhRestToken") or request.headers.get("BhRestToken")
                or request.cookies.get("BhRestToken"))

    @app.get("/rest-services/{corp}/ping")
    def ping(request: Request, corp: str):
        state.check_session(session_token(request))
        return {"sessionExpires": int(state.sessions[session_token(request)] * 1000)}

    def envelope(entity: str, match, sort: str, fields: str | None, start: int, count: int, lower=None):
        if entity not in FIELDS:
            raise HTTPException(404, {"errorMessage": f"Unknown entity {entity}"})
        if count > 500:
            raise HTTPException(400, {"errorMessage": "count must be at most 500"})
        wanted = fields.split(",") if fields else ["id"]
        unknown = [f for f in wanted if f not in FIELDS[entity]]
        if unknown:
            raise HTTPException(400, {"errorMessage": f"Invalid field(s): {', '.join(unknown)}"})
        if sort.replace(" ", "") not in ("dateLastModified,id", "id", ""):
            raise HTTPException(400, {"errorMessage": f"Unsupported sort {sort!r}"})
        with state.lock:
            keys = state._sorted[entity]
            i = bisect.bisect_right(keys, lower) if lower is not None else 0
            recs = [state.records[entity][k[1]] for k in keys[i:]]
        hits = [r for r in recs if match(r)]
        if sort.replace(" ", "") == "id":
            hits.sort(key=lambda r: r.id)
        page = hits[start:start + count]
        data = [{f: r.data.get(f) for f in wanted if f in r.data} for r in page]
        return {"total": len(hits), "start": start, "count": len(data), "data": data}

    @app.api_route("/rest-services/{corp}/search/{entity}", methods=["GET", "POST"])
    def search(request: Request, corp: str, entity: str, query: str | None = None, fields: str | None = None,
               sort: str = "", start: int = 0, count: int = 20, body: dict | None = Body(None)):
        state.check_session(session_token(request))
        query = query or (body or {}).get("query")
        try:
            match = _lucene(query or "id:[0 TO *]")
        except ValueError as exc:
            raise HTTPException(400, {"errorMessage": str(exc)}) from None
        result = envelope(entity, match, sort, fields, start, count)
        for row in result["data"]:
            row["_score"] = 1.0
        return result

    @app.get("/rest-services/{corp}/query/{entity}")
    def query(request: Request, corp: str, entity: str, where: str, fields: str | None = None,
              orderBy: str = "", start: int = 0, count: int = 20):  # noqa: N803 (Bullhorn's name)
        state.check_session(session_token(request))
        lower = None
        if m := _KEYSET.match(where):  # keyset paging: jump straight to the cursor
            lower = (int(m.group(2)), int(m.group(3)))
        try:
            match = _jpql(where)
        except (ValueError, IndexError) as exc:
            raise HTTPException(400, {"errorMessage": f"Invalid where clause: {exc}"}) from None
        return envelope(entity, match, orderBy, fields, start, count, lower=lower)

    @app.get("/rest-services/{corp}/entity/{entity}/{ids}")
    def entity_get(request: Request, corp: str, entity: str, ids: str, fields: str | None = None,
                   start: int = 0, count: int = 20):
        """One id: ``{"data": {...}}``; several (``123,456``): ``{"data": [...]}`` with the found
        ones (``start``/``count`` as in ``query``); 404 when none is found."""
        state.check_session(session_token(request))
        if entity not in FIELDS:
            raise HTTPException(404, {"errorMessage": f"Unknown entity {entity}"})
        if not fields:
            raise HTTPException(400, {"errorMessage": "fields or layout is required"})
        wanted = ["id", *(f for f in fields.split(",") if f != "id")]
        unknown = [f for f in wanted if f not in FIELDS[entity]]
        if unknown:
            raise HTTPException(400, {"errorMessage": f"Invalid field(s): {', '.join(unknown)}"})
        if count > 500:
            raise HTTPException(400, {"errorMessage": "count must be at most 500"})
        try:
            wanted_ids = [int(i) for i in ids.split(",")]
        except ValueError:
            raise HTTPException(400, {"errorMessage": f"Invalid entity id(s): {ids}"}) from None
        with state.lock:
            found = [state.records[entity][i] for i in wanted_ids if i in state.records[entity]]
        if not found:
            raise HTTPException(404, {"errorMessage": f"No {entity} with id(s) {ids}"})
        rows = [{f: r.data.get(f) for f in wanted if f in r.data} for r in found]
        if len(wanted_ids) == 1:
            return {"data": rows[0]}
        return {"data": rows[start:start + count]}

    # -- admin routes for people watching the local platform -------------------------------
    @app.post("/_standin/admin/{entity}")
    def admin_create(entity: str, fields: dict):
        try:
            return state.create(entity, **fields)
        except ValueError as exc:
            raise HTTPException(400, {"errorMessage": str(exc)}) from None

    @app.patch("/_standin/admin/{entity}/{rid}")
    def admin_modify(entity: str, rid: int, fields: dict):
        try:
            return state.modify(entity, rid, **fields)
        except ValueError as exc:
            raise HTTPException(400, {"errorMessage": str(exc)}) from None

    @app.delete("/_standin/admin/{entity}/{rid}")
    def admin_delete(entity: str, rid: int):
        return state.delete(entity, rid)

    @app.post("/_standin/admin/sessions/expire")
    def admin_expire():
        with state.lock:
            state.sessions.clear()
        return {"expired": True}

    return app
