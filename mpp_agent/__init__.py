"""mpp-agent: a failover state manager for MySQL/MariaDB pools behind HAProxy."""

__version__ = "0.1.0"
