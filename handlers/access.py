"""Who may see which alerts: principals with a role, and the scope of alerts their role gives them.

A principal maps to a role: an `rm` sees the alerts assigned to its RM id, a
`manager` those of a team of RMs plus the unassigned ones, `ops` sees
everything but may not change anything. How a principal was authenticated is
the API's business; what it may see is decided here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

Role = Literal["rm", "manager", "ops"]


@dataclass(frozen=True, slots=True)
class Scope:
    """Which alerts a principal may see: every alert (`rm_ids` None), or those of some RMs."""

    rm_ids: frozenset[str] | None
    unassigned: bool

    def allows(self, rm_id: str | None) -> bool:
        if self.rm_ids is None:
            return True
        if rm_id is None:
            return self.unassigned
        return rm_id in self.rm_ids


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role
    rm_id: str | None = None
    team: frozenset[str] = field(default_factory=frozenset)

    @property
    def scope(self) -> Scope:
        if self.role == "ops":
            return Scope(None, True)
        if self.role == "manager":
            # Managers triage the unassigned alerts: nobody else can act on them.
            return Scope(self.team, True)
        return Scope(frozenset({self.rm_id}) if self.rm_id else frozenset(), False)

    @property
    def can_act(self) -> bool:
        return self.role != "ops"


def with_org_team(principal: Principal, teams: Mapping[str, frozenset[str]]) -> Principal:
    """A manager given no team by its token or identity provider takes the org file's team for its name."""
    if principal.role != "manager" or principal.team:
        return principal
    return replace(principal, team=teams.get(principal.name, frozenset()))
