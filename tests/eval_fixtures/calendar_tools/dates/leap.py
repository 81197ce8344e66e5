"""Leap years and month lengths."""

MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def is_leap_year(year):
    """True for leap years of the Gregorian calendar."""
    return year % 4 == 0


def days_in_month(year, month):
    """Days in ``month`` (1-12) of ``year``."""
    if month == 2 and is_leap_year(year):
        return 29
    return MONTH_DAYS[month - 1]
