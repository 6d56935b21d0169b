"""The registry: tenants, API keys, users, fingerprint issuance, revocation, attribution and the audit log.

One `Registry` per process (it caches one Matcher per model version); it is safe to share between
threads for reads, and every write is one database transaction. Tenant-scoped calls take the
`Tenant` returned by `authenticate(api_key)` (or `tenant(name)` for administrators), so a tenant
can only ever see and change its own users.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, create_engine, event, func, insert, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from genprint import evidence, settings
from genprint.errors import GenprintError
from genprint.fingerprint import Decision, check_nbits, corrected_p_value, from_hex, hamming, pack
from genprint.registry import audit
from genprint.registry.codes import default_min_distance, hex_to_words, issue_codes, words_to_hex
from genprint.registry.matcher import Matcher
from genprint.registry.schema import ApiKey, AuditEvent, Fingerprint, IssuanceRequest, ModelVersion, User, utcnow
from genprint.registry.schema import Tenant as TenantRow

DEFAULT_FPR = 1e-6
MAX_BULK = 10_000_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


class AuthenticationError(GenprintError):
    """The API key is unknown or revoked (serving maps this to HTTP 401)."""


class NotFoundError(GenprintError):
    """An unknown tenant, user or model version (HTTP 404); also what a tenant sees for another tenant's users."""


class RevokedError(GenprintError):
    """The user is revoked: it keeps its record for attribution but may not generate (HTTP 403)."""


class RegistryBusyError(GenprintError):
    """The registry could not take a write within its bound (SQLite during a bulk issuance): retry (HTTP 503)."""


# How long an attribution waits to write its audit row: a bulk issuance on SQLite holds the write lock throughout.
AUDIT_WAIT_S = 5.0


def default_url() -> str:
    """$GENPRINT_DB, else a SQLite file in $GENPRINT_HOME (genprint.settings.registry_url)."""
    return settings.registry_url()


def safe_url(url: str) -> str:
    """The URL as messages and logs may show it: any password masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: it holds no password we could find
        return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


@dataclass(frozen=True)
class Tenant:
    id: int
    name: str
    created_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class UserRecord:
    name: str
    tenant: str
    created_at: datetime
    revoked: bool
    fingerprint: str | None = None  # hex, for the model version asked about


@dataclass(frozen=True)
class Issuance:
    """The users and their hex fingerprints issued by one call (or replayed for a repeated request id)."""

    model_id: str
    request_id: str | None
    users: list[str]
    fingerprints: list[str]
    replayed: bool = False

    def __iter__(self):
        return iter(zip(self.users, self.fingerprints))

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class Attribution:
    """The answer to "who made this image?". tenant/user/fingerprint name the nearest code even when
    not attributed (distance too large), so operators can see near misses; only `attributed` decides."""

    attributed: bool
    model_id: str
    query: str  # the extracted fingerprint, hex
    tenant: str | None
    user: str | None
    fingerprint: str | None
    distance: int | None  # Hamming distance of the read's hard bits to the best match
    p_value: float | None  # the best match's p-value under the rule, corrected for `compared` registered codes
    revoked: bool
    runner_up_distance: int | None
    compared: int
    max_distance: int  # largest Hamming distance the binomial rule attributes at this FPR and registry size
    rule: str = "hamming"  # "hamming" (bits only) or "soft" (per-bit logits, genprint.evidence)
    score: float | None = None  # soft: the best match's score and the runner-up's
    runner_up_score: float | None = None
    images: int = 1  # a collection's reads combined into this answer

    def to_dict(self) -> dict:
        return asdict(self)


def _without(message: str, url: str) -> str:
    """`message` with the URL's password removed, wherever a driver repeated it."""
    try:
        password = make_url(url).password if "://" in url else None
    except Exception:  # not a URL SQLAlchemy parses: the message holds nothing we could mask by it
        password = None
    return message.replace(password, "***") if password else message


def _is_lock_timeout(exc: OperationalError) -> bool:
    text_ = str(exc.orig).lower()
    return "locked" in text_ or "lock timeout" in text_ or "canceling statement due to lock timeout" in text_


def _hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise GenprintError(
            f"{kind} name {name!r} is invalid: use 1-128 letters, digits and . _ @ + - "
            "(starting with a letter or digit)"
        )
    return name


def _engine(url: str, default: bool) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database).expanduser()
        if default:  # genprint's own folder is made on first use; a URL someone typed must name an existing one
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        elif not path.parent.is_dir():
            raise GenprintError(
                f"no folder {path.parent} for the registry file {path.name}: check the URL or create the folder"
            )
        if not path.exists():  # the registry holds every user's code: readable by its owner only
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below), as SQLAlchemy recommends for pysqlite
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; a killed writer leaves no trace
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA cache_size=-65536")  # 64 MiB: bulk issuance inserts random codes into the unique index
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        # Writers take the lock up front, so read-then-write (issuance) never fails half-way on a busy database.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


class Registry:
    """The registry database. `Registry(url)` opens (and migrates to the latest schema) a SQLite file or
    PostgreSQL database; `url=None` uses $GENPRINT_DB or $GENPRINT_HOME/registry.db.

    fpr: default attribution false-positive rate per query (corrected for the number of registered users).
    """

    def __init__(self, url: str | None = None, fpr: float = DEFAULT_FPR):
        self.url = url or default_url()
        self.safe_url = safe_url(self.url)
        if not 0 < fpr < 1:
            raise GenprintError(f"false-positive rate must be in (0, 1), got {fpr}")
        self.fpr = fpr
        try:
            self.engine = _engine(self.url, default=self.url == f"sqlite:///{settings.home() / 'registry.db'}")
        except GenprintError:
            raise
        except Exception as exc:
            raise GenprintError(f"cannot open registry {self.safe_url!r}: {_without(str(exc), self.url)}") from None
        self._matchers: dict[int, tuple[Matcher, int]] = {}  # model version pk -> (matcher, last fingerprint id)
        self._lock = threading.Lock()
        self._migrate()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- plumbing -------------------------------------------------------------------------------------------------
    def _migrate(self) -> None:
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
        try:
            with self._write() as conn:
                if conn.dialect.name == "postgresql":  # two processes opening a fresh database at once
                    conn.execute(text("SELECT pg_advisory_xact_lock(7235046)"))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except GenprintError:
            raise
        except Exception as exc:
            detail = _without(str(exc).splitlines()[0], self.url)
            raise GenprintError(f"cannot open registry {self.safe_url!r}: {detail}") from None

    @contextmanager
    def _write(self, wait: float | None = None):
        """A write transaction; with `wait`, give up (RegistryBusyError) when the write lock is not free by then."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(write=True)
            sqlite = conn.dialect.name == "sqlite"
            if wait is not None and sqlite:  # before BEGIN IMMEDIATE, which is where SQLite waits for the lock
                conn.connection.dbapi_connection.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            try:
                with conn.begin():
                    if wait is not None and not sqlite:
                        conn.execute(text(f"SET LOCAL lock_timeout = '{int(wait * 1000)}ms'"))
                    yield conn
            except OperationalError as exc:
                if wait is None or not _is_lock_timeout(exc):
                    raise
                raise RegistryBusyError(
                    "the registry is busy (a bulk issuance holds its write lock); retry in a few seconds"
                ) from None
            finally:
                if wait is not None and sqlite:
                    conn.connection.dbapi_connection.execute("PRAGMA busy_timeout = 60000")

    @contextmanager
    def _read(self):
        with self.engine.connect() as conn:
            with conn.begin():
                yield conn

    @staticmethod
    def _audit(conn: Connection, action: str, tenant_id: int | None, detail: dict | list[dict]) -> None:
        """Append audit rows, each chained to the one before (genprint.registry.audit)."""
        details = detail if isinstance(detail, list) else [detail]
        now = utcnow()
        if conn.dialect.name == "postgresql":  # SQLite's writers are one at a time already (BEGIN IMMEDIATE)
            conn.execute(text(f"SELECT pg_advisory_xact_lock({audit.CHAIN_LOCK})"))
        previous = conn.scalar(select(AuditEvent.chain).order_by(AuditEvent.id.desc()).limit(1)) or audit.GENESIS
        rows = []
        for d in details:
            previous = audit.link(previous, now, tenant_id, action, d)
            rows.append(dict(at=now, tenant_id=tenant_id, action=action, detail=d, chain=previous))
        conn.execute(insert(AuditEvent), rows)

    def verify_audit(self) -> dict:
        """Walk the audit log's hash chain: {"ok", "rows_checked", "rows_before_the_chain", "first_broken_row",
        "head"}. Keep the head elsewhere: a log cut short at its end still verifies, but ends at another head."""
        q = select(
            AuditEvent.id, AuditEvent.at, AuditEvent.tenant_id, AuditEvent.action, AuditEvent.detail, AuditEvent.chain
        ).order_by(AuditEvent.id)
        with self._read() as conn:
            return audit.verify(conn.execute(q.execution_options(yield_per=10_000)))

    def grant_service_role(self, role: str) -> None:
        """PostgreSQL: give `role` what serving needs and no more. It reads, issues, revokes and appends to the audit
        log; it cannot update or delete audit rows, alter tables or drop the triggers (it owns nothing). Run this as
        the role that owns the tables (the one that ran the migrations)."""
        if self.engine.dialect.name != "postgresql":
            raise GenprintError("separate database roles are PostgreSQL's; a SQLite registry is one file and its owner")
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
            raise GenprintError(f"role name {role!r} is invalid: lowercase letters, digits and _")
        tables = "tenants, api_keys, users, model_versions, issuance_requests, fingerprints, audit_log, alembic_version"
        with self._write() as conn:
            conn.execute(text(f"GRANT SELECT ON {tables} TO {role}"))
            conn.execute(
                text(
                    f"GRANT INSERT ON tenants, api_keys, users, model_versions, issuance_requests, "
                    f"fingerprints, audit_log TO {role}"
                )
            )
            conn.execute(text(f"GRANT UPDATE ON api_keys, users, model_versions TO {role}"))
            conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"))
            self._audit(conn, "role.grant", None, {"role": role})

    # --- tenants and keys -----------------------------------------------------------------------------------------
    def create_tenant(self, name: str) -> tuple[Tenant, str]:
        """Create a tenant and its first API key. Returns (tenant, api_key): the key is shown only now (only its hash
        is kept)."""
        _check_name("tenant", name)
        try:
            with self._write() as conn:
                if conn.scalar(select(TenantRow.id).where(TenantRow.name == name)) is not None:
                    raise GenprintError(f"tenant {name!r} already exists")
                now = utcnow()
                tid = conn.execute(
                    insert(TenantRow).values(name=name, created_at=now).returning(TenantRow.id)
                ).scalar_one()
                key = self._new_key(conn, tid)
                self._audit(conn, "tenant.create", tid, {"tenant": name})
        except IntegrityError:
            raise GenprintError(f"tenant {name!r} already exists") from None
        return Tenant(tid, name, now), key

    @staticmethod
    def _new_key(conn: Connection, tenant_id: int) -> str:
        key = "gpk_" + secrets.token_urlsafe(32)
        conn.execute(
            insert(ApiKey).values(tenant_id=tenant_id, prefix=key[:12], key_hash=_hash_key(key), created_at=utcnow())
        )
        return key

    def create_api_key(self, tenant: Tenant) -> str:
        """An additional API key for the tenant (e.g. for rotation); returned once."""
        with self._write() as conn:
            key = self._new_key(conn, tenant.id)
            self._audit(conn, "apikey.create", tenant.id, {"prefix": key[:12]})
        return key

    def revoke_api_key(self, api_key: str) -> None:
        tenant = self.authenticate(api_key)
        with self._write() as conn:
            conn.execute(update(ApiKey).where(ApiKey.key_hash == _hash_key(api_key)).values(revoked_at=utcnow()))
            self._audit(conn, "apikey.revoke", tenant.id, {"prefix": api_key[:12]})

    def authenticate(self, api_key: str | None) -> Tenant:
        """The tenant owning this API key; AuthenticationError if the key is missing, unknown or revoked."""
        if not api_key:
            raise AuthenticationError("an API key is required (--api-key or $GENPRINT_API_KEY)")
        with self._read() as conn:
            row = conn.execute(
                select(TenantRow.id, TenantRow.name, TenantRow.created_at)
                .join(ApiKey, ApiKey.tenant_id == TenantRow.id)
                .where(ApiKey.key_hash == _hash_key(api_key), ApiKey.revoked_at.is_(None))
            ).first()
        if row is None:
            raise AuthenticationError("invalid API key")
        return Tenant(*row)

    def tenant(self, name: str) -> Tenant:
        """Administrator lookup by name (no key): NotFoundError for an unknown tenant."""
        with self._read() as conn:
            row = conn.execute(
                select(TenantRow.id, TenantRow.name, TenantRow.created_at).where(TenantRow.name == name)
            ).first()
        if row is None:
            raise NotFoundError(f"unknown tenant {name!r}")
        return Tenant(*row)

    def list_tenants(self) -> list[dict]:
        """Every tenant with its user count."""
        with self._read() as conn:
            counts = dict(conn.execute(select(User.tenant_id, func.count()).group_by(User.tenant_id)).all())
            rows = conn.execute(select(TenantRow.id, TenantRow.name, TenantRow.created_at).order_by(TenantRow.id)).all()
        return [{"tenant": r.name, "created_at": r.created_at, "users": counts.get(r.id, 0)} for r in rows]

    # --- model versions -------------------------------------------------------------------------------------------
    def _model_row(self, conn: Connection, model_id: str, lock: bool = False):
        q = select(ModelVersion.id, ModelVersion.nbits, ModelVersion.min_distance, ModelVersion.issued).where(
            ModelVersion.model_id == model_id
        )
        return conn.execute(q.with_for_update() if lock else q).first()

    def model_version(self, model_id: str) -> dict:
        with self._read() as conn:
            row = self._model_row(conn, model_id)
        if row is None:
            raise NotFoundError(f"no fingerprints have been issued for model {model_id!r}")
        return {"model_id": model_id, "nbits": row.nbits, "min_distance": row.min_distance, "issued": row.issued}

    # --- users ----------------------------------------------------------------------------------------------------
    def register_users(
        self,
        tenant: Tenant,
        model_id: str,
        nbits: int,
        *,
        count: int | None = None,
        names: list[str] | None = None,
        request_id: str | None = None,
        min_distance: int | None = None,
        rng: np.random.Generator | None = None,
    ) -> Issuance:
        """Issue one fingerprint per user for a model version, all in one transaction (all or nothing).

        Give either `names` (new or existing users of this tenant; an existing user must not yet have a
        fingerprint for this model) or `count` (that many new users with generated names). Every new code is
        at Hamming distance >= the model version's min_distance from every code issued for it; min_distance is
        fixed when the model version is first seen (default genprint.registry.codes.default_min_distance).
        `request_id` makes the call idempotent per tenant: repeating it returns the same users and codes, and
        reusing it with other parameters is an error.
        """
        check_nbits(nbits)
        if (count is None) == (names is None):
            raise GenprintError("give either a user count or a list of user names")
        if names is not None:
            names = [_check_name("user", n) for n in names]
            if not names:
                raise GenprintError("no user names given")
            if len(set(names)) != len(names):
                raise GenprintError("duplicate user names in one registration")
        elif not 1 <= count <= MAX_BULK:
            raise GenprintError(f"user count must be between 1 and {MAX_BULK}, got {count}")
        if request_id is not None and not (isinstance(request_id, str) and 0 < len(request_id) <= 128):
            raise GenprintError("request id must be a string of 1-128 characters")
        if min_distance is not None and not 0 <= min_distance <= nbits:
            raise GenprintError(f"minimum distance must be between 0 and {nbits}")
        n = len(names) if names is not None else count
        digest = hashlib.sha256(json.dumps([model_id, nbits, count, names]).encode()).hexdigest()
        try:
            return self._issue(tenant, model_id, nbits, n, names, request_id, min_distance, digest, rng)
        except IntegrityError as exc:
            if request_id is not None:  # a concurrent call with the same request id won the race: replay it
                with self._read() as conn:
                    replay = self._replay(conn, tenant, model_id, request_id, digest)
                if replay is not None:
                    return replay
            raise GenprintError(
                "registration conflicts with another one made at the same time; "
                f"retry ({str(exc.orig).splitlines()[0]})"
            ) from None

    def _replay(self, conn, tenant, model_id, request_id, digest) -> Issuance | None:
        req = conn.execute(
            select(IssuanceRequest.id, IssuanceRequest.params_digest).where(
                IssuanceRequest.tenant_id == tenant.id, IssuanceRequest.request_id == request_id
            )
        ).first()
        if req is None:
            return None
        if req.params_digest != digest:
            raise GenprintError(f"request id {request_id!r} was already used for a different registration")
        rows = conn.execute(
            select(User.name, Fingerprint.code)
            .join(User, User.id == Fingerprint.user_id)
            .where(Fingerprint.request_pk == req.id)
            .order_by(Fingerprint.id)
        ).all()
        return Issuance(model_id, request_id, [r[0] for r in rows], [r[1] for r in rows], replayed=True)

    def _issue(self, tenant, model_id, nbits, n, names, request_id, min_distance, digest, rng) -> Issuance:
        with self._write() as conn:
            self._check_tenant(conn, tenant)
            if request_id is not None:
                replay = self._replay(conn, tenant, model_id, request_id, digest)
                if replay is not None:
                    return replay
            mv = self._model_row(conn, model_id, lock=True)
            if mv is None:
                d = default_min_distance(nbits) if min_distance is None else min_distance
                conn.execute(
                    insert(ModelVersion).values(
                        model_id=model_id, nbits=nbits, min_distance=d, issued=0, created_at=utcnow()
                    )
                )
                mv = self._model_row(conn, model_id, lock=True)
            if mv.nbits != nbits:
                raise GenprintError(f"model {model_id!r} uses {mv.nbits}-bit fingerprints, not {nbits}")
            if min_distance is not None and min_distance != mv.min_distance:
                raise GenprintError(
                    f"model {model_id!r} already issues at minimum distance {mv.min_distance}, not {min_distance}"
                )

            user_ids: list[int | None] = [None] * n
            if names is not None:
                existing = {}
                for i in range(0, len(names), 500):
                    chunk = names[i : i + 500]
                    for r in conn.execute(
                        select(User.id, User.name, User.revoked_at).where(
                            User.tenant_id == tenant.id, User.name.in_(chunk)
                        )
                    ):
                        existing[r.name] = r
                if existing:
                    revoked = sorted(k for k, r in existing.items() if r.revoked_at is not None)
                    if revoked:
                        raise GenprintError(
                            f"user(s) {', '.join(revoked[:5])} are revoked and cannot get new fingerprints"
                        )
                    ids = [r.id for r in existing.values()]
                    dup = (
                        conn.execute(
                            select(User.name)
                            .join(Fingerprint, Fingerprint.user_id == User.id)
                            .where(Fingerprint.model_version_id == mv.id, User.id.in_(ids[:10000]))
                        )
                        .scalars()
                        .all()
                    )
                    if dup:
                        raise GenprintError(
                            f"user(s) {', '.join(sorted(dup)[:5])} already have a fingerprint for model {model_id!r}"
                        )
                    user_ids = [existing[nm].id if nm in existing else None for nm in names]
            else:
                names = [f"user-{secrets.token_hex(10)}" for _ in range(n)]

            matcher = self._refresh(conn, mv.id, mv.nbits)
            words = issue_codes(n, nbits, mv.min_distance, existing=matcher.words, rng=rng)
            codes = words_to_hex(words, nbits)
            now = utcnow()
            req_pk = None
            if request_id is not None:
                req_pk = conn.execute(
                    insert(IssuanceRequest)
                    .values(
                        tenant_id=tenant.id,
                        request_id=request_id,
                        model_version_id=mv.id,
                        params_digest=digest,
                        created_at=now,
                    )
                    .returning(IssuanceRequest.id)
                ).scalar_one()
            new = [i for i, u in enumerate(user_ids) if u is None]
            self._insert_users_and_fingerprints(conn, tenant.id, mv.id, req_pk, now, names, user_ids, new, codes)
            conn.execute(update(ModelVersion).where(ModelVersion.id == mv.id).values(issued=ModelVersion.issued + n))
            detail = {"model_id": model_id, "request_id": request_id, "count": n}
            if n <= 100:
                detail["users"] = names
            self._audit(conn, "users.issue", tenant.id, detail)
        return Issuance(model_id, request_id, names, codes)

    @staticmethod
    def _insert_users_and_fingerprints(conn, tenant_id, mv_pk, req_pk, now, names, user_ids, new, codes) -> None:
        if conn.dialect.name == "sqlite":
            # Bulk path: we hold the write lock (BEGIN IMMEDIATE), so ids can be assigned here and rows go through
            # the driver's executemany; SQLAlchemy's per-row RETURNING would cost ~50 us a row.
            ts = User.__table__.c.created_at.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)(now)
            first = (conn.scalar(select(func.max(User.id))) or 0) + 1
            for uid, i in enumerate(new, start=first):
                user_ids[i] = uid
            if new:
                conn.exec_driver_sql(
                    "INSERT INTO users (id, tenant_id, name, created_at) VALUES (?, ?, ?, ?)",
                    [(user_ids[i], tenant_id, names[i], ts) for i in new],
                )
            conn.exec_driver_sql(
                "INSERT INTO fingerprints (user_id, model_version_id, code, request_pk, issued_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(u, mv_pk, c, req_pk, ts) for u, c in zip(user_ids, codes)],
            )
            return
        if new:
            ids = (
                conn.execute(
                    insert(User).returning(User.id, sort_by_parameter_order=True),
                    [{"tenant_id": tenant_id, "name": names[i], "created_at": now} for i in new],
                )
                .scalars()
                .all()
            )
            for i, uid in zip(new, ids):
                user_ids[i] = uid
        conn.execute(
            insert(Fingerprint),
            [
                {"user_id": u, "model_version_id": mv_pk, "code": c, "request_pk": req_pk, "issued_at": now}
                for u, c in zip(user_ids, codes)
            ],
        )

    @staticmethod
    def _check_tenant(conn: Connection, tenant: Tenant) -> None:
        if not isinstance(tenant, Tenant):
            raise GenprintError("pass the Tenant returned by Registry.authenticate(api_key) or Registry.tenant(name)")
        if conn.scalar(select(TenantRow.name).where(TenantRow.id == tenant.id)) != tenant.name:
            raise NotFoundError(f"unknown tenant {tenant.name!r}")

    def _user_row(self, conn: Connection, tenant: Tenant, name: str):
        row = conn.execute(
            select(User.id, User.name, User.created_at, User.revoked_at).where(
                User.tenant_id == tenant.id, User.name == name
            )
        ).first()
        if row is None:  # also what another tenant's user looks like: no existence leak across tenants
            raise NotFoundError(f"tenant {tenant.name!r} has no user {name!r}")
        return row

    def revoke(self, tenant: Tenant, user: str, reason: str | None = None) -> UserRecord:
        """Mark a user revoked. Its fingerprints stay: attribution still names the user, flagged revoked."""
        with self._write() as conn:
            self._check_tenant(conn, tenant)
            row = self._user_row(conn, tenant, user)
            if row.revoked_at is not None:
                raise GenprintError(f"user {user!r} is already revoked")
            conn.execute(update(User).where(User.id == row.id).values(revoked_at=utcnow()))
            self._audit(conn, "users.revoke", tenant.id, {"user": user, "reason": reason})
        return UserRecord(user, tenant.name, row.created_at, True)

    def list_users(
        self, tenant: Tenant, model_id: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[UserRecord]:
        """The tenant's users (oldest first); with model_id, each with its hex fingerprint for that model (or None)."""
        with self._read() as conn:
            self._check_tenant(conn, tenant)
            q = select(User.name, User.created_at, User.revoked_at).where(User.tenant_id == tenant.id)
            if model_id is not None:
                mv = self._model_row(conn, model_id)
                if mv is None:
                    raise NotFoundError(f"no fingerprints have been issued for model {model_id!r}")
                q = (
                    select(User.name, User.created_at, User.revoked_at, Fingerprint.code)
                    .where(User.tenant_id == tenant.id)
                    .outerjoin(Fingerprint, (Fingerprint.user_id == User.id) & (Fingerprint.model_version_id == mv.id))
                )
            rows = conn.execute(q.order_by(User.id).limit(limit).offset(offset)).all()
        return [UserRecord(r[0], tenant.name, r[1], r[2] is not None, r[3] if model_id else None) for r in rows]

    def fingerprint_of(self, tenant: Tenant, user: str, model_id: str, active_only: bool = False) -> str:
        """The user's hex fingerprint for a model version (what generation modulates the decoder with);
        `active_only` refuses a revoked user, as generation must."""
        with self._read() as conn:
            self._check_tenant(conn, tenant)
            row = self._user_row(conn, tenant, user)
            if active_only and row.revoked_at is not None:
                raise RevokedError(f"user {user!r} of tenant {tenant.name!r} is revoked and may not generate")
            mv = self._model_row(conn, model_id)
            code = (
                None
                if mv is None
                else conn.scalar(
                    select(Fingerprint.code).where(Fingerprint.user_id == row.id, Fingerprint.model_version_id == mv.id)
                )
            )
        if code is None:
            raise NotFoundError(f"user {user!r} has no fingerprint for model {model_id!r}")
        return code

    # --- matching -------------------------------------------------------------------------------------------------
    def _refresh(self, conn: Connection, mv_pk: int, nbits: int) -> Matcher:
        """Bring the cached matcher for a model version up to date: only new rows are read, unless a count mismatch
        (a PostgreSQL transaction that committed a lower id after a higher one was read) forces a full reload."""
        with self._lock:
            matcher, last_id = self._matchers.get(mv_pk, (None, 0))
            if matcher is None:
                matcher = Matcher(nbits)
            issued = conn.scalar(select(ModelVersion.issued).where(ModelVersion.id == mv_pk))
            if issued == len(matcher):
                self._matchers[mv_pk] = (matcher, last_id)
                return matcher
            for _ in range(2):
                q = (
                    select(Fingerprint.id, Fingerprint.code, Fingerprint.user_id, User.tenant_id)
                    .join(User, User.id == Fingerprint.user_id)
                    .where(Fingerprint.model_version_id == mv_pk, Fingerprint.id > last_id)
                )
                result = conn.execute(q.execution_options(stream_results=True, yield_per=200_000))
                for part in result.partitions():
                    fid, codes, uid, tid = zip(*part)
                    matcher.add(hex_to_words(list(codes), nbits), fid, uid, tid)
                    last_id = max(last_id, max(fid))
                if len(matcher) == issued:
                    break
                matcher.clear()
                last_id = 0
            self._matchers[mv_pk] = (matcher, last_id)
            return matcher

    def matcher(self, model_id: str) -> Matcher:
        """The up-to-date in-memory matcher for a model version (shared; do not modify)."""
        with self._read() as conn:
            mv = self._model_row(conn, model_id)
            if mv is None:
                raise NotFoundError(f"no fingerprints have been issued for model {model_id!r}")
            return self._refresh(conn, mv.id, mv.nbits)

    def attribute(
        self,
        bits,
        model_id: str,
        tenant_scope: Tenant | None = None,
        fpr: float | None = None,
        label: str | None = None,
    ) -> Attribution:
        """Attribute one extracted fingerprint (0/1 bits of the model's length, or hex); see attribute_many."""
        return self.attribute_many([bits], model_id, tenant_scope, fpr, [label] if label is not None else None)[0]

    def attribute_many(
        self,
        bits,
        model_id: str,
        tenant_scope: Tenant | None = None,
        fpr: float | None = None,
        labels: list[str] | None = None,
        logits=None,
    ) -> list[Attribution]:
        """The best-matching registered fingerprint for each read, with the decision, each query written to the audit
        log.

        bits: (B, nbits) 0/1 array-like or hex strings: the Hamming rule (nearest code, binomial p-value). logits
        (B, nbits) instead: soft matching (genprint.evidence), where bits the reader is sure of count for more.
        tenant_scope: only that tenant's users are candidates (and counted for the p-value correction); None searches
        every tenant (the distributor's view). Attributed iff the corrected p-value is <= fpr (and, soft, the best
        score beats the runner-up's). labels: optional per-query names (e.g. file paths) stored in the audit log.
        """
        answers = self.decide(bits, model_id, tenant_scope, fpr, logits)
        fpr = self.fpr if fpr is None else fpr
        self.audit_queries(
            "attribute",
            tenant_scope,
            [{**a.to_dict(), "label": labels[i] if labels else None, "fpr": fpr} for i, a in enumerate(answers)],
        )
        return answers

    def attribute_collection(
        self,
        logits,
        model_id: str,
        tenant_scope: Tenant | None = None,
        fpr: float | None = None,
        labels: list[str] | None = None,
    ) -> Attribution:
        """Several reads (K, nbits) believed to come from one source, attributed jointly: their logits add, and the
        soft rule decides on the sum at the same false-positive rate. A collection whose images are each attributed,
        but not all to one user, is attributed to nobody: it mixes sources. One query in the audit log."""
        logits = np.atleast_2d(np.asarray(logits, dtype=np.float64))
        joint = self.decide(None, model_id, tenant_scope, fpr, logits.sum(0, keepdims=True))[0]
        single = self.decide(None, model_id, tenant_scope, fpr, logits)
        others = {(a.tenant, a.user) for a in single if a.attributed} - {(joint.tenant, joint.user)}
        answer = replace(joint, attributed=joint.attributed and not others, images=len(logits))
        fpr = self.fpr if fpr is None else fpr
        detail = {
            **answer.to_dict(),
            "labels": labels,
            "fpr": fpr,
            "mixed_sources": sorted(f"{t}/{u}" for t, u in others),
            "per_image": [{"user": a.user, "tenant": a.tenant, "p_value": a.p_value} for a in single],
        }
        self.audit_queries("attribute.collection", tenant_scope, [detail])
        return answer

    def audit_queries(self, action: str, tenant_scope: Tenant | None, details: list[dict]) -> None:
        """Write answered queries to the audit log (attribute_many does; callers that decide in steps, through
        `decide`, call it with what they finally answer)."""
        with self._write(wait=AUDIT_WAIT_S) as conn:  # bounded: an attribution never queues behind a bulk issuance
            self._audit(conn, action, None if tenant_scope is None else tenant_scope.id, details)

    def decide(
        self, bits, model_id: str, tenant_scope: Tenant | None = None, fpr: float | None = None, logits=None
    ) -> list[Attribution]:
        """attribute_many's answers without writing them to the audit log: for callers that decide in steps (the
        cascade asks before it reads again, evaluation asks thousands of times) and audit what they answer."""
        fpr = self.fpr if fpr is None else fpr
        if not 0 < fpr < 1:
            raise GenprintError(f"false-positive rate must be in (0, 1), got {fpr}")
        with self._read() as conn:
            mv = self._model_row(conn, model_id)
            if mv is None:
                raise NotFoundError(f"no fingerprints have been issued for model {model_id!r}")
            if tenant_scope is not None:
                self._check_tenant(conn, tenant_scope)
            soft = logits is not None
            if soft:
                logits = self._query_logits(logits, mv.nbits)
                query_bits = (logits > 0).astype(np.uint8)
            else:
                query_bits = self._query_bits(bits, mv.nbits)
            matcher = self._refresh(conn, mv.id, mv.nbits)
            with self._lock:  # the arrays may grow under a concurrent refresh
                scope = None if tenant_scope is None else tenant_scope.id
                found = matcher.nearest(pack(query_bits), scope)
                best = matcher.best_scores(logits, scope) if soft else None
                index = best.index if soft else found.index
                compared = matcher.scope_count(scope)
                best_users = matcher.user_ids[index[index >= 0]]
                best_words = matcher.words[index[index >= 0]]
            info = {}
            uids = sorted(set(best_users.tolist()))
            for i in range(0, len(uids), 500):
                for r in conn.execute(
                    select(User.id, User.name, User.revoked_at, TenantRow.name)
                    .join(TenantRow, TenantRow.id == User.tenant_id)
                    .where(User.id.in_(uids[i : i + 500]))
                ):
                    info[r[0]] = r
        max_distance = Decision(mv.nbits, max(compared, 1), fpr).max_distance
        queries = words_to_hex(pack(query_bits), mv.nbits)
        best_codes = words_to_hex(best_words, mv.nbits)
        distances = hamming(pack(query_bits)[index >= 0], best_words) if len(best_words) else np.zeros(0, np.int64)
        answers, k = [], 0
        for q in range(len(query_bits)):
            if index[q] < 0:
                answers.append(
                    Attribution(
                        False,
                        model_id,
                        queries[q],
                        None,
                        None,
                        None,
                        None,
                        None,
                        False,
                        None,
                        compared,
                        max_distance,
                        "soft" if soft else "hamming",
                    )
                )
                continue
            u = info[int(best_users[k])]
            d = int(distances[k])
            if soft:
                score, runner = float(best.score[q]), float(best.runner_up[q])
                p = float(evidence.corrected(evidence.p_value(logits[q], score), compared))
                attributed = p <= fpr and not score <= runner  # a tie with the runner-up names nobody
                runner_d = int(found.runner_up[q]) if found.runner_up[q] >= 0 else None
                extra = {
                    "rule": "soft",
                    "score": round(score, 4),
                    "runner_up_score": None if np.isnan(runner) else round(runner, 4),
                }
            else:
                with np.errstate(divide="ignore"):  # log1p(-1) for p = 1: harmless
                    p = float(corrected_p_value(mv.nbits - d, mv.nbits, max(compared, 1)))
                attributed, extra = d <= max_distance, {}
                runner_d = int(found.runner_up[q]) if found.runner_up[q] >= 0 else None
            answers.append(
                Attribution(
                    attributed,
                    model_id,
                    queries[q],
                    u[3],
                    u[1],
                    best_codes[k],
                    d,
                    p,
                    u[2] is not None,
                    runner_d,
                    compared,
                    max_distance,
                    **extra,
                )
            )
            k += 1
        return answers

    @staticmethod
    def _query_logits(logits, nbits: int) -> np.ndarray:
        arr = np.atleast_2d(np.asarray(logits, dtype=np.float64))
        if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != nbits:
            raise GenprintError(f"expected (batch, {nbits}) logits for this model, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise GenprintError("logits must be finite numbers")
        return arr

    @staticmethod
    def _query_bits(bits, nbits: int) -> np.ndarray:
        if isinstance(bits, str):
            bits = [bits]
        if isinstance(bits, (list, tuple)) and bits and all(isinstance(b, str) for b in bits):
            return np.stack([from_hex(b, nbits) for b in bits])
        arr = np.asarray(bits)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise GenprintError(f"expected a (batch, {nbits}) array of bits, got shape {arr.shape}")
        if arr.shape[1] != nbits:
            raise GenprintError(f"fingerprint has {arr.shape[1]} bits; this model uses {nbits} bits")
        if not np.isin(arr, (0, 1)).all():
            raise GenprintError("fingerprint bits must be 0 or 1")
        return arr.astype(np.uint8)

    # --- audit ----------------------------------------------------------------------------------------------------
    def audit_log(self, tenant: Tenant | None = None, action: str | None = None, limit: int = 100) -> list[dict]:
        """Latest audit events first; with tenant, only that tenant's."""
        q = select(AuditEvent.id, AuditEvent.at, AuditEvent.tenant_id, AuditEvent.action, AuditEvent.detail)
        if tenant is not None:
            q = q.where(AuditEvent.tenant_id == tenant.id)
        if action is not None:
            q = q.where(AuditEvent.action == action)
        with self._read() as conn:
            rows = conn.execute(q.order_by(AuditEvent.id.desc()).limit(limit)).all()
        return [dict(r._mapping) for r in rows]

    def counts(self) -> dict[str, int]:
        """Row counts per table (tests and monitoring use it to check that a refused request changed nothing)."""
        with self._read() as conn:
            return {
                t: conn.scalar(select(func.count()).select_from(m))
                for t, m in [
                    ("tenants", TenantRow),
                    ("api_keys", ApiKey),
                    ("users", User),
                    ("model_versions", ModelVersion),
                    ("issuance_requests", IssuanceRequest),
                    ("fingerprints", Fingerprint),
                    ("audit_log", AuditEvent),
                ]
            }
