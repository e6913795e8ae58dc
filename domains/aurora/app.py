"""The Aurora Life app's rules that the data follows (and data quality checks).

Dependency-free: the generator, the models and the checks share these definitions.
"""

from __future__ import annotations

import math

SUBSCRIPTION_TIERS = ("free", "premium", "pro")
PREDICTION_TIERS = ("premium", "pro")  # who gets predictions
PROVIDERS = ("apple_health", "google_fit", "fitbit", "oura", "garmin", "strava", "google_calendar")
EVENT_TYPES = (
    "work", "social", "exercise", "hobby", "rest", "learning", "family", "chores", "commute", "entertainment",
)
EXERCISE_TYPES = ("run", "walk", "cycling", "strength", "yoga", "swim", "hiit")
LEVEL_MIN, LEVEL_MAX = 1, 10  # energy and mood levels
MAX_EVENT_MINUTES = 24 * 60  # a life event lasts more than 0 and less than 24 hours
SLEEP_NEED_MINUTES = 480  # the reference night for sleep debt
EMAIL_PATTERN = r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}"  # the whole value: re.fullmatch / str.fullmatch ($ allows a final \n)
XP_PER_LEVEL_UNIT = 100


def level_for_xp(total_xp: int) -> int:
    """The app's level curve: level n needs 100 * (n - 1)^2 XP (0 XP is level 1)."""
    return int(math.isqrt(max(int(total_xp), 0) // XP_PER_LEVEL_UNIT)) + 1


def xp_for_level(level: int) -> int:
    return XP_PER_LEVEL_UNIT * (level - 1) ** 2


# The achievement catalogue: (id, code, name, xp_reward, required_level)
ACHIEVEMENTS = (
    (1, "first_event", "First step", 10, 1),
    (2, "early_bird", "Early bird", 20, 1),
    (3, "night_owl", "Night owl", 20, 1),
    (4, "week_streak", "Seven-day streak", 50, 2),
    (5, "social_butterfly", "Social butterfly", 50, 2),
    (6, "sleep_master", "Sleep master", 80, 3),
    (7, "athlete", "Athlete", 80, 3),
    (8, "explorer", "Explorer: ten kinds of events", 120, 4),
    (9, "month_streak", "Thirty-day streak", 200, 5),
    (10, "balanced_life", "Balanced life", 250, 6),
    (11, "legend", "Legend", 1000, 50),
)
