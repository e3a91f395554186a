"""The demo task shipped with Architect (`conf/router.ini` runs it): see task.py."""
