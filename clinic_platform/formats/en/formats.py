"""Formats for English (LANGUAGE_CODE en-us): ISO-like dates and times with the time zone
named (the clinic's zone is active: apps/accounts/timezones.py). The admin uses these too."""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
TIME_FORMAT = "H:i T"
