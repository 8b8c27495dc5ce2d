"""The stored form of a client's state: compact, round-trips exactly, and reads older records."""

from __future__ import annotations

import msgspec

from handlers.state import ClientState


def _busy_state() -> ClientState:
    return ClientState(
        "c-000042",
        accounts={"acct-000042-01": 3_921_447, "acct-000042-02": -12_00},
        aum=3_920_247,
        tier="gold",
        tier_since=1_767_225_600_000_000,
        rm_id="rm-164",
        segment="retail",
        onboarded_at=1_767_225_600_000_000,
        first_txn_alerted=True,
        last_activity=1_781_188_617_000_000,
        last_rm_contact=1_780_000_000_000_000,
        dormant_base=None,
        rm_contact_alerted_due=1_779_000_000_000_000,
        maturities=[[1_790_000_000_000_000, "td-1", "2026-09-01", "1000.00", "EUR", "e-9"]],
        maturities_fired=[[1_770_000_000_000_000, "td-0"]],
        debits=[[1_781_188_617_000_000, 16_544, 0], [1_781_188_700_000_000, 500_000, 1]],
        aum_marks=[[1_781_188_617_000_000, 3_937_991]],
        cooldowns={"large_outflow": [1_781_188_700_000_000, 2]},
        seen={"b-000243625": 1_781_188_617_000_000, "b-000243626": 1_781_188_700_000_000},
        watermark=1_781_188_700_000_000,
        closed=False,
    )


def test_round_trip_is_exact() -> None:
    state = _busy_state()
    assert ClientState.from_bytes(state.to_bytes()) == state
    fresh = ClientState("c-1")
    assert ClientState.from_bytes(fresh.to_bytes()) == fresh


def test_stored_as_an_array_without_field_names() -> None:
    state = _busy_state()
    raw = state.to_bytes()
    assert b"first_txn_alerted" not in raw and b"maturities_fired" not in raw
    as_map = msgspec.msgpack.encode(msgspec.structs.asdict(state))
    assert len(raw) < 0.75 * len(as_map)


def test_reads_records_in_the_earlier_map_form() -> None:
    state = _busy_state()
    legacy = msgspec.msgpack.encode(msgspec.structs.asdict(state))
    assert ClientState.from_bytes(legacy) == state
    small_legacy = msgspec.msgpack.encode({"client_id": "c-7", "aum": 5, "tier": "mass"})
    assert ClientState.from_bytes(small_legacy) == ClientState("c-7", aum=5, tier="mass")


def test_fields_added_at_the_end_stay_readable_both_ways() -> None:
    class Later(ClientState, array_like=True, gc=False):
        added_later: int = 7

    state = _busy_state()
    newer = msgspec.msgpack.encode(Later(**msgspec.structs.asdict(state), added_later=9))
    assert ClientState.from_bytes(newer) == state  # older code ignores the trailing item
    assert msgspec.msgpack.decode(state.to_bytes(), type=Later).added_later == 7  # newer code takes the default
