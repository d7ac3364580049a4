"""Time: time limits, client timeouts, ETA/countdown, expires, rate limits, revoke, beat."""
