"""Test harness: real Kamailio/MariaDB/SIPp started and stopped by the tests themselves."""
