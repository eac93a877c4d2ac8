"""Tests of gateway/: the disk queue, intake, and end to end with real brokers."""
