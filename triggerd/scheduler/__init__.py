"""The cron scheduler: cron triggers stored in PostgreSQL become executions, exactly once.

:class:`CronScheduler` is the daemon component; see :mod:`triggerd.scheduler.service`.
"""

from triggerd.scheduler.service import CronMetrics, CronScheduler, SchedulerStats, utc_now

__all__ = ["CronMetrics", "CronScheduler", "SchedulerStats", "utc_now"]
