"""Retries: what self.retry, autoretry_for and backoff really do."""
