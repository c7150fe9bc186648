"""What a schedule is, apart from where it is stored (SPEC 8).

* :class:`ScheduleSpec` - cron, time zone and environments, validated together; it is
  what ``schedules.task(cron=...)`` declares and what ``schedules.create`` accepts.
* :class:`ScheduledPayload` - the payload a scheduled run receives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict

from trigger_celery.core.cron import get_zone, parse_cron
from trigger_celery.core.environments import ENVIRONMENTS
from trigger_celery.errors import InvalidScheduleError

UPCOMING_COUNT = 5
DECLARATIVE_KEY_PREFIX = "declarative:"


@dataclass(frozen=True)
class ScheduleSpec:
    """A valid cron expression, IANA time zone and list of environments (empty: all)."""

    cron: str
    timezone: str = "UTC"
    environments: tuple[str, ...] = ()

    @classmethod
    def build(
        cls, cron: object, timezone: object = "UTC", environments: object = None
    ) -> ScheduleSpec:
        expression = parse_cron(cron)
        if isinstance(timezone, ZoneInfo):  # a zone object is taken by its IANA name
            timezone = timezone.key
        get_zone(timezone)
        assert isinstance(timezone, str)
        return cls(expression.text, timezone, parse_environments(environments))

    @classmethod
    def from_declaration(cls, value: object, *, task_id: str) -> ScheduleSpec:
        """``cron="0 * * * *"`` or ``cron={"pattern", "timezone", "environments"}``."""
        if isinstance(value, str):
            return cls.build(value)
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - {"pattern", "timezone", "environments"})
            if unknown:
                raise InvalidScheduleError(
                    f"schedules.task {task_id!r}: unknown cron key(s) {', '.join(unknown)}; "
                    "accepted: pattern, timezone, environments"
                )
            if "pattern" not in value:
                raise InvalidScheduleError(
                    f"schedules.task {task_id!r}: cron dict needs 'pattern', e.g. "
                    "{'pattern': '0 5 * * *', 'timezone': 'Asia/Tokyo'}"
                )
            return cls.build(
                value["pattern"], value.get("timezone", "UTC"), value.get("environments")
            )
        raise InvalidScheduleError(
            f"schedules.task {task_id!r}: cron must be a string like '0 * * * *' or a dict "
            f"with pattern/timezone/environments, got {value!r}"
        )


def parse_environments(value: object) -> tuple[str, ...]:
    """None or a list of environment names -> a sorted tuple without duplicates."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidScheduleError(
            f"environments must be a list like ['PRODUCTION', 'STAGING'], got {value!r}"
        )
    bad = [v for v in value if v not in ENVIRONMENTS]
    if bad:
        raise InvalidScheduleError(
            f"unknown environment(s) {bad!r}; use some of {', '.join(ENVIRONMENTS)}"
        )
    return tuple(sorted(set(value)))


class ScheduledPayload(BaseModel):
    """The payload of a scheduled run. Datetimes are aware and in UTC.

    ``timestamp`` is the tick's intended time, ``last_timestamp`` the previous tick's
    (None the first time), ``upcoming`` the next five fire times.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["DECLARATIVE", "IMPERATIVE"] = "IMPERATIVE"
    timestamp: AwareDatetime
    last_timestamp: AwareDatetime | None = None
    timezone: str = "UTC"
    schedule_id: str
    external_id: str | None = None
    upcoming: list[AwareDatetime] = []

    def local_timestamp(self) -> datetime:
        """``timestamp`` on the wall clock of the schedule's time zone."""
        return self.timestamp.astimezone(get_zone(self.timezone))

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
