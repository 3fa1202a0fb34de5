"""Every SQL statement of triggerd, grouped by table family.

Functions take an asyncpg connection or pool (``Executor``) and return typed records from
:mod:`triggerd.store.records`. Database errors that a user can act on are translated into
:mod:`triggerd.errors` types here.
"""
