"""The private MariaDB of the fault tests: it lives in kemi_tools (the bench uses it too)."""
from kemi_tools.stack.own_mariadb import OwnMariaDB

__all__ = ["OwnMariaDB"]
