"""The one home of the test data builders and test processes, used by every test folder and by
the benchmarks (imported as `tests.testkit...`; the repository root is on pytest's path).

- `scans`: real scans from the shared training set and small synthetic images (no Django);
- `data`: clinics, users, patients, cases and finished scans, built with the real services;
- `processes`: a real Redis server and real Celery worker processes (no Django).
- `documents`: a PDF's text, and `assert_shows` (each of a list of phrases is in a page or report).

This folder is a package (the test folders are not: a `tests/apps` package would shadow the
project's `apps`)."""
