"""Who is in a room, minute by minute: office days, meetings, lunch, cleaners, weekends.

Occupancy is the hidden label of the presence task; the sensors only see its
consequences. Schedules are per room (office hours, team size, how often people
work remotely, how busy a meeting room is) and every day is drawn from the
room's schedule with a day-specific random stream, so day ``d`` is the same
whether it is simulated alone or after a hundred others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

MINUTES_PER_DAY = 24 * 60
RoomKind = Literal["office", "meeting"]


@dataclass(frozen=True)
class OccupancySchedule:
    kind: RoomKind
    capacity: int  # desks in an office, seats in a meeting room
    start_hour: float  # typical arrival / first bookable slot
    end_hour: float  # typical departure / last bookable slot
    attendance: float  # chance a desk's owner comes in on a workday (remote work, leave)
    meetings_per_day: float  # mean number of bookings (meeting rooms)
    cleaner_probability: float  # chance of an evening cleaning visit on a workday
    weekend_probability: float  # chance a given person drops in on a weekend day


def sample_schedule(rng: np.random.Generator) -> OccupancySchedule:
    kind: RoomKind = "office" if rng.random() < 0.6 else "meeting"
    start = float(rng.uniform(7.0, 9.5))
    return OccupancySchedule(
        kind=kind,
        capacity=int(rng.integers(1, 7)) if kind == "office" else int(rng.integers(4, 13)),
        start_hour=start,
        end_hour=start + float(rng.uniform(8.0, 9.5)),
        attendance=float(rng.uniform(0.5, 0.95)),
        meetings_per_day=float(rng.uniform(1.5, 6.0)),
        cleaner_probability=float(rng.uniform(0.3, 0.9)),
        weekend_probability=float(rng.uniform(0.0, 0.08)),
    )


def _visit(counts: np.ndarray, start: float, minutes: float, people: int = 1) -> None:
    first = int(np.clip(start, 0, MINUTES_PER_DAY))
    last = int(np.clip(start + minutes, 0, MINUTES_PER_DAY))
    counts[first:last] += people


def _leave(present: np.ndarray, start: float, minutes: float) -> None:
    present[int(np.clip(start, 0, MINUTES_PER_DAY)) : int(np.clip(start + minutes, 0, MINUTES_PER_DAY))] = 0


def day_occupancy(schedule: OccupancySchedule, weekday: int, rng: np.random.Generator) -> np.ndarray:
    """Occupant count for each minute of one day (``weekday`` 0 = Monday … 6 = Sunday)."""
    counts = np.zeros(MINUTES_PER_DAY, dtype=np.int64)
    start, end = schedule.start_hour * 60, schedule.end_hour * 60
    if weekday >= 5:
        for _ in range(schedule.capacity if schedule.kind == "office" else 1):
            if rng.random() < schedule.weekend_probability:
                _visit(counts, rng.uniform(start, end - 120), rng.uniform(30, 180))
        return counts
    if schedule.kind == "office":
        for _ in range(schedule.capacity):
            if rng.random() > schedule.attendance:
                continue
            present = np.zeros(MINUTES_PER_DAY, dtype=np.int64)
            arrive, leave = rng.normal(start, 30), rng.normal(end, 45)
            _visit(present, arrive, max(leave - arrive, 60))
            if rng.random() < 0.7:  # out for lunch
                _leave(present, rng.uniform(11.75 * 60, 13.5 * 60), rng.uniform(25, 60))
            for _ in range(rng.poisson(1.5)):  # short absences: coffee, someone else's meeting
                _leave(present, rng.uniform(arrive, leave), rng.uniform(5, 45))
            counts += present
    else:
        slots = np.arange(start, end - 30, 30.0)
        booked_until = -1.0
        for begin in np.sort(rng.choice(slots, size=min(rng.poisson(schedule.meetings_per_day), slots.size), replace=False)):
            if begin < booked_until:  # the room is taken: bookings never overlap
                continue
            length = float(rng.choice([30, 60, 60, 90]))
            booked_until = begin + length
            people = int(rng.integers(2, schedule.capacity + 1))
            _visit(counts, begin + abs(rng.normal(2, 3)), length - rng.uniform(3, 10), people)
    if rng.random() < schedule.cleaner_probability:
        _visit(counts, rng.uniform(end + 30, end + 180), rng.uniform(8, 25))
    return counts
