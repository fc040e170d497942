"""Settings, read from the environment with local defaults (django-environ).

One small module per integration: Django core here, Celery in `celery.py`, the REST API in
`api.py`, scan storage and limits in `scans.py`, sign-in protection, tokens and retention in
`security.py`, HTTPS, the TLS proxy and the CSP in `https.py`.
With nothing set, the project runs on one machine: SQLite under var/, media under var/media,
Celery's filesystem broker under var/queue.
"""

from .api import *  # noqa: F403
from .base import *  # noqa: F403
from .celery import *  # noqa: F403
from .dicomnet import *  # noqa: F403
from .https import *  # noqa: F403
from .scans import *  # noqa: F403
from .security import *  # noqa: F403
from .storage import *  # noqa: F403
