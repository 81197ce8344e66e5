from dates.leap import days_in_month, is_leap_year
from dates.roman import to_roman


def test_leap_2000():
    assert is_leap_year(2000)


def test_not_leap_1900():
    assert not is_leap_year(1900)


def test_days_in_february_2024():
    assert days_in_month(2024, 2) == 29


def test_to_roman():
    assert to_roman(1994) == "MCMXCIV"
