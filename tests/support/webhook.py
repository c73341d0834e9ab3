"""The body Alertmanager pushes to a webhook receiver, for the receiver's tests."""

from __future__ import annotations

import json


def payload(status: str = "firing", name: str = "MMAMigrationRollbackTrigger") -> bytes:
    """One alert group in Alertmanager's webhook format (version 4), as it pushes it."""
    return json.dumps({
        "version": "4", "status": status, "receiver": "migrate", "groupKey": "{}:{}",
        "groupLabels": {"alertname": name}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://am", "truncatedAlerts": 0,
        "alerts": [{"status": status, "labels": {
            "alertname": name, "instance": "main:9400", "severity": "critical",
            "component": "ModelManagerAgent"}, "annotations": {},
            "startsAt": "2026-11-23T23:58:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "", "fingerprint": "1"}]}).encode()
