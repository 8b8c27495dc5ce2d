"""Bounds on input that keep one hostile message from costing more than it should."""

MAX_MESSAGE_BYTES = 64 * 1024
"""Larger input messages are dead-lettered unparsed (events are a few hundred bytes)."""

MAX_TEXT_LENGTH = 256
"""Longest free-text field (ids excepted, which have their own limits)."""

MAX_AMOUNT_DIGITS = 24
MAX_DECIMAL_PLACES = 8
"""Amounts have at most 24 significant digits of which at most 8 after the point."""

MIN_YEAR = 1970
MAX_YEAR = 2999
"""Event times outside these years are rejected as implausible."""

MAX_RAW_IN_DEADLETTER = 16 * 1024
"""A dead letter keeps at most this many characters of the original message."""

MIN_BIRTH_YEAR = 1900
"""Birth dates before this year are rejected as implausible (the year is checked, then dropped)."""

MAX_SNOOZE_DAYS = 180
"""A snooze ends at most this many days after it was given."""
