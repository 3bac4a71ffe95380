"""The change engine (include/changes/): steps, ordering, rate control, the ledger, bounded waits, reports.

The steps here are real: they create, update and delete S3 objects on the moto server through the same
client factory production uses, and the remediation fixers run against the emulators. Failures are
real cloud errors (a bucket that does not exist). Only time is replaced where a test proves a long
wait (a stubbed clock / sleep), never a cloud answer.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from include.changes import engine, report
from include.changes.engine import Item
from include.changes.ledger import Ledger, LedgerBusy, LedgerUnavailable, sqlalchemy_url
from include.changes.model import Change, ChangeError, NeedsInput, RequestError, change_key
from include.changes.ordering import CycleError, dependency_order, reverse_dependency_order
from include.changes.rate import RateControl, parse_limit
from include.changes.step import LifecycleStep, State
from include.changes.waiting import WaitTimeout, poll_until
from include.clouds.aws.clients import client_for
from include.records import ResourceRecord

PROJECT_ROOT = Path(__file__).resolve().parents[1]
AWS = "aws_estate"
BUCKET = "engine-test"


# ---- a real step: S3 objects with a given content (create / update / delete) ------------------------------
def s3() -> Any:
    return client_for(AWS, "s3", "us-east-1")


def obj(key: str, bucket: str = BUCKET) -> ResourceRecord:
    return ResourceRecord(cloud="aws", target="aws-prod", account="123456789012", region="us-east-1", service="s3",
                          resource_type="aws.s3.object", resource_id=f"arn:aws:s3:::{bucket}/{key}", name=key)


class S3ObjectContent(LifecycleStep):
    """Keep an S3 object at the content given in ``options["content"][key]`` (None: the object must not exist).

    Counts writes and the most writes in flight at once, and can hold each write for ``hold`` seconds.
    """

    id = "test.s3.object_content"
    cloud = "aws"
    resource_types = ("aws.s3.object",)
    permissions = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")
    action = "s3:PutObject"
    writes: ClassVar[list[str]] = []
    in_flight: ClassVar[int] = 0
    most_in_flight: ClassVar[int] = 0
    lock: ClassVar[threading.Lock] = threading.Lock()

    @staticmethod
    def where(record: ResourceRecord) -> tuple[str, str]:
        bucket, key = record.resource_id.split(":::", 1)[1].split("/", 1)
        return bucket, key

    def read(self, record: ResourceRecord) -> State | None:
        from include.clouds.errors import error_code

        bucket, key = self.where(record)
        try:  # GET, not HEAD: a missing bucket is NoSuchBucket (an error), a missing key NoSuchKey (absent)
            got = s3().get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if error_code(exc) == "NoSuchKey":
                return None
            raise
        return {"md5": hashlib.md5(got["Body"].read()).hexdigest()}

    def desired(self, state: State | None, record: ResourceRecord) -> State | None:
        content = self.options["content"].get(record.name)
        return None if content is None else {"md5": hashlib.md5(content.encode()).hexdigest()}

    def write(self, record: ResourceRecord, state: State | None, desired: State | None) -> dict[str, Any]:
        bucket, key = self.where(record)
        cls = type(self)
        with cls.lock:
            cls.in_flight += 1
            cls.most_in_flight = max(cls.most_in_flight, cls.in_flight)
        try:
            time.sleep(float(self.options.get("hold", 0)))
            cls.writes.append(record.name)
            if desired is None:
                s3().delete_object(Bucket=bucket, Key=key)
                return {"Bucket": bucket, "Key": key}
            s3().put_object(Bucket=bucket, Key=key, Body=self.options["content"][record.name].encode())
            return {"Bucket": bucket, "Key": key}
        finally:
            with cls.lock:
                cls.in_flight -= 1


@pytest.fixture
def step_class(clean_clouds: Any) -> Iterator[type[S3ObjectContent]]:
    s3().create_bucket(Bucket=BUCKET)
    S3ObjectContent.writes = []
    S3ObjectContent.in_flight = S3ObjectContent.most_in_flight = 0
    yield S3ObjectContent


def resolver(options: dict[str, Any]) -> engine.StepCache:
    return engine.StepCache(lambda item: S3ObjectContent(options))


def items_for(*keys: str, bucket: str = BUCKET, depends: dict[str, list[str]] | None = None) -> list[Item]:
    """One item per key; ``depends`` maps a key to the keys it depends on."""
    made = {k: Item(step=S3ObjectContent.id, record=obj(k, bucket if not k.startswith("nb-") else "no-such-bucket"))
            for k in keys}
    return [Item(step=i.step, record=i.record,
                 depends_on=tuple(made[d].id for d in (depends or {}).get(k, ()))) for k, i in made.items()]


def content(key: str) -> str | None:
    try:
        return str(s3().get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())
    except Exception:
        return None


# ---- a change as data ------------------------------------------------------------------------------------
def test_change_round_trips_and_its_key_ignores_the_target_state() -> None:
    change = Change(step="s", operation="update", resource={"resource_id": "r1", "target": "t"}, action="x:Y",
                    request={"a": 1}, before={"v": 1}, after={"v": 2}, summary="r1: v 1 -> 2", depends_on=("k0",))
    again = Change.from_dict(json.loads(json.dumps(change.to_dict())))
    assert again == change and again.key == change.key == change_key("s", "t", "r1", "update")
    # a re-plan after a partial apply (other before / after) finds the same key in the ledger
    assert Change(**{**change.__dict__, "after": {"v": 3}}).key == change.key
    assert Change(**{**change.__dict__, "operation": "delete"}).key != change.key
    with pytest.raises(ValueError, match="operation"):
        Change(step="s", operation="upsert", resource={"resource_id": "r"}, action="a", request={},  # type: ignore[arg-type]
               before=None, after=None, summary="")


def test_lifecycle_step_creates_updates_deletes_idempotently(step_class: type[S3ObjectContent]) -> None:
    record = obj("doc.txt")
    create = step_class({"content": {"doc.txt": "v1"}})
    change = create.plan(record)
    assert change is not None and change.operation == "create" and change.before is None and not change.destructive
    assert content("doc.txt") is None, "planning changed the cloud"
    assert create.apply(change).changed and content("doc.txt") == "v1"
    assert create.plan(record) is None and create.apply(change).changed is False  # idempotent
    update = step_class({"content": {"doc.txt": "v2"}}).plan(record)
    assert update is not None and update.operation == "update"
    step_class({"content": {"doc.txt": "v2"}}).apply(update)
    assert content("doc.txt") == "v2"
    delete = step_class({"content": {}})
    gone = delete.plan(record)
    assert gone is not None and gone.operation == "delete" and gone.after is None and gone.destructive
    assert delete.apply(gone).changed and content("doc.txt") is None
    assert delete.plan(record) is None and delete.apply(gone).changed is False
    assert delete.verify(record) is True
    assert step_class.writes == ["doc.txt", "doc.txt", "doc.txt"]


# ---- ordering ------------------------------------------------------------------------------------------------
def test_dependency_order_keeps_the_given_order_and_refuses_cycles() -> None:
    assert dependency_order(["c", "b", "a"], {"c": ["a"], "b": []}) == ["a", "c", "b"]
    assert dependency_order(["a", "b", "c"], {}) == ["a", "b", "c"]
    assert reverse_dependency_order(["a", "b"], {"b": ["a"]}) == ["b", "a"]
    with pytest.raises(CycleError, match="a -> b -> c -> a"):
        dependency_order(["a", "b", "c"], {"a": ["b"], "b": ["c"], "c": ["a"]})
    with pytest.raises(RequestError, match="does not contain"):
        dependency_order(["a"], {"a": ["zz"]})
    with pytest.raises(RequestError, match="twice"):
        dependency_order(["a", "a"], {})


def test_apply_runs_changes_in_dependency_order(step_class: type[S3ObjectContent]) -> None:
    keys = {"3-index": "i", "1-data": "d", "2-meta": "m"}
    items = items_for(*keys, depends={"3-index": ["2-meta"], "2-meta": ["1-data"]})
    resolve = resolver({"content": keys})
    planned = engine.plan_items(items, resolve)
    assert [i.change.depends_on for i in planned if i.change] == [
        (planned[2].change.key,), (), (planned[1].change.key,)]  # type: ignore[union-attr]
    done = engine.apply_items(planned, resolve, rate=RateControl("5", "0"))
    assert step_class.writes == ["1-data", "2-meta", "3-index"]
    assert [i.outcome for i in done] == ["changed"] * 3 and all(content(k) == v for k, v in keys.items())


def test_a_failed_prerequisite_blocks_its_dependents(step_class: type[S3ObjectContent]) -> None:
    keys = {"nb-base": "b", "child": "c", "free": "f"}
    items = items_for(*keys, depends={"child": ["nb-base"]})
    resolve = resolver({"content": keys})
    planned = engine.plan_items(items, resolve)
    assert planned[0].plan_error and "NoSuchBucket" in planned[0].plan_error  # the bucket does not exist
    done = {i.record.name: i for i in engine.apply_items(planned, resolve, rate=RateControl("1", "100%"))}
    assert done["nb-base"].outcome == "skipped"
    assert done["child"].outcome == "not_attempted" and "plan failed" in (done["child"].note or "")
    assert done["free"].outcome == "changed" and step_class.writes == ["free"]


# ---- rate control ----------------------------------------------------------------------------------------
def test_rate_limits_follow_ssm_semantics() -> None:
    assert RateControl("10%", "10%").errors_allowed(50) == 5  # SSM: 10% of 50 stops at the sixth error
    assert RateControl("1", "40%").errors_allowed(10) == 4  # AWS Config: 40% of 10 stops at the fifth
    assert RateControl("1", "3").errors_allowed(7) == 3 and RateControl("1", "0").errors_allowed(7) == 0
    assert RateControl("10%").concurrency(25) == 3 and RateControl("1%").concurrency(5) == 1
    assert RateControl("8").concurrency(3) == 3 and RateControl.stop_on_first_error() == RateControl("1", "0")
    assert parse_limit(" 20% ", "x") == (20, True)
    for bad in ("-1", "1.5", "abc", "101%", ""):
        with pytest.raises(RequestError):
            RateControl(bad, "0")
    with pytest.raises(RequestError, match="at least 1"):
        RateControl("0", "0")


def test_max_errors_stops_dispatching_and_reports_what_was_not_attempted(step_class: type[S3ObjectContent]) -> None:
    # plan against the real bucket, then delete two objects' bucket between plan and apply: real failures
    s3().create_bucket(Bucket="flaky")
    keys = [f"k{n}" for n in range(8)]
    items = [Item(step=S3ObjectContent.id, record=obj(k, "flaky" if k in ("k1", "k3", "k5") else BUCKET))
             for k in keys]
    resolve = resolver({"content": {k: k for k in keys}})
    planned = engine.plan_items(items, resolve)
    s3().delete_bucket(Bucket="flaky")
    done = engine.apply_items(planned, resolve, rate=RateControl("1", "1"))
    outcomes = [i.outcome for i in done]
    # k1 fails (1 error allowed), k3 fails (2 > 1): nothing after k3 is dispatched
    assert outcomes == ["changed", "failed", "changed", "failed", "not_attempted", "not_attempted",
                        "not_attempted", "not_attempted"], outcomes
    assert "max_errors 1" in (done[4].note or "")
    result = report.summarise(done, report.Wording(title="t", results_dir="t"), status="failed", run_id="r",
                              dry_run=False, request={})
    assert result["totals"] | {"changed": 2, "failed": 2, "not_attempted": 4} == result["totals"]
    # stop on the first error: one at a time, nothing after the first failure
    s3().create_bucket(Bucket="flaky")
    planned = engine.plan_items(items, resolve)
    s3().delete_bucket(Bucket="flaky")
    step_class.writes.clear()
    first = engine.apply_items(planned, resolve, rate=RateControl.stop_on_first_error())
    # k0 and k2 already hold their content (no change to dispatch); k1 fails; every change after it waits
    assert [i.outcome for i in first] == ["unchanged", "failed", "unchanged"] + ["not_attempted"] * 5
    assert step_class.writes == []


def test_max_concurrency_bounds_the_changes_in_flight(step_class: type[S3ObjectContent]) -> None:
    keys = [f"c{n}" for n in range(9)]
    resolve = resolver({"content": {k: k for k in keys}, "hold": 0.3})
    planned = engine.plan_items(items_for(*keys), resolve)
    done = engine.apply_items(planned, resolve, rate=RateControl("3", "0"))
    assert {i.outcome for i in done} == {"changed"} and sorted(step_class.writes) == keys
    # exactly three at once: changes overlap (each is held 0.3 s), and never more than the bound
    assert step_class.most_in_flight == 3, step_class.most_in_flight
    step_class.most_in_flight = 0
    engine.apply_items(engine.plan_items(items_for(*keys), resolver({"content": {k: "x" for k in keys}})),
                       resolver({"content": {k: "x" for k in keys}, "hold": 0.05}), rate=RateControl("34%", "0"))
    assert step_class.most_in_flight == 4  # 34% of 9, rounded up


# ---- the ledger ------------------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """The ledger on SQLite (the embedded default) and on a private PostgreSQL (a distributed deployment)."""
    if request.param == "sqlite":
        yield Ledger.from_url(f"sqlite:///{tmp_path / 'state.db'}")
        return
    from localdev.postgres import private_postgres

    with private_postgres(tmp_path / "pg") as pg:
        yield Ledger.from_url(pg.url)


def test_ledger_lease_admits_one_holder_per_key(ledger: Ledger) -> None:
    results: list[str] = []

    def contender(n: int) -> None:
        try:
            ledger.acquire("incident-42", f"run-{n}", ttl=60)
            results.append(f"run-{n}")
        except LedgerBusy:
            results.append("busy")

    threads = [threading.Thread(target=contender, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r != "busy"]
    assert len(winners) == 1 and results.count("busy") == 9, results
    ledger.acquire("incident-42", winners[0], ttl=60)  # the same holder (a retry of the same run) takes it back
    with pytest.raises(LedgerBusy, match="another run is applying changes for key 'incident-42'"):
        ledger.acquire("incident-42", "someone-else")
    ledger.acquire("other-key", "someone-else")  # keys are independent
    ledger.release("incident-42", winners[0])
    ledger.acquire("incident-42", "someone-else")


def test_an_expired_lease_can_be_taken_over(tmp_path: Path) -> None:
    now = [1000.0]
    ledger = Ledger(Ledger.from_url(f"sqlite:///{tmp_path / 's.db'}").engine, clock=lambda: now[0])
    ledger.acquire("k", "crashed-worker", ttl=120)
    now[0] += 60
    with pytest.raises(LedgerBusy):
        ledger.acquire("k", "new-run")
    now[0] += 61  # the crashed holder never renewed: its lease has expired
    ledger.acquire("k", "new-run")
    assert ledger.renew("k", "crashed-worker") is False and ledger.renew("k", "new-run") is True


def test_a_rerun_for_the_same_key_resumes_and_never_repeats_a_change(
    step_class: type[S3ObjectContent], ledger: Ledger
) -> None:
    keys = ["r1", "r2", "r3", "r4"]
    s3().create_bucket(Bucket="late")
    items = [Item(step=S3ObjectContent.id, record=obj(k, "late" if k == "r3" else BUCKET)) for k in keys]
    resolve = resolver({"content": {k: f"v-{k}" for k in keys}})
    planned = engine.plan_items(items, resolve)
    s3().delete_bucket(Bucket="late")  # r3 fails on the first run
    first = engine.apply_items(planned, resolve, ledger=ledger, ledger_key="remediate:CHG-9", holder="run-1")
    assert [i.outcome for i in first] == ["changed", "changed", "failed", "changed"]
    assert step_class.writes == ["r1", "r2", "r4"]

    # someone reverts r1 by hand; the rerun for the same key must not repeat r1 (done under this key)
    s3().delete_object(Bucket=BUCKET, Key="r1")
    s3().create_bucket(Bucket="late")
    step_class.writes.clear()
    again = engine.apply_items(planned, resolve, ledger=ledger, ledger_key="remediate:CHG-9", holder="run-2")
    assert [i.outcome for i in again] == ["done_earlier", "done_earlier", "changed", "done_earlier"]
    assert step_class.writes == ["r3"] and "run-1" in (again[0].note or "")
    assert content("r1") is None  # not re-applied: the ledger, not a re-read, decided
    assert set(ledger.done("remediate:CHG-9")) == {i.change.key for i in planned if i.change}
    # a different key is a different change set: it applies r1 again
    third = engine.apply_items(planned, resolve, ledger=ledger, ledger_key="remediate:CHG-10", holder="run-3")
    assert [i.outcome for i in third] == ["changed", "unchanged", "unchanged", "unchanged"]


def test_two_runs_for_one_key_never_apply_at_once(step_class: type[S3ObjectContent], tmp_path: Path) -> None:
    ledger = Ledger.from_url(f"sqlite:///{tmp_path / 'state.db'}")
    keys = [f"p{n}" for n in range(3)]
    resolve = resolver({"content": {k: k for k in keys}, "hold": 0.5})
    planned = engine.plan_items(items_for(*keys), resolve)
    outcomes: dict[str, Any] = {}

    def run(name: str) -> None:
        try:
            outcomes[name] = engine.apply_items(planned, resolve, ledger=ledger, ledger_key="k", holder=name)
        except LedgerBusy as exc:
            outcomes[name] = exc

    first = threading.Thread(target=run, args=("run-a",))
    first.start()
    time.sleep(0.2)
    run("run-b")
    first.join()
    assert isinstance(outcomes["run-b"], LedgerBusy) and "run-a" in str(outcomes["run-b"])
    assert [i.outcome for i in outcomes["run-a"]] == ["changed"] * 3 and sorted(step_class.writes) == keys


def test_a_lost_lease_stops_dispatching(step_class: type[S3ObjectContent], tmp_path: Path) -> None:
    """If another run takes the key over (our lease expired unseen), nothing new is applied under it."""
    ledger = Ledger.from_url(f"sqlite:///{tmp_path / 'state.db'}")
    keys = [f"l{n}" for n in range(6)]
    resolve = resolver({"content": {k: k for k in keys}, "hold": 0.4})
    planned = engine.plan_items(items_for(*keys), resolve)

    def take_over() -> None:
        time.sleep(0.5)  # during the second change: the row now names another holder
        with ledger.engine.begin() as db:
            db.exec_driver_sql("UPDATE runbooks_change_lease SET holder = 'run-b' WHERE key = 'k'")

    thief = threading.Thread(target=take_over)
    thief.start()
    done = engine.apply_items(planned, resolve, ledger=ledger, ledger_key="k", holder="run-a", lease_ttl=0.6)
    thief.join()
    outcomes = [i.outcome for i in done]
    assert outcomes[0] == "changed" and "not_attempted" in outcomes, outcomes
    stopped = [i for i in done if i.outcome == "not_attempted"]
    assert all("lease on 'k' was lost" in (i.note or "") for i in stopped)
    assert len(step_class.writes) < len(keys) and outcomes.count("changed") == len(step_class.writes)


def test_ledger_connection_is_required_and_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_RUNBOOKS_NOWHERE", raising=False)
    with pytest.raises(LedgerUnavailable, match="runbooks_nowhere.*not defined"):
        Ledger.from_connection("runbooks_nowhere")

    class Conn:
        conn_id, conn_type, host, login, password, port, schema = "c", "mysql", "h", None, None, None, None

    with pytest.raises(LedgerUnavailable, match="postgres or sqlite"):
        sqlalchemy_url(Conn())
    Conn.conn_type, Conn.login, Conn.password, Conn.port, Conn.schema = "postgres", "u", "secret", 5432, "airflow"
    assert sqlalchemy_url(Conn()).render_as_string(hide_password=True) == "postgresql+psycopg2://u:***@h:5432/airflow"


# ---- bounded waits ---------------------------------------------------------------------------------------
def test_poll_until_is_bounded() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    reads = iter(["pending", "pending", "INSYNC"])
    assert poll_until(lambda: next(reads), lambda s: s == "INSYNC", timeout=60, interval=10, what="dns",
                      clock=lambda: clock[0], sleep=sleep) == "INSYNC"
    assert slept == [10, 10]
    clock[0], slept[:] = 0.0, []
    with pytest.raises(WaitTimeout, match=r"promotion: not done after 25s \(4 reads\); last state: 'modifying'"):
        poll_until(lambda: "modifying", lambda s: s == "available", timeout=25, interval=10, what="promotion",
                   clock=lambda: clock[0], sleep=sleep)
    assert slept == [10, 10, 5], "never sleeps past the deadline"
    assert poll_until(lambda: 1, lambda v: v == 1, timeout=0, interval=1, what="x") == 1


def test_rds_verify_waits_for_an_asynchronous_modification(clean_clouds: Any) -> None:
    """moto applies a modification at once; a real RDS shows it pending first. Stub only the slow read."""
    from include.compliance.remediation.aws import RdsBackupRetention

    rds = client_for(AWS, "rds", "eu-west-1")
    rds.create_db_instance(DBInstanceIdentifier="slow-db", Engine="postgres", DBInstanceClass="db.t3.micro",
                           AllocatedStorage=20, MasterUsername="dbadmin", MasterUserPassword="not-a-real-secret-1",
                           BackupRetentionPeriod=1)
    arn = rds.describe_db_instances(DBInstanceIdentifier="slow-db")["DBInstances"][0]["DBInstanceArn"]
    record = ResourceRecord(cloud="aws", target="aws-prod", account="123456789012", region="eu-west-1",
                            service="rds", resource_type="aws.rds.instance", resource_id=arn, name="slow-db")
    assert RdsBackupRetention.verify_wait >= 300, "a real account needs minutes: the default must wait"
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    class SlowRds(RdsBackupRetention):
        pending_reads = 3

        def read(self, record: ResourceRecord) -> State:
            state = super().read(record)
            if type(self).pending_reads > 0:  # RDS still shows the old value, the new one pending
                type(self).pending_reads -= 1
                return {"retention_days": 1, "pending_retention_days": state["retention_days"]}
            return state

    SlowRds.sleep = staticmethod(sleep)  # type: ignore[method-assign]
    SlowRds.clock = staticmethod(lambda: now[0])  # type: ignore[method-assign]
    fixer = SlowRds({"retention_days": 7})
    change = fixer.plan(record)
    assert change is not None
    SlowRds.pending_reads = 1  # the read-back right after the write shows it pending: accepted
    assert fixer.apply(change).changed
    SlowRds.pending_reads = 3
    assert fixer.verify(record) is True and slept == [15.0, 15.0, 15.0]
    SlowRds.pending_reads = 1000  # never applied within the bound: "not fixed", after a bounded wait
    slept.clear()
    short = SlowRds({"retention_days": 7, "verify_wait": 40})
    assert short.verify(record) is False and sum(slept) == 40 and slept == [15.0, 15.0, 10.0]


# ---- planning errors -------------------------------------------------------------------------------------
def test_only_missing_input_is_needs_input(step_class: type[S3ObjectContent]) -> None:
    class NeedsContent(S3ObjectContent):
        def desired(self, state: State | None, record: ResourceRecord) -> State | None:
            if "content" not in self.options:
                raise NeedsInput("this step needs content")
            return super().desired(state, record)

    (missing,) = engine.plan_items(items_for("a"), engine.StepCache(lambda item: NeedsContent({})))
    assert missing.needs_input and not missing.failed
    (gone,) = engine.plan_items(items_for("nb-x"), resolver({"content": {"nb-x": "x"}}))
    assert gone.plan_error and not gone.needs_input and gone.failed  # the cloud said no: a failure
    assert engine.plan_errors([missing, gone], include_needs_input=False) == [gone]

    class WrongType(S3ObjectContent):
        resource_types = ("aws.s3.bucket",)

    (wrong,) = engine.plan_items(items_for("a"), engine.StepCache(lambda item: WrongType({"content": {}})))
    assert wrong.failed and "handles aws.s3.bucket, not aws.s3.object" in (wrong.plan_error or "")
    with pytest.raises(ChangeError):
        WrongType({}).plan(obj("a"))


# ---- reports are worded by the runbook -------------------------------------------------------------------
def test_approval_text_and_result_use_the_runbooks_wording(step_class: type[S3ObjectContent], data_dir: Path) -> None:
    wording = report.Wording(title="Restore objects", results_dir="restores", noun="object restore",
                             done_status="restored", nothing_status="up_to_date")
    resolve = resolver({"content": {"a": "1", "b": "2"}})
    planned = engine.plan_items(items_for("a", "b"), resolve)
    subject, body = report.approval_text(planned, wording, reason="INC-7", run_id="r-1",
                                         permissions=engine.permissions(planned, resolve))
    assert subject == "Apply 2 object restores on aws-prod?"
    assert "**Restore objects**" in body and "INC-7" in body and "s3:PutObject" in body
    assert "compliance" not in subject + body
    result = report.summarise(planned, wording, status="dry_run", run_id="r-1", dry_run=True, request={"x": 1})
    path = report.write_result(result, wording)
    assert path == data_dir / "restores" / "r-1" / "result.json"
    assert json.loads(path.read_text())["totals"]["planned_changes"] == 2


def test_nothing_in_include_knows_a_dags_task_ids() -> None:
    """The engine and every include/ module get task data passed in; only DAG files name their tasks."""
    offenders = [str(path.relative_to(PROJECT_ROOT)) for path in (PROJECT_ROOT / "include").rglob("*.py")
                 if "task_ids=" in path.read_text() or "xcom_pull(" in path.read_text()]
    assert offenders == []
