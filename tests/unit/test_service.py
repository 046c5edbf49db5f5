"""The flows and the reconciler against in-memory fakes and a fake clock: each case of the
lifecycle that once lost track of a resource, in milliseconds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from placement.errors import Kind, PlacementError, UpstreamError
from placement.flows.changes import PlacementService
from placement.flows.reconciler import Reconciler
from placement.model import Placement, State
from placement.store import Lease, PendingDeletion
from tests.harness.fakes import Act, FakeClock, FakePolicy, FakeSprm, MemoryStore

LEASE = 100.0
EXCHANGE = 30.0  # the longest one SPRM exchange may take; the lease covers two and more
SPEC = {"service_type": "vm", "vcpu": 2}


@dataclass
class World:
    clock: FakeClock
    store: MemoryStore
    policy: FakePolicy
    sprm: FakeSprm
    service: PlacementService
    reconciler: Reconciler

    def state(self, rid: str) -> State | None:
        found = self.store.get(rid)
        return None if found is None else found.state

    def past_every_lease(self) -> Counter[str]:
        """The SPRM carries out what it queued, the clock passes every lease, the
        reconciler runs."""
        self.sprm.apply_late()
        self.clock.advance(LEASE + 1)
        return self.reconciler.run_once()

    def create(self, rid: str = "web-1", spec: dict[str, object] | None = None) -> None:
        self.service.create_resource("cat-1", spec or SPEC, rid)


def make_world() -> World:
    clock = FakeClock()
    store = MemoryStore(clock)
    policy = FakePolicy()
    sprm = FakeSprm(clock, EXCHANGE)
    service = PlacementService(store, policy, sprm, LEASE, 5.0, new_id=lambda: "generated")
    return World(clock, store, policy, sprm, service, Reconciler(store, sprm, LEASE, 5.0))


@pytest.fixture
def world() -> World:
    return make_world()


def problem(call: Callable[[], object]) -> PlacementError:
    with pytest.raises(PlacementError) as raised:
        call()
    return raised.value


# --- create -----------------------------------------------------------------------


def test_create_records_then_provisions_the_evaluated_spec(world: World) -> None:
    world.create()
    assert world.state("web-1") is State.READY
    assert world.sprm.instances["web-1"].spec == {**SPEC, "evaluated": True}
    assert world.store.get("web-1").spec == SPEC  # type: ignore[union-attr]


def test_create_the_sprm_refuses_is_undone_at_once(world: World) -> None:
    world.sprm.script("create", Act.REFUSE)
    with pytest.raises(UpstreamError):
        world.create()
    assert world.state("web-1") is None


@pytest.mark.parametrize("act", [Act.LATE, Act.NEVER, Act.FAIL_5XX])
def test_a_create_answered_with_an_error_leaves_nothing_behind(world: World, act: Act) -> None:
    """As the Go service: after the 500, GET answers 404 and the list leaves it out. The
    SPRM may still act (it queued the work): the record became a pending undo, and once
    the lease has run out the reconciler deletes whatever the SPRM made."""
    world.sprm.script("create", act)
    failure = problem(world.create)
    assert failure.kind is Kind.INTERNAL
    assert failure.detail.endswith(
        "resource web-1 was not created, and anything the SPRM made of it is deleted"
    )
    assert world.state("web-1") is None
    assert world.store.list_page(None, 10, None) == ([], None)
    assert world.store.pending_deletion("web-1") == PendingDeletion(undo=True, seconds_left=LEASE)
    assert world.reconciler.run_once() == Counter()  # the SPRM may still act: wait
    world.clock.advance(EXCHANGE)
    world.sprm.apply_late(world.clock())
    assert world.reconciler.run_once() == Counter()

    assert world.past_every_lease() == Counter(retire_completed=1)
    assert world.sprm.instances == {}
    assert world.store.retired() == {}
    assert world.state("web-1") is None


@pytest.mark.parametrize("act", [Act.LOSE, Act.ACT_5XX])
def test_a_create_that_acted_but_did_not_say_so_succeeds(world: World, act: Act) -> None:
    """A lost answer or a 5xx after acting is an unknown outcome, not a failure: the
    look-up finds the instance."""
    world.sprm.script("create", act)
    world.create()
    assert world.state("web-1") is State.READY


def test_a_success_whose_body_does_not_parse_is_a_success(world: World) -> None:
    world.sprm.script("create", Act.GARBLE)
    world.sprm.get_fails = True  # no look-up is needed
    world.create()
    assert world.state("web-1") is State.READY


def test_an_instance_made_after_a_failed_look_up_is_deleted(world: World) -> None:
    world.sprm.script("create", Act.ACT_5XX)
    world.sprm.get_fails = True
    assert "(HTTP 503)" in problem(world.create).detail
    assert world.state("web-1") is None
    world.sprm.get_fails = False
    assert world.past_every_lease() == Counter(retire_completed=1)
    assert world.sprm.instances == {}


def test_a_failed_create_that_cannot_be_recorded_is_503_never_a_visible_500(
    world: World,
) -> None:
    """The move that hides the record is what makes a 500 true; when the database cannot
    make it, the client is told to retry later, and the record is settled as a crash."""
    world.sprm.script("create", Act.NEVER)
    world.sprm.get_fails = True
    get_instance = world.sprm.get_instance

    def database_gone(rid: str) -> object:
        world.store.available = False
        return get_instance(rid)

    world.sprm.get_instance = database_gone  # type: ignore[method-assign,assignment]
    failure = problem(world.create)
    assert (failure.kind, failure.retry_after) == (Kind.UNAVAILABLE, int(LEASE + 5))
    world.store.available = True
    world.sprm.get_instance = get_instance  # type: ignore[method-assign]
    world.sprm.get_fails = False
    assert world.state("web-1") is State.PROVISIONING
    assert world.past_every_lease() == Counter(provisioning_undone=1)


def test_a_refused_create_whose_undo_cannot_be_recorded_is_503(world: World) -> None:
    world.sprm.script("create", Act.REFUSE)
    create_instance = world.sprm.create_instance

    def refused(*args: object) -> object:
        try:
            return create_instance(*args)  # type: ignore[arg-type]
        finally:
            world.store.available = False

    world.sprm.create_instance = refused  # type: ignore[method-assign,assignment]
    assert problem(world.create).kind is Kind.UNAVAILABLE


def test_the_lease_is_taken_when_the_record_is_written(world: World) -> None:
    """Case 3: a slow evaluation does not eat into the lease that covers the SPRM calls,
    and no reconciler round (another replica) takes over a live operation."""
    evaluate = world.policy.evaluate

    def slow_evaluation(spec: dict[str, object]) -> object:
        world.clock.advance(LEASE * 0.9)
        return evaluate(spec)

    world.policy.evaluate = slow_evaluation  # type: ignore[method-assign,assignment]
    create = world.sprm.create_instance
    seen: list[Counter[str]] = []

    def slow_create(*args: object) -> object:
        world.clock.advance(EXCHANGE)
        seen.append(world.reconciler.run_once())
        return create(*args)  # type: ignore[arg-type]

    world.sprm.create_instance = slow_create  # type: ignore[method-assign,assignment]
    world.create()
    assert seen == [Counter()]
    assert world.state("web-1") is State.READY


def test_a_retried_create_learns_how_its_resource_stands(world: World) -> None:
    """Case 7: a retry of the same create while it is provisioned is told so; once it is
    READY, that it exists; a collision with another resource, that the id is in use."""
    create = world.sprm.create_instance
    retried: list[PlacementError] = []

    def slow_create(*args: object) -> object:
        retried.append(problem(world.create))  # the client retries meanwhile
        return create(*args)  # type: ignore[arg-type]

    world.sprm.create_instance = slow_create  # type: ignore[method-assign,assignment]
    world.create()
    assert [(each.kind, each.detail) for each in retried] == [
        (
            Kind.RESOURCE_CONFLICT,
            "resource web-1 with this spec is still being provisioned; its outcome is settled"
            " within 100 s: GET it to follow",
        )
    ]
    world.sprm.create_instance = create  # type: ignore[method-assign]
    done = problem(world.create)
    assert done.detail == "resource web-1 already exists with this spec and is READY"
    other = problem(lambda: world.create(spec={"service_type": "other"}))
    assert other.detail == "resource id web-1 is already in use"
    assert world.policy.calls == [SPEC]  # no doomed evaluation
    assert world.sprm.creates() == ["web-1"]


@pytest.mark.parametrize("act", [Act.LATE, Act.NEVER, Act.ACT_5XX])
def test_a_retry_of_a_failed_create_takes_its_undo_over(world: World, act: Act) -> None:
    """The same create (id, catalog item instance id, spec) after a 500 provisions again;
    an SPRM 409 then means an earlier try made the instance: 201, and it is kept."""
    world.sprm.script("create", act)
    world.sprm.get_fails = True
    problem(world.create)
    world.sprm.get_fails = False
    world.sprm.apply_late()
    world.create()
    assert world.state("web-1") is State.READY
    assert world.past_every_lease() == Counter(undo_taken_over=1)
    assert world.store.retired() == {}
    assert set(world.sprm.instances) == {"web-1"}


def test_what_the_failed_create_makes_after_its_retry_was_deleted_is_deleted(
    world: World,
) -> None:
    """The failed create's undo stays beside its retry's record until the SPRM can no
    longer act on the failed one: an instance it makes after the retried resource was
    deleted is deleted then."""
    world.sprm.script("create", Act.LATE)
    problem(world.create)
    world.create()  # the SPRM makes it now, for the retry
    world.service.delete_resource("web-1")
    assert world.state("web-1") is None
    world.sprm.apply_late()  # the failed create's own act, late
    assert set(world.sprm.instances) == {"web-1"}
    assert world.past_every_lease() == Counter(retire_completed=1)
    assert world.sprm.instances == {}
    assert world.store.retired() == {}


def test_an_undo_waits_while_a_retry_of_its_create_is_under_way(world: World) -> None:
    """The retry may still fail (here: refused, so its record is removed): until it is
    settled, the undo of the earlier try's instance is not given up."""
    world.sprm.script("create", Act.LATE, Act.REFUSE)
    problem(world.create)
    world.sprm.apply_late()
    world.clock.advance(LEASE + 1)
    create = world.sprm.create_instance
    rounds: list[Counter[str]] = []

    def refused_meanwhile(*args: object) -> object:
        rounds.append(world.reconciler.run_once())
        return create(*args)  # type: ignore[arg-type]

    world.sprm.create_instance = refused_meanwhile  # type: ignore[method-assign,assignment]
    assert isinstance(problem(world.create), UpstreamError)
    assert rounds == [Counter(deferred=1)]
    assert world.state("web-1") is None
    assert world.past_every_lease() == Counter(retire_completed=1)
    assert world.sprm.instances == {}


def test_another_create_of_an_id_being_undone_is_409_with_retry_after(world: World) -> None:
    world.create("old")
    world.sprm.script("create", Act.NEVER)
    problem(world.create)
    other = problem(lambda: world.create(spec={"service_type": "other"}))
    assert other.kind is Kind.RESOURCE_CONFLICT
    assert other.retry_after == int(LEASE + 5)
    assert other.detail == (
        "resource id web-1 is in use by a create that failed, whose instance is being undone;"
        f" retry in {int(LEASE + 5)} s"
    )
    named = problem(lambda: world.service.rehydrate_resource("old", "web-1"))
    assert (named.kind, named.retry_after) == (Kind.RESOURCE_CONFLICT, int(LEASE + 5))
    assert world.state("old") is State.READY
    assert world.past_every_lease() == Counter(retire_completed=1)
    world.create(spec={"service_type": "other"})  # the id is free again


def test_a_retry_cannot_take_over_an_undo_the_reconciler_has_begun(world: World) -> None:
    world.sprm.script("create", Act.NEVER)
    problem(world.create)
    world.sprm.script("delete", Act.FAIL_5XX)
    assert world.past_every_lease() == Counter(deferred=1)  # claimed; its delete failed
    assert problem(world.create).retry_after is not None
    assert world.past_every_lease() == Counter(retire_completed=1)
    world.create()
    assert world.state("web-1") is State.READY


def test_the_finish_after_a_lost_lease_is_still_a_success(world: World) -> None:
    """The SPRM acted within the lease, so the reconciler that took over finds the
    instance: the create answers success, never "lost track"."""
    create = world.sprm.create_instance

    def stalled_create(*args: object) -> object:
        made = create(*args)  # type: ignore[arg-type]
        world.clock.advance(LEASE + 1)  # (a stalled process)
        world.reconciler.run_once()
        return made

    world.sprm.create_instance = stalled_create  # type: ignore[method-assign,assignment]
    world.create()
    assert world.state("web-1") is State.READY


def test_a_success_answered_after_the_record_was_settled_without_it_is_not_a_success(
    world: World,
) -> None:
    """The move that did not happen is never answered as a success: the record as it now
    stands decides. Here a delete removed the resource meanwhile: the create says it was
    not created, and the instance it made is deleted."""
    create = world.sprm.create_instance

    def stalled_create(*args: object) -> object:
        made = create(*args)  # type: ignore[arg-type]
        world.clock.advance(LEASE + 1)
        world.reconciler.run_once()  # READY
        world.service.delete_resource("web-1")
        return made

    world.sprm.create_instance = stalled_create  # type: ignore[method-assign,assignment]
    assert "was not created" in problem(world.create).detail
    assert world.state("web-1") is None
    assert world.past_every_lease() == Counter(retire_completed=1)
    assert world.sprm.instances == {}


# --- delete -----------------------------------------------------------------------


def test_delete_removes_instance_then_record(world: World) -> None:
    world.create()
    world.service.delete_resource("web-1")
    assert world.state("web-1") is None
    assert "web-1" not in world.sprm.instances


def test_delete_of_an_instance_the_sprm_no_longer_has_removes_the_record(world: World) -> None:
    world.create()
    del world.sprm.instances["web-1"]
    world.service.delete_resource("web-1")
    assert world.state("web-1") is None


def test_delete_the_sprm_refuses_keeps_the_resource(world: World) -> None:
    world.create()
    world.sprm.script("delete", Act.REFUSE)
    with pytest.raises(UpstreamError):
        world.service.delete_resource("web-1")
    assert world.state("web-1") is State.READY


def test_a_refused_delete_whose_look_up_fails_keeps_the_resource_ready(world: World) -> None:
    """Every try was refused: nothing was deleted, whatever the look-up says; the record
    is READY at once and never deleted later."""
    world.create()
    world.sprm.script("delete", Act.REFUSE)
    world.sprm.get_fails = True
    refused = problem(lambda: world.service.delete_resource("web-1"))
    assert isinstance(refused, UpstreamError)
    assert refused.status == 422
    assert world.state("web-1") is State.READY
    world.sprm.get_fails = False
    assert world.past_every_lease() == Counter()
    assert set(world.sprm.instances) == {"web-1"}


def test_a_delete_that_may_have_acted_and_cannot_be_confirmed_stays_deleting(
    world: World,
) -> None:
    world.create()
    world.sprm.script("delete", Act.FAIL_5XX)
    world.sprm.get_fails = True
    assert (
        "did not confirm deleting web-1"
        in problem(lambda: world.service.delete_resource("web-1")).detail
    )
    assert world.state("web-1") is State.DELETING
    world.sprm.get_fails = False
    assert world.past_every_lease() == Counter(delete_completed=1)


def test_a_refused_delete_after_an_abandoned_one_that_acted_is_not_nothing(
    world: World,
) -> None:
    """A delete takes over a delete whose owner gave up: its tries are refused, and the
    look-up cannot say. The earlier delete may have acted: 500, the record DELETING (not
    READY with its instance gone)."""
    world.create()
    begin = world.store.begin_delete("web-1", Lease("gone", -1))  # acted, then gave up
    assert begin is not None
    world.sprm.instances.clear()
    world.sprm.script("delete", Act.REFUSE)
    world.sprm.get_fails = True
    assert (
        "did not confirm deleting" in problem(lambda: world.service.delete_resource("web-1")).detail
    )
    assert world.state("web-1") is State.DELETING
    world.sprm.get_fails = False
    assert world.past_every_lease() == Counter(delete_completed=1)


def test_an_unknown_delete_that_acted_is_confirmed_by_a_look_up(world: World) -> None:
    world.create()
    world.sprm.script("delete", Act.LOSE)
    world.service.delete_resource("web-1")
    assert world.state("web-1") is None


def test_an_unknown_delete_is_finished_once_its_lease_ran_out(world: World) -> None:
    world.create()
    world.sprm.script("delete", Act.LATE)
    assert (
        "did not confirm deleting web-1"
        in problem(lambda: world.service.delete_resource("web-1")).detail
    )
    assert world.state("web-1") is State.DELETING
    busy = problem(lambda: world.service.delete_resource("web-1"))
    assert busy.detail == "resource web-1 is busy (being deleted); retry later"
    assert world.past_every_lease() == Counter(delete_completed=1)
    assert world.state("web-1") is None
    assert "web-1" not in world.sprm.instances


def test_delete_unknown_is_not_found(world: World) -> None:
    assert problem(lambda: world.service.delete_resource("nope")).kind is Kind.NOT_FOUND
    assert world.sprm.calls == []


# --- rehydrate --------------------------------------------------------------------


def test_rehydrate_replaces_then_retires_the_old_resource(world: World) -> None:
    world.create("old")
    new = world.service.rehydrate_resource("old", "new")
    assert (new.id, new.state, new.replaces) == ("new", State.READY, None)
    assert world.state("old") is None
    assert world.store.retired() == {}
    assert set(world.sprm.instances) == {"new"}
    assert world.sprm.deletes() == [("old", True)]


@pytest.mark.parametrize("act", [Act.FAIL_5XX, Act.NEVER, Act.REFUSE])
def test_a_failed_deferred_delete_stays_as_work_until_the_sprm_takes_it(
    world: World, act: Act
) -> None:
    """Case 5: a deferred delete that did not reach the SPRM's queue is kept and tried
    again until the SPRM answers 204 or 404; the replaced resource is gone at once."""
    world.create("old")
    world.sprm.script("delete", act, act)
    world.service.rehydrate_resource("old", "new")
    assert world.store.get("old") is None
    assert "old" in world.store.retired()
    assert world.past_every_lease() == Counter(deferred=1)
    assert "old" in world.store.retired()
    assert world.past_every_lease() == Counter(retire_completed=1)
    assert world.store.retired() == {}
    assert set(world.sprm.instances) == {"new"}


def test_a_failed_rehydrate_keeps_the_old_resource(world: World) -> None:
    world.create("old")
    world.sprm.script("create", Act.REFUSE)
    with pytest.raises(UpstreamError):
        world.service.rehydrate_resource("old", "new")
    assert world.state("old") is State.READY
    assert world.state("new") is None


@pytest.mark.parametrize("act", [Act.LATE, Act.NEVER])
def test_a_rehydrate_answered_with_an_error_keeps_the_old_resource_as_it_was(
    world: World, act: Act
) -> None:
    """As the Go service: the old resource is READY right after the 500 (DELETE and
    rehydrate are served at once) and the new id is 404; whatever the SPRM made of the
    new one is deleted once the lease has run out."""
    world.create("old")
    world.sprm.script("create", act)
    assert (
        "resource new was not created"
        in problem(lambda: world.service.rehydrate_resource("old", "new")).detail
    )
    assert (world.state("old"), world.state("new")) == (State.READY, None)
    assert world.past_every_lease() == Counter(retire_completed=1)
    assert set(world.sprm.instances) == {"old"}
    world.service.rehydrate_resource("old", "newer")
    world.service.delete_resource("newer")
    assert world.sprm.instances == {}


def test_rehydrate_evaluates_before_taking_the_old_record(world: World) -> None:
    """Case 3 for rehydration: the old record is taken after the evaluation."""
    world.create("old")
    evaluate = world.policy.evaluate
    states: list[State | None] = []

    def watching(spec: dict[str, object]) -> object:
        states.append(world.state("old"))
        return evaluate(spec)

    world.policy.evaluate = watching  # type: ignore[method-assign,assignment]
    world.service.rehydrate_resource("old", "new")
    assert states == [State.READY]


def test_rehydrate_to_an_id_in_use_or_from_a_busy_resource_is_409(world: World) -> None:
    world.create("old")
    world.create("other")
    assert problem(lambda: world.service.rehydrate_resource("old", "other")).kind is (
        Kind.RESOURCE_CONFLICT
    )
    world.sprm.script("delete", Act.NEVER)
    problem(lambda: world.service.delete_resource("other"))
    busy = problem(lambda: world.service.rehydrate_resource("other", "x"))
    assert busy.detail == "resource other is busy (being deleted); retry later"


def test_an_id_whose_old_instance_is_still_being_deleted_is_in_use(world: World) -> None:
    world.create("old")
    world.sprm.script("delete", Act.FAIL_5XX)
    world.service.rehydrate_resource("old", "new")
    taken = problem(lambda: world.create("old"))
    assert taken.detail == (
        f"resource id old is in use by an instance still being deleted; retry in {LEASE + 5:g} s"
    )
    assert taken.retry_after == LEASE + 5


# --- the reconciler ---------------------------------------------------------------


def test_the_reconciler_claims_one_record_at_a_time(world: World) -> None:
    """Case 4: each record is claimed under a lease of its own, so slow SPRM answers for
    earlier records never let a later claim run out; another replica's round in between
    takes other records, never the same one twice."""
    for n in range(3):
        world.store.begin_create(Placement(f"r{n}", "c", SPEC, "p", "APPROVED"), Lease("x", -1))
    other = Reconciler(world.store, world.sprm, LEASE, 5.0, batch=1)
    get = world.sprm.get_instance
    others: list[Counter[str]] = []
    inside: list[bool] = []

    def slow_get(rid: str) -> object:
        world.clock.advance(LEASE * 0.6)
        if not inside:  # the other replica's round runs while this answer is slow
            inside.append(True)
            others.append(other.run_once())
            inside.pop()
        return get(rid)

    world.sprm.get_instance = slow_get  # type: ignore[method-assign,assignment]
    mine = world.reconciler.run_once()
    total = mine + sum(others, Counter())
    assert total == Counter(provisioning_undone=3)
    gets = [rid for op, rid, _ in world.sprm.calls if op == "get"]
    assert sorted(gets) == ["r0", "r1", "r2"]


def test_the_reconciler_stops_between_records(world: World) -> None:
    for n in range(3):
        world.store.begin_create(Placement(f"r{n}", "c", SPEC, "p", "APPROVED"), Lease("x", -1))
    get = world.sprm.get_instance

    def stopping_get(rid: str) -> object:
        world.reconciler.stop()
        return get(rid)

    world.sprm.get_instance = stopping_get  # type: ignore[method-assign,assignment]
    assert world.reconciler.run_once() == Counter(provisioning_undone=1)


def test_a_look_up_that_cannot_answer_is_asked_again_next_round(world: World) -> None:
    world.store.begin_create(Placement("r", "c", SPEC, "p", "APPROVED"), Lease("x", -1))
    world.sprm.get_fails = True
    assert world.reconciler.run_once() == Counter(deferred=1)  # once, not 100 times
    world.sprm.get_fails = False
    assert world.reconciler.run_once() == Counter()  # waits its turn
    world.clock.advance(6)
    assert world.reconciler.run_once() == Counter(provisioning_undone=1)


def test_a_state_of_a_newer_version_is_left_alone(world: World) -> None:
    """Case 8: a record in a state this version does not know is busy: served, never
    moved, never claimed."""
    world.create()
    row = world.store._rows["web-1"]  # (what a newer replica wrote)
    row.resource = replace(row.resource, state=State.UNKNOWN)
    assert world.service.get_resource("web-1").id == "web-1"
    busy = problem(lambda: world.service.delete_resource("web-1"))
    assert busy.detail == "resource web-1 is busy (in an operation of a newer version); retry later"
    assert world.past_every_lease() == Counter()
