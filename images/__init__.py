"""Container image tooling (build.py); importable so that tests can check what it builds."""
