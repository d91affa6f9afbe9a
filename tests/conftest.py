"""Test-wide switches: a forbidden pipeline transition fails the test that causes it."""
from server.core import call_core

call_core.STRICT_TRANSITIONS = True
