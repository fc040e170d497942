"""Django apps of the clinic platform."""
