"""Exception types that map onto the CLI's exit codes (2 = bad arguments, 1 = failure)."""

from __future__ import annotations


class ToolboxError(Exception):
    """A failure the operator can act on; the message is shown (redacted) and the exit code is 1."""

    exit_code = 1


class UsageError(ToolboxError):
    """A bad argument; the message must name the argument and the reason. Exit code 2."""

    exit_code = 2

    def __init__(self, argument: str, reason: str) -> None:
        self.argument = argument
        self.reason = reason
        super().__init__(f"argument {argument}: {reason}")


class Terminated(ToolboxError):
    """Raised from the SIGTERM handler so `finally` blocks (scratch database drop, child kill) run
    when Kubernetes deletes the pod."""

    exit_code = 143
