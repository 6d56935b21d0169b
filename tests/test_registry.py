"""Registry against SQLite and a real PostgreSQL server: tenants, keys, issuance, revocation, attribution, audit."""

import os
import signal
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from genprint.errors import GenprintError
from genprint.fingerprint import corrected_p_value, from_hex, hamming
from genprint.registry import AuthenticationError, NotFoundError, Registry, RevokedError
from genprint.registry.codes import hex_to_words

MODEL = "model-a"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    admin = request.getfixturevalue("postgres_url")
    name = f"t_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return admin.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def reg(url):
    with Registry(url) as r:
        yield r


@pytest.fixture
def acme(reg):
    return reg.create_tenant("acme")


def unchanged(reg, before):
    assert reg.counts() == before


def test_sqlite_uses_wal(tmp_path):
    with Registry(f"sqlite:///{tmp_path / 'r.db'}") as reg:
        with reg.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_tenants_and_keys(reg):
    tenant, key = reg.create_tenant("acme")
    assert reg.authenticate(key) == tenant
    assert reg.tenant("acme") == tenant
    other, key2 = reg.create_tenant("globex")
    assert key2 != key and reg.authenticate(key2) == other
    assert [t["tenant"] for t in reg.list_tenants()] == ["acme", "globex"]
    extra = reg.create_api_key(tenant)
    assert reg.authenticate(extra) == tenant
    reg.revoke_api_key(extra)
    with pytest.raises(AuthenticationError, match="invalid API key"):
        reg.authenticate(extra)
    with reg.engine.connect() as conn:  # only hashes are stored
        stored = conn.exec_driver_sql("SELECT key_hash, prefix FROM api_keys").all()
    assert all(key not in h and len(h) == 64 for h, _ in stored)


def test_bad_tenant_requests_change_nothing(reg, acme):
    before = reg.counts()
    for bad in ("", None, "gpk_wrong", acme[1] + "x"):
        with pytest.raises(AuthenticationError):
            reg.authenticate(bad)
    with pytest.raises(NotFoundError, match="unknown tenant"):
        reg.tenant("nobody")
    with pytest.raises(GenprintError, match="already exists"):
        reg.create_tenant("acme")
    with pytest.raises(GenprintError, match="invalid"):
        reg.create_tenant("bad name; drop table")
    from genprint.registry import Tenant

    with pytest.raises(NotFoundError, match="unknown tenant"):
        reg.register_users(Tenant(999, "ghost"), MODEL, 48, names=["x"])
    unchanged(reg, before)


def test_issuance_names_count_and_min_distance(reg, acme):
    tenant, _ = acme
    first = reg.register_users(tenant, MODEL, 48, names=["alice", "bob"])
    assert first.users == ["alice", "bob"] and len(first.fingerprints[0]) == 12
    bulk = reg.register_users(tenant, MODEL, 48, count=500)
    assert len(bulk) == 500 and len(set(bulk.users)) == 500
    assert reg.fingerprint_of(tenant, "alice", MODEL) == first.fingerprints[0]
    info = reg.model_version(MODEL)
    assert info == {"model_id": MODEL, "nbits": 48, "min_distance": 3, "issued": 502}
    codes = hex_to_words(first.fingerprints + bulk.fingerprints, 48)
    d = hamming(codes[:, None], codes[None])
    np.fill_diagonal(d, 99)
    assert d.min() >= 3
    users = reg.list_users(tenant, MODEL)
    assert len(users) == 502 and users[0].name == "alice" and users[0].fingerprint == first.fingerprints[0]
    assert [u.name for u in reg.list_users(tenant, limit=2, offset=1)] == ["bob", bulk.users[0]]
    # the same user gets a second fingerprint for another model version
    other = reg.register_users(tenant, "model-b", 64, names=["alice"], min_distance=20)
    assert reg.fingerprint_of(tenant, "alice", "model-b") == other.fingerprints[0] and len(other.fingerprints[0]) == 16
    assert reg.model_version("model-b")["min_distance"] == 20


def test_large_min_distance_is_kept(reg, acme):
    tenant, _ = acme
    a = reg.register_users(tenant, MODEL, 32, count=40, min_distance=9)
    b = reg.register_users(tenant, MODEL, 32, count=40)
    codes = hex_to_words(a.fingerprints + b.fingerprints, 32)
    d = hamming(codes[:, None], codes[None])
    np.fill_diagonal(d, 99)
    assert d.min() >= 9


def test_idempotent_request_id(reg, acme):
    tenant, _ = acme
    first = reg.register_users(tenant, MODEL, 48, count=20, request_id="req-1")
    before = reg.counts()
    again = reg.register_users(tenant, MODEL, 48, count=20, request_id="req-1")
    assert again.replayed and again.users == first.users and again.fingerprints == first.fingerprints
    unchanged(reg, before)
    with pytest.raises(GenprintError, match="already used for a different registration"):
        reg.register_users(tenant, MODEL, 48, count=21, request_id="req-1")
    unchanged(reg, before)
    other, _ = reg.create_tenant("globex")  # request ids are per tenant
    assert not reg.register_users(other, MODEL, 48, count=20, request_id="req-1").replayed


def test_refused_registrations_change_nothing(reg, acme):
    tenant, _ = acme
    reg.register_users(tenant, MODEL, 48, names=["alice"])
    before = reg.counts()
    cases = [
        (dict(names=["bob", "alice"]), "already have a fingerprint"),  # duplicate registration, whole batch refused
        (dict(names=["carol", "carol"]), "duplicate user names"),
        (dict(names=["ok", "bad name"]), "invalid"),
        (dict(count=0), "between 1 and"),
        (dict(count=3, names=["x"]), "either"),
    ]
    for kwargs, match in cases:
        with pytest.raises(GenprintError, match=match):
            reg.register_users(tenant, MODEL, 48, **kwargs)
    with pytest.raises(GenprintError, match="uses 48-bit fingerprints, not 64"):
        reg.register_users(tenant, MODEL, 64, names=["dave"])
    with pytest.raises(GenprintError, match="multiple of 8"):
        reg.register_users(tenant, MODEL, 50, names=["dave"])
    with pytest.raises(GenprintError, match="minimum distance 3, not 5"):
        reg.register_users(tenant, MODEL, 48, names=["dave"], min_distance=5)
    with pytest.raises(GenprintError, match="could only issue"):
        reg.register_users(tenant, "tiny", 32, count=50, min_distance=30)
    reg.revoke(tenant, "alice")
    before = reg.counts()
    with pytest.raises(GenprintError, match="revoked"):
        reg.register_users(tenant, "model-b", 48, names=["alice"])
    unchanged(reg, before)


def test_cross_tenant_access_refused(reg, acme):
    tenant, _ = acme
    other, _ = reg.create_tenant("globex")
    reg.register_users(tenant, MODEL, 48, names=["alice"])
    before = reg.counts()
    with pytest.raises(NotFoundError, match="has no user 'alice'"):
        reg.revoke(other, "alice")
    with pytest.raises(NotFoundError, match="has no user 'alice'"):
        reg.fingerprint_of(other, "alice", MODEL)
    assert reg.list_users(other) == []
    unchanged(reg, before)
    assert not reg.list_users(tenant)[0].revoked
    # the same name in another tenant is another user
    reg.register_users(other, MODEL, 48, names=["alice"])
    assert reg.fingerprint_of(other, "alice", MODEL) != reg.fingerprint_of(tenant, "alice", MODEL)


def flip(code: str, nbits: int, count: int) -> np.ndarray:
    bits = from_hex(code, nbits).copy()
    bits[:count] ^= 1
    return bits


def test_attribution_decision_and_revocation(reg, acme):
    tenant, _ = acme
    other, _ = reg.create_tenant("globex")
    issued = reg.register_users(tenant, MODEL, 48, names=["alice", "bob"] + [f"u{i}" for i in range(98)])
    mallory = reg.register_users(other, MODEL, 48, names=["mallory"]).fingerprints[0]
    alice = issued.fingerprints[0]

    hit = reg.attribute(flip(alice, 48, 4), MODEL, label="img.png")
    assert hit.attributed and (hit.tenant, hit.user, hit.fingerprint, hit.distance) == ("acme", "alice", alice, 4)
    assert hit.compared == 101 and not hit.revoked
    assert hit.p_value == pytest.approx(float(corrected_p_value(44, 48, 101)), rel=1e-12) and hit.p_value <= 1e-6
    assert hit.runner_up_distance > hit.distance
    assert reg.attribute(alice, MODEL).distance == 0  # hex works too

    rng = np.random.default_rng(0)
    miss = reg.attribute(rng.integers(0, 2, 48), MODEL)
    assert not miss.attributed and miss.distance > miss.max_distance and miss.p_value > 1e-6

    far = reg.attribute(flip(alice, 48, hit.max_distance + 1), MODEL)
    assert far.user == "alice" and not far.attributed  # just past the threshold

    # tenant scope: globex's view never returns acme's users, and counts only its own
    scoped = reg.attribute(flip(alice, 48, 4), MODEL, tenant_scope=other)
    assert scoped.user == "mallory" and scoped.compared == 1 and scoped.runner_up_distance is None
    assert reg.attribute(mallory, MODEL, tenant_scope=other).attributed

    reg.revoke(tenant, "alice", reason="abuse")
    after = reg.attribute(flip(alice, 48, 2), MODEL)
    assert after.attributed and after.user == "alice" and after.revoked
    with pytest.raises(GenprintError, match="already revoked"):
        reg.revoke(tenant, "alice")
    assert reg.fingerprint_of(tenant, "alice", MODEL) == issued.fingerprints[0]  # the record stays
    with pytest.raises(RevokedError, match="may not generate"):
        reg.fingerprint_of(tenant, "alice", MODEL, active_only=True)

    batch = reg.attribute_many([flip(alice, 48, 1), flip(issued.fingerprints[1], 48, 3)], MODEL, labels=["a", "b"])
    assert [(a.user, a.distance) for a in batch] == [("alice", 1), ("bob", 3)]

    events = reg.audit_log(action="attribute", limit=100)
    assert len(events) == 9 and events[-1]["detail"]["label"] == "img.png" and events[-1]["detail"]["user"] == "alice"
    assert {e["action"] for e in reg.audit_log(tenant)} >= {"tenant.create", "users.issue", "users.revoke"}


def test_bad_attribution_queries_change_nothing(reg, acme):
    tenant, _ = acme
    reg.register_users(tenant, MODEL, 48, names=["alice"])
    before = reg.counts()
    for bits, match in [
        (np.zeros(64, int), "has 64 bits; this model uses 48"),
        ("ab" * 8, "this model uses 48 bits"),
        (np.full(48, 2), "must be 0 or 1"),
        (np.zeros((2, 3, 48)), "expected a"),
    ]:
        with pytest.raises(GenprintError, match=match):
            reg.attribute_many(bits, MODEL)
    with pytest.raises(NotFoundError, match="no fingerprints have been issued"):
        reg.attribute(np.zeros(48, int), "unknown-model")
    unchanged(reg, before)


def test_audit_log_is_append_only(reg, acme):
    with reg.engine.connect() as conn:
        for stmt in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(Exception, match="append-only"):
                with conn.begin():
                    conn.exec_driver_sql(stmt)
    assert reg.audit_log()[0]["action"] == "tenant.create"


def test_matcher_sees_other_writers(url, reg, acme):
    tenant, key = acme
    reg.register_users(tenant, MODEL, 48, names=["alice"])
    assert len(reg.matcher(MODEL)) == 1
    with Registry(url) as writer:  # another process's view of the same database
        late = writer.register_users(writer.authenticate(key), MODEL, 48, names=["late"]).fingerprints[0]
    assert len(reg.matcher(MODEL)) == 2
    assert reg.attribute(late, MODEL).user == "late"


# A bulk issuance that stops midway (users written, fingerprints about to be) and says so; on SQLite it holds the
# write lock there. Arguments: registry URL, API key, user count.
PAUSED_WRITER = textwrap.dedent("""
    import sys, time
    from sqlalchemy import event
    from genprint.registry import Registry
    reg = Registry(sys.argv[1])
    tenant = reg.authenticate(sys.argv[2])

    @event.listens_for(reg.engine, "before_cursor_execute")
    def pause(conn, cursor, statement, params, context, executemany):
        if statement.startswith("INSERT INTO fingerprints"):
            print("MIDWAY", flush=True)
            time.sleep(60)

    reg.register_users(tenant, "model-a", 48, count=int(sys.argv[3]), request_id="bulk")
""")


def test_killed_bulk_issuance_leaves_nothing(url, reg, acme):
    tenant, key = acme
    reg.register_users(tenant, MODEL, 48, names=["alice"])
    before = reg.counts()
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_WRITER, url, key, "20000"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "MIDWAY"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with Registry(url) as fresh:
        assert fresh.counts() == before
        # the killed writer held no lasting lock, and the request id is free to be used for real
        done = fresh.register_users(fresh.authenticate(key), MODEL, 48, count=100, request_id="bulk")
        assert len(done) == 100 and not done.replayed


def _tamper(reg, statement: str) -> None:
    """What a role that owns the tables can do: switch the append-only triggers off and edit a row."""
    with reg.engine.connect() as conn, conn.begin():
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
        else:
            conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        conn.exec_driver_sql(statement)


def test_audit_chain_shows_where_the_log_was_edited(reg, acme, capsys, monkeypatch):
    from genprint.cli import main

    tenant, _ = acme
    codes = dict(reg.register_users(tenant, MODEL, 48, names=["alice", "bob"]))
    reg.attribute_many([codes["alice"], codes["bob"]], MODEL, labels=["a.png", "b.png"])
    report = reg.verify_audit()
    assert (
        report["ok"] and report["rows_checked"] == 4 and report["rows_before_the_chain"] == 0
    )  # tenant, issue, 2 queries
    monkeypatch.delenv("GENPRINT_DB", raising=False)
    assert main(["audit", "verify", "--db", reg.url]) == 0
    assert report["head"] in capsys.readouterr().out
    _tamper(reg, 'UPDATE audit_log SET detail = \'{"label": "nothing to see"}\' WHERE id = 3')
    report = reg.verify_audit()
    assert not report["ok"] and report["first_broken_row"] == 3 and report["rows_checked"] == 2
    assert main(["audit", "verify", "--db", reg.url]) == 1
    assert "BROKEN at row 3" in capsys.readouterr().out


@pytest.mark.postgres
def test_the_serving_role_cannot_edit_or_unprotect_the_audit_log(postgres_url):
    """The owner migrates and grants; serving connects as a role that issues, attributes and appends only."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    engine = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
        conn.execute(text(f"CREATE ROLE svc_{name} LOGIN"))
    engine.dispose()
    owner_url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with Registry(owner_url) as owner:
        tenant, key = owner.create_tenant("acme")
        owner.grant_service_role(f"svc_{name}")
    service_url = owner_url.replace("genprint@", f"svc_{name}@")
    with Registry(service_url) as service:  # at the schema's head already: no DDL needed, none attempted
        code = service.register_users(service.authenticate(key), MODEL, 48, names=["alice"]).fingerprints[0]
        assert service.attribute(code, MODEL).user == "alice"
        with service.engine.connect() as conn:
            for statement in (
                "DELETE FROM audit_log",
                "UPDATE audit_log SET action = 'x'",
                "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
                "DROP TRIGGER audit_log_append_only ON audit_log",
            ):
                with pytest.raises(Exception, match="permission denied|must be owner"):
                    with conn.begin():
                        conn.exec_driver_sql(statement)
        assert service.verify_audit()["ok"]
    with Registry(owner_url) as owner:
        assert owner.verify_audit()["rows_checked"] == 4  # tenant, grant, issuance, attribution


def test_registry_files_and_urls_keep_secrets(tmp_path):
    from genprint.registry.store import safe_url

    with pytest.raises(GenprintError, match="no folder"):
        Registry(f"sqlite:///{tmp_path / 'typo' / 'registry.db'}")
    assert not (tmp_path / "typo").exists()
    with Registry(f"sqlite:///{tmp_path / 'r.db'}"):
        pass
    assert (tmp_path / "r.db").stat().st_mode & 0o777 == 0o600
    url = "postgresql+psycopg://genprint:s3cret-pw@127.0.0.1:1/none"
    with pytest.raises(GenprintError) as caught:
        Registry(url)
    assert "s3cret-pw" not in str(caught.value) and "***" in str(caught.value)
    assert "s3cret" not in safe_url(url)


def test_an_attribution_never_waits_unbounded_behind_a_bulk_issuance(url, reg, acme, monkeypatch):
    """While an issuance holds SQLite's write lock, an attribution answers "busy, retry" after a bounded wait
    instead of queueing behind it; on PostgreSQL it is not blocked at all."""
    from genprint.registry import store

    monkeypatch.setattr(store, "AUDIT_WAIT_S", 0.5)
    tenant, key = acme
    code = reg.register_users(tenant, MODEL, 48, names=["alice"]).fingerprints[0]
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_WRITER, url, key, "5000"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "MIDWAY"
        if reg.engine.dialect.name == "sqlite":
            with pytest.raises(store.RegistryBusyError, match="retry"):
                reg.attribute(code, MODEL)
        else:
            assert reg.attribute(code, MODEL).user == "alice"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert reg.attribute(code, MODEL).user == "alice"  # the lock gone, attribution writes its audit row again
