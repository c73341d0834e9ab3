"""Canary analysis (SPEC section 2, "Canary analysis"): judge migrated hosts against a control.

- `canary.judge`: pure functions, `judge_metric` (one metric, two sample arrays) and
  `score` / `analyse` (the verdict and the `analysis_completed` detail).
- `canary.spec`: `AnalysisSpec` and `parse_analysis`, the phase file's `analysis:` block.
- `canary.samples`: where the samples come from: `SampleBuffer` (the monitor's own
  readings, appended at each poll) and `prometheus_window` (a range query for
  `prometheus` metrics, so a long window does not wait on polling).

Importing this package imports none of numpy, scipy or prometheus-api-client; they are
imported on first use.
"""
