"""triggerd: a cron and webhook trigger daemon that starts workflow runs."""

__version__ = "0.1.0"
