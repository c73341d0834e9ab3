"""The operators' own Prometheus alerts as triggers (SPEC section 2, "Alerts as triggers").

- `book`: `AlertBook`, the thread-safe store of firing alerts that push and pull write
  and triggers read, with a change callback;
- `receiver`: `AlertReceiver`, Alertmanager's webhook (`POST /alerts`) with a Bearer token;
- `pull`: Alertmanager's `/api/v2/alerts` and Prometheus's `ALERTS` readers;
- `matching`: alert labels -> inventory host;
- `condition`: `alert_reading`, the `alert:` condition as a pure function of a snapshot;
- `service`: `AlertService`, the one owner of all of the above for a phase run or watch;
- `lab`: a real Prometheus and Alertmanager on loopback ports (sandbox, tests, bench).

Imports stay lazy: nothing here is loaded unless a project has an `alert:` trigger.
"""
