"""Long-running services above the engine: `watch` (the on-call watcher of completed
phases, which asks the engine's lifecycle to roll back) and its observation reports."""
