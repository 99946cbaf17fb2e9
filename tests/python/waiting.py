"""Polling for what the cluster does a moment after a write."""
import time


def until(check, what, timeout=30):
    """`check()`'s first truthy value, polled until `timeout` seconds pass."""
    deadline = time.time() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
