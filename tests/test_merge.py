"""The merge rules (`models.domain.merge`), as properties over generated op sets of one record and as
examples. The reference functions below are written from the rule in merge.py's docstring, not
from its code: last writer wins per field by `(HLC, device id)`; deletes are absorbing; reviewed
fields keep a conflict for every pair of writes from different devices that did not see each other
(A.base < B.stamp and B.base < A.stamp) with different values, until some write's base covers both.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from models.domain.merge import ZERO, FieldWrite, Op, RecordState, Stamp, apply_op, new_state
from models.domain.tables import REVIEWED_FIELDS
from models.domain.vocab import RecordType

RID = "0f" * 16
REVIEWED = REVIEWED_FIELDS[RecordType.PERSON]
ALL_REVIEWED = sorted(REVIEWED)
HOT = ["status", "consent", "alias"]  # few names, so that writes meet on the same field often
PLAIN = ["description", "languages", "safety_note"]
DEVICES = ["dev-a", "dev-b", "dev-c"]
VALUES = st.sampled_from(["x", "y", "z", None, 7, ["da", "en"]])

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- generation
@st.composite
def op_sets(draw: st.DrawFn, *, max_ops: int = 8, deletes: bool = True, force_delete: bool = False) -> list[Op]:
    """Ops of one record from several devices with distinct stamps. Each reviewed field written
    carries a base: nothing seen (ZERO, or missing), or the stamp of an earlier op, so that some
    ops saw others and some did not."""
    n = draw(st.integers(1, max_ops))
    stamps: list[Stamp] = sorted(
        draw(st.lists(st.tuples(st.integers(1, 12), st.sampled_from(DEVICES)), min_size=n, max_size=n, unique=True))
    )
    field_names = st.one_of(st.sampled_from(HOT), st.sampled_from(ALL_REVIEWED), st.sampled_from(PLAIN))
    delete_at = draw(st.integers(0, n - 1)) if force_delete else -1
    ops: list[Op] = []
    for i, (hlc, device) in enumerate(stamps):
        if i == delete_at or (deletes and draw(st.integers(0, 11)) == 0):
            ops.append(Op("person", RID, device, hlc, {}, {}, delete=True))
            continue
        names = draw(st.lists(field_names, min_size=1, max_size=3, unique=True))
        fields = {name: draw(VALUES) for name in names}
        seen = [ZERO, *stamps[:i]]
        bases: dict[str, Stamp] = {}
        for name in names:
            if name in REVIEWED and draw(st.integers(0, 5)):  # sometimes no base at all: means ZERO
                bases[name] = draw(st.sampled_from(seen))
        ops.append(Op("person", RID, device, hlc, fields, bases))
    return ops


def run(ops: list[Op]) -> RecordState:
    state = new_state("person")
    for op in ops:
        apply_op(state, op, REVIEWED)
    return state


def canon(state: RecordState) -> str:
    """The state's JSON with every dict in one key order (history lists are ordered by stamp)."""
    return json.dumps(state.to_json(), sort_keys=True)


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# ------------------------------------------------------------------------------ references
def reference_values(ops: list[Op]) -> dict[str, tuple[Any, Stamp]] | None:
    """Per field, the value of the greatest stamp that wrote it; None when a delete is present."""
    if any(op.delete for op in ops):
        return None
    out: dict[str, tuple[Any, Stamp]] = {}
    for op in ops:
        for name, value in op.fields.items():
            if name not in out or op.stamp > out[name][1]:
                out[name] = (value, op.stamp)
    return out


def reference_conflicts(ops: list[Op]) -> set[tuple[str, Stamp, str, Stamp, str]]:
    distinct = {op.stamp: op for op in ops}.values()
    if any(op.delete for op in distinct):
        return set()
    found = set()
    for name in REVIEWED:
        writes = [(op.stamp, op.bases.get(name, ZERO), op.fields[name]) for op in distinct if name in op.fields]
        for (sa, ba, va), (sb, bb, vb) in itertools.combinations(sorted(writes, key=lambda w: w[0]), 2):
            different_devices = sa[1] != sb[1]
            neither_saw_the_other = ba < sb and bb < sa
            values_differ = va != vb
            closed = any(base >= max(sa, sb) for _, base, _ in writes)
            if different_devices and neither_saw_the_other and values_differ and not closed:
                found.add((name, sa, _key(va), sb, _key(vb)))
    return found


def actual_conflicts(state: RecordState) -> set[tuple[str, Stamp, str, Stamp, str]]:
    return {(c.field, c.a.stamp, _key(c.a.value), c.b.stamp, _key(c.b.value)) for c in state.conflicts()}


# ------------------------------------------------------------------------------ properties
@FAST
@given(data=st.data())
def test_any_permutation_and_duplication_gives_the_same_state(data: st.DataObject) -> None:
    ops = data.draw(op_sets())
    extra = data.draw(st.lists(st.sampled_from(ops), max_size=2 * len(ops)))
    shuffled = data.draw(st.permutations(ops + extra))
    reference = run(ops)
    state = run(shuffled)
    assert canon(state) == canon(reference)
    assert state.conflicts() == reference.conflicts()
    # and applying the whole set once more changes nothing
    assert not any(apply_op(state, op, REVIEWED) for op in shuffled)
    assert canon(state) == canon(reference)


@FAST
@given(data=st.data())
def test_last_writer_wins_per_field_by_hlc_then_device(data: st.DataObject) -> None:
    ops = data.draw(op_sets(deletes=False))
    state = run(data.draw(st.permutations(ops)))
    expected = reference_values(ops)
    assert expected is not None
    assert {k: (_key(v), s) for k, (v, s) in state.values.items()} == {
        k: (_key(v), s) for k, (v, s) in expected.items()
    }
    assert state.created == min(op.stamp for op in ops)
    assert state.deleted is None


@FAST
@given(data=st.data())
def test_tombstones_stay_dead_whatever_the_order(data: st.DataObject) -> None:
    ops = data.draw(op_sets(force_delete=True))
    state = run(data.draw(st.permutations(ops + data.draw(st.lists(st.sampled_from(ops), max_size=4)))))
    deletes = [op for op in ops if op.delete]
    assert state.deleted == max(op.stamp for op in deletes)
    assert state.values == {} and state.history == {} and state.plain() == {}
    assert state.conflicts() == []
    # a write from the future does not bring it back
    late = Op("person", RID, "dev-z", 10_000, {"alias": "back", "status": "active"}, {"alias": state.deleted})
    apply_op(state, late, REVIEWED)
    assert state.values == {} and state.history == {}
    assert state.deleted == max(op.stamp for op in deletes)


@FAST
@given(data=st.data())
def test_conflicts_are_exactly_those_of_the_rule(data: st.DataObject) -> None:
    ops = data.draw(op_sets())
    state = run(data.draw(st.permutations(ops)))
    conflicts = state.conflicts()
    assert actual_conflicts(state) == reference_conflicts(ops)
    assert len(conflicts) == len(actual_conflicts(state))  # no pair reported twice
    assert conflicts == sorted(conflicts, key=lambda c: (c.field, c.a.stamp, c.b.stamp))
    for c in conflicts:
        assert c.field in REVIEWED and c.a.stamp < c.b.stamp


def test_generated_op_sets_do_produce_open_and_closed_conflicts() -> None:
    """Guard against a generator that never exercises the rule: among its op sets there must be
    many with open conflicts, and many whose bases (a write that saw another, a resolution) are
    what keeps pairs of different values from different devices out of the conflicts."""
    seen = {"open": 0, "several": 0, "bases_matter": 0}

    @settings(max_examples=300, phases=[Phase.generate], database=None, deadline=None)
    @given(op_sets(deletes=False))
    def collect(ops: list[Op]) -> None:
        found = reference_conflicts(ops)
        seen["open"] += bool(found)
        seen["several"] += len(found) >= 2
        blind = [Op(op.record_type, op.record_id, op.device_id, op.hlc, op.fields, {}) for op in ops]
        seen["bases_matter"] += len(reference_conflicts(blind)) > len(found)

    collect()
    assert seen["open"] >= 50 and seen["several"] >= 20 and seen["bases_matter"] >= 30, seen


# -------------------------------------------------------------------------------- examples
def _write(device: str, hlc: int, base: Stamp = ZERO, **fields: Any) -> Op:
    return Op("person", RID, device, hlc, fields, {k: base for k in fields if k in REVIEWED})


@pytest.mark.parametrize("field", ["description", "status"])
def test_equal_hlc_is_broken_by_device_id(field: str) -> None:
    a = _write("dev-a", 100, **{field: "from a"})
    b = _write("dev-b", 100, **{field: "from b"})
    for order in ([a, b], [b, a], [b, a, b, a]):
        state = run(order)
        assert state.values[field] == ("from b", (100, "dev-b"))


def test_greater_hlc_wins_over_greater_device_id() -> None:
    state = run([_write("dev-a", 101, status="housed"), _write("dev-z", 100, status="closed")])
    assert state.plain()["status"] == "housed"
    state = run([_write("dev-z", 100, status="closed"), _write("dev-a", 101, status="housed")])
    assert state.plain()["status"] == "housed"


def test_concurrent_reviewed_edits_conflict_and_the_winner_is_shown() -> None:
    created = _write("dev-a", 10, alias="Lange Peter", status="active")
    a = _write("dev-a", 20, base=created.stamp, status="housed")
    b = _write("dev-b", 21, base=created.stamp, status="closed")
    state = run([created, b, a])
    [conflict] = state.conflicts()
    assert conflict.field == "status"
    assert conflict.a == FieldWrite(a.stamp, created.stamp, "housed")
    assert conflict.b == FieldWrite(b.stamp, created.stamp, "closed")
    assert state.plain()["status"] == "closed"


def test_no_conflict_when_one_saw_the_other_same_device_equal_values_or_unreviewed() -> None:
    created = _write("dev-a", 10, status="active")
    a = _write("dev-a", 20, base=created.stamp, status="housed")
    saw_a = _write("dev-b", 21, base=a.stamp, status="closed")
    assert run([created, a, saw_a]).conflicts() == []
    same_device = _write("dev-a", 22, base=created.stamp, status="closed")
    assert run([created, a, same_device]).conflicts() == []
    same_value = _write("dev-b", 21, base=created.stamp, status="housed")
    assert run([created, a, same_value]).conflicts() == []
    unreviewed = [_write("dev-a", 20, description="x"), _write("dev-b", 21, description="y")]
    state = run(unreviewed)
    assert state.conflicts() == [] and state.history == {}


def test_resolution_closes_the_conflict_only_when_its_base_covers_both() -> None:
    created = _write("dev-a", 10, status="active")
    a = _write("dev-a", 20, base=created.stamp, status="housed")
    b = _write("dev-b", 21, base=created.stamp, status="closed")
    # a write that saw only the older side leaves the pair open (and is itself concurrent with b)
    partial = _write("dev-c", 30, base=a.stamp, status="housed")
    pairs = [(c.a.stamp, c.b.stamp) for c in run([created, a, b, partial]).conflicts()]
    assert pairs == [(a.stamp, b.stamp), (b.stamp, partial.stamp)]
    # choosing the losing value, from a device that saw both, closes it and shows that value
    resolved = _write("dev-a", 30, base=b.stamp, status="housed")
    for order in itertools.permutations([created, a, b, resolved]):
        state = run(list(order))
        assert state.conflicts() == []
        assert state.plain()["status"] == "housed"


def test_a_third_device_that_saw_only_the_winner_closes_the_conflict_as_documented() -> None:
    created = _write("dev-a", 10, status="active")
    a = _write("dev-a", 20, base=created.stamp, status="housed")
    b = _write("dev-b", 21, base=created.stamp, status="closed")
    third = _write("dev-c", 25, base=b.stamp, status="moved_away")
    assert run([created, a, b, third]).conflicts() == []


def test_delete_drops_values_and_history_and_later_writes() -> None:
    created = _write("dev-a", 10, alias="Lange Peter", description="grøn jakke")
    gone = Op("person", RID, "dev-b", 20, {}, {}, delete=True)
    late = _write("dev-a", 30, base=created.stamp, alias="Peter")
    for order in itertools.permutations([created, gone, late]):
        state = run(list(order))
        assert state.deleted == gone.stamp and state.values == {} and state.history == {}
        assert state.created == created.stamp


def test_apply_op_reports_whether_anything_changed() -> None:
    state = new_state("person")
    op = _write("dev-a", 10, alias="Lange Peter", description="x")
    assert apply_op(state, op, REVIEWED) is True
    assert apply_op(state, op, REVIEWED) is False
    older = _write("dev-a", 5, description="older")
    assert apply_op(state, older, REVIEWED) is True  # it moves `created` back
    assert state.plain()["description"] == "x"


@FAST
@given(ops=op_sets())
def test_state_json_round_trip(ops: list[Op]) -> None:
    state = run(ops)
    again = RecordState.from_json(json.loads(json.dumps(state.to_json())))
    assert canon(again) == canon(state)
    assert again.conflicts() == state.conflicts()
