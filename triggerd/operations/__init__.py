"""The operations layer: every mutating action exists once, here.

An operation takes typed arguments and an :class:`~.actor.Actor`, validates them, changes
the store and writes an ``audit_log`` row in the same transaction, and returns a typed
result or raises one error of :mod:`triggerd.errors`. The CLI, the admin API and the
console are thin transports over it: they parse their own syntax into the arguments and
render the result or the error (the error's class decides the exit code and the HTTP
status), so the same bad input gets the same answer everywhere.
"""

from triggerd.operations.actor import SCHEDULER, Actor, cli_actor, token_actor

__all__ = ["SCHEDULER", "Actor", "cli_actor", "token_actor"]
