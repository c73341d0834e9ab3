"""Notifications: `sender` POSTs JSON to webhooks on its own supervised worker, `hook`
turns the run's events into messages (an `EventHooks` listener)."""
