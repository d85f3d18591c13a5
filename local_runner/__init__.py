"""Offline Windmill flow runner and local Windmill HTTP API for the bundle."""
from .config import Config
from .runner import Job, Run, Runner, RunnerError, UnsupportedFlow

__all__ = ["Config", "Job", "Run", "Runner", "RunnerError", "UnsupportedFlow"]
