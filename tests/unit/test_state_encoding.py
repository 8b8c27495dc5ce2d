"""The stored form of a client's state: compact, round-trips exactly, and reads older records."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from handlers.state import AumMark, ClientState, Cooldown, Debit, FiredMaturity, FollowUp, Maturity, Snooze
from schemas.snapshot import SNAPSHOT_FIELDS, ClientSnapshot


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
        maturities=[Maturity(1_790_000_000_000_000, "td-1", "2026-09-01", "1000.00", "EUR", "e-9")],
        maturities_fired=[FiredMaturity(1_770_000_000_000_000, "td-0")],
        debits=[Debit(1_781_188_617_000_000, 16_544, 0), Debit(1_781_188_700_000_000, 500_000, 1)],
        aum_marks=[AumMark(1_781_188_617_000_000, 3_937_991)],
        cooldowns={"large_outflow": Cooldown(1_781_188_700_000_000, 2)},
        seen={"b-000243625": 1_781_188_617_000_000, "b-000243626": 1_781_188_700_000_000},
        watermark=1_781_188_700_000_000,
        closed=False,
    )


STORED_BEFORE_NAMED_STRUCTS = bytes.fromhex(
    "dc0015a8632d30303030343282ae616363742d3030303034322d3031ce003bd627ae616363742d3030303034322d3032d1fb50ce00"
    "3bd177a4676f6c64cf0006474846204000a6726d2d313634a672657461696ccf0006474846204000c3cf000653fb4acb5440cf0006"
    "52e68bb34000c0cf000651fdb70e30009196cf00065bfeda25e000a474642d31aa323032362d30392d3031a7313030302e3030a345"
    "5552a3652d399192cf000649ce3d40a000a474642d309293cf000653fb4acb5440cd40a00093cf000653fb4fbdcf00ce0007a12001"
    "9192cf000653fb4acb5440ce003c16c781ad6c617267655f6f7574666c6f7792cf000653fb4fbdcf000282ab622d30303032343336"
    "3235cf000653fb4acb5440ab622d303030323433363236cf000653fb4fbdcf00cf000653fb4fbdcf00c2"
)
"""`_busy_state()` as the worker stored it when maturities, debits, marks and cooldowns were bare lists."""


def test_reads_a_record_stored_when_the_nested_values_were_lists() -> None:
    assert ClientState.from_bytes(STORED_BEFORE_NAMED_STRUCTS) == _busy_state()
    assert _busy_state().to_bytes() == STORED_BEFORE_NAMED_STRUCTS  # and writes the very same bytes


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


def test_the_snapshot_has_the_published_shape() -> None:
    snapshot = _busy_state().snapshot()
    assert tuple(snapshot) == SNAPSHOT_FIELDS
    parsed = ClientSnapshot.model_validate(snapshot)
    assert parsed.aum == Decimal("39202.47") and parsed.tier == "gold" and parsed.rm_id == "rm-164"
    assert "acct-000042-01" not in str(snapshot)


def test_the_later_fields_are_written_only_when_set_and_round_trip() -> None:
    plain = _busy_state()
    assert plain.to_bytes()[:3] == b"\xdc\x00\x15", "21 fields: the first stored form"
    later = msgspec.structs.replace(
        plain,
        birthday="02-29",
        birthday_due=1_790_000_000_000_000,
        service_only=True,
        follow_ups=[FollowUp(1_781_200_000_000_000, 1_781_188_617_000_000, "i-7", True)],
        snoozes={"large_outflow": Snooze(1_781_188_617_000_000, 1_782_000_000_000_000)},
    )
    raw = later.to_bytes()
    assert raw[:3] == b"\xdc\x00\x1a" and ClientState.from_bytes(raw) == later
    for one_set in (
        {"birthday": "03-20"},
        {"birthday_due": 5},
        {"service_only": True},
        {"follow_ups": later.follow_ups},
        {"snoozes": later.snoozes},
    ):
        state = msgspec.structs.replace(plain, **one_set)
        assert ClientState.from_bytes(state.to_bytes()) == state, one_set

    older_view = msgspec.msgpack.decode(raw, type=list)
    assert len(older_view) == 26 and older_view[:21] == msgspec.msgpack.decode(plain.to_bytes(), type=list)
