"""Canary analysis (SPEC section 2, "Canary analysis"): judge migrated hosts against a control.

- `canary.judge`: pure functions over arrays and numbers, as Kayenta's judge:
  `judge_metrics` (many metrics at once, each side sorted once) and `judge_metric`
  (one metric, two sample arrays: Mann-Whitney on the middle,
  Brown-Forsythe and the IQR ratio on the spread) and `score` (the verdict and the
  `analysis_completed` detail). It imports nothing of ours.
- `canary.verdict`: `analyse`, a phase's `AnalysisSpec` (core/model.py, parsed by
  config/analysis.py) applied metric by metric through `judge_metrics`.
- `canary.samples`: where the samples come from: `SampleBuffer` (the monitor's own
  readings, appended at each poll) and `prometheus_window` (a range query for
  `prometheus` metrics, so a long window does not wait on polling).

Importing this package imports none of numpy, scipy or prometheus-api-client; they are
imported on first use.
"""
